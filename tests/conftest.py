"""Eight emulated CPU devices for every test; set before jax is imported anywhere.

What every test process of one pytest run shares, to pay each cost once: the Fashion-MNIST
tfds copy (prepared once for all workers) and XLA's persistent compilation cache (one per
worker, so two workers never write the same entry at once; lbtrain runs started by a test use
it through `lbtrain_process`).
"""

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

import lbtrain_process  # noqa: E402


@pytest.fixture(scope='session')
def run_root(tmp_path_factory) -> str:
  """A folder shared by every worker of this pytest run (xdist gives each worker a basetemp
  of its own inside it)."""
  basetemp = tmp_path_factory.getbasetemp()
  return str(basetemp.parent if os.environ.get('PYTEST_XDIST_WORKER') else basetemp)


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(run_root):
  """This worker's persistent compilation cache, for in-process runs (`tiny_config`) and, through
  the environment, for the lbtrain processes that tests start (`lbtrain_process`)."""
  directory = os.path.join(run_root, 'compilation_cache_'
                           + os.environ.get('PYTEST_XDIST_WORKER', 'main'))
  os.environ['LBTRAIN_TEST_COMPILATION_CACHE'] = directory
  return directory


@pytest.fixture(scope='session')
def fmnist_data_dir(run_root):
  """A tfds data_dir holding Fashion-MNIST, prepared from the Debian idx files once per pytest
  run: the first worker prepares it while the other waits."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from lbtrain import data  # pylint: disable=g-import-not-at-top
  config = base.get_config()
  config.data.data_dir = os.path.join(run_root, 'tfds')
  with lbtrain_process.exclusive(os.path.join(run_root, 'tfds.lock')):
    data.get_dataset_info(config.data)
  return config.data.data_dir


@pytest.fixture
def tiny_config(fmnist_data_dir, compilation_cache):
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
  # 2,500 of the test images: the last of 3 batches is padded (452 real rows), so exact
  # evaluation is exercised at a quarter of the whole split's cost.
  config.data.eval_split = 'test[:2500]'
  config.eval.global_batch_size = 1024
  config.checkpoint.every_steps = 6
  config.train.compilation_cache_dir = compilation_cache
  return config
