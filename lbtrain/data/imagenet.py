"""ImageNet (the user's prepared tfds `imagenet2012`) through tf.data: Inception crop, exact eval.

Batches hold uint8 pixels, {'image': uint8 [b, S, S, 3], 'label': int32 [b]} (+ 'mask': bool [b]
in eval), S = `data.image_size` (or the step's size under progressive resizing, and
`data.eval_image_size` in eval: `lbtrain.resolution`): the device normalises them with
`DatasetInfo.mean`/`std`. That moves a quarter of float32's bytes to the devices and spares the
host the normalisation, which cost a quarter to a third of its images/sec per core
(`scripts/benchmark_input.py`).

The order. TFRecord shards are read front to back, so unlike the in-memory pipeline ImageNet
cannot be gathered by index; instead each process reads only its own slice of the split and
yields its rows of every global batch from it:

- Process p of P reads examples [p*N // P, (p+1)*N // P) of the split, N_p of them.
- Its stream is the concatenation of epochs over that slice. Epoch e reads the slice's shards in
  an order drawn from (seed, e), `_CYCLE_LENGTH` shards at a time, one record from each in turn,
  and passes the records through a shuffle buffer of `data.shuffle_buffer` seeded from (seed, e).
- Step s takes stream positions [s*b, (s+1)*b), b = B / P. An epoch of a process is N_p / b
  steps, which is N / B to within one example, and batches span epoch boundaries as in the
  in-memory pipeline, so every example of the slice is read once per epoch and none is dropped.
- The random crop and flip of an example are drawn statelessly from (seed, its global position
  s*B + p*b + row), the position the in-memory pipeline would give it.

The batches are therefore a pure function of (seed, step, P, p) and of the settings that shape
the stream (`shuffle_buffer`, and `deterministic`, which must stay True for it), so a resumed run
reads what the uninterrupted one would have. Unlike Fashion-MNIST's, the global batch of a step
depends on the process count P: a run resumed on another number of processes goes on with
another order, and in the epoch it resumes in some examples come twice and others not at all.

Resuming at step k rebuilds the stream from the start of the epoch that holds stream position
k*b and passes the records before it through the file reader and the shuffle buffer without
decoding them: up to one epoch of this process's serialized records, ~140 GB / P for ImageNet
(docs/imagenet.md gives the measured cost).

Eval reads each process's slice of the eval split once (16 shards at a time) and pads it to
ceil(N / B) * b rows (possible since N_p <= ceil(N / P)), so every example is counted exactly
once and every process yields the same number of batches.
"""

import functools
import os
from typing import Callable, Iterable, Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from lbtrain.data import in_memory
from lbtrain.errors import UserError
from lbtrain.resolution import Resolution

Batch = dict[str, np.ndarray]

# The Inception crop (Szegedy et al. 2015, "random-resized crop"): a box of 8 %-100 % of the
# image area with width/height in [3/4, 4/3]. min_object_covered=0 makes the area range the
# whole constraint (the TF references' 0.1 of a whole-image box would raise the floor to 10 %).
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
MAX_ATTEMPTS = 10  # then the center crop, as in the TF and flax references

# Shards read at once, one record from each in turn. Part of the data order, so a constant:
# tf.data would pick the machine's core count, and a run resumed elsewhere would read another order.
_CYCLE_LENGTH = 16
_READ_BUFFER_BYTES = 8 << 20
# Batches made ahead of the trainer on the host (the device-side prefetch is data.prefetch_batches).
_HOST_PREFETCH_BATCHES = 2
# What a per-example seed is for, so that an order seed and an augmentation seed never coincide.
_ORDER, _AUGMENT = 0, 1


