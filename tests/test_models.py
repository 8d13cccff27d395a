"""Tests for lbtrain.models: BatchNorm statistics (global, grouped, sharded) and the networks."""

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from configs import base
from lbtrain.errors import UserError
from lbtrain.models import batch_norm
from lbtrain.models import create_model
from lbtrain.models import resnet

MOMENTUM = 0.9
EPSILON = 1e-5


def _model_config(**overrides):
  config = base.get_config().model
  config.update(overrides)
  return config


def _random_bn_variables(features, seed=0):
  """Non-trivial scale, bias and running stats, so that every term of the formula is tested."""
  rng = np.random.default_rng(seed)
  return {
      'params': {'scale': jnp.asarray(rng.uniform(0.5, 2.0, features), jnp.float32),
                 'bias': jnp.asarray(rng.normal(size=features), jnp.float32)},
      'batch_stats': {'mean': jnp.asarray(rng.normal(size=features), jnp.float32),
                      'var': jnp.asarray(rng.uniform(0.5, 2.0, features), jnp.float32)},
  }


def _numpy_batch_norm(x, variables):
  """Textbook BN in float64: biased variance over every axis but the last."""
  x = np.asarray(x, np.float64)
  axes = tuple(range(x.ndim - 1))
  mean, var = x.mean(axis=axes), x.var(axis=axes)
  params, stats = variables['params'], variables['batch_stats']
  y = (x - mean) / np.sqrt(var + EPSILON) * params['scale'] + params['bias']
  new_mean = MOMENTUM * np.asarray(stats['mean']) + (1 - MOMENTUM) * mean
  new_var = MOMENTUM * np.asarray(stats['var']) + (1 - MOMENTUM) * var
  return y, new_mean, new_var


def _train_apply(module, variables, x):
  y, mutated = module.apply(variables, x, train=True, mutable=['batch_stats'])
  return y, mutated['batch_stats']


def _spread_batch(shape, seed=0):
  """A batch whose consecutive pairs of examples have wildly different means and spreads.

  With 8 devices holding 2 examples each, a mean of per-device means or per-device variances
  would be far from the global statistics.
  """
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape)
  block = np.arange(shape[0])[:, None, None, None] // 2
  return (x * (1 + 3 * block) + 50.0 * block).astype(np.float32)


