"""ImageNet (the user's prepared tfds `imagenet2012`) read by index: Inception crop, exact eval.

Batches hold uint8 pixels, {'image': uint8 [b, S, S, 3], 'label': int32 [b]} (+ 'mask': bool [b]
in eval), S = `data.image_size` (or the step's size under progressive resizing, and
`data.eval_image_size` in eval: `lbtrain.resolution`): the device normalises them with
`DatasetInfo.mean`/`std`, which moves a quarter of float32's bytes and spares the host the work.

The order is Fashion-MNIST's contract (`input_pipeline`): a pure function of (seed, step).

- The training stream is the concatenation of per-epoch permutations of the split's N examples;
  epoch e's permutation is drawn from (seed, e) alone.
- Step s takes stream positions [s*B, (s+1)*B) and process p of P its rows
  [s*B + p*b, s*B + (p+1)*b), b = B / P, so the global batch of a step is the same whatever P,
  and batches span epoch boundaries (every example once per epoch, none dropped).
- The crop box and flip of a row are drawn from (seed, step, its row in the global batch), and
  so is its RandAugment (data.randaugment_layers > 0; `lbtrain.data.randaugment`).

Resuming at step k therefore starts reading at position k*B at once: nothing is skipped, and a
run may resume on another number of processes and read exactly what the uninterrupted one would
have. This needs records that can be read by index: tfds's ArrayRecord files, through
`tfds.data_source`. A data set prepared as TFRecords (tfds's default) gets its ArrayRecord twin
from `python -m lbtrain.data.to_array_record` (copies the records, decodes nothing).

Eval: global batch k holds positions [k*B, (k+1)*B) of the split in its stored order, process p
its rows; positions past N are padding (zero image and label, mask False), so every example is
counted exactly once and every process yields ceil(N / B) batches.

Decoding (`lbtrain.data.jpeg`) runs in `data.threads` threads, which decode in parallel since
libjpeg-turbo and OpenCV release the GIL; the batches are the same for any number of threads.
Nothing here imports TensorFlow.
"""

import collections
import concurrent.futures
import functools
import os
from typing import Callable, Iterable, Iterator

import ml_collections
import numpy as np

from lbtrain.data import input_pipeline
from lbtrain.data import jpeg
from lbtrain.data import randaugment
from lbtrain.data import to_array_record
from lbtrain.resolution import Resolution

Batch = dict[str, np.ndarray]

# What a seed is for, so that an order seed and an augmentation seed never coincide.
_ORDER, _AUGMENT, _RANDAUGMENT = 0, 1, 2
# Rows a decoding thread takes at a time: few enough that a batch spreads over many threads,
# enough that handing them out costs nothing (~20 us a chunk against ~2 ms an image).
_CHUNK_ROWS = 16


def train_batches(dataset_dir: str, data_config: ml_collections.ConfigDict, *,
                  global_batch_size: int, seed: int, start_step: int, num_steps: int,
                  first_position: int | None = None, process_index: int = 0,
                  process_count: int = 1, sizes: Resolution | None = None) -> Iterator[Batch]:
  """This process's rows of the global batches of steps [start_step, start_step + num_steps).

  `sizes`: the image size of each step (None: data.image_size at every step).
  `first_position`: the stream position of start_step's first example (None: start_step *
  global_batch_size; a batch schedule gives its own). The crops and flips stay drawn from
  (seed, step).
  """
  rows = input_pipeline.rows_per_process(global_batch_size, process_index, process_count)
  source = _source(dataset_dir, data_config.train_split)
  num_examples = len(source)
  first_row = process_index * rows
  layers = data_config.randaugment_layers
  if first_position is None:
    first_position = start_step * global_batch_size

  def new_batch(step: int) -> tuple[Batch, Callable[[int, int], None]]:
    size = sizes.size_at(step) if sizes is not None else data_config.image_size
    positions = first_position + (step - start_step) * global_batch_size + first_row + np.arange(
        rows)
    epochs, offsets = np.divmod(positions, num_examples)
    # Drawn for the whole global batch from (seed, step), each process taking its rows: the
    # crops and flips of a row are the same whatever the process count.
    draws = np.random.default_rng([seed, _AUGMENT, step]).random(
        (global_batch_size, jpeg.NUM_DRAWS))[first_row:first_row + rows]
    # RandAugment's draws likewise, from a stream of their own so that turning it on leaves
    # the crops as they were.
    rand_draws = np.random.default_rng([seed, _RANDAUGMENT, step]).random(
        (global_batch_size, randaugment.num_draws(layers)))[first_row:first_row + rows]
    batch = {'image': np.empty((rows, size, size, 3), np.uint8),
             'label': np.empty((rows,), np.int32)}

    def fill(start: int, stop: int) -> None:
      for row in range(start, stop):
        order = permutation(num_examples, seed, int(epochs[row]))
        encoded, batch['label'][row] = source[int(order[offsets[row]])]
        jpeg.train_crop(encoded, draws[row], size, fallback_ratio=data_config.eval_crop_ratio,
                        out=batch['image'][row])
        if layers:
          batch['image'][row] = randaugment.randaugment(
              batch['image'][row], rand_draws[row], layers, data_config.randaugment_magnitude)

    return batch, fill

  return _parallel_batches(new_batch, range(start_step, start_step + num_steps), rows,
                           threads(data_config))


