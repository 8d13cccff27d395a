"""parallel.sharding: the three layouts train the same, hold what they say, and are what the
memory check compiles."""

import jax
import numpy as np
import pytest

import configs.resnet50_32k_lars
from lbtrain import build
from lbtrain import describe
from lbtrain import memory
from lbtrain import parallel
from lbtrain import plan
from lbtrain import sharding

NUM_STEPS = 5
NAN_STEP = 3  # this step's batch holds a NaN pixel: on_nonfinite='skip' must leave it out
# Float round-off: the reduce-scatter and the sharded norms sum in another order than the
# all-reduce; over NUM_STEPS steps the three layouts agree to this (relative, absolute). The
# noise scale, a ratio of a difference of squared norms, magnifies round-off tenfold.
RTOL, ATOL = 1e-5, 1e-6
NOISE_SCALE_RTOL = 1e-4


def _batches():
  rng = np.random.default_rng(0)
  batches = [{'image': rng.normal(size=(256, 28, 28, 1)).astype(np.float32),
              'label': rng.integers(0, 10, size=256).astype(np.int32)}
             for _ in range(NUM_STEPS)]
  batches[NAN_STEP]['image'][7, 3, 3, 0] = np.nan
  return batches


def _train(config, mode):
  """NUM_STEPS steps through `build` (init, the step, their layouts) in `mode`; returns the
  initial and final state (on the host), the per-step metrics and the final state's layout."""
  config.parallel.sharding = mode
  run = plan.plan(config)
  mesh = parallel.create_mesh()
  compiled = build.build(run, mesh)
  state = compiled.init(jax.random.key(0))
  initial = jax.device_get(state.params)
  history = []
  for batch in _batches():
    state, metrics = compiled.train_step(state, parallel.host_local_to_global(batch, mesh))
    history.append(jax.device_get(metrics))  # also waits: parallel.one_program_at_a_time
  layout = jax.tree.map(lambda x: x.sharding, state)
  return initial, jax.device_get(state), history, layout


def _spec(sharding_):
  return tuple(sharding_.spec)


@pytest.mark.parametrize('optimizer, lr', [
    ('lars', 0.1),
    pytest.param('lamb', 0.002, marks=pytest.mark.slow),
    pytest.param('nesterov', 0.05, marks=pytest.mark.slow)])
def test_the_three_layouts_train_the_same(tiny_config, optimizer, lr):
  """LARS/LAMB trust ratios and weight decay under their masks, global-norm clipping, BN
  groups, two accumulated micro-batches, the noise scale and a skipped NaN step, in each
  layout on 8 devices: losses, metrics and the whole final state agree to RTOL/ATOL."""
  config = tiny_config
  config.optimizer.name = optimizer
  config.optimizer.base_lr = lr
  config.optimizer.weight_decay = 1e-4
  config.optimizer.grad_clip_norm = 1.0
  config.train.micro_batch_size = 16
  config.model.bn_group_size = 16
  config.train.noise_scale_every = 1
  config.train.on_nonfinite = 'skip'
  initial, reference, reference_history, layout = _train(config, 'replicated')
  assert all(_spec(s) == () for s in jax.tree.leaves(layout))
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(initial), jax.tree.leaves(reference.params)))
  assert moved > 1e-3  # equality below is not that of steps that do nothing
  assert [int(m['train/nonfinite']) for m in reference_history] == [0, 0, 0, 1, 0]
  for mode in ('update', 'fsdp'):
    _, state, history, layout = _train(config, mode)
    # conv2's kernel (3, 3, 16, 32) splits its output channels; the head's bias (10,) cannot.
    split = (None, None, None, 'data')
    moments = [_spec(s) for x, s in zip(jax.tree.leaves(state.opt_state),
                                        jax.tree.leaves(layout.opt_state)) if x.shape == (3, 3, 16, 32)]
    assert moments and all(spec == split for spec in moments)
    assert _spec(layout.params['conv2']['kernel']) == (split if mode == 'fsdp' else ())
    assert _spec(layout.params['head']['bias']) == ()
    for expected, got in zip(reference_history, history, strict=True):
      for name in ('train/loss', 'train/grad_norm', 'train/noise_scale', 'train/nonfinite'):
        rtol = NOISE_SCALE_RTOL if name == 'train/noise_scale' else RTOL
        np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=ATOL,
                                   err_msg=f'{mode}: {name}')
    for part in ('params', 'batch_stats', 'opt_state', 'noise_scale'):
      for expected, got in zip(jax.tree.leaves(getattr(reference, part)),
                               jax.tree.leaves(getattr(state, part)), strict=True):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL,
                                   err_msg=f'{mode}: {part}')


def test_the_memory_check_compiles_the_chosen_layout(tiny_config):
  """What `check_memory` and micro_batch_size='auto' read: the compiled step's arguments shrink
  by exactly the optimizer state (update) and the parameters too (fsdp) that the layouts
  shard, as `sharding.per_device_bytes` (what --describe shows) predicts."""
  tiny_config.optimizer.name = 'lars'
  mesh = parallel.create_mesh()
  arguments, peak, predicted = {}, {}, None
  for mode in sharding.MODES:
    tiny_config.parallel.sharding = mode
    run = plan.plan(tiny_config)
    compiled = build.build(run, mesh)
    step = compiled.compile_train_step(run, mesh)
    arguments[mode] = step.memory_analysis().argument_size_in_bytes
    peak[mode] = memory.step_bytes(step)
    predicted = sharding.per_device_bytes(compiled.abstract_state, run.num_devices)
  state_bytes = {mode: parts['params'] + parts['optimizer state']
                 for mode, parts in predicted.items()}
  assert (state_bytes['replicated'] - state_bytes['update'] ==
          arguments['replicated'] - arguments['update'] > 0)
  assert (state_bytes['update'] - state_bytes['fsdp'] ==
          arguments['update'] - arguments['fsdp'] > 0)
  assert peak['update'] < peak['replicated']


def test_describe_shows_the_bytes_per_device_of_each_layout():
  """resnet50_32k_lars on 8 devices: LARS's one momentum per parameter, 1/8 of it per device
  under 'update' (every ResNet-50 tensor has a dimension 8 divides), the parameters too under
  'fsdp'."""
  config = configs.resnet50_32k_lars.get_config()
  config.parallel.sharding = 'update'
  text = describe.describe(plan.plan(config, describe_only=True))
  assert 'sharding          update: optimizer state and weight update sharded' in text
  assert ('  replicated      params 97.5 MiB, optimizer state 97.5 MiB, gradient 97.5 MiB per '
          'device\n') in text
  assert ('  update          params 97.5 MiB, optimizer state 12.2 MiB, gradient 12.2 MiB per '
          'device (this run)') in text
  assert '  fsdp            params 12.2 MiB, optimizer state 12.2 MiB' in text
  assert '  kept whole      0 parameter tensors' in text


def test_the_rule_splits_the_largest_divisible_dimension():
  assert sharding.split_dimension((3, 3, 64, 256), 8) == 3
  assert sharding.split_dimension((1, 1, 256, 64), 8) == 2
  assert sharding.split_dimension((3, 3, 64, 64), 8) == 3  # a tie: the last
  assert sharding.split_dimension((2048, 1000), 8) == 0
  assert sharding.split_dimension((1000,), 16) is None  # 1,000 = 8 x 125, not 16 x anything
  assert sharding.split_dimension((), 8) is None
  assert sharding.split_dimension((64,), 1) is None