def test_batch_norm_matches_numpy_and_flax():
  x = np.random.default_rng(1).normal(3.0, 2.0, size=(6, 5, 4, 3)).astype(np.float32)
  variables = _random_bn_variables(3)
  bn = batch_norm.BatchNorm(momentum=MOMENTUM, epsilon=EPSILON)

  y, stats = _train_apply(bn, variables, x)

  want_y, want_mean, want_var = _numpy_batch_norm(x, variables)
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(stats['mean'], want_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats['var'], want_var, rtol=1e-5, atol=1e-6)
  assert y.dtype == stats['mean'].dtype == stats['var'].dtype == jnp.float32
  flax_bn = nn.BatchNorm(use_running_average=False, momentum=MOMENTUM, epsilon=EPSILON)
  flax_y, flax_mutated = flax_bn.apply(variables, x, mutable=['batch_stats'])
  np.testing.assert_allclose(y, flax_y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(stats['mean'], flax_mutated['batch_stats']['mean'], rtol=1e-6)
  np.testing.assert_allclose(stats['var'], flax_mutated['batch_stats']['var'], rtol=1e-5)


def test_batch_norm_eval_uses_running_statistics():
  x = np.random.default_rng(2).normal(size=(4, 2, 2, 3)).astype(np.float32)
  variables = _random_bn_variables(3)
  stats = variables['batch_stats']

  y = batch_norm.BatchNorm(epsilon=EPSILON, group_size=3).apply(variables, x, train=False)

  want = ((x - np.asarray(stats['mean'])) / np.sqrt(np.asarray(stats['var']) + EPSILON) *
          variables['params']['scale'] + variables['params']['bias'])
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_batch_norm_init_leaves_running_statistics_alone():
  variables = batch_norm.BatchNorm().init(jax.random.key(0), jnp.full((2, 3), 7.0), train=True)

  np.testing.assert_array_equal(variables['batch_stats']['mean'], np.zeros(3))
  np.testing.assert_array_equal(variables['batch_stats']['var'], np.ones(3))


def test_group_batch_norm_equals_whole_batch_norm_per_group():
  x = _spread_batch((12, 3, 3, 2))
  variables = _random_bn_variables(2)
  whole = batch_norm.BatchNorm(momentum=MOMENTUM, epsilon=EPSILON)

  y, stats = _train_apply(batch_norm.BatchNorm(momentum=MOMENTUM, epsilon=EPSILON, group_size=4),
                          variables, x)

  per_group = [_train_apply(whole, variables, x[i:i + 4]) for i in range(0, 12, 4)]
  np.testing.assert_allclose(y, np.concatenate([g[0] for g in per_group]), rtol=1e-5, atol=1e-5)
  # The update is linear, so averaging the per-group updates averages the group statistics.
  for name in ('mean', 'var'):
    np.testing.assert_allclose(stats[name], np.mean([g[1][name] for g in per_group], axis=0),
                               rtol=1e-5)


def test_group_size_must_divide_the_batch():
  bn = batch_norm.BatchNorm(group_size=4)
  variables = bn.init(jax.random.key(0), jnp.ones((4, 3)), train=False)

  with pytest.raises(ValueError, match='group_size=4 must divide the global batch.*6 examples'):
    _train_apply(bn, variables, jnp.ones((6, 3)))


@pytest.mark.parametrize('group_size', [None, 4])
def test_statistics_are_global_under_sharded_jit(group_size):
  mesh = Mesh(np.array(jax.devices()), ('data',))
  x = _spread_batch((16, 2, 2, 3))
  variables = _random_bn_variables(3)
  bn = batch_norm.BatchNorm(momentum=MOMENTUM, epsilon=EPSILON, group_size=group_size)
  apply = jax.jit(lambda v, x: _train_apply(bn, v, x))

  sharded_x = jax.device_put(x, NamedSharding(mesh, P('data')))
  sharded_y, sharded_stats = apply(variables, sharded_x)

  assert len(sharded_x.sharding.device_set) == 8
  y, stats = apply(variables, x)
  np.testing.assert_allclose(sharded_y, y, rtol=1e-5, atol=1e-5)
  for name in ('mean', 'var'):
    np.testing.assert_allclose(sharded_stats[name], stats[name], rtol=1e-5)
  if group_size is None:
    want_y, want_mean, _ = _numpy_batch_norm(x, variables)
    np.testing.assert_allclose(sharded_y, want_y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sharded_stats['mean'], want_mean, rtol=1e-5)


@pytest.mark.parametrize('group_size', [None, 1, 4])
def test_mapped_axis_name_matches_whole_batch(group_size):
  """Under shard_map each device sees 2 examples; groups of 4 straddle two devices."""
  mesh = Mesh(np.array(jax.devices()), ('data',))
  x = _spread_batch((16, 2, 2, 3))
  variables = _random_bn_variables(3)
  kwargs = dict(momentum=MOMENTUM, epsilon=EPSILON, group_size=group_size)
  mapped_bn = batch_norm.BatchNorm(axis_name='data', **kwargs)
  mapped = jax.jit(jax.shard_map(lambda v, x: _train_apply(mapped_bn, v, x), mesh=mesh,
                                 in_specs=(P(), P('data')), out_specs=(P('data'), P())))

  mapped_y, mapped_stats = mapped(variables, x)

  y, stats = _train_apply(batch_norm.BatchNorm(**kwargs), variables, x)
  np.testing.assert_allclose(mapped_y, y, rtol=1e-5, atol=1e-5)
  for name in ('mean', 'var'):
    np.testing.assert_allclose(mapped_stats[name], stats[name], rtol=1e-5)


def _large_mean_batch(shape, seed=0):
  """Channel 0 has mean 1000 and spread 1, so E[x^2] - E[x]^2 in float32 cancels to noise;
  the other channels are ordinary."""
  x = np.random.default_rng(seed).normal(size=shape)
  x[..., 0] += 1000.0
  return x.astype(np.float32)


@pytest.mark.parametrize('group_size', [None, 4])
@pytest.mark.parametrize('mapped', [False, True])
def test_a_channel_whose_mean_dwarfs_its_spread_keeps_its_variance(group_size, mapped):
  """Under shard_map each device sees 2 examples; groups of 4 straddle two devices."""
  x = _large_mean_batch((16, 3, 3, 2))
  variables = _random_bn_variables(2)
  # Running statistics of zero: the update is then (1 - momentum) times the batch's statistics.
  variables['batch_stats'] = {'mean': jnp.zeros(2), 'var': jnp.zeros(2)}
  kwargs = dict(momentum=MOMENTUM, epsilon=EPSILON, group_size=group_size)
  if mapped:
    mesh = Mesh(np.array(jax.devices()), ('data',))
    bn = batch_norm.BatchNorm(axis_name='data', **kwargs)
    apply = jax.jit(jax.shard_map(lambda v, x: _train_apply(bn, v, x), mesh=mesh,
                                  in_specs=(P(), P('data')), out_specs=(P('data'), P())))
  else:
    bn = batch_norm.BatchNorm(**kwargs)
    apply = jax.jit(lambda v, x: _train_apply(bn, v, x))

  y, stats = apply(variables, x)

  groups = np.asarray(x, np.float64).reshape((-1, group_size or 16) + x.shape[1:])
  want_var = groups.var(axis=(1, 2, 3)).mean(axis=0)
  np.testing.assert_allclose(stats['var'] / (1 - MOMENTUM), want_var, rtol=1e-5)
  np.testing.assert_allclose(stats['mean'] / (1 - MOMENTUM),
                             groups.mean(axis=(1, 2, 3)).mean(axis=0), rtol=1e-6, atol=1e-6)
  # What the network sees: each group's normalised channel 0 has mean bias and spread scale.
  y0 = np.asarray(y, np.float64)[..., 0].reshape(groups.shape[:2] + (-1,))
  params = variables['params']
  np.testing.assert_allclose(y0.mean(axis=(1, 2)), params['bias'][0], atol=1e-3)
  np.testing.assert_allclose(y0.std(axis=(1, 2)), params['scale'][0], rtol=1e-4)


def _textbook_batch_norm(params, x, group_size):
  """Two-pass BN per group of consecutive examples, in plain jnp, for autodiff to differentiate."""
  groups = x.reshape((-1, group_size) + x.shape[1:])
  axes = tuple(range(1, groups.ndim - 1))
  mean = groups.mean(axis=axes, keepdims=True)
  var = jnp.square(groups - mean).mean(axis=axes, keepdims=True)
  y = (groups - mean) * jax.lax.rsqrt(var + EPSILON) * params['scale'] + params['bias']
  return y.reshape(x.shape)


@pytest.mark.parametrize('shape', [(16, 5, 4, 3), (16, 3)])
@pytest.mark.parametrize('group_size', [None, 4])
@pytest.mark.parametrize('mapped', [False, True])
def test_batch_norm_gradients_are_the_textbook_formulas(shape, group_size, mapped):
  """BN's hand-written backward pass against autodiff of the two-pass formula; mapped, under
  shard_map with its default type checks, where groups of 4 straddle devices."""
  rng = np.random.default_rng(3)
  x = (rng.normal(size=shape) * 2 + 3).astype(np.float32)
  cotangent = rng.normal(size=shape).astype(np.float32)
  variables = _random_bn_variables(shape[-1])
  loss = lambda y, cotangent: jnp.sum(jnp.sin(y) * cotangent)

  bn = batch_norm.BatchNorm(epsilon=EPSILON, group_size=group_size,
                            axis_name='data' if mapped else None)

  def bn_loss(params, x, cotangent):
    y, _ = _train_apply(bn, {**variables, 'params': params}, x)
    value = loss(y, cotangent)
    return jax.lax.psum(value, 'data') if mapped else value

  grad = jax.grad(bn_loss, argnums=(0, 1))
  if mapped:
    mesh = Mesh(np.array(jax.devices()), ('data',))
    grad = jax.shard_map(grad, mesh=mesh, in_specs=(P(), P('data'), P('data')),
                         out_specs=(P(), P('data')))
  params_grad, x_grad = jax.jit(grad)(variables['params'], x, cotangent)

  want_params_grad, want_x_grad = jax.grad(
      lambda p, x: loss(_textbook_batch_norm(p, x, group_size or shape[0]), cotangent),
      argnums=(0, 1))(variables['params'], x)
  np.testing.assert_allclose(x_grad, want_x_grad, rtol=1e-4, atol=1e-5)
  for name in ('scale', 'bias'):
    np.testing.assert_allclose(params_grad[name], want_params_grad[name], rtol=1e-4, atol=1e-5)


def test_batch_norm_bfloat16_output_float32_statistics():
  bn = batch_norm.BatchNorm(dtype=jnp.bfloat16)
  x = jnp.asarray(_spread_batch((4, 2, 2, 3)), jnp.bfloat16)
  variables = bn.init(jax.random.key(0), x, train=False)

  y, stats = _train_apply(bn, variables, x)

  assert y.dtype == jnp.bfloat16
  assert all(leaf.dtype == jnp.float32
             for leaf in jax.tree.leaves((variables['params'], stats)))


_INPUTS = {'cnn': (28, 28, 1), 'resnet20': (28, 28, 1)}
_ALL_MODELS = ['cnn', 'resnet20', 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152']


def _abstract_variables(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def _num_params(params):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize('name', _ALL_MODELS)
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_model_shapes_and_dtypes(name, dtype):
  model = create_model(_model_config(name=name, dtype=dtype), num_classes=7)
  shape = (2,) + _INPUTS.get(name, (64, 64, 3))
  variables = _abstract_variables(model, shape)

  logits, mutated = jax.eval_shape(
      lambda v: model.apply(v, jnp.zeros(shape), train=True, mutable=['batch_stats']), variables)

  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  assert set(variables) == {'params', 'batch_stats'}
  assert jax.tree.structure(mutated['batch_stats']) == jax.tree.structure(
      variables['batch_stats'])
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


@pytest.mark.parametrize('name,num_classes,want', [
    ('resnet50', 1000, 25_557_032),
    ('resnet18', 1000, 11_689_512),
    ('resnet34', 1000, 21_797_672),
    ('resnet101', 1000, 44_549_160),
    ('resnet152', 1000, 60_192_808),
    ('resnet20', 10, 269_722),  # He et al. 2016: 0.27M on CIFAR-10
])
def test_parameter_counts(name, num_classes, want):
  model = create_model(_model_config(name=name), num_classes=num_classes)

  variables = _abstract_variables(model, (1, 32, 32, 3))

  assert _num_params(variables['params']) == want


def test_parameter_names_fit_the_mask_conventions():
  model = create_model(_model_config(name='resnet50'), num_classes=1000)
  params = _abstract_variables(model, (1, 32, 32, 3))['params']

  paths = {'/'.join(path): leaf for path, leaf in traverse_util.flatten_dict(params).items()}

  for path in ('stem_conv/kernel', 'stem_bn/scale', 'stem_bn/bias', 'stage1_block0/conv1/kernel',
               'stage1_block0/proj_conv/kernel', 'stage1_block0/proj_bn/scale',
               'stage4_block2/conv3/kernel', 'stage4_block2/bn3/bias', 'head/kernel',
               'head/bias'):
    assert path in paths
  for path, leaf in paths.items():
    module, leaf_name = path.rsplit('/', 1)
    if leaf_name == 'kernel':
      assert leaf.ndim in (2, 4)
    elif 'bn' in module.rsplit('/', 1)[-1]:
      assert leaf_name in ('scale', 'bias') and leaf.ndim == 1
    else:  # the only bias outside BN: convs before a BN have none
      assert path == 'head/bias'


@pytest.mark.parametrize('name', ['cnn', 'resnet20'])
def test_small_models_train_and_eval(name):
  model = create_model(_model_config(name=name, bn_group_size=2), num_classes=10)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 28, 28, 1)), jnp.float32)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)

  logits, mutated = jax.jit(
      lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(variables, x)
  eval_logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      {**variables, **mutated}, x)

  assert logits.shape == eval_logits.shape == (4, 10)
  assert np.all(np.isfinite(logits)) and np.all(np.isfinite(eval_logits))
  updated = jax.tree.map(lambda new, old: not np.allclose(new, old), mutated['batch_stats'],
                         variables['batch_stats'])
  assert all(jax.tree.leaves(updated))


