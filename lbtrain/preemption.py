"""Stopping cleanly when the scheduler says so (SIGTERM) or the user presses Ctrl-C (SIGINT).

The loop asks `should_stop(step)` after every step; when it says yes, the loop saves a
checkpoint at that step, waits for it to be on disk, and returns normally (exit code 0), so
the same command resumes exactly there.

One process: our own handler sets a flag. Several processes: every process must save at the
same step, so the decision comes from jax's preemption sync point, which the distributed
runtime drives from SIGTERM on any host; we then leave SIGTERM to jax and install nothing.
"""

import contextlib
import signal
import threading
from typing import Callable, Iterator

from absl import logging
import jax
from jax.experimental import multihost_utils


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def handling(handler: Callable[[int], None]) -> Iterator[None]:
  """Calls `handler(signum)` on SIGTERM and SIGINT inside the block, then restores the previous
  handlers. The one place lbtrain installs signal handlers (the loop, the studies' child runs)."""
  previous = {signum: signal.signal(signum, lambda number, frame: handler(number))
              for signum in STOP_SIGNALS}
  try:
    yield
  finally:
    for signum, old in previous.items():
      signal.signal(signum, old)


class StopSignal:
  """Context manager that turns SIGTERM/SIGINT into a request to stop after the current step."""

  def __init__(self):
    self._requested = threading.Event()
    self._handlers = contextlib.ExitStack()
    self.signal_name = None

  def _handle(self, signum):
    if self._requested.is_set() and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
    self.signal_name = signal.Signals(signum).name
    self._requested.set()
    logging.warning('%s received: finishing this step, saving a checkpoint, then exiting',
                    self.signal_name)

  def __enter__(self):
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._handlers.enter_context(handling(self._handle))
    return self

  def __exit__(self, *exc_info):
    self._handlers.close()

  def should_stop(self, step: int) -> bool:
    if jax.process_count() > 1:
      if not multihost_utils.reached_preemption_sync_point(step):
        return False
      # jax's notifier listens for SIGTERM only, on every process; which one got it, it does
      # not say.
      self.signal_name = f'SIGTERM to one of the {jax.process_count()} processes'
      return True
    return self._requested.is_set()
