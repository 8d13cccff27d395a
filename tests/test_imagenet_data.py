"""The ImageNet pipeline on real JPEGs: order, exact eval and resume, crops, pre-flight checks.

A tiny `imagenet2012` is built here with the real one's features (JPEG images of many sizes and
aspect ratios, 1000 classes) as TFRecords, tfds's default, and converted to ArrayRecord as a user
would, so the conversion and the JPEG decode path run for real. Each image encodes what it is:
red grows with x, green with y, and blue is 6 * label + 3, so a batch row shows which crop of
which example it holds.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import lbtrain_process

from configs import base
from lbtrain import data
from lbtrain.data import imagenet
from lbtrain.data import jpeg
from lbtrain.data import randaugment
from lbtrain.data import to_array_record
from lbtrain.errors import UserError
from lbtrain.resolution import Resolution

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRAIN, NUM_EVAL = 40, 10
IMAGE_SIZE = 16  # small outputs keep the tests fast; the crop geometry is the same
# (height, width): ImageNet-like, smaller than the output, very wide, very tall, square.
SHAPES = [(150, 200), (12, 10), (20, 600), (300, 24), (64, 64), (375, 500), (90, 60)]


def _image(height, width, label):
  """Red = x and green = y, each scaled to 0-255 over the image; blue = 6 * label + 3."""
  x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
  y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
  return np.stack([x, y, np.full_like(x, 6 * label + 3)], -1).round().astype(np.uint8)


def _jpeg(image):
  # Best quality, so that blue stays within 2 of its value in every crop of the smallest image.
  return tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False).numpy()


def _examples(num):
  for label in range(num):
    yield _jpeg(_image(*SHAPES[label % len(SHAPES)], label)), label


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  tfds.disable_progress_bar()
  imagenet.write_imagenet_like(
      data_dir, {'train': _examples(NUM_TRAIN), 'validation': _examples(NUM_EVAL)}, num_shards=3)
  data_config = base.get_config().data
  data_config.update(dataset='imagenet2012', data_dir=data_dir, eval_split='validation',
                     image_size=IMAGE_SIZE)
  return data_config


def _train(config, global_batch_size=12, num_steps=10, **kwargs):
  kwargs.setdefault('seed', 0)
  kwargs.setdefault('start_step', 0)
  info = data.get_dataset_info(config)
  batches = list(data.train_batches(config, info, global_batch_size=global_batch_size,
                                    num_steps=num_steps, **kwargs))
  assert len(batches) == num_steps
  for batch in batches:  # each row is the image of its label
    np.testing.assert_array_equal(_label_in_blue(batch['image']), batch['label'])
  return batches


def _label_in_blue(images):
  return np.round((images[..., 2].mean(axis=(1, 2)) - 3) / 6).astype(int)


def _labels(batches):
  return np.stack([batch['label'] for batch in batches])


def _eval(config, global_batch_size, process_index=0, process_count=1):
  info = data.get_dataset_info(config)
  return list(data.eval_batches(config, info, global_batch_size=global_batch_size,
                                process_index=process_index, process_count=process_count))


def test_info_and_batch_shapes(config):
  info = data.get_dataset_info(config)
  assert (info.num_train_examples, info.num_eval_examples, info.num_classes) == (40, 10, 1000)
  assert info.image_shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and info.image_dtype == 'uint8'
  assert info.mean == (0.485, 0.456, 0.406) and info.std == (0.229, 0.224, 0.225)
  batch = _train(config, global_batch_size=8, num_steps=1, process_index=1, process_count=2)[0]
  assert batch['image'].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
  assert batch['image'].dtype == np.uint8 and batch['label'].dtype == np.int32
  assert set(batch) == {'image', 'label'}
  batch = _eval(config, global_batch_size=4)[0]
  assert batch['image'].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].dtype == np.int32 and batch['mask'].dtype == bool


@pytest.mark.parametrize('process_count,global_batch_size', [(1, 4), (2, 4), (2, 8)])
def test_eval_counts_every_example_once(config, process_count, global_batch_size):
  seen, counts = [], []
  for p in range(process_count):
    batches = _eval(config, global_batch_size, process_index=p, process_count=process_count)
    counts.append(len(batches))
    for batch in batches:
      assert batch['mask'].shape == (global_batch_size // process_count,)
      real = batch['mask']
      np.testing.assert_array_equal(_label_in_blue(batch['image'][real]), batch['label'][real])
      assert not batch['image'][~real].any() and not batch['label'][~real].any()
      seen.extend(batch['label'][real])
  assert counts == [-(-NUM_EVAL // global_batch_size)] * process_count
  assert sorted(seen) == list(range(NUM_EVAL))


def test_each_epoch_reads_every_example_once_and_batches_span_epochs(config):
  # 40 examples, batch 12: an epoch is 3.33 steps, so steps 3 and 6 hold two epochs each.
  stream = _labels(_train(config)).reshape(-1)
  epochs = [stream[e * NUM_TRAIN:(e + 1) * NUM_TRAIN] for e in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(NUM_TRAIN))
  assert list(epochs[0]) != list(epochs[1]) != list(epochs[2])


def test_resume_reads_what_the_uninterrupted_run_read(config):
  whole = _train(config)
  for start in (2, 3, 7):  # mid-epoch, a batch spanning epochs 0/1, mid-epoch 2
    resumed = _train(config, start_step=start, num_steps=10 - start)
    for expected, batch in zip(whole[start:], resumed):
      np.testing.assert_array_equal(batch['label'], expected['label'])
      np.testing.assert_array_equal(batch['image'], expected['image'])


@pytest.mark.slow
def test_a_fresh_process_resumes_identically(config):
  """A resumed run is a new process: nothing may depend on state left in this one."""
  whole = _train(config)
  code = ('import sys; import numpy as np; from configs import base; from lbtrain import data;'
          'c = base.get_config().data; c.update(dataset="imagenet2012", data_dir=sys.argv[1],'
          f'eval_split="validation", image_size={IMAGE_SIZE});'
          'b = list(data.train_batches(c, data.get_dataset_info(c), global_batch_size=12, seed=0,'
          ' start_step=5, num_steps=2));'
          'np.save(sys.argv[2], np.stack([x["image"] for x in b]))')
  out = os.path.join(config.data_dir, 'resumed.npy')
  subprocess.run([sys.executable, '-c', code, config.data_dir, out], check=True, cwd=ROOT,
                 capture_output=True)
  np.testing.assert_array_equal(np.load(out), np.stack([b['image'] for b in whole[5:7]]))


def test_seed_changes_the_order(config):
  assert not np.array_equal(_labels(_train(config, num_steps=3)),
                            _labels(_train(config, num_steps=3, seed=1)))


@pytest.mark.parametrize('process_count', [2, 4])
def test_the_global_batch_is_the_same_on_any_number_of_processes(config, process_count):
  whole = _train(config, num_steps=8)
  parts = [_train(config, num_steps=8, process_index=p, process_count=process_count)
           for p in range(process_count)]
  for step, expected in enumerate(whole):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(np.concatenate([part[step][key] for part in parts]),
                                    expected[key])


def test_a_run_resumed_on_another_process_count_reads_what_it_would_have(config):
  whole = _train(config, num_steps=10)
  resumed = [_train(config, start_step=4, num_steps=6, process_index=p, process_count=2)
             for p in range(2)]
  for step in range(4, 10):
    np.testing.assert_array_equal(
        np.concatenate([part[step - 4]['image'] for part in resumed]), whole[step]['image'])


def test_resume_at_the_end_of_an_epoch_reads_only_its_own_records(config, monkeypatch):
  """Resume is O(1): the records read are the batches' own, wherever in the epoch it starts."""
  reads = []
  source = imagenet._source  # pylint: disable=protected-access

  class Counting:
    def __init__(self, records):
      self.records = records

    def __len__(self):
      return len(self.records)

    def __getitem__(self, index):
      reads.append(index)
      return self.records[index]

  monkeypatch.setattr(imagenet, '_source', lambda *args: Counting(source(*args)))
  # Batch 8 of 40 examples: step 4 is the last of epoch 0, step 9 the last of epoch 1.
  for start in (4, 9):
    reads.clear()
    batches = _train(config, global_batch_size=8, start_step=start, num_steps=1)
    expected = imagenet.permutation(NUM_TRAIN, 0, start * 8 // NUM_TRAIN)[(start * 8) % 40:][:8]
    assert sorted(reads) == sorted(expected)
    np.testing.assert_array_equal(batches[0]['label'], expected)  # label = index here


def _global_batches(config, tmp_path, name, processes, devices_per_process, *flags):
  """The global batches the devices of `processes` real processes hold (tests/global_batches.py)."""
  out = tmp_path / f'{name}.npz'
  env = dict(lbtrain_process.environment(devices_per_process),
             PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, 'tests')]))
  args = [f'--data_dir={config.data_dir}', f'--out={out}', *flags]
  if processes == 1:
    command = [sys.executable, os.path.join(ROOT, 'tests', 'global_batches.py'), *args]
  else:
    command = [sys.executable, os.path.join(ROOT, 'scripts', 'launch_local.py'), str(processes),
               f'--devices_per_process={devices_per_process}', '--module=global_batches',
               '--timeout=200', '--', *args]
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
  assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
  return dict(np.load(out))


