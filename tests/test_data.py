"""The data order contract (hardware-invariant, exactly resumable), exact eval, and preparation."""

import gzip
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from configs import base
from lbtrain import data
from lbtrain.data import fashion_mnist
from lbtrain.data import in_memory
from lbtrain.data import to_array_record
from lbtrain.errors import UserError

REAL_SOURCE = '/usr/share/datasets/fashion-mnist'


def _arrays(num_examples):
  """Examples whose label is their index and whose every pixel is too, to trace them."""
  labels = np.arange(num_examples)
  images = np.broadcast_to(labels[:, None, None, None], (num_examples, 2, 2, 1)).astype(np.uint8)
  return images, labels


# Identity normalisation: a normalised pixel equals its uint8 value.
_IDENTITY = dict(mean=(0.0,), std=(1 / 255,))


def _train_ids(num_examples, *, global_batch_size, num_steps, start_step=0, seed=0,
               process_index=0, process_count=1):
  images, labels = _arrays(num_examples)
  batches = list(in_memory.train_batches(
      images, labels, **_IDENTITY, global_batch_size=global_batch_size, seed=seed,
      start_step=start_step, num_steps=num_steps, process_index=process_index,
      process_count=process_count))
  assert len(batches) == num_steps
  for batch in batches:
    np.testing.assert_allclose(batch['image'][:, 0, 0, 0], batch['label'])
  return np.stack([batch['label'] for batch in batches])


def test_train_batch_shapes_and_types():
  images, labels = _arrays(10)
  batch = next(in_memory.train_batches(
      images, labels, **_IDENTITY, global_batch_size=8, seed=0, start_step=0, num_steps=1,
      process_index=1, process_count=2))
  assert batch['image'].shape == (4, 2, 2, 1) and batch['image'].dtype == np.float32
  assert batch['label'].shape == (4,) and batch['label'].dtype == np.int32


def test_global_batch_does_not_depend_on_process_count():
  # 10 examples, batch 4: 2.5 steps per epoch, so batches straddle epoch boundaries.
  whole = _train_ids(10, global_batch_size=4, num_steps=7)
  for process_count in (2, 4):
    slices = [_train_ids(10, global_batch_size=4, num_steps=7, process_index=p,
                         process_count=process_count) for p in range(process_count)]
    np.testing.assert_array_equal(np.concatenate(slices, axis=1), whole)


def test_resume_yields_what_the_uninterrupted_run_yields():
  whole = _train_ids(10, global_batch_size=4, num_steps=7)
  resumed = _train_ids(10, global_batch_size=4, start_step=3, num_steps=4)
  np.testing.assert_array_equal(resumed, whole[3:])


def test_each_epoch_is_a_permutation_even_across_batch_boundaries():
  stream = _train_ids(10, global_batch_size=4, num_steps=5).reshape(-1)
  for epoch in range(2):
    assert sorted(stream[epoch * 10:(epoch + 1) * 10]) == list(range(10))


def test_processes_read_disjoint_parts_of_each_epoch():
  per_process = [_train_ids(12, global_batch_size=4, num_steps=3, process_index=p,
                            process_count=2).reshape(-1) for p in range(2)]
  assert not set(per_process[0]) & set(per_process[1])
  assert sorted(np.concatenate(per_process)) == list(range(12))


def test_order_changes_with_seed_and_epoch():
  epoch_0, epoch_1 = _train_ids(100, global_batch_size=100, num_steps=2)
  other_seed = _train_ids(100, global_batch_size=100, num_steps=1, seed=1)[0]
  assert list(epoch_0) != list(epoch_1)
  assert list(epoch_0) != list(other_seed)


def test_epoch_order_is_the_documented_index_shuffle():
  stream = _train_ids(10, global_batch_size=5, num_steps=4, seed=7).reshape(-1)
  for epoch in range(2):
    expected = tf.random.experimental.index_shuffle(
        tf.range(10, dtype=tf.int64), seed=[7, epoch], max_index=9).numpy()
    np.testing.assert_array_equal(stream[epoch * 10:(epoch + 1) * 10], expected)


