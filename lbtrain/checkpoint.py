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
import threading
import time
from typing import Any

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp

from lbtrain import failure_notice
from lbtrain import parallel
from lbtrain import sharding

from lbtrain.errors import RESUME_ADVICE
from lbtrain.errors import RunFailed
from lbtrain.errors import UserError
from lbtrain.workdir import complete_checkpoint_steps


# The OS errors a save meets, as tensorstore's messages spell them (it raises ValueError).
_OS_ERRORS = re.compile(r'No space left on device|Permission denied|No such file or directory|'
                        r'Read-only file system|Disk quota exceeded|Input/output error|'
                        r'Stale file handle')


# Reads that fail for the folder's sake, not the checkpoint's: nothing is set aside for them.
_ACCESS_ERRORS = re.compile(r'Permission denied|Stale file handle|'
                            r'Transport endpoint is not connected')

_ITEM = 'default'  # the folder of a step's state: orbax's name for a manager's one item


class SaveFailed(RunFailed):
  """A checkpoint could not be written (disk full, permission revoked, folder gone)."""

class Checkpointer:
  """A workdir's checkpoint folder, keeping the last `keep` checkpoints (and, when
  `keep_every_steps` is set, every multiple of it for good); when to save is the plan's."""

  def __init__(self, directory: str, keep: int, keep_every_steps: int | None = None):
    self.directory = directory
    self._saving = None  # the step of the save in flight, if any
    self._failed = False  # a save failed (here or, several processes, on another)
    self._reader = ocp.StandardCheckpointHandler()  # restores without orbax's barriers
    self._orbax_barrier = ocp.multihost.get_barrier_sync_fn()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, keep_period=keep_every_steps, create=True,
            cleanup_tmp_directories=True, enable_async_checkpointing=True,
            async_options=(ocp.AsyncOptions(barrier_sync_fn=self._barrier)
                           if jax.process_count() > 1 else None)))

  def restore_latest(self, abstract_state: Any,
                     set_damaged_aside: bool = False) -> tuple[Any, int] | None:
    """(state, step) of the newest checkpoint that restores, or None when there is none.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with the target shardings. A
    checkpoint whose arrays are not this model's (the code changed) is a UserError: every
    checkpoint of the workdir is. One damaged after it was written (a truncated or missing
    file, unreadable metadata) is, with `set_damaged_aside`, renamed `damaged-<step>-<time>`
    (never deleted; orbax no longer lists it) and the next older one is tried: the data order
    is a function of (seed, step), so the steps after it are repeated exactly. Without it, or
    with no older checkpoint, it is a UserError that names it. Every process restores the same
    step: the processes agree on each read, and process 0 judges and renames.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    # When one array cannot be read, orbax abandons the reads still in flight, and Python
    # would print each one's traceback as it is collected, burying the one-line error. They
    # are collected after the failure surfaces, so the hook stays on after a failed read (the
    # run then ends with that error, or resumes from an older checkpoint).
    printing_hook = sys.unraisablehook
    sys.unraisablehook = _log_abandoned_read
    for index, step in enumerate(steps):
      path = os.path.join(self.directory, str(step))
      state, error = None, None
      try:
        state = self._reader.restore(epath.Path(path, _ITEM),
                                     args=ocp.args.StandardRestore(abstract_state))
      except Exception as caught:  # pylint: disable=broad-except
        error = caught
      failed = parallel.processes_where(error is not None)
      if not failed:
        if index == 0:
          sys.unraisablehook = printing_hook
        else:
          self._manager.reload()  # the damaged ones were renamed
        return state, step
      reason = (_reason(error) if error is not None else
                f'process {failed[0]} could not read it')
      if parallel.processes_where(bool(error is not None and _ACCESS_ERRORS.search(reason))):
        # The folder, not the checkpoint: every checkpoint would look damaged.
        raise RunFailed(f'checkpoint {path} cannot be read ({reason}); restore access to '
                        f'{self.directory}, then run the same command to resume.')
      mismatch = self._mismatch(step, abstract_state) if jax.process_index() == 0 else None
      if not parallel.process_zero_says(mismatch is None):
        raise UserError(f'checkpoint {path} holds another model\'s arrays '
                        f'({mismatch or "process 0 says which"}): it was written by another '
                        'version of the code; use a new workdir, or the code that wrote it.')
      if not set_damaged_aside or index == len(steps) - 1:
        raise UserError(f'checkpoint {path} is damaged ({reason}); '
                        + ('there is no older checkpoint: move it aside to start over, or use '
                           'a new workdir.' if index == len(steps) - 1 else
                           f'move it aside to use step {steps[index + 1]}.'))
      if jax.process_index() == 0:
        aside = os.path.join(self.directory, time.strftime(f'damaged-{step}-%Y%m%dT%H%M%SZ',
                                                           time.gmtime()))
        os.rename(path, aside)
        logging.warning('checkpoint %s is damaged (%s); moved it to %s and resuming from step '
                        '%d', path, reason, aside, steps[index + 1])
    return None

  def _mismatch(self, step: int, abstract_state: Any) -> str | None:
    """How the arrays saved at `step` differ from `abstract_state`'s, or None when they match
    (or the metadata cannot be read: damage, not another model)."""
    try:
      metadata = self._reader.metadata(epath.Path(self.directory, str(step), _ITEM))
    except Exception:  # pylint: disable=broad-except
      return None
    saved = _layout(getattr(metadata, 'item_metadata', metadata))
    wanted = _layout(abstract_state)
    differences = [f'{name}: {saved.get(name, "absent")} saved, {wanted.get(name, "absent")} '
                   'in this model' for name in sorted(set(saved) | set(wanted))
                   if saved.get(name) != wanted.get(name)]
    return '; '.join(differences[:2]) + (f' and {len(differences) - 2} more'
                                         if len(differences) > 2 else '') or None

  def saved_layout(self, step: int) -> str | None:
    """How the checkpoint at `step` was laid out ('update' on 8 devices), read from orbax's
    metadata for the resume log; None when it does not say."""
    try:
      metadata = self._reader.metadata(epath.Path(self.directory, str(step), _ITEM))
      metadata = getattr(metadata, 'item_metadata', metadata)
      tree = getattr(metadata, 'tree', metadata)
      return sharding.saved_layout(jax.tree.map(
          lambda leaf: getattr(leaf, 'sharding', None), dict(tree)))
    except Exception:  # pylint: disable=broad-except
      return None  # metadata only informs the log: a checkpoint without it still restores

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save; returns once the state is safe to donate again.

    Raises SaveFailed for this save's synchronous part, or for the previous save, whose
    failure orbax reports when the next one starts.
    """
    if step in self._manager.all_steps():
      return
    self.wait()  # orbax waits for the previous save anyway; this names it if it failed
    self._saving = step  # before: a failure in orbax's threads may be reported during save
    with self._reporting(step):
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def check(self) -> None:
    """Raises SaveFailed if the save in flight has failed already, here or (several processes)
    on another process; cheap, never waits."""
    with self._reporting(self._saving):
      self._manager.check_for_errors()
      _check_other_processes()

  def wait(self) -> None:
    """Blocks until the last asynchronous save is on disk (SaveFailed if it could not be)."""
    with self._reporting(self._saving):
      if jax.process_count() == 1:
        self._manager.wait_until_finished()
      else:
        self._wait_unless_a_process_failed()
    self._saving = None

  def _wait_unless_a_process_failed(self) -> None:
    """orbax's wait, ended early by a failure of this process's save or another's: a save
    that failed on one process never completes on the others, whose orbax threads wait for it
    at a barrier (for 20 minutes), and the failed one's wait for them."""
    outcome = []

    def wait():
      try:
        self._manager.wait_until_finished()
      except Exception as error:  # pylint: disable=broad-except
        outcome.append(error)

    waiter = threading.Thread(target=wait, name='lbtrain_checkpoint_wait', daemon=True)
    waiter.start()
    while waiter.is_alive():
      self._manager.check_for_errors()
      _check_other_processes()
      waiter.join(0.05)
    if outcome:
      raise outcome[0]

  def close(self) -> None:
    """Waits for the last save, then stops orbax's threads; after a failed save only the
    latter, and quietly: the failure has been reported. With several processes, after a failed
    save nothing: orbax's threads may wait for the failed save forever, and the process exits
    at once (main.py)."""
    try:
      self.wait()
    except SaveFailed:
      pass
    finally:
      if not (self._failed and jax.process_count() > 1):
        self._manager.close()

  def _barrier(self, key: str, timeout_ms: int) -> None:
    """orbax's barrier between the processes' save threads, but for the one place orbax calls
    it with an exception in flight: its clean-up after this process's save failed, where the
    others would wait for it until orbax's timeout. There the failure is published instead, so
    every process stops (`_wait_unless_a_process_failed`, `check`)."""
    failure = sys.exc_info()[1]
    if failure is None:
      self._orbax_barrier(key=key, timeout_ms=timeout_ms)
    elif not isinstance(failure, _OtherProcessFailed):
      failure_notice.publish(self._process_failure(self._saving, failure))

  def _process_failure(self, step: int | None, error: Exception) -> str:
    return f'process {jax.process_index()} of {jax.process_count()}: {self._failure(step, error)}'

  @contextlib.contextmanager
  def _reporting(self, step: int | None):
    try:
      yield
    except _OtherProcessFailed as failure:
      self._failed = True
      raise SaveFailed(str(failure)) from None
    except Exception as error:  # pylint: disable=broad-except
      self._failed = True
      if jax.process_count() == 1:
        raise SaveFailed(self._failure(step, error)) from None
      message = self._process_failure(step, error)
      failure_notice.publish(message)
      raise SaveFailed(message) from None

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


