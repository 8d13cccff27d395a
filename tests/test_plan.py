"""The plan: every rule checked once, before anything compiles; what --describe shows."""

from unittest import mock

import pytest

from configs import base
from lbtrain import describe
from lbtrain import plan
from lbtrain.errors import UserError


@pytest.mark.parametrize('changes, fragment', [
    ({'train.global_batch_size': 260}, 'not divisible by the 8 devices'),
    ({'train.micro_batch_size': 5}, 'must divide the per-device batch 32'),
    ({'train.micro_batch_size': 16}, 'set --config.model.bn_group_size'),
    ({'train.micro_batch_size': 16, 'model.bn_group_size': 32}, 'per-device micro batch 16'),
    ({'model.bn_group_size': 100}, 'positive divisor of the global batch 256'),
    ({'model.bn_group_size': 0}, 'positive divisor of the global batch 256'),
    ({'train.on_nonfinite': 'ignore'}, 'stop, skip'),
    ({'train.noise_scale_every': 0}, 'noise_scale_every=0 must be a positive'),
    ({'eval.every_steps': 5}, 'eval.every_epochs=.* and eval.every_steps=5 are both set'),
    ({'checkpoint.every_steps': None}, 'set checkpoint.every_epochs or checkpoint.every_steps'),
    ({'checkpoint.every_steps': 0}, 'checkpoint.every_steps=0 must be positive.'),
    ({'train.log_every_steps': None, 'train.log_every_epochs': -1.0},
     'train.log_every_epochs=-1.0 must be positive'),
    ({'schedule.warmup_steps': 3}, 'schedule.warmup_epochs=0.0 and schedule.warmup_steps=3 are both'),
    ({'train.num_epochs': 0.0}, 'num_epochs must be positive'),
    ({'optimizer.base_lr': -0.1}, 'base_lr'),
    ({'schedule.warmup_epochs': 1.0}, 'warmup'),
    ({'schedule.decay': 'exponential'}, 'exponential'),
    ({'eval.target_accuracy': 75.9}, r'eval.target_accuracy=75.9 must be an accuracy in \(0, 1\]'),
    ({'eval.target_accuracy': 0.9, 'eval.every_epochs': 0.0}, 'needs evaluations to reach it'),
    ({'eval.first_steps': 13}, r'eval.first \(step 13\) must be within training'),
    ({'eval.first_steps': 2, 'eval.first_epochs': 0.1}, 'eval.first_epochs=0.1 and'),
    ({'train.stop_at_step': 0}, 'train.stop_at_step=0 must be a positive step'),
    ({'parallel.sharding': 'zero3'}, 'parallel.sharding=.zero3.: use one of replicated, update'),
    ({'parallel.strategy': 'pmap', 'parallel.sharding': 'update'},
     "parallel.sharding='update' needs parallel.strategy=jit"),
    ({'eval.train_accuracy_split': 'training[:100]'},
     r"no split 'training\[:100\]'.*--config.eval.train_accuracy_split="),
])
def test_plan_rejects_bad_recipes_before_compiling(tiny_config, changes, fragment):
  for path, value in changes.items():
    block, field = path.split('.')
    setattr(tiny_config[block], field, value)
  with pytest.raises(UserError, match=fragment):
    plan.plan(tiny_config)


def test_plan_derives_the_accumulation_layout(tiny_config):
  tiny_config.train.micro_batch_size = 8
  tiny_config.model.bn_group_size = 8
  run = plan.plan(tiny_config)
  assert (run.per_device_batch_size, run.micro_batch_size, run.accum_steps) == (32, 8, 4)
  assert run.total_steps == 12
  assert 'micro batch' in describe.describe(run) and '8 per device x 4' in describe.describe(run)


def test_describe_does_not_claim_a_measured_micro_batch_it_has_not_measured(tiny_config):
  tiny_config.train.micro_batch_size = 'auto'
  tiny_config.model.bn_group_size = 8
  line = next(l for l in describe.describe(plan.plan(tiny_config)).splitlines()
              if l.startswith('micro batch'))
  assert "'auto'" in line and 'when training starts' in line and 'x 1 accumulation' not in line
  measured = describe.describe(plan.plan(tiny_config, micro_batch_size=16))
  assert "16 per device x 2 accumulation step(s), chosen from the compiled step's memory" in (
      measured)




def test_describe_shows_the_training_slice_evaluated_and_the_stop(tiny_config):
  tiny_config.eval.train_accuracy_split = 'train[:5000]'
  tiny_config.train.stop_at_step = 7
  run = plan.plan(tiny_config)
  assert run.train_eval[1].num_eval_examples == 5000
  assert run.train_eval[0].eval_split == 'train[:5000]'
  assert tiny_config.data.eval_split == 'test[:2500]'  # the run's own eval split is untouched
  assert (run.last_step, run.total_steps) == (7, 12)
  assert run.evaluates_at(7) and run.evaluates_at(12) and not run.evaluates_at(5)
  text = describe.describe(run)
  assert "also 'train[:5000]' in eval mode (5,000 examples) (train_eval/*)" in text
  assert 'this attempt ends at step 7 of 12 (train.stop_at_step' in text


