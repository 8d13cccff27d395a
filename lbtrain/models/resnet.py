"""ResNets: He et al. 2016's CIFAR ResNet-20 and the ImageNet ResNet v1.5 family (MLPerf).

Parameter paths are part of the interface: weight-decay and LARS masks are regexes on
'/'-joined paths, e.g. `stage2_block0/conv2/kernel`, `stage2_block0/bn2/scale`,
`stage2_block0/proj_bn/bias`, `stem_conv/kernel`, `head/kernel`. Every BN module's name
contains 'bn'. Stages count from 1 (torchvision's layer1..layer4), blocks from 0.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lbtrain.models import batch_norm
from lbtrain.models import layers

ModuleDef = Callable[..., nn.Module]


def _last_bn_scale_init(zero_init_last_bn: bool):
  # Goyal et al. 2017: gamma = 0 makes each residual block start as its shortcut, so the net
  # starts shallow and tolerates the large early learning rates of large-batch training.
  return nn.initializers.zeros if zero_init_last_bn else nn.initializers.ones


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34 and CIFAR ResNets); the stride is on the first.

  Attributes:
    filters: output channels.
    strides: 1, or 2 for the first block of a downsampling stage.
    dtype: compute dtype of the convs.
    norm: configured BatchNorm constructor.
    zero_init_last_bn: zero-initialise bn2's scale.
    projection_shortcut: when the shape changes, a 1x1 conv + BN shortcut (ImageNet "option
      B"); False gives He et al.'s CIFAR "option A": subsample and zero-pad the channels, which
      adds no parameters (ResNet-20 has 0.27M).
  """
  filters: int
  strides: int
  dtype: Any
  norm: ModuleDef
  zero_init_last_bn: bool
  projection_shortcut: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = layers.conv(self.filters, 3, self.strides, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y, train))
    y = layers.conv(self.filters, 3, dtype=self.dtype, name='conv2')(y)
    y = self.norm(name='bn2', scale_init=_last_bn_scale_init(self.zero_init_last_bn))(y, train)
    return nn.relu(y + self._shortcut(x, train))

  def _shortcut(self, x, train):
    if x.shape[-1] == self.filters and self.strides == 1:
      return x
    if self.projection_shortcut:
      return _projection(x, self.filters, self.strides, self.dtype, self.norm, train)
    x = x[:, ::self.strides, ::self.strides, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, self.filters - x.shape[-1])))


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3, 1x1 expand x4 (ResNet-50/101/152), v1.5: the stride is on the 3x3 conv.

  v1 put the stride on the first 1x1 conv, which then ignores 3/4 of its input positions; v1.5
  (MLPerf, torchvision) is ~0.5% top-1 better for a few percent less throughput (NVIDIA's
  figures), and it is the ResNet-50 of Goyal et al. 2017 and of MLPerf.

  Attributes:
    filters: width of the 3x3 conv; the block outputs 4 * filters channels.
    strides: 1, or 2 for the first block of a downsampling stage.
    dtype: compute dtype of the convs.
    norm: configured BatchNorm constructor.
    zero_init_last_bn: zero-initialise bn3's scale.
  """
  filters: int
  strides: int
  dtype: Any
  norm: ModuleDef
  zero_init_last_bn: bool

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = layers.conv(self.filters, 1, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y, train))
    y = layers.conv(self.filters, 3, self.strides, dtype=self.dtype, name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y, train))
    y = layers.conv(4 * self.filters, 1, dtype=self.dtype, name='conv3')(y)
    y = self.norm(name='bn3', scale_init=_last_bn_scale_init(self.zero_init_last_bn))(y, train)
    if x.shape[-1] == 4 * self.filters and self.strides == 1:
      shortcut = x
    else:
      shortcut = _projection(x, 4 * self.filters, self.strides, self.dtype, self.norm, train)
    return nn.relu(y + shortcut)


def _projection(x, features, strides, dtype, norm, train):
  """The 1x1 conv + BN shortcut, named proj_conv / proj_bn inside the calling block."""
  x = layers.conv(features, 1, strides, dtype=dtype, name='proj_conv')(x)
  return norm(name='proj_bn')(x, train)


class ResNet(nn.Module):
  """ImageNet ResNet v1.5: 7x7/2 stem conv, 3x3/2 max pool, 4 stages, global average pool.

  Attributes:
    stage_sizes: blocks per stage.
    block_cls: BasicBlock or BottleneckBlock.
    num_classes: width of the logits.
    dtype: compute dtype of the convs.
    norm: configured BatchNorm constructor.
    zero_init_last_bn: zero-initialise the last BN scale of every block.
  """
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int
  dtype: Any = jnp.float32
  norm: ModuleDef = batch_norm.BatchNorm
  zero_init_last_bn: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.conv(64, 7, 2, dtype=self.dtype, name='stem_conv')(x)
    x = nn.relu(self.norm(name='stem_bn')(x, train))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = self.block_cls(
            filters=64 * 2**i, strides=2 if i > 0 and j == 0 else 1, dtype=self.dtype,
            norm=self.norm, zero_init_last_bn=self.zero_init_last_bn,
            name=f'stage{i + 1}_block{j}')(x, train)
    return layers.head(jnp.mean(x.astype(jnp.float32), axis=(1, 2)), self.num_classes)


class CifarResNet(nn.Module):
  """He et al. 2016 section 4.2: 3x3 stem, 3 stages of 16/32/64 channels, option-A shortcuts.

  For 32x32 (CIFAR) or 28x28 (Fashion-MNIST) inputs; depth = 6 * blocks_per_stage + 2.

  Attributes:
    blocks_per_stage: 3 for ResNet-20.
    num_classes: width of the logits.
    dtype: compute dtype of the convs.
    norm: configured BatchNorm constructor.
    zero_init_last_bn: zero-initialise bn2's scale in every block.
  """
  blocks_per_stage: int
  num_classes: int
  dtype: Any = jnp.float32
  norm: ModuleDef = batch_norm.BatchNorm
  zero_init_last_bn: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.conv(16, 3, dtype=self.dtype, name='stem_conv')(x)
    x = nn.relu(self.norm(name='stem_bn')(x, train))
    for i, filters in enumerate((16, 32, 64)):
      for j in range(self.blocks_per_stage):
        x = BasicBlock(
            filters=filters, strides=2 if i > 0 and j == 0 else 1, dtype=self.dtype,
            norm=self.norm, zero_init_last_bn=self.zero_init_last_bn,
            projection_shortcut=False, name=f'stage{i + 1}_block{j}')(x, train)
    return layers.head(jnp.mean(x.astype(jnp.float32), axis=(1, 2)), self.num_classes)


ResNet20 = functools.partial(CifarResNet, blocks_per_stage=3)
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=BottleneckBlock)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=BottleneckBlock)
