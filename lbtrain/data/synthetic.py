"""Batches made on the devices (`config.data.dataset='synthetic'`): the step with no host input.

Used to measure what the step itself can do, so that a slow input pipeline or host shows up as
the difference against a real-data run. One random batch is made once, already sharded over the
mesh, and fed to every step; eval batches are padded and masked like real ones, so the loop
(eval counts included) runs unchanged.
"""

import itertools
from typing import Iterator

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from lbtrain import parallel
from lbtrain.data.input_pipeline import DatasetInfo


def _make_batch(info: DatasetInfo, mesh: Mesh, batch_size: int, num_real: int | None,
                seed: int) -> dict[str, jax.Array]:
  def make(key):
    image_key, label_key = jax.random.split(key)
    shape = (batch_size, *info.image_shape)
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
                  num_steps: int) -> Iterator[dict[str, jax.Array]]:
  """The same on-device global batch, `num_steps` times."""
  yield from itertools.repeat(_make_batch(info, mesh, global_batch_size, None, seed), num_steps)


def eval_batches(info: DatasetInfo, mesh: Mesh, *,
                 global_batch_size: int) -> Iterator[dict[str, jax.Array]]:
  """ceil(N_eval / global_batch_size) batches; the last one masks its padding like real data."""
  full, remainder = divmod(info.num_eval_examples, global_batch_size)
  if full:
    yield from itertools.repeat(
        _make_batch(info, mesh, global_batch_size, global_batch_size, seed=1), full)
  if remainder:
    yield _make_batch(info, mesh, global_batch_size, remainder, seed=2)
