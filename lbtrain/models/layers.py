"""The conv and head layers every model shares, so init and precision rules live in one place."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# He et al. 2015 for ReLU nets, fan_out as torchvision's ResNet (kaiming_normal_, mode='fan_out'):
# keeps the backward signal's variance constant through conv-BN-ReLU stacks.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def conv(features: int, kernel_size: int, strides: int = 1, *, dtype: Any,
         name: str) -> nn.Conv:
  """A bias-free square conv (a BN always follows, and its bias plays that role).

  Padding is explicit and symmetric, (k - 1) // 2 on each side, as in torchvision and the MLPerf
  reference: 'SAME' would pad a stride-2 conv on an even input only at the end, shifting every
  downsampled feature map by half a pixel relative to the published models.
  """
  pad = (kernel_size - 1) // 2
  return nn.Conv(
      features, (kernel_size, kernel_size), (strides, strides),
      padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
      param_dtype=jnp.float32, kernel_init=conv_kernel_init, name=name)


def head(x: jax.Array, num_classes: int,
         kernel_init: Any = nn.linear.default_kernel_init) -> jax.Array:
  """The classifier, run in float32 whatever the compute dtype.

  The logits feed a softmax cross-entropy; bfloat16's 8-bit mantissa would quantise them, and
  this layer is a negligible share of the FLOPs. Init is flax's Dense default, as in flax's
  ImageNet example, unless `kernel_init` says otherwise (the ViT's is zero).
  """
  return nn.Dense(num_classes, dtype=jnp.float32, param_dtype=jnp.float32,
                  kernel_init=kernel_init, name='head')(
      x.astype(jnp.float32))
