"""Where each part of the train state lives on the mesh: `parallel.sharding`.

'replicated' keeps every array whole on every device (plain data parallelism). 'update' shards
the optimizer state over the data axis and constrains the gradient to the same layout, so XLA
reduce-scatters it instead of all-reducing it, each device updates its slice of the weights,
and the new parameters are all-gathered into their replicated layout (ZeRO-1; Xu et al. 2020,
"Automatic Cross-Replica Sharding of Weight Update in Data-Parallel Training"). 'fsdp' keeps
the parameters sharded between steps too and gathers them where the forward and backward pass
use them (ZeRO-3 / FSDP). The collectives are XLA's SPMD partitioner's: this module only says
which layout each leaf has, and the step is the same jnp maths on global arrays in every mode,
so norms, masks, clipping and trust ratios are computed over whole tensors whatever the layout.

The rule for a leaf: split along its largest dimension that the data axis's device count
divides (the last such on a tie, e.g. a 3x3 conv kernel's output channels); a leaf with none
(scalars, a 10-class head's bias) stays replicated. BatchNorm statistics, the step counter and
the noise-scale EMAs stay replicated in every mode (they are small, and the forward pass reads
the statistics whole).
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lbtrain import parallel

MODES = ('replicated', 'update', 'fsdp')
# Which parts of the state (TrainState fields) each mode shards.
_SHARDED_PARTS = {'replicated': (), 'update': ('opt_state',), 'fsdp': ('params', 'opt_state')}


def split_dimension(shape: tuple[int, ...], num_devices: int) -> int | None:
  """The dimension a leaf of `shape` is split along over `num_devices`, or None (replicated)."""
  if num_devices == 1:
    return None
  divisible = [(size, axis) for axis, size in enumerate(shape) if size % num_devices == 0]
  return max(divisible)[1] if divisible else None


def leaf_sharding(shape: tuple[int, ...], mesh: Mesh) -> NamedSharding:
  """A leaf split over the data axis by the rule above."""
  axis = split_dimension(shape, mesh.shape[parallel.DATA_AXIS])
  if axis is None:
    return parallel.replicated(mesh)
  spec = [None] * len(shape)
  spec[axis] = parallel.DATA_AXIS
  return NamedSharding(mesh, PartitionSpec(*spec))


def sharded(tree: Any, mesh: Mesh) -> Any:
  """A NamedSharding per leaf of `tree` (arrays or shape structs), each split by the rule."""
  return jax.tree.map(lambda x: leaf_sharding(x.shape, mesh), tree)


def state_shardings(abstract_state: Any, mesh: Mesh, mode: str) -> Any:
  """The TrainState of NamedShardings that `mode` gives `abstract_state` (a TrainState of
  shape structs): init's output, the step's input and output, the restore target."""
  if mode not in MODES:
    raise ValueError(f'unknown sharding mode {mode!r}; expected one of {MODES}')
  replicated = parallel.replicated(mesh)
  parts = {name: (sharded(getattr(abstract_state, name), mesh)
                  if name in _SHARDED_PARTS[mode] else
                  jax.tree.map(lambda _: replicated, getattr(abstract_state, name)))
           for name in ('step', 'params', 'batch_stats', 'opt_state', 'noise_scale', 'position')}
  return abstract_state.replace(**parts)


def gathered(params: Any, mesh: Mesh | None, mode: str) -> Any:
  """The parameters whole on every device where the forward pass reads them ('fsdp' keeps
  them sharded between steps); unchanged in the other modes and under pmap (`mesh` None)."""
  if mode != 'fsdp' or mesh is None:
    return params
  return jax.lax.with_sharding_constraint(params, parallel.replicated(mesh))


def reduced_gradient(grads: Any, mesh: Mesh | None, mode: str) -> Any:
  """The averaged gradient in the optimizer state's layout: under 'update' and 'fsdp' each
  device keeps only the slice it updates, which XLA computes as a reduce-scatter."""
  if mode == 'replicated' or mesh is None:
    return grads
  return jax.lax.with_sharding_constraint(grads, sharded(grads, mesh))


def per_device_bytes(abstract_state: Any, num_devices: int) -> dict[str, dict[str, int]]:
  """Bytes one of `num_devices` devices holds, per mode, of the parameters, the optimizer state
  and the averaged gradient (the gradient of a device's own examples, before the reduction, is
  whole in every mode), from `abstract_state`'s shapes alone."""

  def size(tree, split: bool) -> int:
    total = 0
    for leaf in jax.tree.leaves(tree):
      whole = int(np.prod(leaf.shape)) * leaf.dtype.itemsize
      shards = num_devices if split and split_dimension(leaf.shape, num_devices) is not None else 1
      total += whole // shards
    return total

  return {mode: {'params': size(abstract_state.params, 'params' in _SHARDED_PARTS[mode]),
                 'optimizer state': size(abstract_state.opt_state,
                                         'opt_state' in _SHARDED_PARTS[mode]),
                 'gradient': size(abstract_state.params, mode != 'replicated')}
          for mode in MODES}


def replicated_leaves(params: Any, num_devices: int) -> list[str]:
  """'/'-joined paths of the parameters the rule leaves whole (no divisible dimension)."""
  paths = jax.tree_util.tree_flatten_with_path(params)[0]
  return ['/'.join(str(getattr(key, 'key', key)) for key in path) for path, leaf in paths
          if split_dimension(leaf.shape, num_devices) is None]


def saved_layout(sharding_metadata: dict[str, Any]) -> str | None:
  """'<mode> on <n> devices' of a checkpoint, from orbax's per-array sharding metadata of its
  TrainState fields (None: the metadata does not say, e.g. single-device arrays)."""
  def split(part):
    return any(any(axis is not None for axis in getattr(leaf, 'partition_spec', ()) or ())
               for leaf in jax.tree.leaves(sharding_metadata.get(part, {})))

  meshes = [leaf.shape for leaf in jax.tree.leaves(sharding_metadata)
            if getattr(leaf, 'shape', None) is not None]
  if not meshes:
    return None
  sharded_parts = tuple(part for part in ('params', 'opt_state') if split(part))
  mode = next((mode for mode, parts in _SHARDED_PARTS.items()
               if set(parts) == set(sharded_parts)), None)
  return f'{mode!r} on {int(np.prod(meshes[0]))} devices' if mode else None
