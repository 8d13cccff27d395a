"""Batch schedules: the segments a config gives, their lr, and the data stream they cut."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lbtrain import batch_schedule
from lbtrain import data
from lbtrain import describe
from lbtrain import plan
from lbtrain.errors import UserError

N = 1000  # training examples: 15.625 steps per epoch at batch 64


def _config(**schedule):
  config = base.get_config()
  config.train.global_batch_size = 64
  config.train.num_epochs = 3.0
  config.schedule.warmup_epochs = 0.0
  config.schedule.decay = 'constant'
  for name, value in schedule.items():
    config.train.batch_schedule[name] = value
  return config


def test_boundaries_in_epochs_become_steps_segment_by_segment():
  schedule = batch_schedule.from_config(
      _config(batch_sizes=(128, 512), boundaries_epochs=(1.0, 2.0)), N)
  # One epoch each: 15.625 steps at 64 -> 16, 7.8125 at 128 -> 8, 1.95 at 512 -> 2.
  assert schedule.segments() == [(0, 16, 64), (16, 24, 128), (24, 26, 512)]
  assert schedule.distinct == (64, 128, 512) and schedule.scheduled
  assert [schedule.batch_at(step) for step in (0, 15, 16, 23, 24, 25)] == [64, 64, 128, 128,
                                                                           512, 512]
  assert schedule.examples_before(16) == 1024 and schedule.examples_before(25) == 2560
  assert schedule.epoch_at(26) == pytest.approx(3.072)


def test_boundaries_in_steps_and_the_end_at_num_epochs():
  schedule = batch_schedule.from_config(
      _config(batch_sizes=(128, 512), boundaries_steps=(10, 20)), N)
  # 640 + 1280 examples before step 20; the 1,080 left of 3 epochs are 2.1 steps of 512.
  assert schedule.segments() == [(0, 10, 64), (10, 20, 128), (20, 22, 512)]
  fixed = batch_schedule.from_config(_config(), N)
  assert fixed.segments() == [(0, 47, 64)] and not fixed.scheduled  # 46.875 steps -> 47
  assert fixed.examples_before(30) == 30 * 64


@pytest.mark.parametrize('schedule, fragment', [
    (dict(batch_sizes=(128,)), '1 batch_sizes need as many boundaries'),
    (dict(boundaries_epochs=(1.0,)), 'batch_sizes is not'),
    (dict(batch_sizes=(128, 256), boundaries_epochs=(2.0, 1.0)), 'must increase'),
    (dict(batch_sizes=(128,), boundaries_epochs=(3.0,)), 'before train.num_epochs=3.0'),
    (dict(batch_sizes=(128,), boundaries_steps=(60,)), 'comes after train.num_epochs'),
    (dict(batch_sizes=(0,), boundaries_steps=(6,)), 'positive whole numbers'),
    (dict(batch_sizes=(128,), boundaries_steps=(6,), lr='decay'), "lr='decay'"),
    (dict(batch_sizes=(128,), boundaries_epochs=(1.0,), boundaries_steps=(6,)), 'both set'),
])
def test_a_schedule_that_cannot_work_is_one_user_error(schedule, fragment):
  with pytest.raises(UserError, match=fragment.replace('(', r'\(').replace(')', r'\)')):
    batch_schedule.from_config(_config(**schedule), N)


@pytest.mark.parametrize('rule, factors', [('scale', (1.0, 2.0, 8.0)), ('hold', (1.0,) * 3)])
def test_the_lr_is_the_first_batchs_schedule_at_the_examples_consumed(rule, factors):
  config = _config(batch_sizes=(128, 512), boundaries_epochs=(1.0, 2.0), lr=rule)
  config.schedule.decay = 'cosine'
  config.schedule.warmup_epochs = 0.5
  recipe = plan.recipe(config, N)
  fixed = plan.recipe(_config(), N).schedule  # no schedule: the config's own, untouched
  assert fixed(jnp.int32(5)) == 0.025
  config_fixed = config.copy_and_resolve_references()
  config_fixed.train.batch_schedule.batch_sizes = ()
  config_fixed.train.batch_schedule.boundaries_epochs = ()
  base_lr = plan.recipe(config_fixed, N).schedule  # the same recipe at batch 64 throughout
  assert recipe.batches.total_steps == 26
  for step in (0, 5, 15, 16, 20, 24, 25):
    segment = sum(step >= start for start in recipe.batches.starts) - 1
    reference = recipe.batches.examples_before(step) / 64
    np.testing.assert_allclose(recipe.schedule(jnp.int32(step)),
                               base_lr(reference) * factors[segment], rtol=1e-6)


def test_every_batch_of_a_schedule_must_fit_the_devices():
  config = _config(batch_sizes=(100,), boundaries_epochs=(1.0,))
  config.model.name = 'cnn'
  config.data.dataset = 'synthetic'
  with pytest.raises(UserError, match='batch_schedule, batch 100: .* not divisible by the 8'):
    plan.plan(config, describe_only=True)
  config.train.batch_schedule.batch_sizes = (128,)
  config.train.micro_batch_size = 4
  config.model.bn_group_size = 4
  with pytest.raises(UserError, match='micro_batch_size=4 is not supported'):
    plan.plan(config, describe_only=True)


def _global_images(data_config, info, schedule, start_step, num_steps, process_count):
  """The global batches of the steps, from every process's rows."""
  per_process = [list(data.train_batches(
      data_config, info, global_batch_size=64, seed=0, start_step=start_step,
      num_steps=num_steps, process_index=p, process_count=process_count, batches=schedule))
                 for p in range(process_count)]
  return [np.concatenate([rows[step]['image'] for rows in per_process])
          for step in range(num_steps)]