@pytest.mark.parametrize('block_cls,features', [(resnet.BasicBlock, 8),
                                                (resnet.BottleneckBlock, 8)])
def test_zero_init_last_bn_makes_block_start_as_its_shortcut(block_cls, features):
  filters = features // 4 if block_cls is resnet.BottleneckBlock else features
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 4, 4, features)), jnp.float32)
  block = block_cls(filters=filters, strides=1, dtype=jnp.float32, norm=batch_norm.BatchNorm,
                    zero_init_last_bn=True)
  variables = block.init(jax.random.key(0), x, train=False)

  y, _ = _train_apply(block, variables, x)

  np.testing.assert_array_equal(y, x)  # relu(0 + x) and x >= 0, as after any relu
  default_block = block.clone(zero_init_last_bn=False)
  default_variables = default_block.init(jax.random.key(0), x, train=False)
  assert not np.allclose(_train_apply(default_block, default_variables, x)[0], x)


@pytest.mark.slow
@pytest.mark.parametrize('name,last_bn', [('resnet20', 'bn2'), ('resnet50', 'bn3')])
def test_zero_init_last_bn_zeroes_exactly_the_last_bn_scales(name, last_bn):
  model = create_model(_model_config(name=name, zero_init_last_bn=True), num_classes=10)
  params = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)),
                                      train=False)['params'])()

  scales = {'/'.join(path): leaf for path, leaf in traverse_util.flatten_dict(params).items()
            if path[-1] == 'scale'}

  num_blocks = {'resnet20': 9, 'resnet50': 16}[name]
  assert sum(path.endswith(f'/{last_bn}/scale') for path in scales) == num_blocks
  for path, scale in scales.items():
    want = 0.0 if path.endswith(f'/{last_bn}/scale') else 1.0
    np.testing.assert_array_equal(scale, want, err_msg=path)


