"""Mixup and CutMix with soft labels, inside the jitted train step: no host cost, and a pure
function of (seed, step), so a step's batch is the same on any number of processes and after
any resume.

One mixing coefficient per global batch, each example mixed with its predecessor in the global
batch (row i with row i - 1, row 0 with the last), as big_vision's `utils.mixup` does (its
default `fold_in=None`): the same draw whatever the number of devices or processes.

- Mixup (Zhang et al. 2018): x = lam x_i + (1 - lam) x_{i-1}, with big_vision's lam = the larger
  of a Beta(alpha, alpha) draw and its complement (it sorts the Dirichlet draw "to avoid
  destroying examples" at small alpha), so the example's own label keeps the larger weight.
- CutMix (Yun et al. 2019): a box of about (1 - lam) of the image, centred uniformly and
  clipped at the border, lam ~ Beta(alpha, alpha), is pasted from x_{i-1}; the label weight is
  1 - the box's actual share of the pixels.

With both on, each step uses CutMix with probability 1/2 (timm's switch_prob), else Mixup; a
step is mixed at all with probability `prob` (big_vision: always).
"""

import dataclasses

import jax
import jax.numpy as jnp

# A stream of its own off the run's seed, so mixing never reuses the draws of parameter init.
_STREAM = 0x6d6978  # 'mix'


@dataclasses.dataclass(frozen=True)
class MixSettings:
  """train.mixup_alpha, train.cutmix_alpha (0: off), train.mix_prob and the run's seed."""
  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  prob: float = 1.0
  seed: int = 0

  @property
  def on(self) -> bool:
    return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


def step_key(seed: int, step: jax.Array) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _STREAM), step)


def _previous_rows(x: jax.Array, axis_name: str | None) -> jax.Array:
  """Row i - 1 of the global batch at row i. Under pmap (`axis_name`) x is one device's rows:
  its first row takes the previous device's last row."""
  rolled = jnp.roll(x, 1, axis=0)
  if axis_name is None:
    return rolled
  size = jax.lax.psum(1, axis_name)
  last_of_previous = jax.lax.ppermute(x[-1:], axis_name,
                                      [(i, (i + 1) % size) for i in range(size)])
  return rolled.at[:1].set(last_of_previous)


def _cutmix_mask(key: jax.Array, lam: jax.Array, height: int, width: int):
  """(bool [H, W] box to paste, the share of pixels outside it)."""
  cut = jnp.sqrt(1.0 - lam)
  cy_key, cx_key = jax.random.split(key)
  cy = jax.random.uniform(cy_key) * height
  cx = jax.random.uniform(cx_key) * width
  half_h, half_w = cut * height / 2, cut * width / 2
  y0, y1 = (jnp.clip(jnp.round(v), 0, height) for v in (cy - half_h, cy + half_h))
  x0, x1 = (jnp.clip(jnp.round(v), 0, width) for v in (cx - half_w, cx + half_w))
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
  return box, 1.0 - (y1 - y0) * (x1 - x0) / (height * width)


def mix(images: jax.Array, targets: jax.Array, step: jax.Array, settings: MixSettings,
        axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
  """(images, targets) of the step mixed: float images [B, H, W, C] and soft targets [B, K]
  (one-hot or smoothed), B the global batch or, under pmap, this device's rows."""
  keys = jax.random.split(step_key(settings.seed, step), 5)
  apply = jax.random.uniform(keys[0]) < settings.prob
  use_cutmix = settings.cutmix_alpha > 0 and (
      settings.mixup_alpha == 0 or jax.random.uniform(keys[1]) < 0.5)
  height, width = images.shape[1:3]
  previous_images = _previous_rows(images, axis_name)
  previous_targets = _previous_rows(targets, axis_name)

  lam, mixed = jnp.float32(1.0), images
  if settings.mixup_alpha > 0:
    draw = jax.random.beta(keys[2], settings.mixup_alpha, settings.mixup_alpha)
    lam = jnp.maximum(draw, 1.0 - draw)
    mixed = lam * images + (1.0 - lam) * previous_images
  if settings.cutmix_alpha > 0:
    box, cut_lam = _cutmix_mask(keys[4], jax.random.beta(
        keys[3], settings.cutmix_alpha, settings.cutmix_alpha), height, width)
    cut = jnp.where(box[None, :, :, None], previous_images, images)
    mixed = jnp.where(use_cutmix, cut, mixed)
    lam = jnp.where(use_cutmix, cut_lam, lam)
  lam = jnp.where(apply, lam, 1.0).astype(targets.dtype)
  mixed = jnp.where(apply, mixed, images)
  return mixed.astype(images.dtype), lam * targets + (1.0 - lam) * previous_targets