def eval_batches(dataset_dir: str, data_config: ml_collections.ConfigDict, *,
                 global_batch_size: int, process_index: int = 0, process_count: int = 1,
                 image_size: int | None = None) -> Iterator[Batch]:
  """This process's rows of ceil(N / global_batch_size) global batches covering the split once.

  Rows past the end of the split are padding: zero image and label, mask False.
  `image_size`: the side of the eval crop (None: data.image_size).
  """
  size = image_size or data_config.image_size
  rows = input_pipeline.rows_per_process(global_batch_size, process_index, process_count)
  source = _source(dataset_dir, data_config.eval_split)
  num_examples = len(source)

  def new_batch(index: int) -> tuple[Batch, Callable[[int, int], None]]:
    positions = index * global_batch_size + process_index * rows + np.arange(rows)
    batch = {'image': np.zeros((rows, size, size, 3), np.uint8),
             'label': np.zeros((rows,), np.int32), 'mask': positions < num_examples}
    num_real = int(batch['mask'].sum())  # the rows before the padding

    def fill(start: int, stop: int) -> None:
      for row in range(start, min(stop, num_real)):
        encoded, batch['label'][row] = source[int(positions[row])]
        jpeg.eval_crop(encoded, size, crop_ratio=data_config.eval_crop_ratio,
                       out=batch['image'][row])

    return batch, fill

  return _parallel_batches(new_batch, range(-(-num_examples // global_batch_size)), rows,
                           threads(data_config))


@functools.lru_cache(maxsize=4)
def permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """Epoch `epoch`'s order of the split: a pure function of (seed, epoch); ~10 ms for ImageNet."""
  return np.random.default_rng([seed, _ORDER, epoch]).permutation(num_examples)


def threads(data_config: ml_collections.ConfigDict) -> int:
  """Decoding threads: data.threads, or every core this process may run on."""
  return data_config.threads or len(os.sched_getaffinity(0))


def _parallel_batches(new_batch: Callable[[int], tuple[Batch, Callable[[int, int], None]]],
                      indices: Iterable[int], rows: int, num_threads: int) -> Iterator[Batch]:
  """The batches new_batch(i) makes for each index, in order, filled ahead in num_threads threads.

  new_batch(i) returns the batch's arrays and fill(start, stop), which decodes its rows
  [start, stop) into them; threads take _CHUNK_ROWS rows at a time, so each row is decoded by
  one thread and the batches do not depend on the thread count. Enough batches are in flight
  for two chunks per thread (at least two batches), which bounds the memory they take.
  Closing the generator cancels the chunks not started and waits for the others.
  """
  chunks_per_batch = -(-rows // _CHUNK_ROWS)
  ahead = max(2, -(-2 * num_threads // chunks_per_batch))
  pool = concurrent.futures.ThreadPoolExecutor(num_threads, thread_name_prefix='imagenet')
  pending = collections.deque()  # (batch, its chunks' futures)
  try:
    for index in indices:
      batch, fill = new_batch(index)
      pending.append((batch, [pool.submit(fill, start, min(start + _CHUNK_ROWS, rows))
                              for start in range(0, rows, _CHUNK_ROWS)]))
      if len(pending) > ahead:
        yield _finished(*pending.popleft())
    while pending:
      yield _finished(*pending.popleft())
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def _finished(batch: Batch, chunks: list[concurrent.futures.Future]) -> Batch:
  for chunk in chunks:
    chunk.result()  # re-raises a decoding error here, in the consumer
  return batch


class _Records:
  """A split's (JPEG bytes, label) by index.

  tfds's data source reads the serialized records, which are parsed here rather than by tfds's
  feature decoding: that took as long again as the read (~50 us of a ~2 ms image, with the GIL).
  """

  def __init__(self, dataset_dir: str, split: str):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
    self._parse = tf_example_pb2.Example.FromString
    self._records = tfds.builder_from_directory(dataset_dir).as_data_source(
        split, file_format=to_array_record.FORMAT,
        deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> tuple[bytes, int]:
    features = self._parse(self._records[index]).features.feature
    return features['image'].bytes_list.value[0], features['label'].int64_list.value[0]


@functools.lru_cache(maxsize=8)
def _source(dataset_dir: str, split: str) -> _Records:
  return _Records(dataset_dir, split)


def write_imagenet_like(data_dir: str, splits: dict[str, Iterable[tuple[bytes, int]]], *,
                        num_shards: int = 1, array_record: bool = True) -> str:
  """Stores (JPEG bytes, label) pairs as a tfds `imagenet2012`, for tests and benchmarks.

  The features are the real data set's (JPEG image, 1000 classes, file name) and the bytes are
  stored as given, as tfds stores ImageNet's own files: as TFRecords, tfds's default, then
  converted to ArrayRecord as a user would (`to_array_record`) unless array_record is False.

  Returns:
    The prepared data set's folder.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from lbtrain.data import to_array_record  # pylint: disable=g-import-not-at-top

  def examples(pairs):
    for index, (encoded, label) in enumerate(pairs):
      yield index, {'image': encoded, 'label': label, 'file_name': f'{index:08d}.JPEG'}

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
  dataset_dir = os.fspath(builder.data_dir)
  if array_record:
    to_array_record.convert(dataset_dir, workers=1, log=lambda line: None)
  return dataset_dir