def test_unknown_model_name_is_a_user_error():
  with pytest.raises(UserError) as error:
    create_model(_model_config(name='resnet51'), num_classes=10)

  message = str(error.value)
  assert '\n' not in message and "'resnet51'" in message
  assert all(name in message for name in _ALL_MODELS)


@pytest.mark.parametrize('overrides', [{'dtype': 'float16'}])
def test_bad_model_config_is_a_user_error(overrides):
  with pytest.raises(UserError):
    create_model(_model_config(**overrides), num_classes=10)


@pytest.mark.parametrize('fields,want', [
    # GAP, fixed sin-cos posemb, pre-logits (big_vision vit_s16_i1k): DeiT-S's 22,050,664
    # less its class token and learned posemb (384 + 197 * 384), plus 384 * 384 + 384.
    ({'variant': 'S', 'patch_size': 16}, 22_122_472),
    # The original ViT-B/16 (class token, learned posemb, no pre-logits): timm's 86,567,656
    # less the class token's position embedding (768), which big_vision does not have (it adds
    # the posemb before it prepends the token).
    ({'variant': 'B', 'patch_size': 16, 'pool': 'tok', 'posemb': 'learn', 'pre_logits': False},
     86_566_888),
])
def test_vit_parameter_counts(fields, want):
  config = _model_config(name='vit')
  config.vit.update(fields)
  params = _abstract_variables(create_model(config, num_classes=1000), (1, 224, 224, 3))['params']
  assert _num_params(params) == want


