"""tf.data pipelines over a split small enough to hold in host memory, gathered by index.

The order of examples is the contract of the whole data package (see `input_pipeline`): it is
computed here from stream positions alone, so it cannot depend on the process count or on the
step a run starts from.
"""

import functools
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from lbtrain.data import input_pipeline

# What tf.random.experimental.index_shuffle prepends to its [2] seed. That wrapper mishandles a
# batch of [n, 2] seeds, so the raw op is called with this in front: epoch e's order is then
# exactly the documented `index_shuffle(range(n), seed=[seed, e], max_index=n - 1)`.
_INDEX_SHUFFLE_SEED_PREFIX = 498247692

Batch = dict[str, np.ndarray]


@functools.lru_cache(maxsize=None)
def load_split(dataset_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns (images uint8 [N, H, W, C], labels [N]) of a tfds split, decoded once per process."""
  builder = tfds.builder_from_directory(dataset_dir)
  data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return data['image'], data['label']


def example_indices(positions: tf.Tensor, num_examples: int, seed: int) -> tf.Tensor:
  """Maps positions in the endless training stream to example indices.

  The stream is the concatenation of per-epoch permutations, each a pure function of
  (seed, epoch), so any position can be looked up without materialising an order.

  Args:
    positions: int64 [b] stream positions.
    num_examples: size of the split.
    seed: the data-order seed.
  """
  epochs = positions // num_examples
  seeds = tf.stack([
      tf.fill(tf.shape(epochs), tf.constant(_INDEX_SHUFFLE_SEED_PREFIX, tf.int64)),
      tf.fill(tf.shape(epochs), tf.constant(seed, tf.int64)),
      epochs,
  ], axis=1)
  return tf.raw_ops.RandomIndexShuffle(
      index=positions % num_examples, seed=seeds,
      max_index=tf.constant(num_examples - 1, tf.int64), rounds=4)


def train_batches(images: np.ndarray, labels: np.ndarray, *, mean: Sequence[float],
                  std: Sequence[float], global_batch_size: int, seed: int, start_step: int,
                  num_steps: int, first_position: int | None = None, process_index: int = 0,
                  process_count: int = 1) -> Iterator[Batch]:
  """This process's rows of the global training batches of steps [start_step, +num_steps).

  Args:
    images: uint8 [N, H, W, C], the whole split.
    labels: integer [N].
    mean: per-channel mean of pixels scaled to [0, 1].
    std: per-channel standard deviation of pixels scaled to [0, 1].
    global_batch_size: examples per step over all processes.
    seed: the data-order seed.
    start_step: first step to yield.
    num_steps: how many steps to yield.
    first_position: the stream position of start_step's first example; None: start_step *
      global_batch_size, as at one batch throughout (a batch schedule gives its own).
    process_index: which process this is.
    process_count: how many processes share each global batch.

  Returns:
    Batches {'image': float32 [b, H, W, C], 'label': int32 [b]}, b = global / process_count.
  """
  rows = input_pipeline.rows_per_process(global_batch_size, process_index, process_count)
  num_examples = len(labels)
  normalize = _normalizer(mean, std)
  images = tf.constant(images)
  labels = tf.constant(labels, tf.int32)

  if first_position is None:
    first_position = start_step * global_batch_size

  def batch(step):
    positions = (first_position + (step - start_step) * global_batch_size + process_index * rows
                 + tf.range(rows, dtype=tf.int64))
    indices = example_indices(positions, num_examples, seed)
    return {'image': normalize(tf.gather(images, indices)), 'label': tf.gather(labels, indices)}

  steps = tf.data.Dataset.range(start_step, start_step + num_steps)
  return _as_numpy(steps.map(batch, num_parallel_calls=_PARALLEL_BATCHES))


def eval_batches(images: np.ndarray, labels: np.ndarray, *, mean: Sequence[float],
                 std: Sequence[float], global_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[Batch]:
  """This process's rows of ceil(N / global_batch_size) global batches covering the split once.

  Rows past the end of the split are padding: zero image and label, mask False.

  Args:
    images: uint8 [N, H, W, C], the whole split.
    labels: integer [N].
    mean: per-channel mean of pixels scaled to [0, 1].
    std: per-channel standard deviation of pixels scaled to [0, 1].
    global_batch_size: examples per global batch over all processes.
    process_index: which process this is.
    process_count: how many processes share each global batch.

  Returns:
    Batches {'image': float32 [b, H, W, C], 'label': int32 [b], 'mask': bool [b]}.
  """
  rows = input_pipeline.rows_per_process(global_batch_size, process_index, process_count)
  num_examples = len(labels)
  normalize = _normalizer(mean, std)
  images = tf.constant(images)
  labels = tf.constant(labels, tf.int32)

  def batch(index):
    positions = (index * global_batch_size + process_index * rows
                 + tf.range(rows, dtype=tf.int64))
    mask = positions < num_examples
    indices = tf.minimum(positions, num_examples - 1)
    image = normalize(tf.gather(images, indices))
    return {
        'image': tf.where(mask[:, tf.newaxis, tf.newaxis, tf.newaxis], image, 0.0),
        'label': tf.where(mask, tf.gather(labels, indices), 0),
        'mask': mask,
    }

  num_batches = -(-num_examples // global_batch_size)
  return _as_numpy(tf.data.Dataset.range(num_batches).map(
      batch, num_parallel_calls=_PARALLEL_BATCHES))


# A gathered batch is a few MB: a few in flight keep far ahead of the trainer.
_PARALLEL_BATCHES = 4
_PREFETCH_BATCHES = 4


def _normalizer(mean: Sequence[float], std: Sequence[float]):
  """Returns uint8 pixels -> float32 with the data set's per-channel mean 0 and std 1."""
  scale = tf.constant([1 / (255 * s) for s in std], tf.float32)
  offset = tf.constant([-m / s for m, s in zip(mean, std)], tf.float32)
  return lambda pixels: tf.cast(pixels, tf.float32) * scale + offset


def _as_numpy(batches: tf.data.Dataset) -> Iterator[Batch]:
  options = tf.data.Options()
  options.deterministic = True  # parallel map must still yield batches in step order
  # No autotuner: a gather by index needs no tuning, and the autotuner's thread made every
  # iterator's destruction (end of eval, end of training) wait up to a minute for its timer.
  options.autotune.enabled = False
  return batches.with_options(options).prefetch(_PREFETCH_BATCHES).as_numpy_iterator()