@pytest.mark.slow
def test_one_process_of_8_and_two_of_4_hold_the_same_global_batches(config, tmp_path):
  """Real processes through jax.distributed, as hosts: the global batch of every step (with
  RandAugment on), the eval batches and a run resumed on the other process count are bitwise
  the same, and a tiny ViT trained on them with Mixup and CutMix logs the same metrics."""
  one = _global_batches(config, tmp_path, 'one_by_8', 1, 8, '--num_steps=6',
                        '--randaugment=2', '--vit')
  two = _global_batches(config, tmp_path, 'two_by_4', 2, 4, '--num_steps=6',
                        '--randaugment=2', '--vit')
  assert one['train_image'].shape == (6 * 16, IMAGE_SIZE, IMAGE_SIZE, 3)
  for key in one:
    if key.startswith('metric_'):  # float sums over 8 vs 2 x 4 devices: round-off only
      np.testing.assert_allclose(two[key], one[key], rtol=1e-4, err_msg=key)
    else:
      np.testing.assert_array_equal(two[key], one[key], err_msg=key)
  assert one['eval_mask'].sum() == NUM_EVAL
  assert np.all(np.isfinite(one['metric_train/loss'])) and len(one['metric_train/loss']) == 6
  # The batches are RandAugment's: the crops of the same steps without it, augmented.
  plain = _train(config, global_batch_size=16, num_steps=6)
  for step in range(6):
    draws = np.random.default_rng([0, imagenet._RANDAUGMENT, step]).random((16, 8))  # pylint: disable=protected-access
    for row in range(16):
      np.testing.assert_array_equal(
          one['train_image'][step * 16 + row],
          randaugment.randaugment(plain[step]['image'][row], draws[row], 2, 10))
  # Steps 3-5 on 2 processes after steps 0-2 on 1 (a resume on another count).
  resumed = _global_batches(config, tmp_path, 'resumed', 2, 4, '--start_step=3', '--num_steps=3',
                            '--randaugment=2')
  np.testing.assert_array_equal(resumed['train_image'], one['train_image'][3 * 16:])

  # A batch schedule (16, then 32 from step 1, then 8 from step 3) cuts the same 96 examples
  # (labels are indices here) into other batches, the same on either topology; resumed on 2
  # processes mid-segment (step 2, the second of the 32s), it reads the rest. The crops and
  # flips are drawn per step, so they are not the fixed batch's.
  schedule = ('--batch_sizes=32,8', '--boundaries_steps=1,3')
  scheduled = _global_batches(config, tmp_path, 'scheduled_one_by_8', 1, 8, '--num_steps=5',
                              *schedule)
  assert list(scheduled['train_batch']) == [16, 32, 32, 8, 8]
  np.testing.assert_array_equal(scheduled['train_label'], one['train_label'])
  two = _global_batches(config, tmp_path, 'scheduled_two_by_4', 2, 4, '--num_steps=5',
                        *schedule)
  for key in scheduled:
    np.testing.assert_array_equal(two[key], scheduled[key], err_msg=key)
  resumed = _global_batches(config, tmp_path, 'scheduled_resumed', 2, 4, '--start_step=2',
                            '--num_steps=3', *schedule)
  np.testing.assert_array_equal(resumed['train_image'], scheduled['train_image'][48:])


