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

import functools
import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


def _spatial_axes(x: jax.Array) -> tuple[int, ...]:
  return tuple(range(1, x.ndim - 1))


def _opaque(values):
  """`values` unchanged, behind a point XLA does not optimise across.

  Used on small per-example arrays only, where it costs nothing, to keep each pass over the
  activations a single fusion that reads them and writes nothing back. XLA merges equal
  expressions (`x - mean` in the forward and backward pass, say) and folds a sum of sums into
  one reduction; the shared or folded result is then written out whole and read back
  (docs/performance.md).
  """
  return jax.lax.optimization_barrier(values)


@jax.custom_vjp
def _shifted_sums(x: jax.Array):
  """Returns (s, sum of x - s, sum of (x - s)^2) over each example's positions, all [N, C].

  s is the example's own value at its central position: any constant gives the same
  statistics, and one drawn from the example's own distribution keeps x - s near the spread,
  so the squares lose nothing to a mean that is large next to it. Neither sum waits for a
  statistic of x, so they are one pass, not the two of mean-then-deviations. s is a constant
  of the gradient; the custom VJP makes that gradient the elementwise g1 + 2 g2 (x - s), which
  fuses with BN's other backward terms instead of materialising x - s.
  """
  spatial_axes = _spatial_axes(x)
  shift = x[(slice(None),) + tuple(n // 2 for n in x.shape[1:-1])]
  expand = functools.partial(jnp.expand_dims, axis=spatial_axes)
  sum_d = jnp.sum(x - expand(shift), axis=spatial_axes)
  sum_d2 = jnp.sum(jnp.square(x - expand(_opaque(shift))), axis=spatial_axes)
  return _opaque((shift, sum_d, sum_d2))


def _shifted_sums_fwd(x):
  sums = _shifted_sums(x)
  return sums, (x, sums[0])


def _shifted_sums_bwd(residuals, cotangents):
  x, shift = residuals
  _, g_sum, g_sum_sq = cotangents
  expand = functools.partial(jnp.expand_dims, axis=_spatial_axes(x))
  return (expand(g_sum) + 2.0 * expand(g_sum_sq) * (x - expand(shift)),)


_shifted_sums.defvjp(_shifted_sums_fwd, _shifted_sums_bwd)


@jax.custom_vjp
def _normalize(x, mean, mul, bias):
  """(x - mean) * mul + bias; mean and mul have x's rank, bias is [C].

  The custom VJP reduces dy and dy * (x - mean) straight from the inputs and derives bias's
  gradient from the first, where autodiff would materialise dy * mul and x - mean and read
  dy once more for bias.
  """
  return (x - mean) * mul + bias


def _normalize_fwd(x, mean, mul, bias):
  return _normalize(x, mean, mul, bias), (x, mean, mul)


def _normalize_bwd(residuals, dy):
  x, mean, mul = residuals
  broadcast_axes = tuple(i for i, n in enumerate(mean.shape) if n == 1)
  sum_dy, sum_dy_centred = _opaque((
      jnp.sum(dy, axis=broadcast_axes, keepdims=True),
      jnp.sum(dy * (x - _opaque(mean)), axis=broadcast_axes, keepdims=True)))
  d_bias = jnp.sum(sum_dy, axis=tuple(range(x.ndim - 1))).reshape(x.shape[-1:])
  return dy * mul, -sum_dy * mul, sum_dy_centred, d_bias


_normalize.defvjp(_normalize_fwd, _normalize_bwd)


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
    if not train:
      y = (x - running_mean.value) * (scale * jax.lax.rsqrt(running_var.value + self.epsilon))
      return (y + bias).astype(self.dtype)

    mean, var, group_means, group_vars = self._batch_statistics(x)
    if not self.is_initializing():
      running_mean.value = (self.momentum * running_mean.value +
                            (1.0 - self.momentum) * jnp.mean(group_means, axis=0))
      running_var.value = (self.momentum * running_var.value +
                           (1.0 - self.momentum) * jnp.mean(group_vars, axis=0))
    if self.axis_name is not None:
      # The kernel's gradient for bias sums over this device's examples only. Declared
      # per-device, bias gets the sum over devices from pcast's transpose wherever shard_map
      # tracks that (check_vma), as autodiff of `+ bias` would.
      bias = jax.lax.pcast(bias, self.axis_name, to='varying')
    y = _normalize(x, mean, scale * jax.lax.rsqrt(var + self.epsilon), bias)
    return y.astype(self.dtype)

  def _batch_statistics(self, x):
    """Returns per-example mean and variance (broadcastable to x) and the per-group ones.

    One read of x (`_shifted_sums`) gives each example's mean and sum of squared deviations,
    M2; Chan et al.'s pairwise formula merges them into each group's,
    M2_group = sum of M2 + positions * sum of (example mean - group mean)^2, on arrays of one
    value per example and channel. Every difference taken is between values of the same
    distribution, so a channel whose mean is large next to its spread loses no precision, as
    it would in E[x^2] - E[x]^2.
    """
    group_size, group_sum, to_examples = self._grouping(x.shape[0])
    positions = math.prod(x.shape[1:-1])
    broadcast_shape = x.shape[:1] + (1,) * (x.ndim - 2) + x.shape[-1:]

    shift, sum_d, sum_d2 = _shifted_sums(x)
    offsets = sum_d / positions  # each example's mean less its shift
    example_m2 = sum_d2 - sum_d * offsets
    group_means = group_sum(shift + offsets) / group_size
    mean = to_examples(group_means)
    group_m2 = group_sum(example_m2 + positions * jnp.square((shift - mean) + offsets))
    group_vars = group_m2 / (group_size * positions)
    var = to_examples(group_vars)
    return (mean.reshape(broadcast_shape), var.reshape(broadcast_shape), group_means,
            group_vars)

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