def test_a_scheduled_run_reads_the_fixed_batch_stream_in_order_on_any_process_count(
    fmnist_data_dir):
  config = _config(batch_sizes=(128, 512), boundaries_epochs=(1.0, 2.0))
  config.data.data_dir = fmnist_data_dir
  config.data.train_split = f'train[:{N}]'
  info = data.get_dataset_info(config.data)
  schedule = batch_schedule.from_config(config, N)
  fixed = np.concatenate(list(b['image'] for b in data.train_batches(
      config.data, info, global_batch_size=64, seed=0, start_step=0, num_steps=48)))
  for process_count in (1, 4):
    batches = _global_images(config.data, info, schedule, 0, schedule.total_steps,
                             process_count)
    assert [len(b) for b in batches] == [schedule.batch_at(s) for s in range(26)]
    np.testing.assert_array_equal(np.concatenate(batches), fixed[:3072])  # 1024 x 3 examples
  # Resumed mid-segment (step 20 of 16-23, at batch 128) on another process count.
  resumed = _global_images(config.data, info, schedule, 20, 6, 2)
  np.testing.assert_array_equal(np.concatenate(resumed), fixed[16 * 64 + 4 * 128:3072])


def test_describe_shows_each_segments_steps_epochs_and_lr(fmnist_data_dir):
  config = _config(batch_sizes=(512, 2048), boundaries_epochs=(1.0, 2.0))
  config.model.name = 'cnn'
  config.data.data_dir = fmnist_data_dir
  config.optimizer.base_lr = 0.1  # linear from 256: 0.025 at 64, 0.2 at 512, 0.8 at 2048
  text = describe.describe(plan.plan(config, describe_only=True))
  # 60,000 examples: 937.5 steps per epoch at 64 -> 938, 117.2 at 512 -> 117, 29.3 -> 29.
  assert '3 segments, lr scale (optimizer.scaling at each batch)' in text
  assert 'batch 64: steps 0-937 (epochs 0.00-1.00), lr 0.025 at its start' in text
  assert 'batch 512: steps 938-1054 (epochs 1.00-2.00), lr 0.2 at its start' in text
  assert 'batch 2048: steps 1055-1083 (epochs 2.00-2.99), lr 0.8 at its start' in text
  assert '1084 steps over the batch schedule' in text


def test_intervals_in_epochs_count_examples_where_the_batch_changes(fmnist_data_dir):
  config = _config(batch_sizes=(512, 2048), boundaries_epochs=(1.0, 2.0))
  config.model.name = 'cnn'
  config.data.data_dir = fmnist_data_dir
  config.eval.every_epochs = 0.5
  config.checkpoint.every_steps, config.checkpoint.every_epochs = None, 1.0
  run = plan.plan(config, describe_only=True)
  # 60,000 examples: 0.5 epoch is read by step 469 at 64 (30,016), epoch 1 by 938 (60,032),
  # 1.5 by 938 + 59 at 512 (90,240), 2 by 1055 + 1 at 2048 (121,984), 2.5 by 1055 + 15
  # (150,656); the end is step 1084. In steps of the first batch: 469, 938 and the end.
  assert [s for s in range(1, 1085) if run.evaluates_at(s)] == [
      469, 938, 997, 1056, 1070, 1084]
  assert [s for s in range(1, 1085) if run.checkpoints_at(s)] == [938, 1056]
  assert 'every 0.5 epochs (of examples read: the batch changes) and at the end' in (
      describe.describe(run))
  config.eval.first_steps = 100  # a first point in steps no longer measures the same thing
  with pytest.raises(UserError, match='eval.first_steps and eval.every_epochs where the batch '
                     'changes: give both in epochs or both in steps'):
    plan.plan(config, describe_only=True)
