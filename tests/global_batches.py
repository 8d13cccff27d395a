"""Saves the global ImageNet batches a run's devices hold, for tests that compare process counts.

    python tests/global_batches.py --data_dir=D --out=F.npz [--start_step=K]
        [--batch_sizes=32,64 --boundaries_steps=2,4]
    python scripts/launch_local.py 2 --module=global_batches -- --data_dir=D --out=F.npz

Every process builds its rows through `data.train_inputs` / `eval_inputs` as the trainer does;
the global arrays are gathered onto process 0, which writes them: the train rows of every step
one after another (`train_batch`: each step's global batch), the eval batches stacked.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lbtrain import distributed  # pylint: disable=g-import-not-at-top,unused-import  (its flags)

_DATA_DIR = flags.DEFINE_string('data_dir', None, 'tfds data_dir holding imagenet2012')
_OUT = flags.DEFINE_string('out', None, '.npz to write')
_BATCH = flags.DEFINE_integer('global_batch_size', 16, 'global batch')
_START = flags.DEFINE_integer('start_step', 0, 'first step')
_STEPS = flags.DEFINE_integer('num_steps', 6, 'steps')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 16, 'output side')
_SIZES = flags.DEFINE_list('batch_sizes', [], 'a batch schedule: the batch from each boundary on')
_BOUNDARIES = flags.DEFINE_list('boundaries_steps', [], 'the steps where those batches start')


def main(unused_argv):
  distributed.initialize()
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import base  # pylint: disable=g-import-not-at-top
  from lbtrain import data  # pylint: disable=g-import-not-at-top
  from lbtrain import parallel  # pylint: disable=g-import-not-at-top
  from lbtrain.batch_schedule import BatchSchedule  # pylint: disable=g-import-not-at-top

  config = base.get_config().data
  config.update(dataset='imagenet2012', data_dir=_DATA_DIR.value, eval_split='validation',
                image_size=_IMAGE_SIZE.value)
  mesh = parallel.create_mesh()
  info = data.get_dataset_info(config)
  gather = lambda array: np.asarray(multihost_utils.process_allgather(array, tiled=True))
  batches = BatchSchedule(
      (0, *map(int, _BOUNDARIES.value)), (_BATCH.value, *map(int, _SIZES.value)),
      _START.value + _STEPS.value, info.num_train_examples)
  saved = {'train_image': [], 'train_label': [], 'train_batch': [], 'eval_image': [],
           'eval_label': [], 'eval_mask': []}
  for batch in data.train_inputs(config, info, mesh, global_batch_size=_BATCH.value, seed=0,
                                 start_step=_START.value, num_steps=_STEPS.value,
                                 batches=batches):
    saved['train_image'].append(gather(batch['image']))
    saved['train_label'].append(gather(batch['label']))
    saved['train_batch'].append(len(saved['train_label'][-1]))
  for batch in data.eval_inputs(config, info, mesh, global_batch_size=_BATCH.value):
    for key in ('image', 'label', 'mask'):
      saved[f'eval_{key}'].append(gather(batch[key]))
  if jax.process_index() == 0:
    arrays = {key: np.stack(values) for key, values in saved.items() if key.startswith('eval')}
    arrays.update(train_image=np.concatenate(saved['train_image']),
                  train_label=np.concatenate(saved['train_label']),
                  train_batch=np.array(saved['train_batch']))
    np.savez(_OUT.value, **arrays)
  print(f'process {jax.process_index()} of {jax.process_count()}: '
        f'{jax.local_device_count()} local devices, done', flush=True)


if __name__ == '__main__':
  app.run(main)