class _OtherProcessFailed(Exception):
  """Another process's save failed; the message is its own (`failure_notice.publish`)."""


def _check_other_processes() -> None:
  if jax.process_count() > 1:
    failure = failure_notice.published()
    if failure is not None:
      raise _OtherProcessFailed(failure)


def _layout(tree: Any) -> dict[str, str]:
  """'shape dtype' of each array of a state (or of its saved metadata), by dotted path."""
  def name(key):
    return str(next((getattr(key, a) for a in ('key', 'name', 'idx') if hasattr(key, a)), key))
  return {'.'.join(name(key) for key in path): f'{tuple(leaf.shape)} {leaf.dtype}'
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _reason(error: Exception) -> str:
  """The innermost cause of a failed read, without tensorstore's spec or pybind11 reprs."""
  chain, cause = [], error
  while cause is not None and len(chain) < 10:
    if not isinstance(cause, StopIteration):
      chain.append(cause)
    cause = cause.__cause__ or cause.__context__
  innermost = chain[-1] if chain else error
  text = ' '.join(str(innermost).split())
  text = re.split(r' \[tensorstore_spec=| See full TensorStore details', text)[0]
  text = re.sub(r'<[^<>]*pybind11[^<>]*>', '...', text)
  return f'{type(innermost).__name__}: {text}'[:300]


def _log_abandoned_read(unraisable: Any) -> None:
  logging.debug('abandoned checkpoint read: %s', unraisable.exc_value)