def test_threads_change_nothing(config):
  # 36 rows: three chunks of up to 16 rows, shared out among the threads.
  expected = _train(config, global_batch_size=36, num_steps=3)
  expected_eval = _eval(config, global_batch_size=36)
  for threads in (1, 3):
    other = config.copy_and_resolve_references()
    other.threads = threads
    for batch, expected_batch in zip(_train(other, global_batch_size=36, num_steps=3), expected,
                                     strict=True):
      np.testing.assert_array_equal(batch['image'], expected_batch['image'])
    for batch, expected_batch in zip(_eval(other, global_batch_size=36), expected_eval,
                                     strict=True):
      np.testing.assert_array_equal(batch['image'], expected_batch['image'])


def test_a_ramp_gives_each_step_its_size_with_the_crops_of_that_size(config):
  """Progressive resizing changes only the output size: each step's batch is the one a run at
  that fixed size reads at that step (same examples, same crop boxes, same flips)."""
  sizes = Resolution(segment_starts=(0, 3), segment_sizes=(8, 16), total_steps=6,
                     eval_size=12, final_size=16)
  ramped = _train(config, num_steps=5, start_step=1, sizes=sizes)
  assert [batch['image'].shape[1:3] for batch in ramped] == [(8, 8)] * 2 + [(16, 16)] * 3
  small = config.copy_and_resolve_references()
  small.image_size = 8
  at_8 = _train(small, num_steps=2, start_step=1)
  at_16 = _train(config, num_steps=3, start_step=3)
  for got, expected in zip(ramped, at_8 + at_16, strict=True):
    np.testing.assert_array_equal(got['image'], expected['image'])
    np.testing.assert_array_equal(got['label'], expected['label'])
  info = data.get_dataset_info(config)
  batch = next(data.eval_batches(config, info, global_batch_size=4, image_size=12))
  assert batch['image'].shape == (4, 12, 12, 3)
  np.testing.assert_array_equal(_label_in_blue(batch['image'][batch['mask']]),
                                batch['label'][batch['mask']])


