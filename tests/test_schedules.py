"""Schedules against numbers worked out by hand from the papers' recipes (RECIPES.md)."""

import math

import numpy as np
import pytest

from configs import base
from lbtrain import durations
from lbtrain import schedules
from lbtrain.errors import UserError

IMAGENET = 1_281_167


def _goyal():
  """Goyal et al. 2017 at 8k: 0.1 x 8192/256, 5 linear warmup epochs from 0.1, x0.1 at 30/60/80."""
  config = base.get_config()
  config.train.global_batch_size = 8192
  config.train.num_epochs = 90.0
  config.optimizer.base_lr = 0.1
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'linear'
  config.schedule.warmup_epochs = 5.0
  config.schedule.warmup = 'linear'
  config.schedule.warmup_init_lr = 0.1
  config.schedule.decay = 'step'
  config.schedule.boundaries_epochs = (30, 60, 80)
  config.schedule.decay_factor = 0.1
  return config


def _mlperf_lars():
  """MLPerf-style LARS at 32k: lr 29, 18 warmup epochs from 0, poly power 2 to 1e-4, 40 epochs."""
  config = base.get_config()
  config.train.global_batch_size = 32768
  config.train.num_epochs = 40.0
  config.optimizer.base_lr = 29.0
  config.optimizer.scaling = 'none'
  config.schedule.warmup_epochs = 18.0
  config.schedule.warmup_init_lr = 0.0
  config.schedule.decay = 'poly'
  config.schedule.power = 2.0
  config.schedule.end_lr = 1e-4
  return config


def _lrs(schedule, steps):
  return np.array([float(schedule(s)) for s in steps])


@pytest.mark.parametrize('epochs,per_epoch,expected', [
    (5.0, 1281167 / 8192, 782),  # 781.96
    (90.0, 1281167 / 8192, 14075),  # 14075.32
    (0.5, 5.0, 3),  # 2.5 rounds up, where round() would give 2
    (2.5, 1.0, 3),
    (0.0, 7.3, 0),
])
def test_to_steps_rounds_half_up(epochs, per_epoch, expected):
  assert durations.to_steps(epochs, per_epoch) == expected


def test_goyal_derived_numbers():
  _, info = schedules.create_schedule(_goyal(), IMAGENET)
  assert info.steps_per_epoch == pytest.approx(156.39245605, abs=1e-8)
  assert info.total_steps == 14075
  assert info.warmup_steps == 782
  assert info.warmup_epochs == pytest.approx(782 / 156.3924560546875)
  assert info.peak_lr == pytest.approx(3.2)
  assert info.peak_lr_derivation == '0.1 x 8192 / 256 = 3.2 (linear)'
  assert [(m.name, m.step) for m in info.milestones] == [
      ('start', 0), ('warmup end', 782), ('x0.1', 4692), ('x0.1', 9384), ('x0.1', 12511),
      ('end', 14075)]
  np.testing.assert_allclose([m.lr for m in info.milestones],
                             [0.1, 3.2, 0.32, 0.032, 0.0032, 0.0032], rtol=1e-6)
  assert info.milestones[2].epoch == pytest.approx(4692 / 156.3924560546875)


def test_goyal_lr_values():
  schedule, _ = schedules.create_schedule(_goyal(), IMAGENET)
  steps = [0, 391, 781, 782, 4691, 4692, 9383, 9384, 12510, 12511, 14074]
  expected = [0.1, 0.1 + 3.1 * 391 / 782, 0.1 + 3.1 * 781 / 782, 3.2, 3.2, 0.32, 0.32, 0.032,
              0.032, 0.0032, 0.0032]
  np.testing.assert_allclose(_lrs(schedule, steps), expected, rtol=1e-6)


def test_goyal_constant_warmup_ablation():
  config = _goyal()
  config.schedule.warmup = 'constant'
  schedule, _ = schedules.create_schedule(config, IMAGENET)
  np.testing.assert_allclose(_lrs(schedule, [0, 400, 781, 782]), [0.1, 0.1, 0.1, 3.2], rtol=1e-6)


def test_mlperf_lars_poly():
  schedule, info = schedules.create_schedule(_mlperf_lars(), IMAGENET)
  # 1281167 / 32768 = 39.0981 steps/epoch; 40 epochs = 1563.92 -> 1564; 18 epochs = 703.77 -> 704.
  assert (info.total_steps, info.warmup_steps) == (1564, 704)
  assert info.peak_lr_derivation == '29 = base_lr, whatever the batch (none)'
  decay_steps = 1564 - 704  # 860
  poly = lambda t: (29 - 1e-4) * (1 - t / decay_steps)**2 + 1e-4
  steps = [0, 352, 703, 704, 704 + 430, 1563, 1564, 2000]
  expected = [0.0, 14.5, 29 * 703 / 704, 29.0, poly(430), poly(859), 1e-4, 1e-4]
  assert poly(430) == pytest.approx(7.250075)
  np.testing.assert_allclose(_lrs(schedule, steps), expected, rtol=2e-5)


