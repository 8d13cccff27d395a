"""Batches made on the devices (`config.data.dataset='synthetic'`): the step with no host input.

Used to measure what the step itself can do, so that a slow input pipeline or host shows up as
the difference against a real-data run. One random batch per image size is made once, already
sharded over the mesh, and fed to every step of that size; eval batches are padded and masked
like real ones, so the loop (eval counts included) runs unchanged.
"""

import itertools
from typing import Iterator

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from lbtrain import parallel
from lbtrain.data.input_pipeline import DatasetInfo
from lbtrain.resolution import Resolution


def _make_batch(info: DatasetInfo, mesh: Mesh, batch_size: int, num_real: int | None,
                seed: int, image_size: int | None = None) -> dict[str, jax.Array]:
  height, width, channels = info.image_shape
  if image_size is not None:
    height = width = image_size

  def make(key):
    image_key, label_key = jax.random.split(key)
    shape = (batch_size, height, width, channels)
    if info.image_dtype == 'uint8':
      images = jax.random.randint(image_key, shape, 0, 256, jnp.int32).astype(jnp.uint8)
    else:
      images = jax.random.normal(image_key, shape, jnp.float32)
    batch = {'image': images,
             'label': jax.random.randint(label_key, (batch_size,), 0, info.num_classes,
                                         jnp.int32)}
    if num_real is not None:
      batch['mask'] = jnp.arange(batch_size) < num_real
    return batch

  return jax.jit(make, out_shardings=parallel.batch_sharded(mesh))(jax.random.key(seed))


def train_batches(info: DatasetInfo, mesh: Mesh, *, global_batch_size: int, seed: int,
                  num_steps: int, start_step: int = 0,
                  sizes: Resolution | None = None) -> Iterator[dict[str, jax.Array]]:
  """The same on-device global batch per image size, for steps [start_step, +num_steps)."""
  if sizes is None:
    yield from itertools.repeat(_make_batch(info, mesh, global_batch_size, None, seed), num_steps)
    return
  stop = start_step + num_steps
  for first, end, size in sizes.segments():
    steps = min(end, stop) - max(first, start_step)
    if steps > 0:
      yield from itertools.repeat(
          _make_batch(info, mesh, global_batch_size, None, seed, image_size=size), steps)


def eval_batches(info: DatasetInfo, mesh: Mesh, *, global_batch_size: int,
                 image_size: int | None = None) -> Iterator[dict[str, jax.Array]]:
  """ceil(N_eval / global_batch_size) batches; the last one masks its padding like real data."""
  full, remainder = divmod(info.num_eval_examples, global_batch_size)
  if full:
    yield from itertools.repeat(
        _make_batch(info, mesh, global_batch_size, global_batch_size, seed=1,
                    image_size=image_size), full)
  if remainder:
    yield _make_batch(info, mesh, global_batch_size, remainder, seed=2, image_size=image_size)