def test_eval_counts_every_example_once_on_two_processes():
  images, labels = _arrays(10)
  seen, num_batches = [], 0
  for p in range(2):
    for batch in in_memory.eval_batches(images, labels, **_IDENTITY, global_batch_size=4,
                                        process_index=p, process_count=2):
      num_batches += 1
      assert batch['mask'].shape == (2,) and batch['mask'].dtype == bool
      np.testing.assert_allclose(batch['image'][:, 0, 0, 0], batch['label'])
      assert not batch['label'][~batch['mask']].any()
      seen.extend(batch['label'][batch['mask']])
  assert num_batches == 2 * 3  # ceil(10 / 4) global batches, one slice each per process
  assert sorted(seen) == list(range(10))


def test_batch_size_not_divisible_by_processes_is_a_user_error():
  images, labels = _arrays(10)
  with pytest.raises(UserError, match='not divisible'):
    in_memory.eval_batches(images, labels, **_IDENTITY, global_batch_size=5, process_count=2)


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b''.join(
      d.to_bytes(4, 'big') for d in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_source(tmp_path):
  """Four idx files in the real format: 6 train and 4 test images of 28x28, label = index."""
  source = tmp_path / 'source'
  source.mkdir()
  for prefix, n in (('train', 6), ('t10k', 4)):
    _write_idx(source / f'{prefix}-images-idx3-ubyte.gz',
               np.arange(n)[:, None, None] * np.ones((28, 28), np.uint8))
    _write_idx(source / f'{prefix}-labels-idx1-ubyte.gz', np.arange(n))
  return str(source)


def _config(**data_overrides):
  config = base.get_config().data
  config.update(data_overrides)
  return config


def test_tiny_prepare_round_trips_in_file_order(tiny_source, tmp_path):
  config = _config(source_dir=tiny_source, data_dir=str(tmp_path / 'tfds'))
  info = data.get_dataset_info(config)
  assert (info.num_train_examples, info.num_eval_examples) == (6, 4)
  images, labels = in_memory.load_split(fashion_mnist.prepare(tiny_source, config.data_dir),
                                        'train')
  np.testing.assert_array_equal(labels, np.arange(6))
  np.testing.assert_array_equal(images[:, 5, 7, 0], np.arange(6))


def test_prepare_race_keeps_one_copy(tiny_source, tmp_path, monkeypatch):
  data_dir = str(tmp_path / 'tfds')
  store = fashion_mnist._store_as_tfds

  def store_while_another_process_finishes_first(splits, scratch):
    built = store(splits, scratch)
    monkeypatch.setattr(fashion_mnist, '_store_as_tfds', store)
    fashion_mnist.prepare(tiny_source, data_dir)
    return built

  monkeypatch.setattr(fashion_mnist, '_store_as_tfds', store_while_another_process_finishes_first)
  destination = fashion_mnist.prepare(tiny_source, data_dir)
  assert os.listdir(os.path.dirname(destination)) == [fashion_mnist.VERSION]
  assert data.get_dataset_info(_config(data_dir=data_dir)).num_train_examples == 6


def test_interrupted_prepare_leaves_nothing_that_looks_prepared(tiny_source, tmp_path,
                                                                 monkeypatch):
  data_dir = str(tmp_path / 'tfds')
  store = fashion_mnist._store_as_tfds

  def store_then_die(splits, scratch):
    store(splits, scratch)
    raise KeyboardInterrupt

  monkeypatch.setattr(fashion_mnist, '_store_as_tfds', store_then_die)
  with pytest.raises(KeyboardInterrupt):
    fashion_mnist.prepare(tiny_source, data_dir)
  assert os.listdir(os.path.join(data_dir, fashion_mnist.TFDS_NAME)) == []
  monkeypatch.setattr(fashion_mnist, '_store_as_tfds', store)
  assert data.get_dataset_info(
      _config(source_dir=tiny_source, data_dir=data_dir)).num_eval_examples == 4


@pytest.fixture(scope='module')
def real_config(fmnist_data_dir):
  """The session's data_dir, which conftest.py prepared from the real files (once: it takes
  as long as a small training run)."""
  if not os.path.isdir(REAL_SOURCE):
    pytest.skip(f'{REAL_SOURCE} missing (apt-get install -y dataset-fashion-mnist)')
  return _config(data_dir=fmnist_data_dir)


@pytest.mark.slow
def test_fashion_mnist_prepared_from_the_real_files(real_config):
  info = data.get_dataset_info(real_config)
  assert info == data.DatasetInfo(name='fashion_mnist', num_train_examples=60000,
                                  num_eval_examples=10000, num_classes=10,
                                  image_shape=(28, 28, 1), mean=(0.2860,), std=(0.3530,),
                                  image_dtype='float32')
  first = next(data.eval_batches(real_config, info, global_batch_size=1000))
  # The first test images of the idx file: ankle boot, pullover, trouser, trouser, shirt.
  np.testing.assert_array_equal(first['label'][:5], [9, 2, 1, 1, 6])
  batch = next(data.train_batches(real_config, info, global_batch_size=1024, seed=0,
                                  start_step=0, num_steps=1))
  assert abs(batch['image'].mean()) < 0.1 and abs(batch['image'].std() - 1) < 0.1


def test_fashion_mnist_second_call_reuses_the_prepared_copy(real_config, monkeypatch):
  prepared = os.path.join(os.path.expanduser(real_config.data_dir), fashion_mnist.TFDS_NAME)
  data.get_dataset_info(real_config)
  before = os.stat(os.path.join(prepared, fashion_mnist.VERSION, 'dataset_info.json'))

  def fail(*unused_args):
    raise AssertionError('prepared again')

  monkeypatch.setattr(fashion_mnist, '_store_as_tfds', fail)
  assert data.get_dataset_info(real_config).num_train_examples == 60000
  after = os.stat(os.path.join(prepared, fashion_mnist.VERSION, 'dataset_info.json'))
  assert after.st_ino == before.st_ino
  assert os.listdir(prepared) == [fashion_mnist.VERSION]


def test_missing_split_is_a_user_error(real_config):
  config = _config(data_dir=real_config.data_dir, eval_split='validation')
  with pytest.raises(UserError, match="no split 'validation'.*eval_split"):
    data.get_dataset_info(config)


def test_missing_source_dir_says_how_to_fix(tmp_path):
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(UserError) as e:
    data.get_dataset_info(_config(source_dir=missing, data_dir=str(tmp_path / 'tfds')))
  message = str(e.value)
  assert missing in message and '\n' not in message
  assert 'apt-get install -y dataset-fashion-mnist' in message
  assert '--config.data.source_dir=' in message


def test_missing_source_file_is_named(tiny_source, tmp_path):
  os.remove(os.path.join(tiny_source, 't10k-labels-idx1-ubyte.gz'))
  with pytest.raises(UserError, match='t10k-labels-idx1-ubyte.gz is missing'):
    data.get_dataset_info(_config(source_dir=tiny_source, data_dir=str(tmp_path / 'tfds')))


def test_unknown_dataset_lists_the_known_ones():
  with pytest.raises(UserError, match="'cifar10'.*fashion_mnist, imagenet2012"):
    data.get_dataset_info(_config(dataset='cifar10'))


def test_imagenet_not_prepared_says_how_to_build_it(tmp_path):
  for data_dir, problem in ((tmp_path / 'absent', 'does not exist'),
                            (tmp_path, 'not prepared')):
    with pytest.raises(UserError, match=problem) as e:
      data.get_dataset_info(_config(dataset='imagenet2012', data_dir=str(data_dir)))
    assert f'tfds build imagenet2012 --data_dir={data_dir} --manual_dir=' in str(e.value)


def test_imagenet_info_comes_from_the_prepared_metadata(tiny_source, tmp_path):
  # Any prepared tfds folder stands in for ImageNet's metadata.
  versions = tmp_path / 'tfds' / 'imagenet2012'
  shutil.copytree(fashion_mnist.prepare(tiny_source, str(tmp_path / 'fm')), versions / '5.0.0')
  to_array_record.convert(str(versions / '5.0.0'), log=lambda line: None)  # read by index
  (versions / 'incomplete.XYZ_5.1.0').mkdir()
  config = _config(dataset='imagenet2012', data_dir=str(tmp_path / 'tfds'))
  info = data.get_dataset_info(config)
  assert (info.num_train_examples, info.num_classes, info.image_shape) == (6, 10, (224, 224, 3))


@pytest.mark.slow
def test_importing_the_package_does_not_import_tensorflow():
  code = 'import sys, lbtrain.data; assert "tensorflow" not in sys.modules'
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