def test_crops_and_flips_vary_between_epochs(config):
  stream = _train(config, global_batch_size=NUM_TRAIN, num_steps=2)
  epoch_0, epoch_1 = ({label: image for label, image in zip(batch['label'], batch['image'])}
                      for batch in stream)
  # Except the 20 x 600 images, which no box fits: their crop is always the central square.
  cropped = [label for label in range(NUM_TRAIN) if SHAPES[label % len(SHAPES)] != (20, 600)]
  assert all(not np.array_equal(epoch_0[label], epoch_1[label]) for label in cropped)
  # Red grows with x: falling from left to right means flipped.
  flipped = [image[..., 0].astype(int)[:, -1].mean() < image[..., 0].astype(int)[:, 0].mean()
             for batch in stream for image in batch['image']]
  assert 20 < sum(flipped) < 60


def _tf_reference_boxes(height, width, num):
  """What the TF/MLPerf references (and lbtrain before ArrayRecord) drew: [num, 4] boxes."""
  boxes = []
  for seed in range(num):
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        [height, width, 3], bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=[seed, 0], min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    boxes.append([*begin.numpy()[:2], *size.numpy()[:2]])
  return np.array(boxes)


@pytest.mark.parametrize('height,width', [(375, 500), (300, 24)])
def test_inception_crop_statistics(height, width):
  """8-100 % of the area, aspect 3/4-4/3, anywhere in the image, distributed as the TF
  reference's sampler draws them (uniform aspect, then uniform height)."""
  rng = np.random.default_rng(0)
  boxes = np.array([
      jpeg.inception_box(height, width, rng.random(jpeg.NUM_DRAWS), fallback_ratio=0.875)
      for _ in range(2000)])
  reference = _tf_reference_boxes(height, width, 1000)
  quantiles = [0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98]
  for got in (boxes, reference):
    top, left, box_height, box_width = got.T
    assert (top >= 0).all() and (top + box_height <= height).all()
    assert (left >= 0).all() and (left + box_width <= width).all()
  for statistic in (lambda b: b[:, 2] * b[:, 3] / (height * width),  # area
                    lambda b: b[:, 3] / b[:, 2],  # aspect
                    lambda b: (b[:, 1] + b[:, 3] / 2) / width):  # where: the box's centre
    # 1,000 draws: sampling error of a quantile ~0.02 of the range; a narrow image's sides
    # and offsets come in steps of 1/24.
    np.testing.assert_allclose(np.quantile(statistic(boxes), quantiles),
                               np.quantile(statistic(reference), quantiles),
                               atol=max(0.04, 1.5 / min(height, width)))
  drawn = boxes[~(boxes == jpeg.center_box(height, width, 0.875)).all(axis=1)]  # no fallback
  area = drawn[:, 2] * drawn[:, 3] / (height * width)
  assert len(drawn) > 0.99 * len(boxes) and area.min() >= 0.08 and area.max() <= 1.0
  if min(height, width) > 100:  # rounding a side of a few pixels moves the aspect more
    aspect = boxes[:, 3] / boxes[:, 2]
    assert aspect.min() > 0.75 * 0.99 and aspect.max() < 4 / 3 * 1.01 and area.max() > 0.9


def test_train_crop_falls_back_to_the_center_when_no_box_fits():
  # 10 x 1000: a box of >= 8 % of the area with aspect <= 4/3 would be >= 24 pixels tall.
  rng = np.random.default_rng(0)
  for _ in range(5):
    # The central 9 x 9 square (0.875 x 10 rounded): rows 0-8, columns 496-504.
    box = jpeg.inception_box(10, 1000, rng.random(jpeg.NUM_DRAWS), fallback_ratio=0.875)
    assert box == (1, 496, 9, 9)


