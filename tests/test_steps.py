"""The step's maths: accumulation equals one big batch; the hardware does not change training."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

from configs import base
from lbtrain import mixing
from lbtrain import models
from lbtrain import optim
from lbtrain import parallel
from lbtrain import steps

GLOBAL_BATCH = 64
NUM_STEPS = 3


class _MLP(nn.Module):
  """No BatchNorm: accumulation must then be exact whatever the micro-batch."""

  @nn.compact
  def __call__(self, x, train):
    del train
    x = nn.relu(nn.Dense(16, name='hidden')(x.reshape((x.shape[0], -1))))
    return nn.Dense(10, name='head')(x)


def _batches(num_steps=NUM_STEPS):
  rng = np.random.default_rng(0)
  return [{'image': rng.normal(size=(GLOBAL_BATCH, 8, 8, 1)).astype(np.float32),
           'label': rng.integers(0, 10, size=GLOBAL_BATCH).astype(np.int32)}
          for _ in range(num_steps)]


def _mesh(num_devices):
  return Mesh(np.array(jax.devices()[:num_devices]), (parallel.DATA_AXIS,))


def _cnn(bn_group_size, axis_name=None):
  model_config = base.get_config().model
  model_config.bn_group_size = bn_group_size
  return models.create_model(model_config, num_classes=10, axis_name=axis_name)


def _train(model, *, num_devices, accum_steps, batches=None, strategy='jit', unroll=False,
           mix=mixing.MixSettings()):
  """Trains NUM_STEPS steps of SGD + momentum + wd on a `num_devices` mesh; returns the state
  and the last step's metrics."""
  optimizer_config = base.get_config().optimizer
  optimizer_config.weight_decay = 1e-3
  optimizer_config.weight_decay_mask = '.*:on'
  schedule = optax.constant_schedule(0.1)
  mesh = _mesh(num_devices)
  init_fn = functools.partial(steps.init_state, model=model, image_shape=(8, 8, 1))
  abstract_params = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False))['params']
  tx = optim.create_optimizer(optimizer_config, schedule, abstract_params)
  state = jax.jit(functools.partial(init_fn, tx=tx),
                  out_shardings=parallel.replicated(mesh))(jax.random.key(0))
  step = parallel.distribute(
      functools.partial(steps.train_step, mesh=mesh, settings=steps.StepSettings(
          model=model, tx=tx, schedule=schedule, label_smoothing=0.1, accum_steps=accum_steps,
          unroll_micro_batches=unroll, mix=mix, num_classes=10)),
      mesh, strategy)
  for batch in batches or _batches():
    state, metrics = step(state, jax.device_put(batch, parallel.batch_sharded(mesh)))
    jax.block_until_ready(metrics)  # see parallel.one_program_at_a_time
  return jax.device_get(state), jax.device_get(metrics)


def _assert_same_training(a, b, rtol=1e-4, atol=1e-5):
  """Float round-off only: summation order differs with the device count and micro-batches."""
  (state_a, metrics_a), (state_b, metrics_b) = a, b
  for name in ('params', 'batch_stats'):
    leaves_a = jax.tree.leaves(getattr(state_a, name))
    leaves_b = jax.tree.leaves(getattr(state_b, name))
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
      np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
  for name in ('train/loss', 'train/grad_norm', 'train/accuracy'):
    np.testing.assert_allclose(metrics_a[name], metrics_b[name], rtol=rtol, atol=atol)


def test_training_moves_the_parameters():
  """Guards the tests below: equal results must not come from a step that does nothing."""
  model = _MLP()
  state, _ = _train(model, num_devices=8, accum_steps=1)
  initial = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)['params']
  moved = max(float(np.max(np.abs(a - b)))
              for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(initial)))
  assert moved > 1e-3


@pytest.mark.parametrize('accum_steps', [2, 4])
def test_accumulation_equals_one_batch_without_bn(accum_steps):
  model = _MLP()
  _assert_same_training(_train(model, num_devices=8, accum_steps=1),
                        _train(model, num_devices=8, accum_steps=accum_steps))


def test_accumulation_equals_one_batch_with_bn_groups_of_the_micro_batch():
  # 8 devices x 8 examples; 2 micro-batches of 4 per device; BN over groups of 4.
  model = _cnn(bn_group_size=4)
  _assert_same_training(_train(model, num_devices=8, accum_steps=1),
                        _train(model, num_devices=8, accum_steps=2))


def test_unrolled_accumulation_is_the_same_step():
  """What CPU runs (parallel.loops_run_slowly) against the scanned loop."""
  model = _cnn(bn_group_size=4)
  _assert_same_training(_train(model, num_devices=8, accum_steps=2, unroll=True),
                        _train(model, num_devices=8, accum_steps=2))


