"""Saving and restoring the train state with orbax-checkpoint.

Saves are asynchronous (training continues while the previous state is written) and atomic
(orbax writes into `<step>.orbax-checkpoint-tmp*` and renames it when complete), so a process
killed mid-save leaves the earlier checkpoints intact and the next start ignores the partial
one. Restores go into an abstract target that carries the current mesh's shardings, so a
checkpoint does not tie a run to the device count that wrote it.
"""

import os
import sys
from typing import Any

from absl import logging
import orbax.checkpoint as ocp

from lbtrain.errors import UserError

class Checkpointer:
  """A workdir's checkpoint folder: every `every_steps` steps, keeping the last `keep` (and,
  when `keep_every_steps` is set, every multiple of it for good)."""

  def __init__(self, directory: str, every_steps: int, keep: int,
               keep_every_steps: int | None = None):
    self._every_steps = every_steps
    self.directory = directory
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, keep_period=keep_every_steps, create=True,
            cleanup_tmp_directories=True, enable_async_checkpointing=True))

  def restore_latest(self, abstract_state: Any) -> tuple[Any, int] | None:
    """(state, step) of the newest complete checkpoint, or None when there is none.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with the target shardings. A
    checkpoint that exists but cannot be read into it (truncated file, another model) is a
    UserError that names it and says how to go on.
    """
    step = self._manager.latest_step()
    if step is None:
      return None
    # When one array cannot be read, orbax abandons the reads still in flight, and Python
    # would print each one's traceback as it is collected, burying the one-line error. They
    # are collected after the failure surfaces, so the hook stays on when the restore fails
    # (the run then ends with that error); a successful restore puts the printing hook back.
    printing_hook = sys.unraisablehook
    sys.unraisablehook = _log_abandoned_read
    try:
      state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as error:  # pylint: disable=broad-except
      older = [s for s in self._manager.all_steps() if s < step]
      hint = (f'delete {os.path.join(self.directory, str(step))} to resume from step '
              f'{max(older)}' if older else 'use a new workdir')
      message = ' '.join(str(error).split())[:300]
      raise UserError(f'checkpoint {os.path.join(self.directory, str(step))} cannot be '
                      f'restored into this model ({type(error).__name__}: {message}); '
                      f'{hint}.') from error
    sys.unraisablehook = printing_hook
    return state, step

  def is_due(self, step: int) -> bool:
    return step % self._every_steps == 0

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save; returns once the state is safe to donate again."""
    if step not in self._manager.all_steps():
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def wait(self) -> None:
    """Blocks until the last asynchronous save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self._manager.close()


def _log_abandoned_read(unraisable: Any) -> None:
  logging.debug('abandoned checkpoint read: %s', unraisable.exc_value)
