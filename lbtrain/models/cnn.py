"""A small CNN for 28x28 Fashion-MNIST, cheap enough for batch-size sweeps on CPU cores."""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from lbtrain.models import batch_norm
from lbtrain.models import layers


class CNN(nn.Module):
  """conv3x3-16/BN/relu, maxpool2, conv3x3-32/BN/relu, maxpool2, dense-128/BN/relu, dense.

  Cost on a 28x28x1 image, counting a multiply-add as 2 FLOPs (BN, relu, pooling add ~2%):
    conv1 28*28 * 3*3*1 * 16  =   112,896 MACs
    conv2 14*14 * 3*3*16 * 32 =   903,168 MACs
    fc    7*7*32 * 128        =   200,704 MACs
    head  128 * 10            =     1,280 MACs
    total 1.22 M MACs = 2.4 MFLOPs forward, ~7.3 MFLOPs per training example (fwd + bwd),
  so 60k images x 8 epochs is ~3.5 TFLOPs: small enough for batch-size sweeps on CPU cores
  (docs/performance.md); widths 32/64 would cost 3.5x that. 207,098 parameters for 10 classes.

  Attributes:
    num_classes: width of the logits.
    dtype: compute dtype of the convs and the hidden dense layer.
    norm: BatchNorm constructor, already configured (momentum, epsilon, group size).
    zero_init_last_bn: no effect (there is no residual block); accepted so that every model
      takes the same fields.
  """
  num_classes: int
  dtype: Any = jnp.float32
  norm: Callable[..., nn.Module] = batch_norm.BatchNorm
  zero_init_last_bn: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for i, features in enumerate((16, 32), start=1):
      x = layers.conv(features, 3, dtype=self.dtype, name=f'conv{i}')(x)
      x = nn.relu(self.norm(name=f'bn{i}')(x, train))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(128, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32, name='fc')(x)
    x = nn.relu(self.norm(name='fc_bn')(x, train))
    return layers.head(x, self.num_classes)
