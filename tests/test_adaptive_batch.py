"""The adaptive batch: its decision rule, its decision points, the schedule its decisions
extend, and the settings it refuses (the run itself: tests/test_resume.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lbtrain import adaptive_batch
from lbtrain import batch_schedule
from lbtrain import describe
from lbtrain import durations
from lbtrain import plan
from lbtrain.errors import UserError

N = 1000  # training examples


def _config(**block):
  config = base.get_config()
  config.model.name = 'cnn'
  config.data.dataset = 'synthetic'
  config.parallel.strategy = 'pmap'
  config.model.bn_group_size = 16
  config.train.global_batch_size = 128
  config.train.num_epochs = 3.0
  config.train.noise_scale_every = 1
  config.schedule.warmup_epochs = 0.0
  config.schedule.decay = 'constant'
  settings = dict(min_batch_size=128, max_batch_size=1024, every_steps=5)
  settings.update(block)
  for name, value in settings.items():
    config.train.adaptive_batch[name] = value
  return config


def test_the_decision_is_the_allowed_batch_nearest_b_simple_in_log():
  rule = adaptive_batch.from_config(_config(), N, 8)
  assert rule.allowed == (128, 256, 512, 1024)
  # 256 and 512 are sqrt(2) apart in log around 362: 360 -> 256, 363 -> 512.
  assert [rule.choose(value, 128) for value in (1, 180, 360, 363, 900, 5e4)] == [
      128, 128, 256, 512, 1024, 1024]
  # No positive estimate (before the first update, or |G|^2 estimated <= 0): no change.
  assert [rule.choose(value, 256) for value in (0.0, -300.0, float('nan'))] == [256] * 3
  twice = adaptive_batch.from_config(_config(noise_scale_multiple=2.0), N, 8)
  assert [twice.choose(value, 128) for value in (90, 180, 182, 5e4)] == [128, 256, 512, 1024]


def test_decision_points_in_steps_and_in_epochs():
  steps = adaptive_batch.from_config(_config(first_steps=10), N, 8)
  assert [done for done in range(1, 30) if steps.points.due(done, None)] == [10, 15, 20, 25]
  # Epochs are examples: first after 0.5 epoch (500), then every 0.25 (250): due after the
  # step whose examples reach a point, however large the batch.
  epochs = adaptive_batch.from_config(
      _config(every_steps=None, every_epochs=0.25, first_epochs=0.5), N, 8)
  assert epochs.points == durations.Recurring(every=250, first=500, in_examples=True)
  reads = [(0, 128), (128, 256), (256, 384), (384, 512), (512, 1024), (1024, 1280)]
  assert [epochs.points.due(1, dict(zip((0, 1), read)).get) for read in reads] == [
      False, False, False, True, True, True]


def test_decisions_extend_the_schedule_and_a_resume_continues_it():
  end = 3.0 * N
  start = batch_schedule.BatchSchedule((0,), (128,), 23, N)  # 23.4 steps of 128 -> 23
  schedule = start.decided(10, 512, end)  # 1,280 read; 1,720 left: 3.36 -> 3 steps of 512
  assert schedule.segments() == [(0, 10, 128), (10, 13, 512)]
  assert schedule.examples_before(12) == 1280 + 2 * 512
  assert schedule.decided(11, 512, end) == schedule  # the same batch: nothing changes
  back = schedule.decided(11, 256, end)  # 1,792 read; 1,208 left: 4.7 -> 5 steps of 256
  assert back.segments() == [(0, 10, 128), (10, 11, 512), (11, 16, 256)]
  # A run resumed at step 11 knows only what the state holds: examples read, its batch.
  resumed = batch_schedule.BatchSchedule.continued(11, 1792, 256, N, end)
  assert resumed.segments() == [(11, 16, 256)]
  assert [resumed.examples_before(s) for s in range(11, 16)] == [
      back.examples_before(s) for s in range(11, 16)]
  assert resumed.epoch_at(16) == back.epoch_at(16) == pytest.approx(3.072)
  # Under half a batch left: training ends where the decision is made.
  assert start.decided(22, 1024, end).total_steps == 22


def test_the_lr_follows_the_scaling_rule_at_the_examples_consumed():
  def config_of(**block):
    config = _config(**block)
    config.optimizer.base_lr, config.optimizer.scaling = 0.1, 'sqrt'
    config.schedule.decay = 'cosine'
    return config

  recipe = plan.recipe(config_of(), N)
  # The same recipe at batch 128 throughout: its schedule is the config's own, by step.
  base_schedule = plan.recipe(config_of(min_batch_size=None, max_batch_size=None), N).schedule
  assert recipe.batches.total_steps == 23 and base_schedule(23) == 0.0
  for examples, batch in ((0, 128), (640, 128), (640, 512), (2000, 1024)):
    np.testing.assert_allclose(
        recipe.lr_rule(jnp.int32(examples), batch),
        base_schedule(examples / 128) * np.sqrt(batch / 128), rtol=1e-6)


@pytest.mark.parametrize('change, fragment', [
    (dict(min_batch_size=1024, max_batch_size=128), 'must both be powers of 2 with min <= max'),
    (dict(min_batch_size=96), 'must both be powers of 2'),
    (dict(max_batch_size=None), 'must both be powers of 2'),
    (dict(min_batch_size=4), 'min_batch_size=4 is not divisible by the 8 devices'),
    (dict(every_steps=None), 'set train.adaptive_batch.every_epochs or every_steps'),
    (dict(every_epochs=0.1), 'every_epochs=0.1 and train.adaptive_batch.every_steps=5 are both'),
    (dict(first_epochs=0.5), 'give both in epochs or both in steps'),
    (dict(every_steps=0), 'every_steps=0 must be positive'),
    (dict(noise_scale_multiple=0.0), 'noise_scale_multiple=0.0 must be positive'),
    (dict(noise_scale_every=None), 'set --config.train.noise_scale_every'),
    (dict(batch_sizes=(512,), boundaries_steps=(4,)), 'train.batch_schedule both set the batch'),
    (dict(micro_batch_size=16), 'adaptive_batch with train.micro_batch_size=16 is not supported'),
    (dict(strategy='jit'), 'noise_scale_every needs gradients of small batches'),
    (dict(start_image_size=16), 'progressive_resizing and train.adaptive_batch together'),
])
def test_settings_that_cannot_work_are_one_user_error(change, fragment):
  config = _config()
  for name, value in change.items():
    if name in ('noise_scale_every', 'micro_batch_size'):
      config.train[name] = value
    elif name in ('batch_sizes', 'boundaries_steps'):
      config.train.batch_schedule[name] = value
    elif name == 'strategy':
      config.parallel.strategy = value
    elif name == 'start_image_size':
      config.data.progressive_resizing.start_image_size = value
      config.data.progressive_resizing.ramp_start_epochs = 0.0
      config.data.progressive_resizing.ramp_end_epochs = 1.0
    else:
      config.train.adaptive_batch[name] = value
  with pytest.raises(UserError, match=fragment.replace('(', r'\(').replace(')', r'\)')):
    plan.plan(config, describe_only=True)


def test_describe_shows_the_allowed_batches_the_decisions_and_the_lr_rule():
  config = _config(every_steps=None, every_epochs=0.5)
  run = plan.plan(config, describe_only=True)
  assert run.batch_sizes == (128, 256, 512, 1024) and run.batch_changes
  text = describe.describe(run)
  assert ('adaptive batch    128, 256, 512, 1024: the one nearest B_simple in log, decided '
          'every 0.5 epochs (of examples read: the batch changes); lr by optimizer.scaling '
          '(linear) at each batch') in text
  assert 'if the batch stays 128; ends at 3 epochs of examples at the batches decided' in text
