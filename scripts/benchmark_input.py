"""Host throughput of the ImageNet training input pipeline, printed as a table; nothing is asserted.

Runs lbtrain's own train pipeline (`lbtrain.data.imagenet`: read, shuffle, JPEG decode-and-crop,
resize, flip, batch) over real JPEGs and reports images/sec in total and per host CPU core, with
the tf.data pool pinned to 1 thread and to every core, for two outputs:

  uint8    what lbtrain yields: pixels, normalised later on the device
  float32  the same batches normalised on the host ((x / 255 - mean) / std), 4x the bytes

Without --data_dir it first writes --num_images ImageNet-sized JPEGs (sides 333-500, random
smooth colour fields with texture and noise, quality 95 with 4:2:0 chroma: ~109 KB each, like
ImageNet's ~110 KB) as a tfds `imagenet2012` in a temporary folder; with --data_dir it reads the
prepared `imagenet2012` there.

With 1 thread, the pool that decodes and crops has one thread; tf.data's file readers and the
loop that takes the batches run beside it, so "per core" is per decoding core.

  python scripts/benchmark_input.py --num_images=256 --batch_size=128 --num_batches=20
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import base
from lbtrain import data
from lbtrain.data import imagenet
from lbtrain.data import input_pipeline

# ImageNet's common sizes (height, width); its images average ~110 KB, about 400 x 350 pixels.
_SIZES = ((375, 500), (333, 500), (500, 375), (500, 333), (400, 500), (375, 375))


def _jpegs(num_images: int, seed: int = 0):
  """(JPEG bytes, label) pairs of photo-like size and entropy: smooth colour, texture, noise."""
  rng = np.random.default_rng(seed)
  for index in range(num_images):
    height, width = _SIZES[index % len(_SIZES)]
    colours = rng.uniform(0, 255, (1, 6, 8, 3)).astype(np.float32)
    image = tf.image.resize(colours, [height, width], method='bicubic')[0].numpy()
    texture = tf.image.resize(rng.normal(0, 30, (1, height // 4, width // 4, 3)),
                              [height, width])[0].numpy()
    image = np.clip(image + texture + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    yield tf.io.encode_jpeg(image, quality=95).numpy(), int(rng.integers(1000))


def _normalised(batches: tf.data.Dataset, info: data.DatasetInfo) -> tf.data.Dataset:
  scale = tf.constant([1 / (255 * s) for s in info.std])
  offset = tf.constant([-m / s for m, s in zip(info.mean, info.std)])
  return batches.map(lambda batch: {
      **batch, 'image': tf.cast(batch['image'], tf.float32) * scale + offset})


def imagenet_data_config(data_dir: str, image_size: int):
  """base.py's data config for a prepared `imagenet2012` in data_dir, output image_size px."""
  data_config = base.get_config().data
  data_config.update(dataset='imagenet2012', eval_split='validation', image_size=image_size,
                     data_dir=data_dir)
  return data_config


def write_synthetic_imagenet(data_dir: str, num_images: int) -> float:
  """Writes num_images photo-like JPEGs as a tfds `imagenet2012` in data_dir; returns their
  mean size in KB."""
  pairs = list(_jpegs(num_images))
  imagenet.write_imagenet_like(data_dir, {'train': pairs, 'validation': pairs[:8]},
                               num_shards=4)
  return float(np.mean([len(jpeg) for jpeg, _ in pairs])) / 1e3


def images_per_second(data_config, info, *, threads, output, batch_size, num_batches) -> float:
  config = data_config.copy_and_resolve_references()
  config.threads = threads
  dataset_dir = input_pipeline.prepared_dir(config)
  batches = imagenet.train_dataset(dataset_dir, config, global_batch_size=batch_size, seed=0,
                                   start_step=0, num_steps=num_batches + 2)
  if output == 'float32':
    batches = _normalised(batches, info)
  iterator = imagenet.to_numpy(batches, config)
  next(iterator), next(iterator)  # fill the shuffle buffer and the pipeline first
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  return num_batches * batch_size / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', help='a tfds data_dir holding a prepared imagenet2012; '
                      'default: write --num_images JPEGs to a temporary one')
  parser.add_argument('--num_images', type=int, default=256)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--num_batches', type=int, default=20, help='timed, after 2 untimed')
  parser.add_argument('--image_size', type=int, default=224)
  args = parser.parse_args()

  tfds.disable_progress_bar()
  with tempfile.TemporaryDirectory() as scratch:
    data_config = imagenet_data_config(args.data_dir or scratch, args.image_size)
    if not args.data_dir:
      kilobytes = write_synthetic_imagenet(scratch, args.num_images)
      print(f'wrote {args.num_images} JPEGs, {kilobytes:.0f} KB on average, to {scratch}')
    info = data.get_dataset_info(data_config)
    cores = len(os.sched_getaffinity(0))
    print(f'{info.num_train_examples} train images, batch {args.batch_size}, '
          f'{args.num_batches} batches timed, output {args.image_size}x{args.image_size}, '
          f'{cores} cores, tf {tf.__version__}')
    print()
    print('| output | tf.data threads | images/sec | images/sec per core | MB per batch |')
    print('|---|---|---|---|---|')
    for output, bytes_per_value in (('uint8', 1), ('float32', 4)):
      megabytes = args.batch_size * args.image_size**2 * 3 * bytes_per_value / 1e6
      for threads in (1, cores):
        rate = images_per_second(data_config, info, threads=threads, output=output,
                                 batch_size=args.batch_size, num_batches=args.num_batches)
        print(f'| {output} | {threads} | {rate:,.0f} | {rate / threads:,.0f} | '
              f'{megabytes:.1f} |', flush=True)


if __name__ == '__main__':
  main()
