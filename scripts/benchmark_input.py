"""Host throughput of ImageNet training input, side by side; printed as tables, nothing asserted.

Over the same JPEGs in one run:

  1. images/sec in total and per decoding thread of lbtrain's pipeline (`lbtrain.data.imagenet`:
     ArrayRecord read by index, Inception crop decoded at the scale it needs, flip, batch), of
     the same on a resized copy (`lbtrain.data.resized_copy`, shorter side --resized_side), and
     of the tf.data pipeline it replaced (TFRecord shards interleaved 16 at a time, a
     10,000-record shuffle buffer, `tf.io.decode_and_crop_jpeg` of
     `sample_distorted_bounding_box`, bilinear resize, flip, batch: lbtrain's path until
     2026-12-02), each at 1 thread and at every core, taking turns over --rounds rounds;
  2. the decoders alone on one core: the train crop per image for each way of decoding;
  3. what the per-core figures mean for a host feeding one GPU at the MLPerf rate;
  4. resume: seconds to the first batch at any step, against the rate at which the old path
     passed the records before the step through its reader (up to an epoch of them);
  5. the crops' PSNR against the full-resolution path, eval and train, and of the train crops
     decoded at a reduced scale (at half the output size, where boxes allow it);
  6. the per-image time outside the decoder and the resize, which bounds one process's threads.

Table 1 also has lbtrain's pipeline with RandAugment(--randaugment, 10) on (big_vision's ViT
recipe: 2), and its cost per core next to decoding. --only_lbtrain keeps table 1 to lbtrain's
pipeline with and without RandAugment and skips sections 2-6 (no tf.data, no resized copy).

Without --data_dir it first writes --num_images ImageNet-sized JPEGs (sides 333-500, random
smooth colour fields with texture and noise, quality 95 with 4:2:0 chroma: ~109 KB each, like
ImageNet's ~110 KB) as a tfds `imagenet2012` (TFRecords, then converted as a user would) in a
temporary folder; with --data_dir it reads the prepared `imagenet2012` there.

"Per core" is per decoding thread: the loop that takes the batches runs beside them.

  python scripts/benchmark_input.py --num_images=256 --batch_size=128 --num_batches=20
"""

import argparse
import io
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # pylint: disable=g-import-not-at-top
import numpy as np
import PIL.Image
import simplejpeg
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import base
from lbtrain import data
from lbtrain.data import imagenet
from lbtrain.data import input_pipeline
from lbtrain.data import jpeg
from lbtrain.data import randaugment
from lbtrain.data import resized_copy

# ImageNet's common sizes (height, width); its images average ~110 KB, about 400 x 350 pixels.
_SIZES = ((375, 500), (333, 500), (500, 375), (500, 333), (400, 500), (375, 375))
# MLPerf Training v4.0 ResNet-50, 8 GPUs per node, DALI: images/s per GPU (issue 12's anchor).
_MLPERF_IMAGES_PER_GPU = {'H100': 7160, 'H200': 7950}
_IMAGENET_TRAIN = 1_281_167


def photo_like_jpegs(num_images: int, seed: int = 0):
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


def imagenet_data_config(data_dir: str, image_size: int):
  """base.py's data config for a prepared `imagenet2012` in data_dir, output image_size px."""
  data_config = base.get_config().data
  data_config.update(dataset='imagenet2012', eval_split='validation', image_size=image_size,
                     data_dir=data_dir)
  return data_config


def write_synthetic_imagenet(data_dir: str, num_images: int) -> float:
  """Writes num_images photo-like JPEGs as a tfds `imagenet2012` in data_dir; returns their
  mean size in KB."""
  pairs = list(photo_like_jpegs(num_images))
  imagenet.write_imagenet_like(data_dir, {'train': pairs, 'validation': pairs[:8]},
                               num_shards=4)
  return float(np.mean([len(encoded) for encoded, _ in pairs])) / 1e3


