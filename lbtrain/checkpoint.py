"""Saving and restoring the train state with orbax-checkpoint.

Saves are asynchronous (training continues while the previous state is written) and atomic
(orbax writes into `<step>.orbax-checkpoint-tmp*` and renames it when complete), so a process
killed mid-save leaves the earlier checkpoints intact and the next start ignores the partial
one. Restores go into an abstract target that carries the current mesh's shardings, so a
checkpoint does not tie a run to the device count that wrote it.
"""

import contextlib
import os
import re
import sys
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

from lbtrain import sharding

from lbtrain.errors import RESUME_ADVICE
from lbtrain.errors import RunFailed
from lbtrain.errors import UserError
from lbtrain.workdir import complete_checkpoint_steps


# The OS errors a save meets, as tensorstore's messages spell them (it raises ValueError).
_OS_ERRORS = re.compile(r'No space left on device|Permission denied|No such file or directory|'
                        r'Read-only file system|Disk quota exceeded|Input/output error|'
                        r'Stale file handle')


class SaveFailed(RunFailed):
  """A checkpoint could not be written (disk full, permission revoked, folder gone)."""

class Checkpointer:
  """A workdir's checkpoint folder: every `every_steps` steps, keeping the last `keep` (and,
  when `keep_every_steps` is set, every multiple of it for good)."""

  def __init__(self, directory: str, every_steps: int, keep: int,
               keep_every_steps: int | None = None):
    self._every_steps = every_steps
    self.directory = directory
    self._saving = None  # the step of the save in flight, if any
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

  def saved_layout(self, step: int) -> str | None:
    """How the checkpoint at `step` was laid out ('update' on 8 devices), read from orbax's
    metadata for the resume log; None when it does not say."""
    try:
      metadata = self._manager.item_metadata(step)
      tree = getattr(metadata, 'tree', metadata)
      return sharding.saved_layout(jax.tree.map(
          lambda leaf: getattr(leaf, 'sharding', None), dict(tree)))
    except Exception:  # pylint: disable=broad-except
      return None  # metadata only informs the log: a checkpoint without it still restores

  def is_due(self, step: int) -> bool:
    return step % self._every_steps == 0

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save; returns once the state is safe to donate again.

    Raises SaveFailed for this save's synchronous part, or for the previous save, whose
    failure orbax reports when the next one starts.
    """
    if step in self._manager.all_steps():
      return
    self.wait()  # orbax waits for the previous save anyway; this names it if it failed
    with self._reporting(step):
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self._saving = step

  def check(self) -> None:
    """Raises SaveFailed if the save in flight has failed already; cheap, never waits."""
    with self._reporting(self._saving):
      self._manager.check_for_errors()

  def wait(self) -> None:
    """Blocks until the last asynchronous save is on disk (SaveFailed if it could not be)."""
    with self._reporting(self._saving):
      self._manager.wait_until_finished()
    self._saving = None

  def close(self) -> None:
    """Waits for the last save, then stops orbax's threads; after a failed save only the
    latter, and quietly: the failure has been reported."""
    try:
      self.wait()
    except SaveFailed:
      pass
    finally:
      self._manager.close()

  @contextlib.contextmanager
  def _reporting(self, step: int | None):
    try:
      yield
    except Exception as error:  # pylint: disable=broad-except
      raise SaveFailed(self._failure(step, error)) from None

  def _failure(self, step: int | None, error: Exception) -> str:
    chain, cause = [], error
    while cause is not None and len(chain) < 10:
      chain.append(cause)
      cause = cause.__cause__ or cause.__context__
    text = ' '.join(' '.join(str(e).split()) for e in chain)
    os_error = next((e for e in chain if isinstance(e, OSError) and e.strerror), None)
    named = _OS_ERRORS.search(text)
    if os_error is not None:
      reason = f'{os_error.strerror} ({os_error.filename or self.directory})'
    elif named:
      reason = named.group(0)
    else:
      reason = f'{type(error).__name__}: {text[:300]}'
    return (f'the checkpoint save at step {step} to {self.directory} failed: {reason}; '
            f'{self.resume_point(failed_step=step)}. {RESUME_ADVICE}')

  def resume_point(self, failed_step: int | None = None) -> str:
    """Where the same command would resume, read from the folder (orbax's own list may name a
    save that has just failed)."""
    try:
      complete = [s for s in complete_checkpoint_steps(self.directory) if s != failed_step]
    except OSError:  # the folder itself is what failed
      complete = []
    return (f'the last complete checkpoint is step {max(complete)}' if complete else
            'no checkpoint is complete')


def _log_abandoned_read(unraisable: Any) -> None:
  logging.debug('abandoned checkpoint read: %s', unraisable.exc_value)
