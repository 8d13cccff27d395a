"""The networks, built from `config.model` by name.

Every model is called as `model.apply(variables, images, train=..., mutable=['batch_stats'])`
(no `mutable` in eval) on float32 images [N, H, W, C] and returns float32 logits
[N, num_classes]; `variables` holds float32 'params' and 'batch_stats' whatever the compute dtype.
"""

import functools
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from lbtrain.errors import UserError
from lbtrain.models import batch_norm
from lbtrain.models import cnn
from lbtrain.models import resnet
from lbtrain.models import vit

_MODELS = {
    'cnn': cnn.CNN,
    'resnet20': resnet.ResNet20,
    'resnet18': resnet.ResNet18,
    'resnet34': resnet.ResNet34,
    'resnet50': resnet.ResNet50,
    'resnet101': resnet.ResNet101,
    'resnet152': resnet.ResNet152,
    'vit': vit.ViT,
}
# The models without BatchNorm: no batch statistics, so no BN group to choose.
_WITHOUT_BATCH_NORM = ('vit',)

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def create_model(model_config, num_classes: int,
                 axis_name: Optional[str] = None) -> nn.Module:
  """Builds the network `model_config` (= config.model) names, for `num_classes` classes.

  `axis_name` is only for running the model under pmap/shard_map, where each call sees one
  device's slice of the batch: BN then psums its sums and counts over that axis. Under jit over
  a sharded global batch leave it None; the statistics are global already.

  Raises UserError for an unknown name or dtype, so that a bad config fails before anything is
  compiled or written.
  """
  if model_config.name not in _MODELS:
    raise UserError(f'Unknown config.model.name {model_config.name!r}; '
                    f'known names: {", ".join(_MODELS)}.')
  if model_config.dtype not in _DTYPES:
    raise UserError(f'Unknown config.model.dtype {model_config.dtype!r}; '
                    f'known dtypes: {", ".join(_DTYPES)}.')
  group_size = model_config.bn_group_size  # validated against the batch by `plan`
  dtype = _DTYPES[model_config.dtype]
  if not uses_batch_norm(model_config):
    return _vit(model_config, num_classes, dtype)
  norm = functools.partial(
      batch_norm.BatchNorm, momentum=model_config.bn_momentum,
      epsilon=model_config.bn_epsilon, group_size=group_size, axis_name=axis_name,
      dtype=dtype)
  return _MODELS[model_config.name](
      num_classes=num_classes, dtype=dtype, norm=norm,
      zero_init_last_bn=model_config.zero_init_last_bn)


def uses_batch_norm(model_config) -> bool:
  """Whether the model has BatchNorm layers, whose statistics depend on how a batch is split."""
  return model_config.name not in _WITHOUT_BATCH_NORM


def _vit(model_config, num_classes: int, dtype) -> nn.Module:
  if model_config.bn_group_size is not None:
    raise UserError(f'model.bn_group_size={model_config.bn_group_size}: model.name='
                    f'{model_config.name!r} has no BatchNorm; unset it '
                    '(--config.model.bn_group_size=None).')
  cfg = model_config.vit
  problem = vit.validate(cfg)
  if problem:
    raise UserError(problem + '.')
  return vit.ViT(num_classes=num_classes, variant=cfg.variant, width=cfg.width, depth=cfg.depth,
                 num_heads=cfg.num_heads, patch_size=cfg.patch_size,
                 posemb=cfg.posemb, pool=cfg.pool, pre_logits=cfg.pre_logits, dtype=dtype)
