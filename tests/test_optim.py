"""Optimizers against the papers' update rules, recomputed independently in float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import base
from lbtrain import optim
from lbtrain.errors import UserError

NAMES = ('layer/kernel', 'layer/bias', 'bn/scale')


def _params(bias=None):
  rng = np.random.default_rng(0)
  bias = rng.normal(size=3) if bias is None else bias
  return {'layer': {'kernel': rng.normal(size=(4, 3)), 'bias': np.asarray(bias, float)},
          'bn': {'scale': 1.0 + 0.1 * rng.normal(size=3)}}


def _grads(num_steps=3):
  rng = np.random.default_rng(1)
  return [{'layer': {'kernel': rng.normal(size=(4, 3)), 'bias': rng.normal(size=3)},
           'bn': {'scale': rng.normal(size=3)}} for _ in range(num_steps)]


def _flat(tree):
  return {name: np.asarray(tree[a][b], np.float64) for name in NAMES for a, b in [name.split('/')]}


def _lr(count):
  """Changes every step, so an lr inside vs. outside the momentum shows."""
  return 0.5 + 0.25 * count


def _config(name, **fields):
  config = base.get_config().optimizer
  config.name = name
  for key, value in fields.items():
    config[key] = value
  return config


def _to32(tree):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def _run(config, params, grads, peak_lr=None):
  """Updates (as flat float64 dicts) from our chain, fed float32 params and grads."""
  return _updates(optim.create_optimizer(config, _lr, _to32(params), peak_lr=peak_lr), params,
                  grads)


def _updates(tx, params, grads):
  """Updates (as flat float64 dicts) from any optax chain, fed float32 params and grads."""
  params = _to32(params)
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = tx.update(_to32(g), state, params)
    params = optax.apply_updates(params, updates)
    out.append(_flat(updates))
  return out


def _assert_updates_equal(actual, expected):
  for step, (a, e) in enumerate(zip(actual, expected)):
    for name in NAMES:
      np.testing.assert_allclose(a[name], e[name], rtol=2e-5, atol=1e-7,
                                 err_msg=f'step {step} {name}')


def _lars_reference(params, grads, wd, eta, momentum, decays, trusts, nesterov=False):
  """You et al. 2017: v = m v + lr local_lr (g + wd w); local_lr = eta |w| / (|g| + wd |w|)."""
  w, v, out = _flat(params), {n: 0.0 for n in NAMES}, []
  for t, g in enumerate(map(_flat, grads)):
    update = {}
    for n in NAMES:
      wd_n = wd if decays[n] else 0.0
      w_norm, g_norm = np.linalg.norm(w[n]), np.linalg.norm(g[n])
      local_lr = (eta * w_norm / (g_norm + wd_n * w_norm)
                  if trusts[n] and w_norm > 0 and g_norm > 0 else 1.0)
      scaled = _lr(t) * local_lr * (g[n] + wd_n * w[n])
      v[n] = momentum * v[n] + scaled
      update[n] = -(scaled + momentum * v[n]) if nesterov else -v[n]
      w[n] = w[n] + update[n]
    out.append(update)
  return out


def _lamb_reference(params, grads, wd, b1, b2, eps, decays, trusts):
  """You et al. 2019: x -= lr ||x|| / ||r + wd x|| (r + wd x), r = m_hat / (sqrt(v_hat) + eps)."""
  w, m, v, out = _flat(params), {n: 0.0 for n in NAMES}, {n: 0.0 for n in NAMES}, []
  for t, g in enumerate(map(_flat, grads)):
    update = {}
    for n in NAMES:
      m[n] = b1 * m[n] + (1 - b1) * g[n]
      v[n] = b2 * v[n] + (1 - b2) * g[n]**2
      r = (m[n] / (1 - b1**(t + 1))) / (np.sqrt(v[n] / (1 - b2**(t + 1))) + eps)
      u = r + (wd * w[n] if decays[n] else 0.0)
      ratio = np.linalg.norm(w[n]) / np.linalg.norm(u) if trusts[n] else 1.0
      update[n] = -_lr(t) * ratio * u
      w[n] = w[n] + update[n]
    out.append(update)
  return out


def _sgd_reference(params, grads, wd, momentum, decays, nesterov):
  """Goyal et al. 2017 in the momentum-corrected form: u = m u + (g + wd w); w -= lr u."""
  w, u, out = _flat(params), {n: 0.0 for n in NAMES}, []
  for t, g in enumerate(map(_flat, grads)):
    update = {}
    for n in NAMES:
      d = g[n] + (wd * w[n] if decays[n] else 0.0)
      u[n] = momentum * u[n] + d
      update[n] = -_lr(t) * (d + momentum * u[n] if nesterov else u[n])
      w[n] = w[n] + update[n]
    out.append(update)
  return out


KERNEL_ONLY = {'layer/kernel': True, 'layer/bias': False, 'bn/scale': False}
ALL = dict.fromkeys(NAMES, True)


def test_lars_mlperf_masks_match_paper():
  """Trust ratio and wd on the kernel only; bias and BN scale get plain momentum."""
  config = _config('lars', weight_decay=0.01, trust_coefficient=0.02)
  expected = _lars_reference(_params(), _grads(), 0.01, 0.02, 0.9, KERNEL_ONLY, KERNEL_ONLY)
  _assert_updates_equal(_run(config, _params(), _grads()), expected)


def test_lars_trust_ratio_and_wd_masks_are_independent():
  """Trust ratio everywhere (zero-init bias: ratio 1 at the first step), wd on kernels, nesterov."""
  config = _config('lars', weight_decay=0.01, trust_coefficient=0.02, nesterov=True,
                   momentum=0.8, trust_ratio_mask='.*:on')
  params = _params(bias=np.zeros(3))
  expected = _lars_reference(params, _grads(), 0.01, 0.02, 0.8, KERNEL_ONLY, ALL, nesterov=True)
  _assert_updates_equal(_run(config, params, _grads()), expected)


def test_lars_denominator_differs_from_optax_only_with_weight_decay():
  """wd = 0: ours is optax.lars. wd > 0: optax divides by ||g + wd w||, not ||g|| + wd ||w||."""
  params, grads = _params(), _grads()
  for wd, same in [(0.0, True), (0.5, False)]:
    config = _config('lars', weight_decay=wd, weight_decay_mask='.*:on', trust_ratio_mask='.*:on')
    ours = _run(config, params, grads)
    reference = optax.lars(_lr, weight_decay=wd)
    state, p32 = reference.init(params), jax.tree.map(jnp.float32, params)
    theirs, _ = reference.update(jax.tree.map(jnp.float32, grads[0]), state, p32)
    assert np.allclose(ours[0]['layer/kernel'], _flat(theirs)['layer/kernel'], rtol=1e-5) == same


def test_lamb_matches_paper():
  config = _config('lamb', weight_decay=0.01, trust_ratio_mask='.*:on')
  expected = _lamb_reference(_params(), _grads(), 0.01, 0.9, 0.999, 1e-6, KERNEL_ONLY, ALL)
  _assert_updates_equal(_run(config, _params(), _grads()), expected)


def test_lamb_masked_leaves_get_plain_adam():
  config = _config('lamb', weight_decay=0.01, b1=0.8, b2=0.99, eps=1e-3)
  expected = _lamb_reference(_params(), _grads(), 0.01, 0.8, 0.99, 1e-3, KERNEL_ONLY, KERNEL_ONLY)
  _assert_updates_equal(_run(config, _params(), _grads()), expected)


@pytest.mark.parametrize('name,nesterov', [('sgd', False), ('sgd', True), ('nesterov', False)])
def test_sgd_is_goyal_form(name, nesterov):
  config = _config(name, weight_decay=0.01, nesterov=nesterov)
  expected = _sgd_reference(_params(), _grads(), 0.01, 0.9, KERNEL_ONLY,
                            nesterov or name == 'nesterov')
  _assert_updates_equal(_run(config, _params(), _grads()), expected)


@pytest.mark.parametrize('name,wd', [('adamw', 0.01), ('adam', 0.0)])
def test_adam_family_matches_optax(name, wd):
  mask = {'layer': {'kernel': True, 'bias': False}, 'bn': {'scale': False}}
  reference = optax.adamw(_lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd, mask=mask)
  expected = _updates(reference, _params(), _grads())
  _assert_updates_equal(_run(_config(name, weight_decay=wd), _params(), _grads()), expected)


def _big_vision_chain(peak_lr, wd, mask):
  """big_vision/optax.py `make` for vit_s16_i1k.py, rebuilt from optax parts: scale_by_adam
  (mu_dtype bfloat16), scale(config.lr), add_decayed_weights(config.wd) on its mask, the
  schedule's multiplier (base 1), scale(-1)."""
  return optax.chain(optax.scale_by_adam(mu_dtype=jnp.bfloat16), optax.scale(peak_lr),
                     optax.add_decayed_weights(wd, mask),
                     optax.scale_by_schedule(lambda count: _lr(count) / peak_lr),
                     optax.scale(-1.0))