def _psnr(a, b):
  mse = np.mean((a.astype(float) - b.astype(float))**2)
  return 10 * np.log10(255**2 / max(mse, 1e-12))


def _full_resolution(encoded, box, size, antialias=False):
  """The reference: the whole JPEG decoded at full scale, the box cut out, bilinear resize."""
  top, left, height, width = box
  full = tf.io.decode_jpeg(encoded, channels=3)[top:top + height, left:left + width]
  resized = tf.image.resize(full, [size, size], antialias=antialias)
  return tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8).numpy()


def test_crops_decoded_at_a_reduced_scale_match_full_resolution():
  """The eval crop and full-scale train crops are the old tf path's pixels but for rounding; a
  box decoded at a reduced scale is low-pass filtered by the DCT where the old path aliased, and
  differs by the tolerance docs/imagenet.md states."""
  sys.path.insert(0, os.path.join(ROOT, 'scripts'))
  import benchmark_input  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  full_scale, reduced, reduced_vs_antialiased, eval_psnr = [], [], [], []
  for encoded, _ in benchmark_input.photo_like_jpegs(12):
    height, width = jpeg.shape(encoded)
    assert (height, width) == tuple(tf.io.extract_jpeg_shape(encoded).numpy()[:2])
    box = jpeg.center_box(height, width, 0.875)
    eval_psnr.append(_psnr(jpeg.eval_crop(encoded, 224, crop_ratio=0.875),
                           _full_resolution(encoded, box, 224)))
    for _ in range(6):
      box = jpeg.inception_box(height, width, rng.random(jpeg.NUM_DRAWS), fallback_ratio=0.875)
      got = jpeg.crop(encoded, box, 96)
      if min(box[2:]) >= 2 * 96:
        reduced.append(_psnr(got, _full_resolution(encoded, box, 96)))
        reduced_vs_antialiased.append(_psnr(got, _full_resolution(encoded, box, 96,
                                                                  antialias=True)))
      else:
        full_scale.append(_psnr(got, _full_resolution(encoded, box, 96)))
  print(f'PSNR eval {np.mean(eval_psnr):.1f}, train at full scale {np.mean(full_scale):.1f}, '
        f'reduced {np.mean(reduced):.1f} (vs antialiased {np.mean(reduced_vs_antialiased):.1f}) '
        f'dB; {len(reduced)} of {len(reduced) + len(full_scale)} reduced')
  assert len(reduced) > 10 and len(full_scale) > 10
  assert min(eval_psnr) > jpeg.EVAL_MIN_PSNR_DB and min(full_scale) > jpeg.EVAL_MIN_PSNR_DB
  assert np.mean(reduced) > jpeg.REDUCED_MEAN_PSNR_DB
  # Closer to an antialiased shrink than to the aliased one the old path made.
  assert np.mean(reduced_vs_antialiased) > np.mean(reduced)


@pytest.mark.parametrize('ratio', [0.875, 1.0])
def test_eval_is_resize_shorter_side_then_center_crop(ratio):
  height, width, size = 100, 200, 224
  encoded = _jpeg(_image(height, width, 20))
  out = jpeg.crop(encoded, jpeg.center_box(height, width, ratio), size)
  # The recipe as published, on the whole decoded image: resize the shorter side to
  # size / ratio (256 at 0.875), crop the central size x size square.
  short = size / ratio
  resized = tf.image.resize(tf.io.decode_jpeg(encoded),
                            [round(short), round(short * width / height)])
  top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
  expected = resized[top:top + size, left:left + size].numpy()
  # Red rises 1.3 and green 2.6 per source pixel: a crop one pixel off would differ by as much.
  error = np.abs(out - expected).mean(axis=(0, 1))
  assert (error < 0.8).all(), error


def test_preprocessing_of_tfds_mock_imagenet():
  """tfds's mock imagenet2012: random-noise JPEGs of random sizes, some a few pixels wide."""
  rng = np.random.default_rng(0)
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    examples = tfds.builder('imagenet2012').as_dataset(
        split='validation', decoders={'image': tfds.decode.SkipDecoding()})
    for example in examples.as_numpy_iterator():
      height, width = jpeg.shape(example['image'])
      box = jpeg.inception_box(height, width, rng.random(jpeg.NUM_DRAWS),
                               fallback_ratio=0.875)
      train = jpeg.crop(example['image'], box, 24)
      assert train.shape == (24, 24, 3) and train.dtype == np.uint8
      box = jpeg.center_box(height, width, 0.875)
      # Noise of mean absolute difference 85 elsewhere: a misplaced window would show.
      difference = (jpeg.eval_crop(example['image'], 24, crop_ratio=0.875).astype(int)
                    - _full_resolution(example['image'], box, 24))
      assert np.abs(difference).mean() < 10


