"""Progressive resizing: the size of each step, its checks, and a ramped run end to end.

Expected sizes are worked out by hand from FFCV's `get_resolution` (the start size up to and at
the ramp's start, the end size from its end, the linear ramp rounded to a multiple in between).
"""

import json
import logging
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import base
from lbtrain import describe
from lbtrain import plan
from lbtrain import resolution
from lbtrain import train
from lbtrain.errors import UserError
from lbtrain.workdir import Workdir

IMAGENET = 1_281_167


def _ramp(config, start_size, final_size, **ramp):
  config.data.image_size = final_size
  config.data.progressive_resizing.start_image_size = start_size
  config.data.progressive_resizing.update(ramp)
  return config


def test_ffcv_40_epochs_switches_to_192_at_epoch_32():
  """rn50_40_epochs.yaml: 160 -> 192 px over epochs 29-34, multiples of 32. FFCV's sizes per
  epoch: 29: 160; 30: 166.4 -> 160; 31: 172.8 -> 160; 32: 179.2 -> 192; 33: 192. Epoch 32 starts
  at the first step whose first example is in it: ceil(32 x 1,281,167 / 4096) = ceil(10009.1)."""
  config = _ramp(base.get_config(), 160, 192, ramp_start_epochs=29.0, ramp_end_epochs=34.0)
  config.train.global_batch_size = 4096
  sizes = resolution.resolution(config, IMAGENET, total_steps=12511)
  assert sizes.segments() == [(0, 10010, 160), (10010, 12511, 192)]
  assert sizes.train_sizes == (160, 192) and sizes.eval_size == 192
  assert (sizes.size_at(10009), sizes.size_at(10010)) == (160, 192)
  # Pixels: (10010 x 160^2 + 2501 x 192^2) / (12511 x 192^2) = (10010 x 0.69444 + 2501) / 12511
  assert sizes.pixel_fraction() == pytest.approx(0.75553, abs=1e-5)


def test_a_ramp_in_steps_changes_size_at_steps_and_rounds_to_the_multiple():
  """8 -> 16 px over steps 3-9 in multiples of 4: step 4 is 8 + 8/6 = 9.3 -> 8; step 5: 10.7 ->
  12; steps 6, 7: 12, 13.3 -> 12; step 8: 14.7 -> 16; 9 on: 16."""
  config = _ramp(base.get_config(), 8, 16, ramp_start_steps=3, ramp_end_steps=9, multiple=4)
  sizes = resolution.resolution(config, 1000, total_steps=12)
  assert [sizes.size_at(step) for step in range(12)] == [8] * 5 + [12] * 3 + [16] * 4
  assert sizes.segment_starts == (0, 5, 8)


def test_without_a_ramp_every_step_has_the_image_size():
  config = base.get_config()
  config.data.eval_image_size = 256
  sizes = resolution.resolution(config, 1000, total_steps=7)
  assert sizes.segments() == [(0, 7, 224)] and sizes.eval_size == 256 and not sizes.ramped


@pytest.mark.parametrize('ramp, fragment', [
    (dict(start_image_size=300, ramp_start_steps=1, ramp_end_steps=2), 'must be between 1 and'),
    (dict(start_image_size=160, ramp_start_epochs=1.0, ramp_end_steps=2), 'in the same unit'),
    (dict(start_image_size=160, ramp_start_steps=5, ramp_end_steps=2), 'end at or after its'),
    (dict(start_image_size=160, ramp_start_steps=5, ramp_end_steps=2000), 'within training'),
    (dict(ramp_start_steps=5, ramp_end_steps=6), 'start_image_size is not'),
    (dict(start_image_size=160, ramp_start_steps=5), 'set data.progressive_resizing.ramp_end_epochs or'),
    (dict(start_image_size=160, ramp_start_steps=1, ramp_end_steps=2, multiple=0), 'multiple=0'),
])
def test_a_ramp_that_cannot_work_is_refused(ramp, fragment):
  config = base.get_config()
  config.data.progressive_resizing.update(ramp)
  with pytest.raises(UserError, match=fragment.replace('(', r'\(')):
    resolution.resolution(config, 1000, total_steps=100)


def _synthetic_config(num_steps=12):
  config = base.get_config()
  config.data.dataset = 'synthetic'
  config.model.name = 'resnet20'
  config.train.global_batch_size = 16
  config.train.num_epochs = num_steps * 16 / IMAGENET
  config.train.log_every_steps = 4
  config.optimizer.name = 'sgd'
  config.schedule.decay = 'constant'
  config.eval.every_epochs = 0.0
  config.checkpoint.every_steps = 4
  # 8 px for steps 0-5 (step 5: 8 + 8 x 2/6 = 10.7 -> 8), 16 px from step 6 (12 -> 16).
  return _ramp(config, 8, 16, ramp_start_steps=3, ramp_end_steps=9, multiple=8)


def test_describe_shows_the_sizes_per_range_and_the_predicted_flops():
  described = describe.describe(plan.plan(_synthetic_config()))
  for fragment in ['image size        2 train sizes (one compiled step each); 16 px eval',
                   '8 px: steps 0-5 (epochs 0.00-0.00)', '16 px: steps 6-11',
                   # (6 x 64 + 6 x 256) / (12 x 256) = 1920 / 3072
                   'train FLOPs predicted 0.625 x those of 16 px throughout (proportional to '
                   'pixels; 37.5% saved)']:
    assert fragment in described, fragment


def test_several_sizes_need_a_resizing_data_set_and_a_size_free_model(tiny_config):
  tiny_config.data.eval_image_size = 32
  with pytest.raises(UserError, match='fashion_mnist images are 28x28'):
    plan.plan(tiny_config)
  config = _synthetic_config()
  config.model.name = 'cnn'  # flattens before its dense layer
  with pytest.raises(UserError, match="model.name='cnn' has parameters whose shapes depend"):
    plan.plan(config)


def _params(workdir, step):
  path = os.path.join(Workdir(workdir).checkpoint_dir, str(step), 'default')
  return jax.tree.leaves(ocp.StandardCheckpointer().restore(path)['params'])


@pytest.mark.slow
def test_a_ramped_run_compiles_once_per_size_and_resumes_bitwise_mid_ramp(
    tmp_path, caplog, compilation_cache):
  config = _synthetic_config()
  # Both runs are in this process, whose persistent cache is the first folder it was given:
  # the worker's, so that the resumed run finds the programs the first one compiled.
  config.train.compilation_cache_dir = compilation_cache
  workdir = str(tmp_path / 'run')
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(config, workdir)
  compiled = [record.getMessage() for record in caplog.records
              if record.getMessage().startswith('train step compiled for')]
  assert [message.split(' px')[0].rsplit(' ', 1)[1] for message in compiled] == ['8', '16']
  records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  sizes = {r['step']: r['train/image_size'] for r in records if 'train/image_size' in r}
  # A record at the size change too, so each record's steps have one size.
  assert sizes == {4: 8, 6: 8, 8: 16, 12: 16}

  # Resume from step 4, inside the ramp and before the size changes.
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(workdir, resumed)
  for step in (8, 12):
    shutil.rmtree(os.path.join(Workdir(resumed).checkpoint_dir, str(step)))
  train.train_and_evaluate(config, resumed)
  for expected, got in zip(_params(workdir, 12), _params(resumed, 12), strict=True):
    np.testing.assert_array_equal(expected, got)
  resumed_records = [json.loads(line) for line in open(os.path.join(resumed, 'metrics.jsonl'))]
  assert {r['step']: r['train/image_size'] for r in resumed_records
          if 'train/image_size' in r} == sizes
