"""Adds ArrayRecord shards to a prepared TFRecord `imagenet2012`, in place and resumably.

    python -m lbtrain.data.to_array_record --data_dir=/path/to/tensorflow_datasets

lbtrain reads ImageNet by index (`lbtrain.data.imagenet`), which TFRecord files cannot do. This
copies each TFRecord shard's serialized records, unchanged and in order, into an ArrayRecord
shard of the same name beside it (tfds's `{name}-{split}.array_record-{i}-of-{n}`), then lists
`array_record` among the data set's `alternativeFileFormats` in dataset_info.json, which is what
`tfds.builder(...).as_data_source()` reads. Nothing is decoded: each record is read and written
once. The folder holds both formats afterwards; the TFRecords may be deleted once it is done
(lbtrain then reads the ArrayRecords alone).

Resumable: a shard is written under a temporary name and renamed when complete, finished shards
are skipped, and dataset_info.json changes last, so an interrupted run is simply run again.

tfds has the same conversion (`tfds convert_format`), but its module needs Apache Beam to import.
"""

import concurrent.futures
import json
import multiprocessing
import os
import time
from typing import Callable

from absl import flags
from absl import logging

from lbtrain import cli
from lbtrain.errors import UserError

FORMAT = 'array_record'
COMMAND = 'python -m lbtrain.data.to_array_record --data_dir={data_dir}'
_PARTIAL = '.partial'


def shard_paths(dataset_dir: str, file_format: str) -> list[tuple[str, str]]:
  """(split, shard path) of every shard of a prepared tfds data set in file_format, from its
  dataset_info.json (tfds's `{name}-{split}.{format}-{i:05d}-of-{n:05d}`)."""
  info = read_info(dataset_dir)
  paths = []
  for split in info['splits']:
    num_shards = len(split['shardLengths'])
    template = split.get('filepathTemplate', '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}')
    for index in range(num_shards):
      name = (template.replace('{DATASET}', info['name']).replace('{SPLIT}', split['name'])
              .replace('{FILEFORMAT}', file_format)
              .replace('{SHARD_X_OF_Y}', f'{index:05d}-of-{num_shards:05d}'))
      paths.append((split['name'], os.path.join(dataset_dir, name)))
  return paths


def shard_pairs(dataset_dir: str) -> list[tuple[str, str]]:
  """(TFRecord shard, its ArrayRecord twin) of every split of a prepared tfds data set."""
  info = read_info(dataset_dir)
  if info.get('fileFormat', 'tfrecord') != 'tfrecord':
    raise UserError(f'{dataset_dir} is stored as {info["fileFormat"]}, not tfrecord: nothing to '
                    'convert.')
  pairs = [(source, target) for (_, source), (_, target) in zip(
      shard_paths(dataset_dir, 'tfrecord'), shard_paths(dataset_dir, FORMAT))]
  missing = [source for source, target in pairs
             if not os.path.exists(source) and not os.path.exists(target)]
  if missing:
    raise UserError(f'{len(missing)} shards listed in {dataset_dir}/dataset_info.json are '
                    f'missing (first: {missing[0]}); prepare the data set again.')
  return pairs