@pytest.mark.parametrize('kind', ['CMYK JPEG', 'PNG', 'grayscale JPEG'])
def test_images_of_other_kinds_are_decoded_to_rgb(kind):
  """ImageNet holds a few CMYK JPEGs, a PNG and many grayscale JPEGs: simplejpeg refuses the
  first two (OpenCV decodes them) and expands the third."""
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pixels = _image(60, 80, 7)
  buffer = io.BytesIO()
  if kind == 'PNG':
    Image.fromarray(pixels).save(buffer, format='PNG')
  elif kind == 'CMYK JPEG':
    Image.fromarray(pixels).convert('CMYK').save(buffer, format='JPEG', quality=100)
  else:
    pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    Image.fromarray(pixels[..., 0]).save(buffer, format='JPEG', quality=100)
  encoded = buffer.getvalue()
  assert jpeg.shape(encoded) == (60, 80)
  out = jpeg.crop(encoded, (0, 0, 60, 80), 30)
  expected = tf.cast(tf.round(tf.image.resize(pixels, [30, 30])), tf.uint8).numpy()
  assert out.shape == (30, 30, 3) and np.abs(out.astype(int) - expected).mean() < 3


def _config(**overrides):
  config = base.get_config().data
  config.update(dataset='imagenet2012', eval_split='validation', **overrides)
  return config


def _error(config):
  with pytest.raises(UserError) as e:
    data.get_dataset_info(config)
  message = str(e.value)
  assert '\n' not in message
  return message


def test_not_prepared_names_the_path_and_the_build_command(tmp_path):
  message = _error(_config(data_dir=str(tmp_path)))
  assert f'imagenet2012 is not prepared in data_dir {tmp_path}' in message
  assert (f'`tfds build imagenet2012 --data_dir={tmp_path} --manual_dir=DIR '
          '--file_format=array_record`') in message
  assert 'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar' in message


def test_downloaded_but_not_built_gives_the_command_for_that_folder(tmp_path):
  manual = tmp_path / 'downloads' / 'manual'
  manual.mkdir(parents=True)
  for name in ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'):
    (manual / name).touch()
  message = _error(_config(data_dir=str(tmp_path)))
  assert f'not prepared in data_dir {tmp_path} yet' in message
  assert (f'`tfds build imagenet2012 --data_dir={tmp_path} --manual_dir={manual} '
          '--file_format=array_record`') in message


def test_one_tar_in_data_dir_names_the_missing_one(tmp_path):
  (tmp_path / 'ILSVRC2012_img_train.tar').touch()
  message = _error(_config(data_dir=str(tmp_path)))
  assert f'ILSVRC2012_img_train.tar found in {tmp_path}' in message
  assert 'add ILSVRC2012_img_val.tar there' in message
  assert f'--manual_dir={tmp_path} --file_format=array_record`' in message


@pytest.mark.slow
def test_tfrecords_only_is_one_line_naming_the_conversion(tmp_path):
  imagenet.write_imagenet_like(str(tmp_path), {'train': _examples(4), 'validation': _examples(2)},
                               array_record=False)
  message = _error(_config(data_dir=str(tmp_path)))
  assert 'as tfrecord only' in message
  assert f'`python -m lbtrain.data.to_array_record --data_dir={tmp_path}`' in message
  # The same through the trainer: one line, exit 2, nothing written.
  workdir = tmp_path / 'run'
  result = lbtrain_process.run(
      ['--config=configs/base.py', f'--workdir={workdir}', '--config.data.dataset=imagenet2012',
       '--config.data.eval_split=validation', f'--config.data.data_dir={tmp_path}'])
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1].startswith('lbtrain: error: ')
  assert 'lbtrain.data.to_array_record' in result.stderr.strip().splitlines()[-1]
  assert not workdir.exists()


