"""Eight emulated CPU devices for every test; set before jax is imported anywhere."""

import os

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# tf.data must not grab a GPU or all host threads during tests.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import jax  # noqa: E402  (after XLA_FLAGS on purpose)

# Behaviour tests do not need optimised XLA; this cuts CPU compile time several-fold.
jax.config.update('jax_disable_most_optimizations', True)


import pytest  # noqa: E402


@pytest.fixture(scope='session')
def fmnist_data_dir(tmp_path_factory):
  """A tfds data_dir holding Fashion-MNIST, prepared once from the Debian idx files."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from lbtrain import data  # pylint: disable=g-import-not-at-top
  config = base.get_config()
  config.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  data.get_dataset_info(config.data)
  return config.data.data_dir


@pytest.fixture
def tiny_config(fmnist_data_dir):
  """A few steps of the small CNN on real Fashion-MNIST: seconds, but the whole real path."""
  from configs import base  # pylint: disable=g-import-not-at-top
  config = base.get_config()
  config.data.data_dir = fmnist_data_dir
  config.model.name = 'cnn'
  config.train.global_batch_size = 256
  config.train.num_epochs = 12 * 256 / 60000  # 12 steps
  config.train.log_every_steps = 4
  config.optimizer.name = 'sgd'
  config.optimizer.base_lr = 0.1
  config.schedule.decay = 'constant'
  config.eval.every_epochs = 6 * 256 / 60000
  config.eval.global_batch_size = 1024  # 10,000 test images: the last batch is padded
  config.checkpoint.every_steps = 6
  return config