def images_per_second(data_config, info, *, threads, batch_size, num_batches,
                      pipeline='lbtrain') -> float:
  """Training images/sec of one pipeline ('lbtrain' or 'tf.data') with `threads` decoding."""
  config = data_config.copy_and_resolve_references()
  config.threads = threads
  if pipeline == 'lbtrain':
    batches = data.train_batches(config, info, global_batch_size=batch_size, seed=0,
                                 start_step=0, num_steps=num_batches + 2)
  else:
    batches = _tf_data_batches(input_pipeline.prepared_dir(config), config.train_split,
                               batch_size, threads, image_size=config.image_size)
  next(batches), next(batches)  # fill the buffers and the pipeline first
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return num_batches * batch_size / (time.perf_counter() - start)


def _tf_data_batches(dataset_dir: str, split: str, batch_size: int, threads: int, *,
                     image_size: int, skip: int = 0):
  """The tf.data pipeline lbtrain had until 2026-12-02, as it read one process's records."""
  builder = tfds.builder_from_directory(dataset_dir)
  records = _tf_data_records(builder, split).skip(skip)
  deserialize = lambda record: builder.info.features.deserialize_example(
      record, decoders={'image': tfds.decode.SkipDecoding()})

  def example(index, record):
    features = deserialize(record)
    seed = tf.stack([tf.constant(0, tf.int64), index])
    shape = tf.io.extract_jpeg_shape(features['image'])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=jpeg.ASPECT_RATIO_RANGE,
        area_range=jpeg.AREA_RANGE, max_attempts=jpeg.MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    window = tf.concat([begin[:2], size[:2]], axis=0)
    image = tf.io.decode_and_crop_jpeg(features['image'], window, channels=3)
    image = tf.cast(tf.round(tf.image.resize(image, [image_size, image_size])), tf.uint8)
    image = tf.image.stateless_random_flip_left_right(image, seed)
    return {'image': image, 'label': tf.cast(features['label'], tf.int32)}

  options = tf.data.Options()
  options.threading.private_threadpool_size = threads
  options.threading.max_intra_op_parallelism = 1
  options.autotune.enabled = False
  batches = records.enumerate().map(example, num_parallel_calls=threads).batch(batch_size)
  return batches.prefetch(2).with_options(options).as_numpy_iterator()


def _tf_data_records(builder, split: str) -> tf.data.Dataset:
  """The old pipeline's reader: the TFRecord shards 16 at a time, a 10,000-record shuffle
  buffer, repeated."""
  files = [os.fspath(instruction.filename)
           for instruction in builder.info.splits[split].file_instructions]
  records = tf.data.Dataset.from_tensor_slices(files).interleave(
      lambda path: tf.data.TFRecordDataset(path, buffer_size=8 << 20),
      cycle_length=min(16, len(files)), block_length=1, num_parallel_calls=min(16, len(files)))
  return records.repeat().shuffle(10_000, seed=0)


def _decoders(encoded_images: list[bytes], size: int) -> dict[str, float]:
  """Train crops per second on this thread, by decoder: the same images and boxes for each."""
  rng = np.random.default_rng(0)
  work = []
  for encoded in encoded_images:
    height, width = jpeg.shape(encoded)
    work.append((encoded, (height, width),
                 jpeg.inception_box(height, width, rng.random(jpeg.NUM_DRAWS),
                                    fallback_ratio=0.875)))

  def tf_crop(encoded, unused_shape, box):
    image = tf.io.decode_and_crop_jpeg(encoded, box, channels=3)
    return tf.cast(tf.round(tf.image.resize(image, [size, size])), tf.uint8).numpy()

  def opencv_crop(encoded, unused_shape, box):
    top, left, height, width = box
    image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR_RGB)
    return cv2.resize(image[top:top + height, left:left + width], (size, size),
                      interpolation=cv2.INTER_LINEAR)

  def pillow_crop(encoded, unused_shape, box):
    top, left, height, width = box
    image = PIL.Image.open(io.BytesIO(encoded))
    image.draft('RGB', (width, height))  # DCT scaling (1/2, 1/4, 1/8) where the box allows
    scale = image.size[0] / unused_shape[1]
    return np.asarray(image.convert('RGB').resize(
        (size, size), PIL.Image.BILINEAR,
        box=(left * scale, top * scale, (left + width) * scale, (top + height) * scale)))

  candidates = {
      'tf.io.decode_and_crop_jpeg + tf.image.resize (eager)': tf_crop,
      'OpenCV imdecode + resize': opencv_crop,
      'Pillow (draft mode) + resize with a box': pillow_crop,
      'simplejpeg at full scale + OpenCV resize': lambda encoded, shape, box: jpeg.crop(
          encoded, box, size, full_shape=shape, reduce=False),
      'simplejpeg at the scale the box needs + OpenCV resize (lbtrain)':
          lambda encoded, shape, box: jpeg.crop(encoded, box, size, full_shape=shape),
  }
  rates = {}
  for name, crop in candidates.items():
    best = math.inf
    for _ in range(3):
      start = time.perf_counter()
      for encoded, shape, box in work:
        crop(encoded, shape, box)
      best = min(best, time.perf_counter() - start)
    rates[name] = len(work) / best
  return rates


