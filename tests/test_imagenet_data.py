"""The ImageNet pipeline on real JPEGs: Inception crop, exact eval, exact resume, pre-flight checks.

A tiny `imagenet2012` is built here with the real one's features (JPEG images of many sizes and
aspect ratios, 1000 classes), so the JPEG decode path runs for real. Each image encodes what it
is: red grows with x, green with y, and blue is 6 * label + 3, so a batch row shows which crop of
which example it holds.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import base
from lbtrain import data
from lbtrain.data import imagenet
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


def test_cache_changes_nothing_but_where_records_come_from(config):
  cached = config.copy_and_resolve_references()
  cached.cache = True
  for expected, batch in zip(_train(config, num_steps=4), _train(cached, num_steps=4)):
    np.testing.assert_array_equal(batch['image'], expected['image'])
  for expected, batch in zip(_eval(config, 4), _eval(cached, 4)):
    np.testing.assert_array_equal(batch['image'], expected['image'])


def test_parallelism_changes_nothing(config):
  expected = _train(config, num_steps=4)
  for settings in ({'threads': 1}, {'autotune': True}):
    other = config.copy_and_resolve_references()
    other.update(settings)
    for batch, expected_batch in zip(_train(other, num_steps=4), expected):
      np.testing.assert_array_equal(batch['image'], expected_batch['image'])


def test_seed_changes_the_order(config):
  assert not np.array_equal(_labels(_train(config, num_steps=3)),
                            _labels(_train(config, num_steps=3, seed=1)))


def test_processes_read_disjoint_halves_of_each_epoch(config):
  # 2 processes x 4 rows, 20 examples each: one epoch of each process is 5 steps.
  per_process = [_labels(_train(config, global_batch_size=8, num_steps=5, process_index=p,
                                process_count=2)).reshape(-1) for p in range(2)]
  assert sorted(per_process[0]) == list(range(20))
  assert sorted(per_process[1]) == list(range(20, 40))


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


def _crop_boxes(image, num_seeds):
  """(x0, x1, y0, y1) in source pixels of the training crops of `image` (flipped or not)."""
  height, width = image.shape[:2]
  boxes = []
  for seed in range(num_seeds):
    out = imagenet.preprocess_for_train(_jpeg(image), tf.constant([seed, 0], tf.int64),
                                        image_size=32, center_crop_ratio=0.875).numpy()
    out = out.astype(float)
    # Output pixel centres span 31/32 of the crop; red and green map back to x and y.
    x0, x1 = out[..., 0].min() / 255 * (width - 1), out[..., 0].max() / 255 * (width - 1)
    y0, y1 = out[..., 1].min() / 255 * (height - 1), out[..., 1].max() / 255 * (height - 1)
    pad_x, pad_y = (x1 - x0) / 62, (y1 - y0) / 62
    boxes.append((x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y))
  return np.array(boxes)


def test_inception_crop_area_and_aspect():
  height, width = 300, 400
  x0, x1, y0, y1 = _crop_boxes(_image(height, width, 0), 60).T
  area = (x1 - x0) * (y1 - y0) / (height * width)
  aspect = (x1 - x0) / (y1 - y0)
  assert area.min() > 0.08 * 0.85 and area.max() < 1.05
  assert aspect.min() > 0.75 * 0.9 and aspect.max() < 4 / 3 * 1.1
  assert area.min() < 0.3 and area.max() > 0.7  # the whole range is used
  assert x0.min() < 20 and x1.max() > width - 20  # anywhere in the image
  assert len(set(np.round(x0))) > 40


def test_train_crop_falls_back_to_the_center_when_no_box_fits():
  # 10 x 1000: a box of >= 8 % of the area with aspect <= 4/3 would be >= 24 pixels tall.
  # Red is 0 up to column 480, then rises by 8 per column, so it tells which columns a crop holds.
  image = np.zeros((10, 1000, 3), np.uint8)
  image[..., 0] = np.clip((np.arange(1000) - 480) * 8, 0, 255)
  for seed in range(5):
    out = imagenet.preprocess_for_train(_jpeg(image), tf.constant([seed, 0], tf.int64),
                                        image_size=32, center_crop_ratio=0.875).numpy()
    columns = 480 + out[..., 0].astype(float).mean(0) / 8
    # The central 9 x 9 square (0.875 x 10 rounded): columns 496-504.
    assert abs(columns.min() - 496) < 1 and abs(columns.max() - 504) < 1


@pytest.mark.parametrize('ratio', [0.875, 1.0])
def test_eval_is_resize_shorter_side_then_center_crop(ratio):
  height, width, size = 100, 200, 224
  jpeg = _jpeg(_image(height, width, 20))
  out = imagenet.preprocess_for_eval(jpeg, image_size=size, crop_ratio=ratio).numpy()
  # The recipe as published, on the whole decoded image: resize the shorter side to
  # size / ratio (256 at 0.875), crop the central size x size square.
  short = size / ratio
  resized = tf.image.resize(tf.io.decode_jpeg(jpeg), [round(short), round(short * width / height)])
  top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
  expected = resized[top:top + size, left:left + size].numpy()
  # Red rises 1.3 and green 2.6 per source pixel: a crop one pixel off would differ by as much.
  error = np.abs(out - expected).mean(axis=(0, 1))
  assert (error < 0.8).all(), error


def test_preprocessing_of_tfds_mock_imagenet():
  """tfds's mock imagenet2012: random-noise JPEGs of random sizes, some a few pixels wide."""
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    examples = tfds.builder('imagenet2012').as_dataset(
        split='validation', decoders={'image': tfds.decode.SkipDecoding()})
    for index, example in enumerate(examples):
      train = imagenet.preprocess_for_train(example['image'], tf.constant([0, index], tf.int64),
                                            image_size=24, center_crop_ratio=0.875)
      assert train.shape == (24, 24, 3) and train.dtype == tf.uint8
      full = tf.io.decode_jpeg(example['image'], channels=3).numpy()
      side = max(1, round(0.875 * min(full.shape[:2])))
      top, left = (full.shape[0] - side + 1) // 2, (full.shape[1] - side + 1) // 2
      expected = tf.cast(tf.round(tf.image.resize(
          full[top:top + side, left:left + side], [24, 24])), tf.uint8)
      # Decoding only the window differs from cropping the whole decoded image along the
      # window's edges, where the subsampled colour is interpolated from fewer neighbours.
      eval_image = imagenet.preprocess_for_eval(example['image'], image_size=24, crop_ratio=0.875)
      # Noise of mean absolute difference 85 elsewhere: a misplaced window would show.
      assert np.abs(eval_image.numpy().astype(int) - expected.numpy()).mean() < 10


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
  assert f'`tfds build imagenet2012 --data_dir={tmp_path} --manual_dir=DIR`' in message
  assert 'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar' in message


def test_downloaded_but_not_built_gives_the_command_for_that_folder(tmp_path):
  manual = tmp_path / 'downloads' / 'manual'
  manual.mkdir(parents=True)
  for name in ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'):
    (manual / name).touch()
  message = _error(_config(data_dir=str(tmp_path)))
  assert f'not prepared in data_dir {tmp_path} yet' in message
  assert f'`tfds build imagenet2012 --data_dir={tmp_path} --manual_dir={manual}`' in message


def test_one_tar_in_data_dir_names_the_missing_one(tmp_path):
  (tmp_path / 'ILSVRC2012_img_train.tar').touch()
  message = _error(_config(data_dir=str(tmp_path)))
  assert f'ILSVRC2012_img_train.tar found in {tmp_path}' in message
  assert 'add ILSVRC2012_img_val.tar there' in message
  assert f'--manual_dir={tmp_path}`' in message


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
                                         ('eval_crop_ratio', 1.2), ('shuffle_buffer', 0),
                                         ('threads', 0)])
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
