"""The optimizer block of the config as one optax chain, in the form each paper publishes.

Large-batch recipes differ less in their optimizer than in the details around it: which
parameters get weight decay and a trust ratio, whether the lr sits inside or outside the momentum,
which norm the trust ratio divides by. Those details live here, named and tested against the
papers' formulas, so a config can say "LARS as in MLPerf" and mean it.

Parameters are named by their '/'-joined pytree path ('stage1_block0/bn1/scale', 'head/bias').
Masks are ordered 'REGEX:on|off' rules over those names rather than `ndim` tests, because a BN
scale is 1-D exactly like a bias and some recipes treat them differently.
"""

import dataclasses
import math
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lbtrain.errors import UserError

Mask = Any  # a pytree of Python bools shaped like the params


@dataclasses.dataclass(frozen=True)
class _Parts:
  """What a builder assembles a chain from; a mask is None where its feature is off."""
  config: ml_collections.ConfigDict
  schedule: optax.Schedule
  eps: float | None
  weight_decay_mask: Mask | None
  trust_ratio_mask: Mask | None
  peak_lr: float | None  # the schedule's peak, for weight decay that follows its multiplier


def _decayed_weights(p: _Parts) -> list[optax.GradientTransformation]:
  if p.weight_decay_mask is None:
    return []
  return [optax.add_decayed_weights(p.config.weight_decay, p.weight_decay_mask)]


def _sgd(p: _Parts, nesterov: bool) -> list[optax.GradientTransformation]:
  """Goyal's SGD: L2 added to the gradient (g + wd w), momentum, then the lr.

  Goyal et al. write v = m v + lr g and need a "momentum correction" when lr changes; optax's
  order (momentum over the un-scaled gradient, the lr applied to the velocity) is the form that
  correction restores, so none is needed here.
  """
  return [*_decayed_weights(p), optax.trace(p.config.momentum, nesterov),
          optax.scale_by_learning_rate(p.schedule)]


def _lars_direction(weight_decay: float, weight_decay_mask: Mask, trust_ratio_mask: Mask,
                    trust_coefficient: float, eps: float) -> optax.GradientTransformation:
  """Per leaf, g -> local_lr * (g + wd w) with You et al.'s (2017) local_lr.

  local_lr = eta ||w|| / (||g|| + wd ||w|| + eps), or 1 where ||w|| or ||g|| is 0 (a zero-init
  layer must still move); flax.optim.LARS computes the same. optax.lars instead applies
  scale_by_trust_ratio after adding wd w, i.e. divides by ||g + wd w|| + eps, which is not the
  paper's denominator, hence this transformation. Where the weight-decay mask is off wd is 0 in
  both places; where the trust-ratio mask is off local_lr is 1.
  """

  def scale(g, w, decays, trusts):
    wd = weight_decay if decays else 0.0
    direction = g + wd * w
    if not trusts:
      return direction
    w_norm, g_norm = jnp.linalg.norm(w), jnp.linalg.norm(g)
    ratio = trust_coefficient * w_norm / (g_norm + wd * w_norm + eps)
    return jnp.where((w_norm == 0) | (g_norm == 0), 1.0, ratio) * direction

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('LARS needs the params: call update(grads, state, params)')
    return jax.tree.map(scale, updates, params, weight_decay_mask, trust_ratio_mask), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _lars(p: _Parts) -> list[optax.GradientTransformation]:
  """You et al. 2017 / MLPerf: v = m v + lr local_lr (g + wd w); w -= v.

  The lr sits inside the velocity, as in the paper, the MLPerf reference and optax.lars.
  """
  decays = p.weight_decay_mask
  if decays is None:
    decays = jax.tree.map(lambda _: False, p.trust_ratio_mask)
  cfg = p.config
  return [_lars_direction(cfg.weight_decay, decays, p.trust_ratio_mask, cfg.trust_coefficient,
                          p.eps),
          optax.scale_by_learning_rate(p.schedule),
          optax.trace(cfg.momentum, cfg.nesterov)]