def train_dataset(dataset_dir: str, data_config: ml_collections.ConfigDict, *,
                  global_batch_size: int, seed: int, start_step: int, num_steps: int,
                  process_index: int = 0, process_count: int = 1,
                  sizes: Resolution | None = None) -> tf.data.Dataset:
  """This process's rows of the global batches of steps [start_step, start_step + num_steps).

  See the module docstring for the order; `to_numpy` turns the result into numpy batches.
  `sizes`: the image size of each step (None: data.image_size at every step).
  """
  rows = in_memory.rows_per_process(
      global_batch_size, process_index, process_count)
  builder = _builder(dataset_dir)
  shards = _process_shards(builder, data_config.train_split, process_index, process_count)
  num_local = sum(take for _, _, take in shards)
  if not num_local:
    raise UserError(f'split {data_config.train_split!r} has fewer examples than the '
                    f'{process_count} processes; use a bigger split.')
  open_shard = _shard_opener(shards, data_config.cache)
  parallelism = _parallelism(data_config)
  seed = tf.constant(seed, tf.int64)

  def epoch(index):
    order_seed, shuffle_seed = tf.unstack(tf.random.experimental.stateless_split(
        _seed(seed, _ORDER, index), 2))
    order = tf.argsort(tf.random.stateless_uniform([len(shards)], order_seed))
    records = _read(tf.data.Dataset.from_tensor_slices(order), open_shard, len(shards))
    records = records.apply(tf.data.experimental.assert_cardinality(num_local))
    return records.shuffle(
        data_config.shuffle_buffer,
        seed=tf.random.stateless_uniform([], shuffle_seed, minval=None, maxval=None,
                                         dtype=tf.int64))

  first, stop = start_step * rows, (start_step + num_steps) * rows
  records = tf.data.Dataset.range(first // num_local, -(-stop // num_local)).flat_map(epoch)
  records = records.skip(first % num_local).take(stop - first)
  deserialize = _deserializer(builder)
  size_of_step = _size_of_step(sizes, data_config.image_size)

  def example(local_position, record):
    features = deserialize(record)
    position = ((local_position // rows) * global_batch_size + process_index * rows
                + local_position % rows)
    image = preprocess_for_train(features['image'], _seed(seed, _AUGMENT, position),
                                 image_size=size_of_step(local_position // rows),
                                 center_crop_ratio=data_config.eval_crop_ratio)
    return {'image': image, 'label': tf.cast(features['label'], tf.int32)}

  return records.enumerate(first).map(example, num_parallel_calls=parallelism).batch(
      rows, drop_remainder=True)


def eval_dataset(dataset_dir: str, data_config: ml_collections.ConfigDict, *,
                 global_batch_size: int, process_index: int = 0, process_count: int = 1,
                 image_size: int | None = None) -> tf.data.Dataset:
  """This process's rows of ceil(N / global_batch_size) global batches covering the split once.

  Rows past the end of this process's slice are padding: zero image and label, mask False.
  `image_size`: the side of the eval crop (None: data.image_size).
  """
  size = image_size or data_config.image_size
  rows = in_memory.rows_per_process(
      global_batch_size, process_index, process_count)
  builder = _builder(dataset_dir)
  split = data_config.eval_split
  shards = _process_shards(builder, split, process_index, process_count)
  num_local = sum(take for _, _, take in shards)
  num_batches = -(-builder.info.splits[split].num_examples // global_batch_size)
  deserialize = _deserializer(builder)

  def example(record):
    features = deserialize(record)
    return {
        'image': preprocess_for_eval(features['image'], image_size=size,
                                     crop_ratio=data_config.eval_crop_ratio),
        'label': tf.cast(features['label'], tf.int32),
        'mask': tf.constant(True),
    }

  padding = tf.data.Dataset.from_tensors({
      'image': tf.zeros([size, size, 3], tf.uint8),
      'label': tf.constant(0, tf.int32),
      'mask': tf.constant(False),
  }).repeat(num_batches * rows - num_local)
  examples = _read(tf.data.Dataset.range(len(shards)), _shard_opener(shards, data_config.cache),
                   len(shards))
  examples = examples.apply(tf.data.experimental.assert_cardinality(num_local))
  examples = examples.map(example, num_parallel_calls=_parallelism(data_config))
  return examples.concatenate(padding).batch(rows, drop_remainder=True)


def to_numpy(batches: tf.data.Dataset, data_config: ml_collections.ConfigDict) -> Iterator[Batch]:
  """Applies data.threads / autotune / deterministic and host prefetch; yields numpy batches."""
  options = tf.data.Options()
  options.deterministic = data_config.deterministic
  options.autotune.enabled = data_config.autotune
  options.threading.private_threadpool_size = data_config.threads or 0  # 0: tf.data's shared pool
  options.threading.max_intra_op_parallelism = 1  # parallelism comes from parallel calls
  prefetch = tf.data.AUTOTUNE if data_config.autotune else _HOST_PREFETCH_BATCHES
  return batches.prefetch(prefetch).with_options(options).as_numpy_iterator()


def preprocess_for_train(encoded: tf.Tensor, seed: tf.Tensor, *, image_size: int,
                         center_crop_ratio: float) -> tf.Tensor:
  """Inception crop, resize and random flip of one JPEG, decoding only the cropped window.

  Args:
    encoded: scalar string, a JPEG.
    seed: int64 [2]; the crop and the flip are pure functions of it.
    image_size: side of the square output.
    center_crop_ratio: when no box fits in MAX_ATTEMPTS draws (very wide or tiny images), the
      crop is the central square of this fraction of the shorter side instead.

  Returns:
    uint8 [image_size, image_size, 3].
  """
  shape = tf.io.extract_jpeg_shape(encoded)
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
      min_object_covered=0.0, aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=AREA_RANGE,
      max_attempts=MAX_ATTEMPTS, use_image_if_no_bounding_boxes=True)
  # The op reports that every attempt failed by returning the whole image.
  failed = tf.reduce_all(size[:2] == shape[:2])
  window = tf.where(failed, _center_window(shape, center_crop_ratio),
                    tf.concat([begin[:2], size[:2]], axis=0))
  image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
  image = _resize(image, image_size)
  return tf.image.stateless_random_flip_left_right(image, flip_seed)


def preprocess_for_eval(encoded: tf.Tensor, *, image_size: int, crop_ratio: float) -> tf.Tensor:
  """The central square of crop_ratio x the shorter side, resized to image_size x image_size.

  The same pixels as "resize the shorter side to image_size / crop_ratio (256 for 224 at 0.875),
  then take the central image_size square", but only that window is decoded and resized once.

  Returns:
    uint8 [image_size, image_size, 3].
  """
  window = _center_window(tf.io.extract_jpeg_shape(encoded), crop_ratio)
  return _resize(tf.io.decode_and_crop_jpeg(encoded, window, channels=3), image_size)


def write_imagenet_like(data_dir: str, splits: dict[str, Iterable[tuple[bytes, int]]], *,
                        num_shards: int = 1) -> str:
  """Stores (JPEG bytes, label) pairs as a tfds `imagenet2012`, for tests and benchmarks.

  The features are the real data set's (JPEG image, 1000 classes, file name) and the bytes are
  stored as given, as tfds stores ImageNet's own files.

  Returns:
    The prepared data set's folder.
  """

  def examples(pairs):
    for index, (jpeg, label) in enumerate(pairs):
      yield index, {'image': jpeg, 'label': label, 'file_name': f'{index:08d}.JPEG'}

  builder = tfds.dataset_builders.store_as_tfds_dataset(
      name='imagenet2012',
      version='5.1.0',
      features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(encoding_format='jpeg'),
          'label': tfds.features.ClassLabel(num_classes=1000),
          'file_name': tfds.features.Text(),
      }),
      split_datasets={split: examples(pairs) for split, pairs in splits.items()},
      data_dir=data_dir,
      download_config=tfds.download.DownloadConfig(num_shards=num_shards),
      # Record order = the order given, so tests can trace examples by their position.
      disable_shuffling=True,
  )
  return os.fspath(builder.data_dir)


def _builder(dataset_dir: str) -> tfds.core.DatasetBuilder:
  builder = tfds.builder_from_directory(dataset_dir)
  if builder.info.file_format != tfds.core.FileFormat.TFRECORD:
    raise UserError(f'{dataset_dir} is stored as {builder.info.file_format.value}; lbtrain '
                    'reads tfrecord: rebuild it with `tfds build imagenet2012 '
                    '--file_format=tfrecord`.')
  return builder


def _process_shards(builder: tfds.core.DatasetBuilder, split: str, process_index: int,
                    process_count: int) -> list[tuple[str, int, int]]:
  """(file, records to skip, records to take) covering examples [p*N // P, (p+1)*N // P)."""
  instructions = builder.info.splits[split].file_instructions
  total = sum(instruction.take for instruction in instructions)
  start = total * process_index // process_count
  stop = total * (process_index + 1) // process_count
  shards, offset = [], 0
  for instruction in instructions:
    low, high = max(start, offset), min(stop, offset + instruction.take)
    if low < high:
      shards.append((os.fspath(instruction.filename), instruction.skip + low - offset, high - low))
    offset += instruction.take
  return shards


def _shard_opener(shards: list[tuple[str, int, int]],
                  cache: bool) -> Callable[[tf.Tensor], tf.data.Dataset]:
  """Returns shard index -> dataset of its serialized records, from disk or from memory."""
  takes = tf.constant([take for _, _, take in shards], tf.int64)
  if cache:
    records = _records_in_memory(tuple(shards))
    starts = tf.constant(np.cumsum([0] + [take for _, _, take in shards])[:-1], tf.int64)
    return lambda index: tf.data.Dataset.from_tensor_slices(
        records[starts[index]:starts[index] + takes[index]])
  paths = tf.constant([path for path, _, _ in shards], tf.string)
  skips = tf.constant([skip for _, skip, _ in shards], tf.int64)
  return lambda index: tf.data.TFRecordDataset(
      paths[index], buffer_size=_READ_BUFFER_BYTES).skip(skips[index]).take(takes[index])


def _read(indices: tf.data.Dataset, open_shard: Callable[[tf.Tensor], tf.data.Dataset],
          num_shards: int) -> tf.data.Dataset:
  """The records of the shards at `indices`, _CYCLE_LENGTH shards at a time, one of each in turn.

  The order is the same whatever the parallelism, unless data.deterministic is False.
  """
  cycle_length = max(1, min(_CYCLE_LENGTH, num_shards))
  return indices.interleave(open_shard, cycle_length=cycle_length, block_length=1,
                            num_parallel_calls=cycle_length)


@functools.lru_cache(maxsize=None)
def _records_in_memory(shards: tuple[tuple[str, int, int], ...]) -> tf.Tensor:
  """The shards' serialized records, read once per process and kept (data.cache)."""
  records = []
  for path, skip, take in shards:
    records.extend(tf.data.TFRecordDataset(path).skip(skip).take(take).as_numpy_iterator())
  return tf.constant(np.array(records, dtype=object), tf.string)


def _deserializer(builder: tfds.core.DatasetBuilder):
  """Returns serialized record -> {'image': the JPEG, still encoded, 'label': int64, ...}."""
  return functools.partial(builder.info.features.deserialize_example,
                           decoders={'image': tfds.decode.SkipDecoding()})


def _parallelism(data_config: ml_collections.ConfigDict) -> int:
  if data_config.autotune:
    return tf.data.AUTOTUNE
  return data_config.threads or len(os.sched_getaffinity(0))


def _size_of_step(sizes: Resolution | None, fixed: int) -> Callable[[tf.Tensor], object]:
  """Step -> output side: a Python int when it never changes (static batch shapes), else a
  lookup in the resolution's segments."""
  if sizes is None or not sizes.ramped:
    size = fixed if sizes is None else sizes.segment_sizes[0]
    return lambda step: size
  starts = tf.constant(sizes.segment_starts, tf.int64)
  values = tf.constant(sizes.segment_sizes, tf.int32)
  return lambda step: values[tf.searchsorted(starts, [step], side='right')[0] - 1]


def _seed(seed: tf.Tensor, purpose: int, index: tf.Tensor) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(
      tf.stack([seed, tf.constant(purpose, tf.int64)]), tf.cast(index, tf.int64))


def _center_window(shape: tf.Tensor, ratio: float) -> tf.Tensor:
  """[top, left, height, width] of the central square of ratio x the shorter side."""
  height, width = shape[0], shape[1]
  side = tf.maximum(1, tf.cast(
      tf.round(ratio * tf.cast(tf.minimum(height, width), tf.float32)), tf.int32))
  return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
  # Bilinear without antialiasing, as the TF/MLPerf ResNet references: a crop is mostly enlarged.
  resized = tf.image.resize(image, [size, size], method='bilinear')
  return tf.cast(tf.round(resized), tf.uint8)  # a convex combination of uint8: no clipping