def _decode_microseconds(encoded_images: list[bytes]) -> dict[str, float]:
  """A whole decode at each of libjpeg-turbo's scales, us per image (best of 3 interleaved)."""
  times = {}
  for _ in range(3):
    for eighths in (8, 7, 6, 4, 2, 1):
      start = time.perf_counter()
      for encoded in encoded_images:
        height, width = jpeg.shape(encoded)
        simplejpeg.decode_jpeg(encoded, colorspace='RGB', fastdct=True,
                               min_height=-(-height * eighths // 8),
                               min_width=-(-width * eighths // 8))
      seconds = (time.perf_counter() - start) / len(encoded_images)
      times[f'{eighths}/8'] = min(times.get(f'{eighths}/8', math.inf), seconds * 1e6)
  return times


def _seconds_to_first_batch(make) -> float:
  start = time.perf_counter()
  next(make())
  return time.perf_counter() - start


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
  return 10 * math.log10(255**2 / max(mse, 1e-12))


def crop_psnr(encoded_images: list[bytes], size: int, *, train: bool, boxes_per_image: int = 4):
  """PSNR (dB) of lbtrain's crops against the full-resolution tf path (decode everything, cut
  the box, bilinear resize), one value per crop. train: Inception crops, returned with the
  values of those decoded at a reduced scale; else the eval crop."""
  rng = np.random.default_rng(1)
  values, reduced = [], []
  for encoded in encoded_images:
    height, width = jpeg.shape(encoded)
    full = tf.io.decode_jpeg(encoded, channels=3)

    def reference(box):
      top, left, box_height, box_width = box
      window = full[top:top + box_height, left:left + box_width]
      return tf.cast(tf.round(tf.image.resize(window, [size, size])), tf.uint8).numpy()

    if not train:
      box = jpeg.center_box(height, width, 0.875)
      values.append(_psnr(jpeg.eval_crop(encoded, size, crop_ratio=0.875), reference(box)))
      continue
    for _ in range(boxes_per_image):
      box = jpeg.inception_box(height, width, rng.random(jpeg.NUM_DRAWS), fallback_ratio=0.875)
      values.append(_psnr(jpeg.crop(encoded, box, size), reference(box)))
      if min(box[2:]) >= 2 * size:
        reduced.append(values[-1])
  return (values, reduced) if train else values


def crop_statistics(height: int, width: int, num: int) -> dict[str, np.ndarray]:
  """Quantiles of the area fraction and aspect of lbtrain's Inception boxes and TF's."""
  rng = np.random.default_rng(0)
  ours = np.array([jpeg.inception_box(height, width, rng.random(jpeg.NUM_DRAWS),
                                      fallback_ratio=0.875) for _ in range(num)])
  theirs = []
  for seed in range(num):
    _, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        [height, width, 3], bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=[seed, 0], min_object_covered=0.0, aspect_ratio_range=jpeg.ASPECT_RATIO_RANGE,
        area_range=jpeg.AREA_RANGE, max_attempts=jpeg.MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    theirs.append([0, 0, *size.numpy()[:2]])
  theirs = np.array(theirs)
  quantiles = [0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98]
  statistics = {}
  for name, boxes in (('lbtrain', ours), ('tf', theirs)):
    statistics[f'area fraction, {name}'] = np.quantile(
        boxes[:, 2] * boxes[:, 3] / (height * width), quantiles)
    statistics[f'aspect (w/h), {name}'] = np.quantile(boxes[:, 3] / boxes[:, 2], quantiles)
  return dict(sorted(statistics.items()))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', help='a tfds data_dir holding a prepared imagenet2012; '
                      'default: write --num_images JPEGs to a temporary one')
  parser.add_argument('--num_images', type=int, default=256)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--num_batches', type=int, default=20, help='timed, after 2 untimed')
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--skip_records', type=int, default=30_000,
                      help='records the old pipeline\'s resume rate is measured over')
  parser.add_argument('--rounds', type=int, default=3,
                      help='rounds of the pipeline table; the best of each is printed')
  parser.add_argument('--resized_side', type=int, default=256,
                      help='also measure a resized copy with this shorter side (0: do not)')
  parser.add_argument('--randaugment', type=int, default=2,
                      help='RandAugment layers N (M = 10) of the augmented row (0: no row)')
  parser.add_argument('--only_lbtrain', action='store_true',
                      help="table 1 for lbtrain's pipeline with and without RandAugment only")
  args = parser.parse_args()
  if args.only_lbtrain:
    args.resized_side = 0

  tfds.disable_progress_bar()
  with tempfile.TemporaryDirectory() as scratch:
    data_config = imagenet_data_config(args.data_dir or scratch, args.image_size)
    if not args.data_dir:
      kilobytes = write_synthetic_imagenet(scratch, args.num_images)
      print(f'wrote {args.num_images} JPEGs, {kilobytes:.0f} KB on average, to {scratch}')
    info = data.get_dataset_info(data_config)
    dataset_dir = input_pipeline.prepared_dir(data_config)
    cores = len(os.sched_getaffinity(0))
    print(f'{info.num_train_examples} train images, batch {args.batch_size}, '
          f'{args.num_batches} batches timed, output {args.image_size}x{args.image_size}, '
          f'{cores} cores, tf {tf.__version__}')

    configs = [('tf.data', data_config), ('lbtrain', data_config)][args.only_lbtrain:]
    randaugmented = f'lbtrain + RandAugment({args.randaugment}, 10)'
    if args.randaugment:
      augment_config = data_config.copy_and_resolve_references()
      augment_config.randaugment_layers = args.randaugment
      configs.append((randaugmented, augment_config))
    if args.resized_side:
      copy_dir = os.path.join(scratch, 'resized')
      resized_copy.copy(dataset_dir, copy_dir, shorter_side=args.resized_side, quality=90,
                        splits=['train'], log=lambda line: None)
      copy_config = imagenet_data_config(copy_dir, args.image_size)
      copied = imagenet._source(  # pylint: disable=protected-access
          input_pipeline.prepared_dir(copy_config), 'train')
      copy_kilobytes = np.mean([len(copied[i][0]) for i in range(len(copied))]) / 1e3
      configs.append((f'lbtrain, resized copy (shorter side {args.resized_side}, quality 90, '
                      f'{copy_kilobytes:.0f} KB)', copy_config))
    print(f'\n1. Pipelines (uint8 batches; best of {args.rounds} rounds, the pipelines taking '
          'turns within each)\n')
    print('| pipeline | decoding threads | images/sec | images/sec per thread |')
    print('|---|---|---|---|')
    best = {}
    for _ in range(args.rounds):
      for name, config in configs:
        for threads in sorted({1, cores}):
          rate = images_per_second(config, info, threads=threads, batch_size=args.batch_size,
                                   num_batches=args.num_batches,
                                   pipeline='tf.data' if name == 'tf.data' else 'lbtrain')
          best[name, threads] = max(best.get((name, threads), 0.0), rate)
    for (name, threads), rate in best.items():
      print(f'| {name} | {threads} | {rate:,.0f} | {rate / threads:,.0f} |')
    per_core = {name: rate for (name, threads), rate in best.items() if threads == 1}
    print()
    for name, rate in per_core.items():
      if 'tf.data' in per_core:
        print(f'per core at 1 thread: {name} / tf.data = {rate / per_core["tf.data"]:.2f}x')
    if args.randaugment:
      print(f'per core at 1 thread: {randaugmented} / lbtrain = '
            f'{per_core[randaugmented] / per_core["lbtrain"]:.2f}x; RandAugment adds '
            f'{1e6 / per_core[randaugmented] - 1e6 / per_core["lbtrain"]:,.0f} us per image to '
            f'the {1e6 / per_core["lbtrain"]:,.0f} us of reading, decoding and cropping it')
    if args.randaugment:
      crop_us, augment_us = _randaugment_microseconds(dataset_dir, args.image_size,
                                                      args.randaugment)
      print(f'one thread, best of 5 interleaved rounds: the train crop (read, decode, crop, '
            f'resize, flip) {crop_us:,.0f} us per image, RandAugment({args.randaugment}, 10) '
            f'{augment_us:,.0f} us on its output: {augment_us / crop_us:.2f} of decoding\'s '
            f'cost, so {crop_us / (crop_us + augment_us):.2f}x the images per core')
    if args.only_lbtrain:
      return

    records = imagenet._source(dataset_dir, 'train')  # pylint: disable=protected-access
    sample = [records[i][0] for i in range(min(len(records), 120))]
    half = args.image_size // 2
    print(f'\n2. Decoders alone, one thread, train crops ({len(sample)} images)\n')
    print(f'| decoder | crops/sec to {args.image_size} | crops/sec to {half} |')
    print('|---|---|---|')
    at_half = _decoders(sample, half)
    for name, rate in _decoders(sample, args.image_size).items():
      print(f'| {name} | {rate:,.0f} | {at_half[name]:,.0f} |', flush=True)
    print('\nA whole decode at each libjpeg-turbo scale (simplejpeg), us per image: ' + ', '.join(
        f'{scale} {microseconds:,.0f}'
        for scale, microseconds in _decode_microseconds(sample).items()))

    print('\n3. Cores per GPU at the MLPerf rate (1-thread figure x cores; nothing else on them)\n')
    print('| pipeline | 14 cores | 16 cores | ' + ' | '.join(
        f'cores for {rate:,} img/s ({gpu})' for gpu, rate in _MLPERF_IMAGES_PER_GPU.items())
          + ' |')
    print('|---|---|---|' + '---|' * len(_MLPERF_IMAGES_PER_GPU))
    for pipeline, rate in per_core.items():
      print(f'| {pipeline} | {14 * rate:,.0f} | {16 * rate:,.0f} | ' + ' | '.join(
          f'{anchor / rate:.1f}' for anchor in _MLPERF_IMAGES_PER_GPU.values()) + ' |')

    print('\n4. Resume (1 process, every core)\n')
    step_far_in = 1000 * info.num_train_examples // args.batch_size  # epoch ~1000
    for step in (0, info.num_train_examples // args.batch_size - 1, step_far_in):
      seconds = _seconds_to_first_batch(lambda step=step: data.train_batches(
          data_config, info, global_batch_size=args.batch_size, seed=0, start_step=step,
          num_steps=1))
      print(f'lbtrain: {seconds:.2f} s to the first batch at step {step:,}')
    rate = _tf_data_records_skipped_per_second(dataset_dir, data_config.train_split,
                                                args.skip_records)
    print(f'tf.data: resuming passed the epoch\'s records before the step through its reader '
          f'and shuffle buffer, without decoding: {rate:,.0f} records/s here ({args.skip_records:,}'
          f' records, from the page cache), so ~{_IMAGENET_TRAIN / rate:,.0f} s at the end of an '
          'ImageNet epoch on one process, ~half that on average, more from disk')

    print('\n5. Crops against the full-resolution path (decode all, cut the box, bilinear '
          'resize)\n')
    evaluation = crop_psnr(sample[:48], args.image_size, train=False)
    print(f'eval crops at {args.image_size} (full scale): PSNR mean {np.mean(evaluation):.1f} '
          f'dB, min {np.min(evaluation):.1f} dB over {len(evaluation)} images')
    for size in (args.image_size, args.image_size // 2):
      train, reduced = crop_psnr(sample[:48], size, train=True)
      print(f'train crops at {size}: PSNR mean {np.mean(train):.1f} dB, min '
            f'{np.min(train):.1f} dB over {len(train)} crops; the {len(reduced)} decoded at a '
            'reduced scale: ' + (f'mean {np.mean(reduced):.1f} dB, min {np.min(reduced):.1f} dB'
                                 if reduced else 'none (no box twice the size)'))

    print('\nInception crop boxes of a 375x500 image, 2,000 draws: lbtrain (numpy) against '
          "TF's sampler (the old path); quantiles 2 / 10 / 25 / 50 / 75 / 90 / 98 %")
    for name, values in crop_statistics(375, 500, 2000).items():
      print(f'{name}: ' + ' / '.join(f'{value:.3f}' for value in values))

    print('\n6. Per image outside libjpeg-turbo and OpenCV (one thread: record read, crop box, '
          'bookkeeping)\n')
    seconds = _seconds_outside_decoding(records, data_config, args.image_size)
    print(f'{seconds * 1e6:.0f} us per image: if all of it held the GIL, one process\'s threads '
          f'could not pass ~{1 / seconds:,.0f} images/s however many cores it has (beyond that, '
          'run more processes per host)')


def _randaugment_microseconds(dataset_dir: str, size: int, layers: int) -> tuple[float, float]:
  """(train crop, RandAugment) us per image on one thread, best of 5 rounds taking turns."""
  records = imagenet._source(dataset_dir, 'train')  # pylint: disable=protected-access
  encoded = [records[i][0] for i in range(min(len(records), 64))]
  rng = np.random.default_rng(0)
  crop_draws = rng.random((len(encoded), jpeg.NUM_DRAWS))
  augment_draws = rng.random((len(encoded), randaugment.num_draws(layers)))
  crops = [jpeg.train_crop(e, d, size, fallback_ratio=0.875) for e, d in zip(encoded, crop_draws)]
  best_crop = best_augment = math.inf
  for _ in range(5):
    start = time.perf_counter()
    for e, d in zip(encoded, crop_draws):
      jpeg.train_crop(e, d, size, fallback_ratio=0.875)
    best_crop = min(best_crop, time.perf_counter() - start)
    start = time.perf_counter()
    for image, d in zip(crops, augment_draws):
      randaugment.randaugment(image, d, layers, 10)
    best_augment = min(best_augment, time.perf_counter() - start)
  return 1e6 * best_crop / len(encoded), 1e6 * best_augment / len(encoded)


def _tf_data_records_skipped_per_second(dataset_dir: str, split: str, num_records: int) -> float:
  """How fast the old pipeline's resume passed records through its reader and shuffle buffer."""
  skipped = _tf_data_records(tfds.builder_from_directory(dataset_dir), split).skip(
      num_records).take(1)
  start = time.perf_counter()
  list(skipped)
  return num_records / (time.perf_counter() - start)


def _seconds_outside_decoding(records, data_config, size: int) -> float:
  """Per image: what the train batch does besides decoding and resizing (those two stubbed)."""
  import unittest.mock  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  out = np.empty((size, size, 3), np.uint8)
  num = min(len(records), 120)
  with unittest.mock.patch.object(jpeg, 'crop', lambda *args, out=None, **kwargs: out):
    start = time.perf_counter()
    for index in range(num):
      draws = rng.random(jpeg.NUM_DRAWS)
      jpeg.train_crop(records[index][0], draws, size,
                      fallback_ratio=data_config.eval_crop_ratio, out=out)
    return (time.perf_counter() - start) / num


if __name__ == '__main__':
  main()