@pytest.mark.slow
def test_the_conversion_resumes_and_reads_the_same_records(tmp_path):
  dataset_dir = imagenet.write_imagenet_like(
      str(tmp_path), {'train': _examples(9), 'validation': _examples(3)}, num_shards=3,
      array_record=False)
  pairs = to_array_record.shard_pairs(dataset_dir)
  assert len(pairs) == 6
  # An interrupted conversion: two shards done, one half written.
  for source, target in pairs[:2]:
    to_array_record.convert_shard(source, target)
  with open(pairs[2][1] + '.partial', 'wb') as f:
    f.write(b'cut short')
  # As a user runs it: TensorFlow's logging unset, two spawned workers, each importing it.
  env = lbtrain_process.environment()
  del env['TF_CPP_MIN_LOG_LEVEL']
  result = subprocess.run(
      [sys.executable, '-m', 'lbtrain.data.to_array_record', f'--data_dir={tmp_path}',
       '--workers=2'], cwd=ROOT, capture_output=True, text=True, env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.splitlines()
  assert lines[0].endswith('4 shards to convert')
  assert [line.split(' shards converted, ')[0] for line in lines[1:-1]] == \
      ['1/4', '2/4', '3/4', '4/4']
  assert all(line.endswith(' records/s') for line in lines[1:-1])
  assert lines[-1].startswith('done: 4 shards, 6 records in ')
  # Its own lines only: no TensorFlow banner (oneDNN, CPU features, absl's pre-init notice).
  assert not result.stderr.strip(), result.stderr[-2000:]
  assert not [name for name in os.listdir(dataset_dir) if name.endswith('.partial')]
  records = tfds.builder_from_directory(dataset_dir).as_data_source(
      'train', decoders={'image': tfds.decode.SkipDecoding()})
  originals = list(tfds.builder_from_directory(dataset_dir).as_dataset(
      'train', decoders={'image': tfds.decode.SkipDecoding()}).as_numpy_iterator())
  assert [r['image'] for r in records] == [r['image'] for r in originals]
  assert [r['label'] for r in records] == list(range(9))
  # Run again: nothing left to do.
  assert to_array_record.convert(dataset_dir, log=lambda line: None) == 0
  # The TFRecords deleted, the pipeline reads the ArrayRecords alone.
  for source, _ in pairs:
    os.remove(source)
  assert to_array_record.convert(dataset_dir, log=lambda line: None) == 0
  config = _config(data_dir=str(tmp_path), image_size=IMAGE_SIZE)
  batch = next(data.train_batches(config, data.get_dataset_info(config), global_batch_size=9,
                                  seed=0, start_step=0, num_steps=1))
  assert sorted(batch['label']) == list(range(9))


@pytest.mark.slow
def test_a_resized_copy_shrinks_the_train_split_only_and_trains(config, tmp_path):
  from lbtrain.data import resized_copy  # pylint: disable=g-import-not-at-top
  source_dir = data.input_pipeline.prepared_dir(config)
  # An interrupted copy: one shard half written. Two workers: the shards in spawned processes.
  copy_dir = tmp_path / 'imagenet2012' / '5.1.0'
  copy_dir.mkdir(parents=True)
  (copy_dir / 'imagenet2012-train.array_record-00000-of-00003.partial').write_bytes(b'cut')
  result = subprocess.run(
      [sys.executable, '-m', 'lbtrain.data.resized_copy', f'--data_dir={config.data_dir}',
       f'--out_data_dir={tmp_path}', '--shorter_side=50', '--workers=2'],
      cwd=ROOT, capture_output=True, text=True, env=lbtrain_process.environment())
  assert result.returncode == 0, result.stderr[-2000:]
  assert not list(copy_dir.glob('*.partial'))
  original, copied = (imagenet._source(directory, 'train')  # pylint: disable=protected-access
                      for directory in (source_dir, str(copy_dir)))
  assert len(copied) == NUM_TRAIN
  for index in range(NUM_TRAIN):
    (before, label), (after, copied_label) = original[index], copied[index]
    assert copied_label == label
    height, width = jpeg.shape(before)
    if min(height, width) <= 50:
      assert after == before  # small enough: stored as it was
    else:
      assert min(jpeg.shape(after)) == 50
      assert abs(jpeg.shape(after)[0] / jpeg.shape(after)[1] - height / width) < 0.1
  original_eval, copied_eval = (
      imagenet._source(directory, 'validation')  # pylint: disable=protected-access
      for directory in (source_dir, str(copy_dir)))
  assert [copied_eval[i] for i in range(NUM_EVAL)] == [original_eval[i] for i in range(NUM_EVAL)]
  # The trainer reads it like the original, blue still telling the label.
  copy_config = config.copy_and_resolve_references()
  copy_config.data_dir = str(tmp_path)
  assert data.get_dataset_info(copy_config) == data.get_dataset_info(config)
  _train(copy_config, num_steps=2)
  # Again: nothing left to write.
  assert resized_copy.copy(source_dir, str(tmp_path), shorter_side=50, quality=90,
                           splits=['train'], log=lambda line: None) == str(copy_dir)


@pytest.mark.slow
@pytest.mark.parametrize('flag, fragment', [
    ('--quality=0', '--quality=0 must be in [1, 100]'),
    ('--splits=train,test', '--splits names test'),
    ('--shorter_side=abc', 'flag --shorter_side=abc'),
])
def test_a_resized_copy_with_bad_flags_is_one_line_and_writes_nothing(config, tmp_path, flag,
                                                                       fragment):
  out = tmp_path / 'copy'
  result = subprocess.run(
      [sys.executable, '-m', 'lbtrain.data.resized_copy', f'--data_dir={config.data_dir}',
       f'--out_data_dir={out}', flag], cwd=ROOT, capture_output=True, text=True,
      env=lbtrain_process.environment())
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith('lbtrain: error: ') and fragment in lines[-1], lines
  assert not out.exists()


@pytest.mark.slow
def test_the_conversion_of_a_missing_data_set_is_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'lbtrain.data.to_array_record', f'--data_dir={tmp_path}'],
      cwd=ROOT, capture_output=True, text=True, env=lbtrain_process.environment())
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f'lbtrain: error: imagenet2012 is not prepared in data_dir {tmp_path}: prepare it first.']