def test_adamw_schedule_form_is_big_vision_weight_decay():
  peak_lr, wd = 2.0, 0.05
  mask = {'layer': {'kernel': True, 'bias': False}, 'bn': {'scale': False}}
  expected = _updates(_big_vision_chain(peak_lr, wd, mask), _params(), _grads())
  config = _config('adamw', weight_decay=wd, weight_decay_form='schedule', mu_dtype='bfloat16')
  actual = _run(config, _params(), _grads(), peak_lr=peak_lr)
  _assert_updates_equal(actual, expected)
  # ... which is not optax.adamw's form: there wd multiplies the lr, here only lr / peak_lr.
  lr_form = _run(_config('adamw', weight_decay=wd, mu_dtype='bfloat16'), _params(), _grads())
  assert not np.allclose(lr_form[0]['layer/kernel'], actual[0]['layer/kernel'])


def test_mu_dtype_keeps_the_first_moment_in_bfloat16():
  params = jax.tree.map(jnp.float32, _params())
  state = optim.create_optimizer(_config('adam', mu_dtype='bfloat16'), _lr, params).init(params)
  (adam_state,) = [s for s in jax.tree.leaves(state, is_leaf=lambda s: hasattr(s, 'mu'))
                   if hasattr(s, 'mu')]
  assert {x.dtype for x in jax.tree.leaves(adam_state.mu)} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(adam_state.nu)} == {jnp.dtype(jnp.float32)}


