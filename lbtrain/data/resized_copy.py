"""Writes a copy of a prepared `imagenet2012` whose training JPEGs have a shorter side <= N px.

    python -m lbtrain.data.resized_copy --data_dir=/data/tfds --out_data_dir=/data/tfds_256 \\
        --shorter_side=256 [--quality=90] [--splits=train] [--workers=8]

then train with `--config.data.data_dir=/data/tfds_256`. FFCV's trade: decoding costs about in
proportion to a JPEG's pixels and bytes, so smaller images feed more images per core
(docs/imagenet.md gives the measured figures). What it costs: the pixels a large crop box would
have had beyond the stored size (a box covering the whole image is then enlarged from 256 px
rather than shrunk from ~375), and one more JPEG generation (--quality) for each resized image.
Its effect on accuracy is not measured here.

Only the splits in --splits are resized (default: train); the others are copied byte for byte,
so the eval crop keeps the published pixels. Images already within the size are copied as
stored. Records keep their order, labels and file names; the copy is ArrayRecord. Resumable: each
shard is written under a temporary name and renamed when complete, finished shards are skipped,
and dataset_info.json is written last.
"""

import os
import shutil
from typing import Sequence

from absl import flags

from lbtrain import cli
from lbtrain.data import to_array_record
from lbtrain.errors import UserError


_DATASET = 'imagenet2012'


def resize_jpeg(encoded: bytes, shorter_side: int, quality: int) -> bytes:
  """The JPEG with its shorter side brought down to shorter_side (area filter), or as it was."""
  import cv2  # pylint: disable=g-import-not-at-top
  import simplejpeg  # pylint: disable=g-import-not-at-top
  height, width, _, _ = simplejpeg.decode_jpeg_header(encoded)
  if min(height, width) <= shorter_side:
    return encoded
  scale = shorter_side / min(height, width)
  size = (max(1, round(width * scale)), max(1, round(height * scale)))
  image = simplejpeg.decode_jpeg(encoded, colorspace='RGB')
  image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
  return simplejpeg.encode_jpeg(image, quality=quality, colorspace='RGB', colorsubsampling='420')


def copy_shard(source: str, target: str, shorter_side: int | None, quality: int) -> int:
  """Writes source's records to target, their JPEGs resized unless shorter_side is None;
  returns the bytes written."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  reader = array_record_module.ArrayRecordReader(source)
  partial = target + '.partial'
  writer = array_record_module.ArrayRecordWriter(partial, 'group_size:1')
  written = 0
  for index in range(reader.num_records()):
    record = reader.read([index])[0]
    if shorter_side is not None:
      example = tf_example_pb2.Example.FromString(record)
      image = example.features.feature['image'].bytes_list.value
      image[0] = resize_jpeg(image[0], shorter_side, quality)
      record = example.SerializeToString()
    writer.write(record)
    written += len(record)
  writer.close()
  reader.close()
  os.replace(partial, target)
  return written


def copy(dataset_dir: str, out_data_dir: str, *, shorter_side: int, quality: int,
         splits: Sequence[str], workers: int = 1, log=print) -> str:
  """Writes the copy into out_data_dir/imagenet2012/VERSION; returns that folder."""
  to_array_record.require_converted(dataset_dir,
                                    os.path.dirname(os.path.dirname(dataset_dir.rstrip('/'))))
  info = to_array_record.read_info(dataset_dir)
  unknown = sorted(set(splits) - {split['name'] for split in info['splits']})
  if unknown:
    raise UserError(f'--splits names {", ".join(unknown)}, which {dataset_dir} does not have.')
  if not 1 <= quality <= 100 or shorter_side < 1:
    raise UserError(f'--quality={quality} must be in [1, 100] and --shorter_side={shorter_side} '
                    'positive.')
  out_dir = os.path.join(out_data_dir, _DATASET, os.path.basename(dataset_dir.rstrip('/')))
  if os.path.realpath(out_dir) == os.path.realpath(dataset_dir):
    raise UserError('--out_data_dir must differ from --data_dir: the copy has the same name.')
  os.makedirs(out_dir, exist_ok=True)
  work = []
  for split, source in to_array_record.shard_paths(dataset_dir, to_array_record.FORMAT):
    target = os.path.join(out_dir, os.path.basename(source))
    if not os.path.exists(target):
      work.append((source, target, shorter_side if split in splits else None, quality))
  log(f'{out_dir}: {len(work)} shards to write')
  to_array_record.run_shards(copy_shard, work, workers,
                             lambda done, _: log(f'{done}/{len(work)} shards written'))
  for name in os.listdir(dataset_dir):  # features.json, label names, ...: all but the shards
    if ('.tfrecord-' not in name and f'.{to_array_record.FORMAT}-' not in name
        and name != 'dataset_info.json' and os.path.isfile(os.path.join(dataset_dir, name))):
      shutil.copyfile(os.path.join(dataset_dir, name), os.path.join(out_dir, name))
  info['fileFormat'] = to_array_record.FORMAT
  info.pop('alternativeFileFormats', None)
  for split in info['splits']:
    split.pop('numBytes', None)  # only a size hint for tfds; the copy's differs
  to_array_record.write_info(out_dir, info)
  return out_dir


def _find_and_copy() -> None:
  from lbtrain.data import input_pipeline  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.data_dir or not flags.FLAGS.out_data_dir:
    raise UserError('set --data_dir= (the prepared data set) and --out_data_dir= (the copy).')
  copy(input_pipeline.find_prepared_dir(_DATASET, flags.FLAGS.data_dir),
       flags.FLAGS.out_data_dir, shorter_side=flags.FLAGS.shorter_side,
       quality=flags.FLAGS.quality, splits=flags.FLAGS.splits, workers=flags.FLAGS.workers)


def _define_flags() -> None:
  flags.DEFINE_string('data_dir', None, 'tfds data_dir of the prepared imagenet2012 (with '
                      'ArrayRecord shards: lbtrain.data.to_array_record)')
  flags.DEFINE_string('out_data_dir', None, 'tfds data_dir for the copy')
  flags.DEFINE_integer('shorter_side', 256, 'largest shorter side of a train image')
  flags.DEFINE_integer('quality', 90, 'JPEG quality of the resized images')
  flags.DEFINE_list('splits', ['train'], 'splits to resize; the others are copied')
  flags.DEFINE_integer('workers', 4, 'shards written at once')


def run() -> None:
  cli.run_flag_command(_find_and_copy, _define_flags, example='--data_dir=DIR')


if __name__ == '__main__':
  run()
