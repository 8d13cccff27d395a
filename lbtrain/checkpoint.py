"""Saving and restoring the train state with orbax-checkpoint.

Saves are asynchronous (training continues while the previous state is written) and atomic
(orbax writes into a temporary folder and renames it), so a crash mid-save leaves the previous
checkpoints intact. Restores go into an abstract target that carries the current mesh's
shardings, so a checkpoint does not tie a run to the device count that wrote it.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

CHECKPOINT_DIR = 'checkpoints'


class Checkpointer:
  """The workdir's `checkpoints/` folder: every `every_steps` steps, keeping the last `keep`."""

  def __init__(self, workdir: str, every_steps: int, keep: int):
    self._every_steps = every_steps
    self._manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, step: int, abstract_state: Any) -> Any:
    """`abstract_state`: a pytree of `jax.ShapeDtypeStruct` with the target shardings."""
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def is_due(self, step: int) -> bool:
    return step % self._every_steps == 0

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save; returns once the state is safe to donate again."""
    if step not in self._manager.all_steps():
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def close(self) -> None:
    """Blocks until the last asynchronous save is on disk."""
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(state: Any, shardings: Any) -> Any:
  return jax.tree.map(
      lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      state, shardings)