def test_grad_clip_comes_first():
  config = _config('sgd', momentum=0.0, grad_clip_norm=1.0)
  grads = _grads(1)
  norm = np.sqrt(sum(np.sum(x**2) for x in _flat(grads[0]).values()))
  (updates,) = _run(config, _params(), grads)
  for n in NAMES:
    np.testing.assert_allclose(updates[n], -_lr(0) * _flat(grads[0])[n] / norm, rtol=1e-5)


RESNET_NAMES = ['stem_conv/kernel', 'stem_bn/scale', 'stem_bn/bias', 'stage1_block0/conv1/kernel',
                'stage1_block0/bn1/scale', 'stage1_block0/bn1/bias', 'head/kernel', 'head/bias']


def _resnet_like(extra=()):
  """Abstract params (as from jax.eval_shape): only names and shapes are read."""
  params = {}
  for name in [*RESNET_NAMES, *extra]:
    *scopes, leaf = name.split('/')
    node = params
    for scope in scopes:
      node = node.setdefault(scope, {})
    node[leaf] = jax.ShapeDtypeStruct((3, 3, 4, 4) if leaf == 'kernel' else (4,), jnp.float32)
  return params


def test_default_masks_exclude_bn_and_biases():
  config = _config('lars', weight_decay=1e-4)
  described = optim.describe_masks(config, _resnet_like())
  kernels = ['head/kernel', 'stage1_block0/conv1/kernel', 'stem_conv/kernel']
  for key in ['weight_decay', 'trust_ratio']:
    summary = described[key]
    assert sorted(summary['on']) == kernels
    assert sorted(summary['off']) == sorted(set(RESNET_NAMES) - set(kernels))
    assert (summary['on_params'], summary['off_params']) == (3 * 144, 5 * 4)


def test_describe_masks_reports_unused_as_none():
  described = optim.describe_masks(_config('sgd', weight_decay=1e-4), _resnet_like())
  assert described['trust_ratio'] is None and len(described['weight_decay']['on']) == 3
  assert optim.describe_masks(_config('sgd'), _resnet_like()) == {
      'weight_decay': None, 'trust_ratio': None}


def test_first_matching_rule_wins():
  config = _config('sgd', weight_decay=1e-4, weight_decay_mask='^head/:off,.*:on')
  on = optim.describe_masks(config, _resnet_like())['weight_decay']['on']
  assert sorted(on) == sorted(n for n in RESNET_NAMES if not n.startswith('head/'))


def test_undecided_parameter_is_named():
  config = _config('lars', weight_decay=1e-4)
  with pytest.raises(UserError, match='decides parameter.* embed/embedding;'):
    optim.create_optimizer(config, _lr, _resnet_like(extra=['embed/embedding']))


def test_unused_mask_cannot_fail():
  """No weight decay and no trust ratio: nothing to decide, so an unknown name is fine."""
  optim.create_optimizer(_config('adam'), _lr, _resnet_like(extra=['embed/embedding']))


@pytest.mark.parametrize('fields,message', [
    ({'name': 'rmsprop'}, 'known: sgd, nesterov, lars, lamb, adamw, adam'),
    ({'weight_decay': -1e-4}, r'weight_decay must be >= 0'),
    ({'momentum': 1.0}, r'momentum must be in \[0, 1\)'),
    ({'momentum': -0.1}, r'momentum must be in \[0, 1\)'),
    ({'name': 'adam', 'weight_decay': 1e-4}, "takes no weight decay.*'adamw'"),
    ({'name': 'adam', 'mu_dtype': 'float16'}, 'mu_dtype=.float16.: use None, float32 or'),
    ({'name': 'lamb', 'weight_decay_form': 'schedule'}, "is adamw's; 'lamb' decays as its"),
    ({'name': 'adamw', 'weight_decay_form': 'peak'}, 'weight_decay_form=.peak.: use one of'),
    ({'grad_clip_norm': 0.0}, 'grad_clip_norm must be > 0'),
    ({'weight_decay': 1e-4, 'weight_decay_mask': 'bias'}, "rule 'bias' is not 'REGEX:on'"),
    ({'weight_decay': 1e-4, 'weight_decay_mask': '(bias:on'}, r"bad regex '\(bias'"),
])
def test_bad_config_raises_user_error(fields, message):
  fields = {'name': 'sgd', **fields}
  with pytest.raises(UserError, match=message):
    optim.create_optimizer(_config(**fields), _lr, _resnet_like())