def test_every_interval_may_be_given_in_either_unit(tiny_config):
  """12 steps of 256 on 60,000 examples: 234.375 steps per epoch."""
  per_epoch = 60000 / 256
  tiny_config.eval.every_epochs, tiny_config.eval.every_steps = None, 3
  tiny_config.checkpoint.every_steps, tiny_config.checkpoint.every_epochs = None, 4 / per_epoch
  tiny_config.train.log_every_steps, tiny_config.train.log_every_epochs = None, 2 / per_epoch
  tiny_config.schedule.warmup_epochs, tiny_config.schedule.warmup_steps = None, 5
  run = plan.plan(tiny_config)
  assert [(p.every, p.first, p.in_examples) for p in (
      run.eval_every, run.checkpoint_every, run.log_every)] == [(3, 3, False), (4, 4, False),
                                                                 (2, 2, False)]
  assert run.schedule_info.warmup_steps == 5
  tiny_config.eval.every_steps = 0
  assert plan.plan(tiny_config).eval_every is None  # 0: no evaluation, in either unit


def test_step_boundaries_in_either_unit():
  config = base.get_config()
  config.schedule.decay = 'step'
  config.schedule.boundaries_epochs = (2, 4)
  per_epoch = 60000 / config.train.global_batch_size
  assert plan.recipe(config, 60000).schedule_info.milestones[1].step == round(2 * per_epoch)
  config.schedule.boundaries_steps = (100, 200)
  with pytest.raises(UserError, match='boundaries_epochs=.* and schedule.boundaries_steps'):
    plan.recipe(config, 60000)
  config.schedule.boundaries_epochs = ()
  steps = [m.step for m in plan.recipe(config, 60000).schedule_info.milestones]
  assert steps == [0, 100, 200, 586]


@pytest.mark.parametrize('name, expected', [
    ('lars', 'lars: momentum 0.9, nesterov False, trust_coefficient 0.001, eps 0 (default), '
             'weight_decay 0.0001, no gradient clipping'),
    ('nesterov', 'nesterov: momentum 0.9, weight_decay 0.0001, no gradient clipping'),
    ('lamb', 'lamb: b1 0.9, b2 0.999, eps 1e-06 (default), mu_dtype float32 (default), '
             'weight_decay 0.0001, no gradient clipping'),
    ('adam', 'adam: b1 0.9, b2 0.999, eps 1e-08 (default), mu_dtype float32 (default), '
             'no gradient clipping'),
    ('adamw', 'adamw: b1 0.9, b2 0.999, eps 1e-08 (default), mu_dtype float32 (default), '
              'weight_decay_form lr, weight_decay 0.0001, no gradient clipping'),
])
def test_describe_names_the_optimizer_and_its_hyperparameters(tiny_config, name, expected):
  tiny_config.optimizer.name = name
  tiny_config.optimizer.weight_decay = 0.0 if name == 'adam' else 1e-4
  described = describe.describe(plan.plan(tiny_config))
  assert f'optimizer         {expected}' in described.splitlines()
  tiny_config.optimizer.grad_clip_norm = 2.0
  assert 'gradient clipped to norm 2' in describe.describe(plan.plan(tiny_config))


def test_describe_shows_the_mlperf_recipe_as_published():
  from configs import resnet50_mlperf_3k  # pylint: disable=g-import-not-at-top
  described = describe.describe(plan.plan(resnet50_mlperf_3k.get_config(), describe_only=True))
  for fragment in ['global batch      3200 ', 'training          14813 steps (37 epochs)',
                   'peak lr           11 = base_lr', 'linear from 0 over 801 steps (2.00 epochs)',
                   'decay             poly power 2 to 0.0001', 'label smoothing   0.1',
                   'lars: momentum 0.9, nesterov False, trust_coefficient 0.001, eps 0, '
                   'weight_decay 5e-05', 'eval              at step 801, then every 1601 steps',
                   'stops at the first that reaches accuracy 0.759', 'per-device batch  400']:
    assert fragment in described, fragment


def test_describe_shows_the_ffcv_resolution_ramp():
  from configs import resnet50_ffcv_4k  # pylint: disable=g-import-not-at-top
  described = describe.describe(plan.plan(resnet50_ffcv_4k.get_config(), describe_only=True))
  for fragment in ['global batch      4096 ', 'training          12511 steps (40 epochs)',
                   'warmup            linear from 0.00017 over 626 steps (2.00 epochs)',
                   'decay             poly power 1 to 0',
                   'image size        2 train sizes (one compiled step each); 256 px eval',
                   '160 px: steps 0-10009 (epochs 0.00-32.00)',
                   '192 px: steps 10010-12510 (epochs 32.00-40.00)',
                   'train FLOPs predicted 0.756 x those of 192 px throughout',
                   'sgd: momentum 0.9, nesterov False, weight_decay 0.0001']:
    assert fragment in described, fragment


def test_a_noise_scale_from_devices_sharing_bn_statistics_is_warned_about(tiny_config):
  """Shared statistics couple the devices' gradients (B_simple measured 6x too high, or
  negative: docs/critical_batch.md); per-device statistics do not."""
  tiny_config.parallel.strategy = 'pmap'
  tiny_config.train.noise_scale_every = 1
  with mock.patch.object(plan.logging, 'warning') as warning:
    plan.plan(tiny_config)  # BN over the global batch of 256 on 8 devices
    tiny_config.model.bn_group_size = 32  # each device's own rows
    plan.plan(tiny_config)
  assert warning.call_count == 1
  assert 'shared between devices' in warning.call_args.args[0]
  assert warning.call_args.args[1:] == (None, 32)
