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

The statistics take one pass over the activations: per group and channel, the sums of x - s and
(x - s)^2, with s one of the group's own values, give mean = s + E[x - s] and
var = E[(x - s)^2] - E[x - s]^2. A shift from the group's own distribution keeps the latter
free of the cancellation that E[x^2] - E[x]^2 suffers when a channel's mean is large next to
its spread, without the two-pass variance's second read of x that waits for the mean; and the
sums add up across devices like any others. The training forward and backward passes are
written out (custom VJPs) so that XLA fuses every read of the activations into a kernel that
writes back only y or dx.
"""

import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


def _opaque(values):
  """`values` unchanged, behind a point XLA does not optimise across.

  Used on small per-row arrays only, where it costs nothing, to keep each pass over the
  activations a single fusion that reads them and writes nothing back. XLA merges equal
  expressions (`x - mean` in the forward and backward pass, say) and folds a sum of sums into
  one reduction; the shared or folded result is then written out whole and read back
  (docs/performance.md).
  """
  return jax.lax.optimization_barrier(values)


def _reduced_axes(rows: jax.Array) -> tuple[int, ...]:
  return tuple(range(1, rows.ndim - 1))


def _per_row(values: jax.Array, rows: jax.Array) -> jax.Array:
  """[R, C] values broadcastable against rows [R, ..., C]."""
  return jnp.expand_dims(values, _reduced_axes(rows))


@jax.custom_vjp
def _shifted_sums(rows: jax.Array, shift: jax.Array):
  """Returns the sums of d and of d^2 over each row of rows [R, ..., C], d = rows - shift [R, C].

  With shift one of the row's own values, d stays near the spread, so E[d^2] - E[d]^2 loses
  nothing to a mean that is large next to it, and neither sum waits for a statistic of the
  row: one pass, not the two of mean-then-deviations. The shift is a constant of the
  gradient, which the custom VJP makes one elementwise term, g1 + 2 g2 d, that fuses with
  BN's other backward terms instead of materialising d.
  """
  shift_1, shift_2 = _opaque((shift, shift))  # one d per sum, each fused into its reduction
  sum_d = jnp.sum(rows - _per_row(shift_1, rows), axis=_reduced_axes(rows))
  sum_d2 = jnp.sum(jnp.square(rows - _per_row(shift_2, rows)), axis=_reduced_axes(rows))
  return sum_d, sum_d2


def _shifted_sums_fwd(rows, shift):
  return _shifted_sums(rows, shift), (rows, shift)


def _shifted_sums_bwd(residuals, cotangents):
  rows, shift = residuals
  g_sum, g_sum_sq = cotangents
  d_rows = _per_row(g_sum, rows) + 2.0 * _per_row(g_sum_sq, rows) * (rows - _per_row(shift, rows))
  return d_rows, jnp.zeros_like(shift)


_shifted_sums.defvjp(_shifted_sums_fwd, _shifted_sums_bwd)


@jax.custom_vjp
def _normalize(rows, mean, mul, bias):
  """(rows - mean) * mul + bias, with mean and mul [R, C] per row and bias [C].

  The custom VJP reduces dy and dy * (rows - mean) straight from the inputs and derives
  bias's gradient from the first, where autodiff would materialise dy * mul and rows - mean
  and read dy once more for bias.
  """
  return (rows - _per_row(mean, rows)) * _per_row(mul, rows) + bias


def _normalize_fwd(rows, mean, mul, bias):
  return _normalize(rows, mean, mul, bias), (rows, mean, mul)


def _normalize_bwd(residuals, dy):
  rows, mean, mul = residuals
  axes = _reduced_axes(rows)
  sum_dy, sum_dy_centred = _opaque((
      jnp.sum(dy, axis=axes),
      jnp.sum(dy * (rows - _per_row(_opaque(mean), rows)), axis=axes)))
  return dy * _per_row(mul, rows), -sum_dy * mul, sum_dy_centred, jnp.sum(sum_dy, axis=0)


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

    rows, to_rows, group_sum, group_shift, count = self._layout(x)
    # mean = shift + offset holds for any shift: a constant of the gradient, as in the kernel.
    shift = jax.lax.stop_gradient(group_shift)
    sum_d, sum_d2 = group_sum(_shifted_sums(rows, to_rows(shift)))
    offsets = sum_d / count
    group_means = shift + offsets
    # The difference of two rounded sums may dip below zero where the variance is ~0.
    group_vars = jnp.maximum(sum_d2 / count - jnp.square(offsets), 0.0)
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
    mul = scale * jax.lax.rsqrt(group_vars + self.epsilon)
    y = _normalize(rows, to_rows(group_means), to_rows(mul), bias)
    return y.reshape(x.shape).astype(self.dtype)

  def _layout(self, x: jax.Array):
    """Returns (rows, to_rows, group_sum, group_shift, count) for this batch layout.

    rows is x viewed as [R, ..., C], each row's values belonging to one group, so that a
    group's statistics are sums over its rows; to_rows maps per-group values [G, C] to per-row
    ones [R, C] and group_sum (a pytree of) per-row sums back to per-group ones. group_shift
    [G, C] is one value of each group per channel (its first example's central one), the
    same on every device; count is the number of values per group and channel.
    """
    centre = tuple(n // 2 for n in x.shape[1:-1])
    positions = math.prod(x.shape[1:-1])
    if self.axis_name is None:
      # The whole global batch is here: a group's examples are one row.
      group_size = self._checked_group_size(x.shape[0])
      rows = x.reshape((x.shape[0] // group_size, group_size) + x.shape[1:])
      same = lambda values: values
      return rows, same, same, rows[(slice(None), 0) + centre], group_size * positions

    # Mapped: this device holds rows [i * n, (i + 1) * n) of the global batch, one row per
    # example. Every device computes sums for all groups of the global batch (zero for groups
    # it holds none of) and psums them, so a group may straddle devices and every device gets
    # the same statistics.
    local_batch = x.shape[0]
    global_batch = local_batch * jax.lax.psum(1, self.axis_name)
    group_size = self._checked_group_size(global_batch)
    num_groups = global_batch // group_size
    example_ids = jax.lax.axis_index(self.axis_name) * local_batch + jnp.arange(local_batch)
    group_ids = example_ids // group_size

    def group_sum(values):
      sums = jax.tree.map(
          lambda v: jax.ops.segment_sum(v, group_ids, num_segments=num_groups), values)
      return jax.lax.psum(sums, self.axis_name)

    is_first = (example_ids % group_size == 0)[:, None]
    group_shift = group_sum(jnp.where(is_first, x[(slice(None),) + centre], 0.0))
    return x, lambda values: values[group_ids], group_sum, group_shift, group_size * positions

  def _checked_group_size(self, global_batch: int) -> int:
    if self.group_size is None:
      return global_batch
    if global_batch % self.group_size:
      raise ValueError(
          f'BatchNorm group_size={self.group_size} must divide the global batch, which has '
          f'{global_batch} examples: use a global batch that is a multiple of '
          'config.model.bn_group_size, or bn_group_size=None.')
    return self.group_size