@pytest.mark.slow
def test_imagenet_trains_without_importing_tensorflow(config):
  """A training host needs tfds and array_record, not TensorFlow."""
  code = ('import sys; from configs import base; from lbtrain import data;'
          'c = base.get_config().data; c.update(dataset="imagenet2012", data_dir=sys.argv[1],'
          f'eval_split="validation", image_size={IMAGE_SIZE});'
          'info = data.get_dataset_info(c);'
          'next(data.train_batches(c, info, global_batch_size=4, seed=0, start_step=0,'
          ' num_steps=1)); next(data.eval_batches(c, info, global_batch_size=4));'
          'assert "tensorflow" not in sys.modules, "tensorflow imported"')
  subprocess.run([sys.executable, '-c', code, config.data_dir], check=True, cwd=ROOT,
                 capture_output=True)


@pytest.mark.slow
def test_synthetic_info_without_tensorflow():
  code = ('import sys; from configs import base; from lbtrain import data;'
          'c = base.get_config().data; c.dataset = "synthetic"; c.image_size = 160;'
          'info = data.get_dataset_info(c); assert info == data.published_dataset_info(c);'
          'assert "tensorflow" not in sys.modules, "tensorflow imported";'
          'print(info.num_train_examples, info.num_eval_examples, info.num_classes,'
          ' info.image_shape, info.image_dtype, info.mean, info.std)')
  result = subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT,
                          capture_output=True, text=True)
  assert result.stdout.split('\n')[0] == (
      '1281167 50000 1000 (160, 160, 3) uint8 (0.485, 0.456, 0.406) (0.229, 0.224, 0.225)')


def test_synthetic_has_no_host_pipeline():
  config = base.get_config().data
  config.dataset = 'synthetic'
  info = data.get_dataset_info(config)
  with pytest.raises(ValueError, match='made on the devices'):
    data.train_batches(config, info, global_batch_size=8, seed=0, start_step=0, num_steps=1)
  with pytest.raises(ValueError, match='made on the devices'):
    data.eval_batches(config, info, global_batch_size=8)


def test_published_info_follows_image_size():
  config = _config(image_size=128)
  info = data.published_dataset_info(config)
  assert (info.num_train_examples, info.num_eval_examples) == (1_281_167, 50_000)
  assert info.image_shape == (128, 128, 3) and info.image_dtype == 'uint8'


@pytest.mark.parametrize('field,value', [('image_size', 0), ('eval_image_size', 0),
                                         ('eval_crop_ratio', 1.2), ('threads', 0)])
def test_bad_pipeline_settings_are_user_errors(field, value):
  config = _config(**{field: value})
  with pytest.raises(UserError, match=f'data.{field}={value} must be'):
    data.published_dataset_info(config)


@pytest.mark.slow
def test_the_trainer_runs_on_it_end_to_end(config, tmp_path):
  """The real JPEGs through the loop: uint8 batches normalised on the devices, exact eval."""
  from lbtrain import train  # pylint: disable=g-import-not-at-top
  run_config = base.get_config()
  run_config.data = config
  run_config.model.name = 'cnn'
  run_config.train.global_batch_size = 8  # 40 examples: 5 steps per epoch
  run_config.train.num_epochs = 2.0
  run_config.train.log_every_steps = 5
  run_config.schedule.decay = 'constant'
  run_config.eval.every_epochs = 1.0
  final = train.train_and_evaluate(run_config, str(tmp_path / 'run'))
  assert final['eval/num_examples'] == NUM_EVAL  # 2 batches of 8, the second padded
  assert np.isfinite(final['eval/loss'])
