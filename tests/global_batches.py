"""Saves the global ImageNet batches a run's devices hold, for tests that compare process counts.

    python tests/global_batches.py --data_dir=D --out=F.npz [--start_step=K] [--vit]
        [--batch_sizes=32,64 --boundaries_steps=2,4]
    python scripts/launch_local.py 2 --module=global_batches -- --data_dir=D --out=F.npz

Every process builds its rows through `data.train_inputs` / `eval_inputs` as the trainer does;
the global arrays are gathered onto process 0, which writes them: the train rows of every step
one after another (`train_batch`: each step's global batch), the eval batches stacked. With
--randaugment the train crops get RandAugment(N, 10). With --vit the batches also train a tiny
ViT with Mixup and CutMix through the trainer's own plan and compiled step (`build`), and each
step's metrics are saved (`metric_<name>`).
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
_RANDAUGMENT = flags.DEFINE_integer('randaugment', 0, 'RandAugment layers N (M = 10)')
_VIT = flags.DEFINE_bool('vit', False, 'train a tiny ViT with Mixup/CutMix on the batches')


def _vit_steps(config, mesh):
  """The trainer's plan, state and compiled train step for a tiny ViT with Mixup and CutMix."""
  import jax  # pylint: disable=g-import-not-at-top
  from lbtrain import build  # pylint: disable=g-import-not-at-top
  from lbtrain import plan  # pylint: disable=g-import-not-at-top
  config.model.name = 'vit'
  config.model.vit.update(width=16, depth=1, num_heads=2, patch_size=4)
  config.train.update(global_batch_size=_BATCH.value, mixup_alpha=0.2, cutmix_alpha=1.0,
                      num_epochs=3.0)
  config.optimizer.update(name='adamw', base_lr=1e-3, weight_decay=1e-4,
                          weight_decay_form='schedule', mu_dtype='bfloat16', grad_clip_norm=1.0)
  run = plan.plan(config)
  steps = build.build(run, mesh)
  return steps.init(jax.random.key(0)), steps.train_step
_SIZES = flags.DEFINE_list('batch_sizes', [], 'a batch schedule: the batch from each boundary on')
_BOUNDARIES = flags.DEFINE_list('boundaries_steps', [], 'the steps where those batches start')


def main(unused_argv):
  distributed.initialize()
  import jax  # pylint: disable=g-import-not-at-top
  # As tests/conftest.py: behaviour, not speed; XLA:CPU compiles the ViT step several-fold faster.
  jax.config.update('jax_disable_most_optimizations', True)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import base  # pylint: disable=g-import-not-at-top
  from lbtrain import data  # pylint: disable=g-import-not-at-top
  from lbtrain import parallel  # pylint: disable=g-import-not-at-top
  from lbtrain.batch_schedule import BatchSchedule  # pylint: disable=g-import-not-at-top

  full_config = base.get_config()
  config = full_config.data
  config.update(dataset='imagenet2012', data_dir=_DATA_DIR.value, eval_split='validation',
                image_size=_IMAGE_SIZE.value, randaugment_layers=_RANDAUGMENT.value)
  mesh = parallel.create_mesh()
  info = data.get_dataset_info(config)
  gather = lambda array: np.asarray(multihost_utils.process_allgather(array, tiled=True))
  batches = BatchSchedule(
      (0, *map(int, _BOUNDARIES.value)), (_BATCH.value, *map(int, _SIZES.value)),
      _START.value + _STEPS.value, info.num_train_examples)
  saved = {'train_image': [], 'train_label': [], 'train_batch': [], 'eval_image': [],
           'eval_label': [], 'eval_mask': []}
  state, train_step = _vit_steps(full_config, mesh) if _VIT.value else (None, None)
  for batch in data.train_inputs(config, info, mesh, global_batch_size=_BATCH.value, seed=0,
                                 start_step=_START.value, num_steps=_STEPS.value,
                                 batches=batches):
    saved['train_image'].append(gather(batch['image']))
    saved['train_label'].append(gather(batch['label']))
    saved['train_batch'].append(len(saved['train_label'][-1]))
    if train_step is not None:
      state, metrics = train_step(state, batch)
      for name, value in metrics.items():  # replicated scalars: any local copy is the value
        saved.setdefault(f'metric_{name}', []).append(np.asarray(value.addressable_data(0)))
  for batch in data.eval_inputs(config, info, mesh, global_batch_size=_BATCH.value):
    for key in ('image', 'label', 'mask'):
      saved[f'eval_{key}'].append(gather(batch[key]))
  if jax.process_index() == 0:
    arrays = {key: np.stack(values) for key, values in saved.items()
              if key.startswith(('eval', 'metric_'))}
    arrays.update(train_image=np.concatenate(saved['train_image']),
                  train_label=np.concatenate(saved['train_label']),
                  train_batch=np.array(saved['train_batch']))
    np.savez(_OUT.value, **arrays)
  print(f'process {jax.process_index()} of {jax.process_count()}: '
        f'{jax.local_device_count()} local devices, done', flush=True)


if __name__ == '__main__':
  app.run(main)
