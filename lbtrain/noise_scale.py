"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), nearly free.

B_simple estimates the batch size beyond which a larger batch stops buying proportionally fewer
steps. It is measured from gradients the step computes anyway, at two batch sizes: a small one
(one device's rows, or one micro-batch) and the big global batch. For gradient estimates over
batches of size B, E|G_B|^2 = |G|^2 + tr(Sigma) / B, so two sizes give unbiased estimates of
both terms (the paper's appendix A.1):

  |G|^2     = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
  tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

Each estimate is very noisy, so the ratio is taken of their exponential moving averages, as the
paper does; the EMAs live in the train state, so a resumed run continues them exactly.
"""

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class NoiseScaleState:
  """EMAs of the two unbiased estimates; their ratio is B_simple (zero before any update)."""
  gradient_sq_norm: jax.Array  # EMA of the |G|^2 estimate
  trace: jax.Array  # EMA of the tr(Sigma) estimate

  @classmethod
  def zeros(cls) -> 'NoiseScaleState':
    return cls(gradient_sq_norm=jnp.zeros((), jnp.float32), trace=jnp.zeros((), jnp.float32))


def sq_norm(tree) -> jax.Array:
  return jnp.square(optax.global_norm(tree))


def estimate(small_sq_norm: jax.Array, big_sq_norm: jax.Array, small_batch: int,
             big_batch: int) -> tuple[jax.Array, jax.Array]:
  """(|G|^2, tr(Sigma)) from the mean squared norm of small-batch gradients and the squared
  norm of their mean, the big-batch gradient."""
  gradient_sq_norm = (big_batch * big_sq_norm - small_batch * small_sq_norm) / (
      big_batch - small_batch)
  trace = (small_sq_norm - big_sq_norm) / (1.0 / small_batch - 1.0 / big_batch)
  return gradient_sq_norm, trace


def update(state: NoiseScaleState, gradient_sq_norm: jax.Array, trace: jax.Array,
           decay: float, apply: jax.Array) -> NoiseScaleState:
  """One EMA step where `apply` holds; the state as it was otherwise.

  No bias correction: both EMAs start at zero and decay alike, so the corrections cancel in
  their ratio.
  """
  def ema(old, new):
    return jnp.where(apply, decay * old + (1.0 - decay) * new.astype(jnp.float32), old)

  return NoiseScaleState(gradient_sq_norm=ema(state.gradient_sq_norm, gradient_sq_norm),
                         trace=ema(state.trace, trace))


def value(state: NoiseScaleState) -> jax.Array:
  """B_simple in examples; 0 before the first update."""
  return jnp.where(state.gradient_sq_norm != 0,
                   state.trace / jnp.where(state.gradient_sq_norm != 0,
                                           state.gradient_sq_norm, 1.0), 0.0)
