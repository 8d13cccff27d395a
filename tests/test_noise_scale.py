"""The gradient noise scale: right on a problem whose answer is known, and in the step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import base
from lbtrain import noise_scale
from lbtrain import optim
from lbtrain import parallel
from lbtrain import steps
from test_steps import GLOBAL_BATCH, _MLP, _batches, _mesh

DIM, NOISE_VARIANCE = 10, 1.0


def _regression_gradients(rng, num_examples, offset):
  """Per-example gradients of 0.5 * (x.w - y)^2 at w = w* + offset, x ~ N(0, I), y = x.w* + e.

  g = x (x.offset - e), so G = E[g] = offset and, for Gaussian x, the covariance is
  Sigma = (|offset|^2 + var(e)) I + offset offset^T: tr(Sigma) = D (|offset|^2 + var(e)) + |offset|^2.
  """
  x = rng.normal(size=(num_examples, DIM))
  noise = rng.normal(scale=np.sqrt(NOISE_VARIANCE), size=num_examples)
  return x * (x @ offset - noise)[:, None]


def test_the_estimates_recover_a_known_noise_scale():
  rng = np.random.default_rng(0)
  offset = np.full(DIM, 1 / np.sqrt(DIM))  # |G|^2 = 1
  true_trace = DIM * (1 + NOISE_VARIANCE) + 1
  small, big = 8, 64
  state = noise_scale.NoiseScaleState.zeros()
  sq_norms, traces, small_sq_norms = [], [], []
  for _ in range(3000):
    per_example = _regression_gradients(rng, big, offset)
    small_gradients = per_example.reshape(big // small, small, DIM).mean(axis=1)
    small_sq_norm = np.mean(np.sum(small_gradients**2, axis=1))
    big_sq_norm = np.sum(per_example.mean(axis=0)**2)
    sq_norm, trace = noise_scale.estimate(small_sq_norm, big_sq_norm, small, big)
    sq_norms.append(sq_norm)
    small_sq_norms.append(small_sq_norm)
    traces.append(trace)
    state = noise_scale.update(state, sq_norm, trace, decay=0.999, apply=True)
  # Unbiased: the means of the estimates approach the truth (standard errors ~1 %).
  np.testing.assert_allclose(np.mean(sq_norms), 1.0, rtol=0.1)
  np.testing.assert_allclose(np.mean(traces), true_trace, rtol=0.05)
  # The EMA ratio: B_simple = 21 examples here.
  np.testing.assert_allclose(float(noise_scale.value(state)), true_trace, rtol=0.15)
  # Guard: ignoring the signal term, tr(Sigma) ~ B_small |G_small|^2, is far off (29 vs 21).
  assert small * np.mean(small_sq_norms) > 1.2 * true_trace


def test_updates_only_where_asked_and_zero_before():
  state = noise_scale.NoiseScaleState.zeros()
  assert float(noise_scale.value(state)) == 0.0
  skipped = noise_scale.update(state, jnp.float32(2.0), jnp.float32(10.0), 0.9, jnp.bool_(False))
  assert float(noise_scale.value(skipped)) == 0.0
  updated = noise_scale.update(state, jnp.float32(2.0), jnp.float32(10.0), 0.9, jnp.bool_(True))
  np.testing.assert_allclose(float(noise_scale.value(updated)), 5.0, rtol=1e-6)


def _one_step(strategy, accum_steps, batch):
  """One step of the MLP with the noise scale on; returns the step's metrics and the state."""
  model = _MLP()
  mesh = _mesh(8)
  optimizer_config = base.get_config().optimizer
  abstract_params = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False))['params']
  tx = optim.create_optimizer(optimizer_config, optax.constant_schedule(0.1), abstract_params)
  state = jax.jit(functools.partial(steps.init_state, model=model, tx=tx, image_shape=(8, 8, 1)),
                  out_shardings=parallel.replicated(mesh))(jax.random.key(0))
  step = parallel.distribute(
      functools.partial(steps.train_step, mesh=mesh, settings=steps.StepSettings(
          model=model, tx=tx, schedule=optax.constant_schedule(0.1), accum_steps=accum_steps,
          noise_scale_every=1, noise_scale_decay=0.5)),
      mesh, strategy)
  initial = jax.device_get(state)
  _, metrics = step(state, jax.device_put(batch, parallel.batch_sharded(mesh)))
  return jax.device_get(metrics), initial


def _expected(state, batch, num_small):
  """B_simple from gradients computed here, one per consecutive chunk of the batch."""
  model = _MLP()

  def loss(params, images, labels):
    logits = model.apply({'params': params}, images, train=True)
    return steps.cross_entropy(logits, labels, 0.0).mean()

  chunks = [jax.grad(loss)(state.params, images, labels) for images, labels in zip(
      np.split(batch['image'], num_small), np.split(batch['label'], num_small))]
  small_sq_norm = np.mean([float(noise_scale.sq_norm(g)) for g in chunks])
  big = jax.grad(loss)(state.params, batch['image'], batch['label'])
  sq_norm, trace = noise_scale.estimate(small_sq_norm, float(noise_scale.sq_norm(big)),
                                        GLOBAL_BATCH // num_small, GLOBAL_BATCH)
  return float(trace / sq_norm)


@pytest.mark.parametrize('strategy, accum_steps, num_small', [
    ('pmap', 1, 8),  # each device's 8 rows
    ('jit', 4, 4),  # 4 micro-batches, each 2 rows of every device
])
def test_the_step_reports_the_noise_scale_of_its_small_batches(strategy, accum_steps, num_small):
  batch = _batches(1)[0]
  metrics, initial = _one_step(strategy, accum_steps, batch)
  if strategy == 'jit':
    # Micro-batch j holds rows [2j, 2j+2) of each device's 8: regroup them as consecutive chunks.
    order = np.arange(GLOBAL_BATCH).reshape(8, accum_steps, -1).swapaxes(0, 1).reshape(-1)
    batch = {name: rows[order] for name, rows in batch.items()}
  expected = _expected(initial, batch, num_small)
  assert expected > 0
  np.testing.assert_allclose(metrics['train/noise_scale'], expected, rtol=1e-3)
