"""Batch normalisation whose statistics belong to the global batch, not to a device's shard.

flax's `nn.BatchNorm` normalises over whatever array it is handed, so with `pmap` its statistics
are per device unless every device is reduced over, and it cannot express "groups of g
consecutive examples of the global batch" (ghost / per-worker BN) in a way that survives a change
in the number of devices. Invariant 1 of DESIGN.md needs exactly that: the same config must train
the same on 1, 8 or 2 x 4 devices. So statistics here are always built from float32 sums and
counts over a group that is defined on the global batch:

* Under `jax.jit` over a batch sharded across a mesh (the default strategy), the array this
  module sees IS the global batch; XLA turns the reductions into the right all-reduces.
* Under `pmap`/`shard_map` (`axis_name` set), each device sees its slice; the per-group sums are
  `psum`-ed over `axis_name`, so a group may span devices and no mean of means is ever taken.
"""

import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchNorm(nn.Module):
  """BatchNorm over the channel (last) axis with global or fixed-group ("ghost") statistics.

  Attributes:
    momentum: running average decay: new = momentum * old + (1 - momentum) * batch.
    epsilon: added to the variance before the square root.
    group_size: None normalises each channel over the whole global batch (and all spatial
      positions). An int g splits the global batch's first axis into consecutive groups of g
      examples, each normalised with its own statistics, as in Goyal et al. 2017 (n = 32 per
      worker) or MLPerf's BN span. The global batch must be a multiple of g in training.
    axis_name: the mapped axis over which the batch is split when running under `pmap` or
      `shard_map`; None under `jit`, where the module sees the whole global batch.
    dtype: dtype of the output (the model's compute dtype). Statistics and the normalisation
      itself are always computed in float32 whatever this is.
    scale_init: ones, or zeros for the last BN of a residual block (zero_init_last_bn).
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  group_size: Optional[int] = None
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  scale_init: Callable[..., jax.Array] = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Normalises `x` [N, ..., C] with batch statistics (train) or running statistics (eval).

    In training, running statistics are updated with the mean over groups of the group means and
    the mean over groups of the (biased) group variances. The latter is the within-group
    variance, i.e. the variance the network actually saw while training; it is smaller than the
    whole-batch variance by the spread of the group means, which is the point of ghost BN: eval
    then normalises the way training did. With group_size=None both reduce to flax's update.
    """
    features = x.shape[-1]
    scale = self.param('scale', self.scale_init, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)

    x = x.astype(jnp.float32)
    if train:
      mean, var, group_means, group_vars = self._batch_statistics(x)
      if not self.is_initializing():
        running_mean.value = (self.momentum * running_mean.value +
                              (1.0 - self.momentum) * jnp.mean(group_means, axis=0))
        running_var.value = (self.momentum * running_var.value +
                             (1.0 - self.momentum) * jnp.mean(group_vars, axis=0))
    else:
      mean, var = running_mean.value, running_var.value
    y = (x - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
    return y.astype(self.dtype)

  def _batch_statistics(self, x):
    """Returns per-example mean and variance (broadcastable to x) and the per-group ones.

    Two passes (mean, then the sum of squared deviations from it) rather than
    E[x^2] - E[x]^2: it costs one more read of x but cannot cancel catastrophically when a
    channel's mean is large next to its spread, where float32 would give a badly wrong or
    negative variance.
    """
    spatial_axes = tuple(range(1, x.ndim - 1))
    group_size, group_sum, to_examples = self._grouping(x.shape[0])
    count = group_size * math.prod(x.shape[1:-1])
    broadcast_shape = x.shape[:1] + (1,) * len(spatial_axes) + x.shape[-1:]

    group_means = group_sum(jnp.sum(x, axis=spatial_axes)) / count
    mean = to_examples(group_means).reshape(broadcast_shape)
    group_vars = group_sum(jnp.sum(jnp.square(x - mean), axis=spatial_axes)) / count
    var = to_examples(group_vars).reshape(broadcast_shape)
    return mean, var, group_means, group_vars

  def _grouping(self, local_batch: int):
    """Returns (group_size, group_sum, to_examples) for this batch layout.

    group_sum maps per-example values [n, C] to sums over each group of the global batch
    [G, C]; to_examples maps per-group values [G, C] back to this array's examples [n, C].
    """
    if self.axis_name is None:
      group_size = self._checked_group_size(local_batch)
      num_groups = local_batch // group_size

      def group_sum(values):
        return jnp.sum(values.reshape((num_groups, group_size) + values.shape[1:]), axis=1)

      def to_examples(values):
        return jnp.repeat(values, group_size, axis=0, total_repeat_length=local_batch)

      return group_size, group_sum, to_examples

    # Mapped: this device holds rows [i * n, (i + 1) * n) of the global batch. Every device
    # computes sums for all groups of the global batch (zero for groups it holds none of) and
    # psums them, so a group may straddle devices and every device gets the same statistics.
    global_batch = local_batch * jax.lax.psum(1, self.axis_name)
    group_size = self._checked_group_size(global_batch)
    num_groups = global_batch // group_size
    first_row = jax.lax.axis_index(self.axis_name) * local_batch
    group_ids = (first_row + jnp.arange(local_batch)) // group_size

    def mapped_group_sum(values):
      sums = jax.ops.segment_sum(values, group_ids, num_segments=num_groups)
      return jax.lax.psum(sums, self.axis_name)

    return group_size, mapped_group_sum, lambda values: values[group_ids]

  def _checked_group_size(self, global_batch: int) -> int:
    if self.group_size is None:
      return global_batch
    if global_batch % self.group_size:
      raise ValueError(
          f'BatchNorm group_size={self.group_size} must divide the global batch, which has '
          f'{global_batch} examples: use a global batch that is a multiple of '
          'config.model.bn_group_size, or bn_group_size=None.')
    return self.group_size
