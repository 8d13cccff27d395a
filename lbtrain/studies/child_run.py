"""Runs lbtrain as a child process: the one way the studies (the sweep, the advisor) train.

Each child is a command such as `python -m lbtrain.main ...` whose command line and output are
appended to a log, so a crash stays inside its run and every run starts with a clean jax. It
runs in its own process group, so Ctrl-C at a terminal, which goes to the foreground group,
reaches it only through the parent, once: while `forwarding_signals` is open the parent passes
SIGTERM and SIGINT on to the running child, which saves a checkpoint and exits 0, and remembers
the signal, so that it stops too and the same command resumes both.
"""

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from typing import Iterator

from lbtrain import cli
from lbtrain import preemption


@dataclasses.dataclass(frozen=True)
class Finished:
  """How a child ended."""
  code: int  # its exit code; negative: killed by that signal
  seconds: float
  output: str  # what it wrote to the log this time

  @property
  def exit_status(self) -> int:
    """The exit code; a child killed by a signal as a shell reports it (128 + signal)."""
    return 128 - self.code if self.code < 0 else self.code

  def reason(self) -> str:
    """Why it failed, in lbtrain's own words: its last error, failure or stop line, else the
    last line it wrote."""
    return (cli.last_line(self.output, 'lbtrain: error:')
            or cli.last_line(self.output, 'lbtrain: failed:')
            or cli.last_line(self.output, 'lbtrain: stopped:')
            or (self.output.strip().splitlines() or ['no output'])[-1])


class Children:
  """Starts children one at a time and forwards the signals the parent receives to the one
  running."""

  def __init__(self):
    self.signal_name: str | None = None  # the first SIGTERM / SIGINT received, e.g. 'SIGTERM'
    self._child: subprocess.Popen | None = None

  def forward(self, signum: int) -> None:
    self.signal_name = self.signal_name or signal.Signals(signum).name
    if self._child is not None and self._child.poll() is None:
      self._child.send_signal(signum)

  def run(self, command: list[str], log_path: str) -> Finished:
    """Runs `command` to its end, its command line and output appended to `log_path`."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, 'a', encoding='utf-8') as log:
      log.write(f'$ {" ".join(command)}\n')
      log.flush()
      offset = log.tell()
      start = time.monotonic()
      self._child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                     process_group=0)
      code = self._child.wait()
      self._child = None
      seconds = time.monotonic() - start
    with open(log_path, 'rb') as log:
      log.seek(offset)
      return Finished(code, seconds, log.read().decode('utf-8', errors='replace'))


@contextlib.contextmanager
def forwarding_signals() -> Iterator[Children]:
  """Children whose parent, inside the block, forwards SIGTERM and SIGINT instead of dying."""
  children = Children()
  with preemption.handling(children.forward):
    yield children