def convert_shard(source: str, target: str) -> int:
  """Writes source's records to target (via a temporary file); returns how many."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  partial = target + _PARTIAL
  # group_size:1 makes every record its own chunk, so one read fetches one record (tfds's choice).
  writer = array_record_module.ArrayRecordWriter(partial, 'group_size:1')
  count = 0
  for record in tf.data.TFRecordDataset(source).as_numpy_iterator():
    writer.write(record)
    count += 1
  writer.close()
  os.replace(partial, target)
  return count


def convert(dataset_dir: str, workers: int = 1, log=print) -> int:
  """Converts the shards not yet converted, then records the format; returns shards converted.

  `log` gets one line per shard done (shards done / total, records so far and per second) and
  a last line with the totals."""
  pending = [(source, target) for source, target in shard_pairs(dataset_dir)
             if not os.path.exists(target)]
  log(f'{dataset_dir}: {len(pending)} shards to convert')
  start, records = time.perf_counter(), [0]

  def progress(done: int, count: int) -> None:
    records[0] += count
    log(f'{done}/{len(pending)} shards converted, {records[0]:,} records, '
        f'{records[0] / max(time.perf_counter() - start, 1e-9):,.0f} records/s')

  run_shards(convert_shard, pending, workers, progress)
  info = read_info(dataset_dir)
  formats = info.setdefault('alternativeFileFormats', [])
  if FORMAT not in formats:
    formats.append(FORMAT)
    write_info(dataset_dir, info)
  log(f'done: {len(pending)} shards, {records[0]:,} records in '
      f'{time.perf_counter() - start:.1f} s; {dataset_dir} now has {FORMAT} shards, which '
      'lbtrain reads')
  return len(pending)


def quiet_tensorflow() -> None:
  """Before TensorFlow is imported: no start-up banners (TensorFlow's C++ logging prints the
  oneDNN one whatever TF_CPP_MIN_LOG_LEVEL says, unless oneDNN's optimisations are off, which
  records copied unchanged or JPEGs resized by OpenCV never use) and no INFO logs."""
  os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
  os.environ['TF_ENABLE_ONEDNN_OPTS'] = '0'
  logging.set_verbosity(logging.WARNING)


def run_shards(function: Callable[..., int], jobs: list[tuple], workers: int,
               done: Callable[[int, int], None]) -> None:
  """function(*job) for every job, `workers` at a time in spawned processes (one: here, in
  order); done(n, what it returned) after the n-th finishes. A job's error is raised here."""
  if workers <= 1:
    for count, job in enumerate(jobs, 1):
      done(count, function(*job))
    return
  # spawn: a forked TensorFlow can hang in its child. Each worker imports TensorFlow: quietly.
  with concurrent.futures.ProcessPoolExecutor(
      min(workers, max(len(jobs), 1)), mp_context=multiprocessing.get_context('spawn'),
      initializer=quiet_tensorflow) as pool:
    futures = [pool.submit(function, *job) for job in jobs]
    for count, future in enumerate(concurrent.futures.as_completed(futures), 1):
      done(count, future.result())


def read_info(dataset_dir: str) -> dict:
  path = os.path.join(dataset_dir, 'dataset_info.json')
  if not os.path.exists(path):
    raise UserError(f'{dataset_dir} holds no dataset_info.json: it is not a prepared tfds data '
                    'set.')
  with open(path) as f:
    return json.load(f)


def write_info(dataset_dir: str, info: dict) -> None:
  """dataset_info.json replaced whole or not at all: written last, it marks the work done."""
  path = os.path.join(dataset_dir, 'dataset_info.json')
  with open(path + _PARTIAL, 'w') as f:
    json.dump(info, f, indent=2)
  os.replace(path + _PARTIAL, path)


def require_converted(dataset_dir: str, data_dir: str) -> None:
  """Raises UserError naming this command when the data set holds no ArrayRecord shards."""
  info = read_info(dataset_dir)
  formats = {info.get('fileFormat', 'tfrecord'), *info.get('alternativeFileFormats', [])}
  if FORMAT not in formats:
    raise UserError(
        f'{dataset_dir} holds {info["name"]} as {" and ".join(sorted(formats))} only, and '
        f'lbtrain reads it by index from {FORMAT}: run `{COMMAND.format(data_dir=data_dir)}` '
        'once (it copies the records without decoding them, and resumes if interrupted).')


def _find_and_convert() -> None:
  from lbtrain.data import input_pipeline  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.data_dir:
    raise UserError('set --data_dir= to the tfds data_dir holding the prepared data set.')
  quiet_tensorflow()  # --workers=1 converts here
  convert(input_pipeline.find_prepared_dir(flags.FLAGS.dataset, flags.FLAGS.data_dir),
          flags.FLAGS.workers)


def _define_flags() -> None:
  flags.DEFINE_string(
      'data_dir', None, 'the tfds data_dir holding imagenet2012/VERSION (TFRecord shards).')
  flags.DEFINE_string('dataset', 'imagenet2012', 'the tfds name of the data set.')
  flags.DEFINE_integer('workers', 4, 'shards converted at once.')


def run() -> None:
  cli.run_flag_command(_find_and_convert, _define_flags, example='--data_dir=DIR')


if __name__ == '__main__':
  run()