@pytest.mark.parametrize('pool,posemb', [('gap', 'sincos2d'), ('tok', 'learn')])
def test_vit_shapes_dtypes_and_zero_head(pool, posemb):
  config = _model_config(name='vit', dtype='bfloat16')
  config.vit.update(variant='Ti', depth=2, patch_size=4, pool=pool, posemb=posemb)
  model = create_model(config, num_classes=7)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
  logits, mutated = model.apply(variables, x, train=True, mutable=['batch_stats'])

  assert set(variables) == {'params'} and not mutated  # no BatchNorm, no batch statistics
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  np.testing.assert_array_equal(logits, 0.0)  # the zero-initialised head
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  names = {'/'.join(path) for path in traverse_util.flatten_dict(variables['params'])}
  assert 'embedding/kernel' in names and 'encoderblock_1/MlpBlock' not in names
  assert ('cls/bias' in names) == (pool == 'tok')
  assert ('pos_embedding/bias' in names) == (posemb == 'learn')


def test_vit_masks_decide_every_parameter_with_the_usual_rules():
  """Kernels on; biases, LayerNorm scales, posemb and class token off (base.py's rules)."""
  from lbtrain import optim  # pylint: disable=g-import-not-at-top
  config = _model_config(name='vit')
  config.vit.update(variant='Ti', depth=2, pool='tok', posemb='learn')
  params = _abstract_variables(create_model(config, num_classes=10), (1, 32, 32, 3))['params']
  optimizer = base.get_config().optimizer
  optimizer.update(name='lamb', weight_decay=1e-4)
  for summary in optim.describe_masks(optimizer, params).values():
    assert all(name.endswith('/kernel') for name in summary['on'])
    assert all(name.rsplit('/', 1)[1] in ('bias', 'scale') for name in summary['off'])
    assert {'cls/bias', 'pos_embedding/bias', 'encoder_norm/scale',
            'encoderblock_0/MultiHeadDotProductAttention_0/query/bias'} <= set(summary['off'])
    assert {'embedding/kernel', 'head/kernel', 'pre_logits/kernel',
            'encoderblock_1/MultiHeadDotProductAttention_0/out/kernel',
            'encoderblock_1/Dense_1/kernel'} <= set(summary['on'])