def test_sqrt_scaling():
  config = _goyal()
  config.optimizer.scaling = 'sqrt'
  _, info = schedules.create_schedule(config, IMAGENET)
  assert info.peak_lr == pytest.approx(0.1 * math.sqrt(32))
  assert info.peak_lr_derivation == '0.1 x sqrt(8192 / 256) = 0.565685 (sqrt)'


def test_cosine_after_warmup_reaches_end_lr():
  config = base.get_config()  # 1000 examples at batch 100: 10 steps/epoch, 100 steps in all.
  config.train.global_batch_size = 100
  config.train.num_epochs = 10.0
  config.optimizer.base_lr = 0.4
  config.optimizer.base_batch_size = 100
  config.schedule.warmup_epochs = 1.0
  config.schedule.decay = 'cosine'
  config.schedule.end_lr = 0.04
  schedule, info = schedules.create_schedule(config, 1000)
  cosine = lambda t: 0.04 + 0.36 * 0.5 * (1 + math.cos(math.pi * t / 90))
  np.testing.assert_allclose(_lrs(schedule, [0, 5, 10, 55, 99, 100, 150]),
                             [0.0, 0.2, 0.4, 0.22, cosine(89), 0.04, 0.04], rtol=1e-5)
  assert info.milestones[-1].lr == pytest.approx(0.04)


def test_durations_in_steps():
  config = _goyal()
  config.schedule.warmup_epochs, config.schedule.warmup_steps = None, 100
  config.schedule.boundaries_epochs = ()
  config.schedule.boundaries_steps = (5000, 10000)
  schedule, info = schedules.create_schedule(config, IMAGENET)
  assert info.warmup_steps == 100
  assert [m.step for m in info.milestones] == [0, 100, 5000, 10000, 14075]
  np.testing.assert_allclose(_lrs(schedule, [100, 4999, 5000, 10000]), [3.2, 3.2, 0.32, 0.032],
                             rtol=1e-6)


def test_no_warmup_and_constant_decay():
  config = _goyal()
  config.schedule.warmup_epochs = 0.0
  config.schedule.decay = 'constant'
  schedule, info = schedules.create_schedule(config, IMAGENET)
  assert [m.name for m in info.milestones] == ['start', 'end']
  np.testing.assert_allclose(_lrs(schedule, [0, 14074]), [3.2, 3.2], rtol=1e-6)


def test_describe_lists_the_recipe():
  _, info = schedules.create_schedule(_goyal(), IMAGENET)
  text = '\n'.join(schedules.describe_schedule(info))
  for expected in ['156.3925 steps/epoch', '14075 steps (90 epochs)', '0.1 x 8192 / 256 = 3.2',
                   'linear from 0.1 over 782 steps (5.00 epochs)',
                   'x0.1 at steps 4692, 9384, 12511', 'warmup end']:
    assert expected in text


@pytest.mark.parametrize('field,value,message', [
    ('schedule.decay', 'exponential', 'known: cosine, step, poly, constant'),
    ('schedule.warmup', 'exponential', 'known: linear, constant'),
    ('optimizer.scaling', 'cubic', 'known: linear, sqrt, none'),
    ('optimizer.base_lr', 0.0, 'base_lr must be > 0'),
    ('schedule.warmup_epochs', 90.0, 'warmup is 14075 steps but training is 14075 steps'),
    ('schedule.warmup_steps', -1, 'warmup must be >= 0'),
    ('train.num_epochs', 0.0, 'num_epochs must be positive'),
    ('schedule.boundaries_epochs', (60, 30), 'strictly increasing'),
    ('schedule.boundaries_epochs', (30, 95), 'before the end (14075 steps)'),
    ('schedule.boundaries_epochs', (2, 30), 'after warmup (782 steps)'),
    ('schedule.boundaries_epochs', (), "decay='step' needs boundaries"),
    ('schedule.decay_factor', 0.0, 'decay_factor must be > 0'),
])
def test_bad_config_raises_user_error(field, value, message):
  config = _goyal()
  block, name = field.split('.')
  if name == 'warmup_steps':
    config.schedule.warmup_epochs = None  # one unit at a time
  config[block][name] = value
  with pytest.raises(UserError, match=message.replace('(', r'\(').replace(')', r'\)')):
    schedules.create_schedule(config, IMAGENET)