def test_accumulation_with_bn_differs_when_groups_differ():
  """The BN group is part of the recipe: global statistics are not those of groups."""
  state_global, _ = _train(_cnn(bn_group_size=None), num_devices=8, accum_steps=1)
  state_groups, _ = _train(_cnn(bn_group_size=4), num_devices=8, accum_steps=1)
  differences = [float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(state_global.params), jax.tree.leaves(state_groups.params))]
  assert max(differences) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('bn_group_size', [None, 4])
def test_one_device_and_eight_devices_train_the_same(bn_group_size):
  """Global BN: 1 vs 8 devices. Fixed groups: also 1 device accumulating 8 micro-batches."""
  model = _cnn(bn_group_size)
  eight = _train(model, num_devices=8, accum_steps=1)
  _assert_same_training(_train(model, num_devices=1, accum_steps=1), eight)
  if bn_group_size is not None:
    _assert_same_training(_train(model, num_devices=1, accum_steps=GLOBAL_BATCH // 4), eight)
    _assert_same_training(_train(model, num_devices=2, accum_steps=4), eight)


@pytest.mark.parametrize('bn_group_size, accum_steps', [(None, 1), (16, 1), (4, 2)],
                         ids=['global_bn', 'groups_span_two_devices', 'accumulation'])
def test_pmap_strategy_trains_like_jit(bn_group_size, accum_steps):
  """The per-device program (explicit pmean, BN sums psum-ed) against the global program.

  Groups of 16 over 8 examples per device straddle devices, so BN must combine two devices'
  sums; with accumulation each device splits its own rows as jit splits the global batch.
  """
  jit = _train(_cnn(bn_group_size), num_devices=8, accum_steps=accum_steps)
  pmap = _train(_cnn(bn_group_size, axis_name=parallel.DATA_AXIS), num_devices=8,
                accum_steps=accum_steps, strategy='pmap')
  _assert_same_training(pmap, jit)


def test_mixing_is_the_same_step_under_pmap_and_with_accumulation():
  """Mixup and CutMix mix the global batch (drawn from (seed, step)) before any split: the
  per-device program and micro-batches train as one global batch does, and differently from
  no mixing."""
  mix = mixing.MixSettings(mixup_alpha=0.4, cutmix_alpha=1.0)
  jit = _train(_MLP(), num_devices=8, accum_steps=1, mix=mix)
  _assert_same_training(_train(_MLP(), num_devices=8, accum_steps=1, strategy='pmap', mix=mix),
                        jit)
  _assert_same_training(_train(_MLP(), num_devices=8, accum_steps=2, mix=mix), jit)
  plain = _train(_MLP(), num_devices=8, accum_steps=1)
  assert abs(float(plain[1]['train/loss']) - float(jit[1]['train/loss'])) > 1e-3


def test_pmap_strategy_is_not_one_devices_training():
  """Guards the test above: without its pmean, the per-device program would return device 0's
  update, which is training on device 0's 8 rows alone, and that is far from the global one."""
  first_rows = [{name: rows[:GLOBAL_BATCH // 8] for name, rows in batch.items()}
                for batch in _batches()]
  device_zero_alone, _ = _train(_MLP(), num_devices=1, accum_steps=1, batches=first_rows)
  pmap, _ = _train(_MLP(), num_devices=8, accum_steps=1, strategy='pmap')
  assert max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(device_zero_alone.params), jax.tree.leaves(pmap.params))) > 1e-3


def test_pmap_eval_sums_every_device():
  mesh = _mesh(8)
  state, _ = _train(_cnn(None), num_devices=8, accum_steps=1)
  batch = dict(_batches(1)[0], mask=np.arange(GLOBAL_BATCH) < 50)  # padding on 2 devices
  sums = {}
  for strategy, eval_model in (('jit', _cnn(None)),
                               ('pmap', _cnn(None, axis_name=parallel.DATA_AXIS))):
    eval_step = parallel.distribute(functools.partial(steps.eval_step, model=eval_model), mesh,
                                    strategy)
    sums[strategy] = jax.device_get(eval_step(state, jax.device_put(batch,
                                                                    parallel.batch_sharded(mesh))))
  assert sums['pmap']['count'] == sums['jit']['count'] == 50
  assert sums['pmap']['correct'] == sums['jit']['correct']
  np.testing.assert_allclose(sums['pmap']['loss_sum'], sums['jit']['loss_sum'], rtol=1e-5)


def test_label_smoothing_changes_the_loss_as_defined():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  labels = jnp.array([0])
  smoothed = steps.cross_entropy(logits, labels, 0.3)
  log_probs = jax.nn.log_softmax(logits)[0]
  expected = -((1 - 0.3 + 0.1) * log_probs[0] + 0.1 * log_probs[1] + 0.1 * log_probs[2])
  np.testing.assert_allclose(smoothed[0], expected, rtol=1e-6)
  np.testing.assert_allclose(steps.cross_entropy(logits, labels, 0.0)[0], -log_probs[0],
                             rtol=1e-6)