def test_vit_sincos_posemb_is_moco_v3_s():
  from lbtrain.models import vit  # pylint: disable=g-import-not-at-top
  pe = vit.posemb_sincos_2d(3, 4, 8)
  assert pe.shape == (1, 12, 8)
  # Token (y=1, x=2) at the first frequency (1): sin x, cos x, sin y, cos y blocks of width 2.
  np.testing.assert_allclose(pe[0, 1 * 4 + 2, [0, 2, 4, 6]],
                             [np.sin(2), np.cos(2), np.sin(1), np.cos(1)], rtol=1e-6)


@pytest.mark.parametrize('overrides,fragment', [
    ({'bn_group_size': 32}, 'has no BatchNorm; unset it'),
    ({'vit': {'variant': 'XL'}}, "variant='XL': use one of Ti, S, B, L"),
    ({'vit': {'num_heads': 5}}, 'multiple of num_heads 5'),
    ({'vit': {'pool': 'map'}}, "pool='map': use one of gap, tok"),
])
def test_bad_vit_config_is_one_line(overrides, fragment):
  config = _model_config(name='vit')
  config.vit.update(overrides.pop('vit', {}))
  config.update(overrides)
  with pytest.raises(UserError, match=fragment) as error:
    create_model(config, num_classes=10)
  assert '\n' not in str(error.value)