# optimizer.mu_dtype: the dtype Adam keeps its first moment in (None: the params' float32).
# big_vision's vit_s16_i1k.py sets `optax = dict(mu_dtype='bfloat16')` on optax.scale_by_adam,
# which halves that state's memory; the second moment stays float32.
_MU_DTYPES = {None: None, 'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# optimizer.weight_decay_form for adamw: what the decoupled decay w <- w - c(t) wd w multiplies.
#   'lr': c(t) = lr(t), the schedule's lr (Loshchilov & Hutter's AdamW as optax.adamw and
#         PyTorch implement it).
#   'schedule': c(t) = lr(t) / peak_lr, the schedule's multiplier in [0, 1] without the lr:
#         big_vision (big_vision/optax.py `make`) chains scale_by_adam -> scale(config.lr) ->
#         add_decayed_weights(config.wd, '.*/kernel$') -> scale_by_schedule(sched) -> scale(-1)
#         with the schedule built with base=1, so a step is
#         w <- w - sched(t) (lr * adam_direction + wd * w): its `wd` multiplies the weights and
#         the schedule's multiplier, never the lr (wd 1e-4 there decays 1e-4 of w per step at
#         the peak, where optax.adamw's form would decay lr * 1e-4 = 1e-7).
_WEIGHT_DECAY_FORMS = ('lr', 'schedule')


def _adam_moments(p: _Parts) -> optax.GradientTransformation:
  return optax.scale_by_adam(p.config.b1, p.config.b2, p.eps,
                             mu_dtype=_MU_DTYPES[p.config.mu_dtype])


def _adam(p: _Parts) -> list[optax.GradientTransformation]:
  """Adam, plus decoupled weight decay where it is on, in optimizer.weight_decay_form's form.

  Both forms add wd' w to the Adam direction before the lr(t) scaling, wd' = wd for 'lr' and
  wd / peak_lr for 'schedule', so that lr(t) wd' = (lr(t) / peak_lr) wd: big_vision's step.
  """
  decay = []
  if p.weight_decay_mask is not None:
    rate = p.config.weight_decay
    if p.config.weight_decay_form == 'schedule':
      rate /= p.peak_lr
    decay = [optax.add_decayed_weights(rate, p.weight_decay_mask)]
  return [_adam_moments(p), *decay, optax.scale_by_learning_rate(p.schedule)]


def _lamb(p: _Parts) -> list[optax.GradientTransformation]:
  """You et al. 2019: x -= lr ||x|| / ||r + wd x|| (r + wd x), r = m_hat / (sqrt(v_hat) + eps).

  Unlike optax.lamb, the trust ratio has its own mask: masked leaves take the plain Adam step.
  """
  return [_adam_moments(p), *_decayed_weights(p),
          optax.masked(optax.scale_by_trust_ratio(), p.trust_ratio_mask),
          optax.scale_by_learning_rate(p.schedule)]


@dataclasses.dataclass(frozen=True)
class _Optimizer:
  build: Callable[[_Parts], list[optax.GradientTransformation]]
  weight_decay: bool  # accepts weight_decay (under weight_decay_mask)
  trust_ratio: bool  # reads trust_ratio_mask
  default_eps: float | None  # the published eps; None where there is no eps
  reads: tuple[str, ...]  # the optimizer.* hyperparameters it uses, for `--describe`


_OPTIMIZERS = {
    'sgd': _Optimizer(lambda p: _sgd(p, p.config.nesterov), True, False, None,
                      ('momentum', 'nesterov')),
    'nesterov': _Optimizer(lambda p: _sgd(p, True), True, False, None, ('momentum',)),
    'lars': _Optimizer(_lars, True, True, 0.0,
                       ('momentum', 'nesterov', 'trust_coefficient', 'eps')),
    'lamb': _Optimizer(_lamb, True, True, 1e-6, ('b1', 'b2', 'eps', 'mu_dtype')),
    'adamw': _Optimizer(_adam, True, False, 1e-8,
                        ('b1', 'b2', 'eps', 'mu_dtype', 'weight_decay_form')),
    'adam': _Optimizer(_adam, False, False, 1e-8, ('b1', 'b2', 'eps', 'mu_dtype')),
}

_CHECKS = (
    ('weight_decay', lambda x: x >= 0, '>= 0'),
    ('momentum', lambda x: 0 <= x < 1, 'in [0, 1)'),
    ('b1', lambda x: 0 <= x < 1, 'in [0, 1)'),
    ('b2', lambda x: 0 <= x < 1, 'in [0, 1)'),
    ('trust_coefficient', lambda x: x > 0, '> 0'),
    ('eps', lambda x: x is None or x >= 0, '>= 0, or None for the default'),
    ('grad_clip_norm', lambda x: x is None or x > 0, '> 0, or None for no clipping'),
)


def _optimizer(cfg: ml_collections.ConfigDict) -> _Optimizer:
  """Looks up and validates, so both public functions fail the same way on a bad config."""
  if cfg.name not in _OPTIMIZERS:
    raise UserError(f'unknown optimizer.name {cfg.name!r}; known: {", ".join(_OPTIMIZERS)}')
  for field, ok, requirement in _CHECKS:
    if not ok(cfg[field]):
      raise UserError(f'optimizer.{field} must be {requirement}, got {cfg[field]}')
  if cfg.mu_dtype not in _MU_DTYPES:
    raise UserError(f'optimizer.mu_dtype={cfg.mu_dtype!r}: use None, float32 or bfloat16')
  if cfg.weight_decay_form not in _WEIGHT_DECAY_FORMS:
    raise UserError(f'optimizer.weight_decay_form={cfg.weight_decay_form!r}: use one of '
                    f'{", ".join(_WEIGHT_DECAY_FORMS)}')
  spec = _OPTIMIZERS[cfg.name]
  if cfg.weight_decay_form != 'lr' and 'weight_decay_form' not in spec.reads:
    raise UserError(f"optimizer.weight_decay_form={cfg.weight_decay_form!r} is adamw's; "
                    f"{cfg.name!r} decays as its paper does: set it to 'lr'")
  if cfg.weight_decay and not spec.weight_decay:
    raise UserError(f'optimizer {cfg.name!r} takes no weight decay; set optimizer.weight_decay=0 '
                    "or use optimizer.name='adamw'")
  return spec


_ACTIONS = {'on': True, 'off': False}


def _parse_rules(spec: str, field: str) -> list[tuple[re.Pattern, bool]]:
  rules = []
  for rule in filter(None, (r.strip() for r in spec.split(','))):
    pattern, _, action = rule.rpartition(':')
    if action not in _ACTIONS:
      raise UserError(f"optimizer.{field}: rule {rule!r} is not 'REGEX:on' or 'REGEX:off'")
    try:
      rules.append((re.compile(pattern), _ACTIONS[action]))
    except re.error as e:
      raise UserError(f'optimizer.{field}: bad regex {pattern!r} ({e})') from e
  return rules


def _param_names(params) -> tuple[list[str], Any]:
  paths, treedef = jax.tree_util.tree_flatten_with_path(params)
  return [jax.tree_util.keystr(path, simple=True, separator='/') for path, _ in paths], treedef


def _resolve_mask(cfg: ml_collections.ConfigDict, field: str, params) -> Mask:
  """First matching rule wins; a parameter no rule decides is an error, never a silent default."""
  rules = _parse_rules(cfg[field], field)
  names, treedef = _param_names(params)
  decisions = [next((on for pattern, on in rules if pattern.search(name)), None)
               for name in names]
  undecided = [name for name, on in zip(names, decisions) if on is None]
  if undecided:
    shown = ', '.join(undecided[:5]) + (f' and {len(undecided) - 5} more' if len(undecided) > 5
                                        else '')
    raise UserError(f'no rule in optimizer.{field}={cfg[field]!r} decides parameter(s) {shown}; '
                    "add 'REGEX:on' or 'REGEX:off' rules for them (or end with '.*:off')")
  return jax.tree_util.tree_unflatten(treedef, decisions)


def _masks(cfg: ml_collections.ConfigDict, spec: _Optimizer,
           params) -> tuple[Mask | None, Mask | None]:
  """Only the masks the optimizer uses are resolved, so an unused one cannot fail a run."""
  wd_mask = (_resolve_mask(cfg, 'weight_decay_mask', params)
             if spec.weight_decay and cfg.weight_decay > 0 else None)
  trust_mask = _resolve_mask(cfg, 'trust_ratio_mask', params) if spec.trust_ratio else None
  return wd_mask, trust_mask


def create_optimizer(optimizer_config: ml_collections.ConfigDict, schedule: optax.Schedule,
                     params, peak_lr: float | None = None) -> optax.GradientTransformation:
  """Builds the chain: [clip by global norm] -> the named optimizer -> lr from `schedule`.

  Args:
    optimizer_config: `config.optimizer`.
    schedule: step count -> lr, from `schedules.create_schedule`.
    params: the parameter pytree, or its `jax.eval_shape`; only names and structure are read.
    peak_lr: the schedule's peak lr; needed by weight_decay_form='schedule' only.

  Returns:
    One optax GradientTransformation; its updates are added to the params.

  Raises:
    UserError: unknown name, value out of range, bad mask rule or a parameter no rule decides.
  """
  spec = _optimizer(optimizer_config)
  wd_mask, trust_mask = _masks(optimizer_config, spec, params)
  eps = spec.default_eps if optimizer_config.eps is None else optimizer_config.eps
  if wd_mask is not None and optimizer_config.weight_decay_form == 'schedule' and not peak_lr:
    raise ValueError("weight_decay_form='schedule' needs the schedule's peak_lr")
  chain = spec.build(_Parts(optimizer_config, schedule, eps, wd_mask, trust_mask, peak_lr))
  if optimizer_config.grad_clip_norm is not None:
    chain.insert(0, optax.clip_by_global_norm(optimizer_config.grad_clip_norm))
  return optax.chain(*chain)


def describe_optimizer(optimizer_config: ml_collections.ConfigDict) -> str:
  """The optimizer and every hyperparameter it reads, as a paper's table states them:
  'lars: momentum 0.9, nesterov False, trust_coefficient 0.001, eps 0 (default), weight_decay
  5e-05, no gradient clipping'."""
  spec = _optimizer(optimizer_config)
  parts = []
  for field in spec.reads:
    if field == 'eps' and optimizer_config.eps is None:
      parts.append(f'eps {spec.default_eps:g} (default)')
    elif field == 'mu_dtype' and optimizer_config.mu_dtype is None:
      parts.append('mu_dtype float32 (default)')
    else:
      value = optimizer_config[field]
      parts.append(f'{field} {value:g}' if isinstance(value, (int, float))
                   and not isinstance(value, bool) else f'{field} {value}')
  if spec.weight_decay:
    parts.append(f'weight_decay {optimizer_config.weight_decay:g}')
  clip = optimizer_config.grad_clip_norm
  parts.append('no gradient clipping' if clip is None else f'gradient clipped to norm {clip:g}')
  return f'{optimizer_config.name}: {", ".join(parts)}'


def describe_masks(optimizer_config: ml_collections.ConfigDict, params) -> dict:
  """Which parameters get weight decay and the trust ratio, for `--describe` and the run log.

  Args:
    optimizer_config: `config.optimizer`.
    params: the parameter pytree or its `jax.eval_shape`.

  Returns:
    {'weight_decay': summary or None, 'trust_ratio': summary or None}, None where the optimizer
    does not apply it (weight_decay 0, adam; trust ratio outside lars/lamb). A summary is
    {'on': names, 'off': names, 'on_params': scalars, 'off_params': scalars}.
  """
  spec = _optimizer(optimizer_config)
  names, _ = _param_names(params)
  sizes = [math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)]

  def summary(mask: Mask | None) -> dict | None:
    if mask is None:
      return None
    flags = jax.tree_util.tree_leaves(mask)
    return {
        'on': [n for n, on in zip(names, flags) if on],
        'off': [n for n, on in zip(names, flags) if not on],
        'on_params': sum(s for s, on in zip(sizes, flags) if on),
        'off_params': sum(s for s, on in zip(sizes, flags) if not on),
    }

  wd_mask, trust_mask = _masks(optimizer_config, spec, params)
  return {'weight_decay': summary(wd_mask), 'trust_ratio': summary(trust_mask)}
