"""The plain Vision Transformer of Beyer, Zhai, Kolesnikov 2022 ("Better plain ViT baselines for
ImageNet-1k"), as big_vision's `models/vit.py` builds it for `configs/vit_s16_i1k.py`.

Patches are embedded by a conv whose stride is its size; a position embedding is added (fixed
2-D sin-cos, MoCo v3's, or learned); pre-LayerNorm encoder blocks (multi-head self-attention,
then a GELU MLP of 4x the width) follow; the tokens are pooled by their mean ('gap') or a class
token ('tok'), optionally through a tanh pre-logits layer of the model's width, into a
zero-initialised head. No BatchNorm, so no batch statistics and no ghost-batch question.

Parameter paths are part of the interface: every leaf ends in 'kernel', 'bias' or 'scale', so
the usual weight-decay and trust-ratio rules ('(^|/)bias$:off,(^|/)scale$:off,(^|/)kernel$:on')
decide each one: kernels (patch embedding, attention, MLP, pre-logits, head) on; biases,
LayerNorm scales, and the learned position embedding and class token off. The last two are
additive biases (on the patch tokens, and on an all-zero extra token), so they are named
`pos_embedding/bias` and `cls/bias`: big_vision's default weight-decay mask ('.*/kernel$')
leaves them undecayed too.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lbtrain.models import layers

# (width, depth, heads) of each size; the MLP is 4x the width (Dosovitskiy et al. 2021,
# Touvron et al. 2021 for Ti and S; big_vision `decode_variant`).
VARIANTS = {
    'Ti': (192, 12, 3),
    'S': (384, 12, 6),
    'B': (768, 12, 12),
    'L': (1024, 24, 16),
}
POSEMBS = ('sincos2d', 'learn')
POOLS = ('gap', 'tok')


def posemb_sincos_2d(height: int, width: int, features: int,
                     temperature: float = 10_000.) -> np.ndarray:
  """float32 [1, height * width, features]: sin and cos of x and y at features / 4 frequencies
  each (MoCo v3, big_vision): fixed, so the model trains at several image sizes."""
  y, x = np.mgrid[:height, :width]
  omega = 1. / temperature**(np.arange(features // 4) / (features // 4 - 1))
  y = np.einsum('m,d->md', y.reshape(-1), omega)
  x = np.einsum('m,d->md', x.reshape(-1), omega)
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return pe[None].astype(np.float32)


class _Bias(nn.Module):
  """A learned additive tensor of `shape`, stored as `<name>/bias` (see the module docstring)."""
  shape: tuple[int, ...]
  init: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.param('bias', self.init, self.shape, jnp.float32).astype(x.dtype)


def _dense(features: int, dtype: Any, name: str | None = None) -> nn.Dense:
  # big_vision's MLP init: Xavier-uniform kernels, biases of std 1e-6.
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=nn.initializers.xavier_uniform(),
                  bias_init=nn.initializers.normal(stddev=1e-6), name=name)


class EncoderBlock(nn.Module):
  """x + MHSA(LN(x)), then x + MLP(LN(x)): the pre-LN block."""
  num_heads: int
  mlp_dim: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    norm = functools.partial(nn.LayerNorm, dtype=self.dtype, param_dtype=jnp.float32)
    y = norm()(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=nn.initializers.xavier_uniform(), deterministic=True)(y, y)
    x = x + y
    y = norm()(x)
    y = _dense(self.mlp_dim, self.dtype)(y)
    y = _dense(x.shape[-1], self.dtype)(nn.gelu(y))
    return x + y


class ViT(nn.Module):
  """Attributes:
    num_classes: width of the logits.
    variant: 'Ti', 'S', 'B' or 'L' (VARIANTS).
    width, depth, num_heads: override the variant's where not None (small models for 28 px
      data and tests); the MLP stays 4x the width.
    patch_size: side of the square patches, e.g. 16 (ImageNet), 4 or 7 (28 px images).
    posemb: 'sincos2d' (fixed) or 'learn' (normal, std 1 / sqrt(width), as big_vision's).
    pool: 'gap' (mean of the tokens) or 'tok' (a class token, zero-initialised).
    pre_logits: a tanh Dense layer of the model's width before the head (big_vision rep_size).
    dtype: compute dtype; params, the head and the logits stay float32.
    norm, zero_init_last_bn: ignored (there is no BatchNorm); taken so every model is built
      the same way.
  """
  num_classes: int
  variant: str = 'S'
  width: int | None = None
  depth: int | None = None
  num_heads: int | None = None
  patch_size: int = 16
  posemb: str = 'sincos2d'
  pool: str = 'gap'
  pre_logits: bool = True
  dtype: Any = jnp.float32
  norm: Any = None
  zero_init_last_bn: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train  # no dropout, no batch statistics: training and eval compute the same function
    width, depth, num_heads = (
        given or default for given, default in zip((self.width, self.depth, self.num_heads),
                                                   VARIANTS[self.variant]))
    x = nn.Conv(width, (self.patch_size,) * 2, strides=(self.patch_size,) * 2,
                padding='VALID', dtype=self.dtype, param_dtype=jnp.float32,
                name='embedding')(x)
    n, h, w, c = x.shape
    x = x.reshape(n, h * w, c)
    if self.posemb == 'sincos2d':
      x = x + jnp.asarray(posemb_sincos_2d(h, w, c), x.dtype)
    else:
      x = _Bias((1, h * w, c), nn.initializers.normal(stddev=1 / np.sqrt(c)),
                name='pos_embedding')(x)
    if self.pool == 'tok':
      cls = _Bias((1, 1, c), nn.initializers.zeros, name='cls')(jnp.zeros((n, 1, c), x.dtype))
      x = jnp.concatenate([cls, x], axis=1)
    for i in range(depth):
      x = EncoderBlock(num_heads, 4 * width, self.dtype, name=f'encoderblock_{i}')(x)
    x = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name='encoder_norm')(x)
    x = jnp.mean(x, axis=1) if self.pool == 'gap' else x[:, 0]
    if self.pre_logits:
      x = jnp.tanh(nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32,
                            name='pre_logits')(x))
    # Zero-initialised head (big_vision head_zeroinit): every class starts equally likely.
    return layers.head(x, self.num_classes, kernel_init=nn.initializers.zeros)


def validate(cfg) -> str | None:
  """What is wrong with config.model.vit, in one line, or None."""
  variant, patch_size, posemb, pool = cfg.variant, cfg.patch_size, cfg.posemb, cfg.pool
  if variant not in VARIANTS:
    return f'model.vit.variant={variant!r}: use one of {", ".join(VARIANTS)}'
  for field in ('width', 'depth', 'num_heads'):
    if cfg[field] is not None and not (isinstance(cfg[field], int) and cfg[field] > 0):
      return f'model.vit.{field}={cfg[field]!r} must be a positive whole number or None'
  width, _, heads = (cfg[f] or d for f, d in zip(('width', 'depth', 'num_heads'),
                                                 VARIANTS[variant]))
  if width % heads or (posemb == 'sincos2d' and width % 4):
    return (f'model.vit width {width} must be a multiple of num_heads {heads} (and of 4 for '
            "posemb='sincos2d')")
  if not (isinstance(patch_size, int) and patch_size > 0):
    return f'model.vit.patch_size={patch_size!r} must be a positive number of pixels'
  if posemb not in POSEMBS:
    return f'model.vit.posemb={posemb!r}: use one of {", ".join(POSEMBS)}'
  if pool not in POOLS:
    return f'model.vit.pool={pool!r}: use one of {", ".join(POOLS)}'
  return None
