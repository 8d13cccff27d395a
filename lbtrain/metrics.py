"""Where numbers go: metrics.jsonl, TensorBoard event files, and a console progress line; and
the summaries and clocks that make them honest.

Only the primary process (index 0) writes; the others get a writer that does nothing, so the
loop never branches on the process index.
"""

import json
import math
import os
import sys
import time
from typing import Mapping, Sequence

import numpy as np


class Unwritable(Exception):
  """A metrics record could not be written; the loop adds where the run resumes."""


class MetricWriter:
  """Appends one JSON object per logging event and mirrors each scalar to TensorBoard."""

  def __init__(self, jsonl_path: str, events_dir: str, enabled: bool, resume_step: int = 0):
    """`resume_step`: records after it came from work the restored checkpoint does not hold;
    they are dropped so the resumed run's records continue without duplicates."""
    self._enabled = enabled
    self._jsonl = None
    self._tensorboard = None
    if enabled:
      _truncate_after(jsonl_path, resume_step)
      # tensorboardX writes event files without TensorFlow, so the trainer also runs on
      # machines that have jax but no tensorflow.
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      from tensorboardX.proto.summary_pb2 import Summary  # pylint: disable=g-import-not-at-top
      self._summary = Summary
      self._jsonl = open(jsonl_path, 'a', encoding='utf-8')
      self._tensorboard = SummaryWriter(logdir=events_dir, flush_secs=30)

  def write(self, step: int, values: Mapping[str, float]) -> None:
    """Raises Unwritable when a record cannot be written (a full disk, a folder gone)."""
    if not self._enabled:
      return
    record = {'step': int(step)}
    record.update({name: value if isinstance(value, int) else float(value)
                   for name, value in values.items()})
    try:
      self._jsonl.write(json.dumps(record) + '\n')
      self._jsonl.flush()
    except OSError as error:
      raise Unwritable(f'metrics cannot be written to {self._jsonl.name}: '
                       f'{error.strerror or error}') from None
    if not self._tensorboard_alive():
      raise Unwritable(f'TensorBoard events cannot be written to {self._tensorboard.logdir} '
                       '(its writer thread failed; is the disk full or the folder gone?)')
    # One event per record rather than one per scalar: the host writes it while the devices
    # run the next steps, and each event costs host time that every log pays.
    self._tensorboard.file_writer.add_summary(self._summary(value=[
        self._summary.Value(tag=name, simple_value=float(value))
        for name, value in values.items()]), int(step))

  def _tensorboard_alive(self) -> bool:
    """Whether tensorboardX's writer thread still runs: when a write fails, the thread dies
    and the next events would wait forever for room in its queue."""
    writer = getattr(self._tensorboard.file_writer, 'event_writer', None)
    worker = getattr(writer, '_worker', None)
    return worker is None or worker.is_alive()

  def close(self, quietly: bool = False) -> None:
    """Flushes and closes both files; raises Unwritable when the last records cannot be
    written, unless `quietly` (another failure, already on its way, is the one to report)."""
    if not self._enabled:
      return
    problem = None
    try:
      self._jsonl.close()
    except OSError as error:
      problem = f'metrics cannot be written to {self._jsonl.name}: {error.strerror or error}'
    if self._tensorboard_alive():
      try:
        self._tensorboard.close()
      except OSError as error:
        problem = problem or (f'TensorBoard events cannot be written to '
                              f'{self._tensorboard.logdir}: {error.strerror or error}')
    if problem or not self._tensorboard_alive():
      # A second close would flush into the failed file (and wait forever on a dead thread);
      # mark it closed so tensorboardX's exit hook does not try (tensorboardX 2.6).
      self._tensorboard.file_writer.event_writer._closed = True  # pylint: disable=protected-access
    if problem and not quietly:
      raise Unwritable(problem)


def read_records(path: str) -> list[dict]:
  """The records of a metrics.jsonl; a half-written last line (a run killed while writing it,
  or one still running) is left out."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


def _truncate_after(path: str, step: int) -> None:
  """Keeps the records up to `step` (and no half-written last line), atomically."""
  if not os.path.exists(path):
    return
  kept = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if record.get('step', 0) <= step:
        kept.append(line if line.endswith('\n') else line + '\n')
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.writelines(kept)
  os.replace(path + '.tmp', path)


def _format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


class ProgressBar:
  """`[#####.....] 1200/5860 20% | ETA 2m13s | loss 0.4123 | 18,300 ex/s`.

  Redrawn in place on a terminal; on a pipe or log file, printed as one line per update so
  the output stays readable.
  """

  def __init__(self, total_steps: int, enabled: bool, stream=None, width: int = 24):
    self.total = total_steps  # the last step; an adaptive batch moves it
    self._enabled = enabled
    self._stream = stream or sys.stdout
    self._width = width
    self._interactive = hasattr(self._stream, 'isatty') and self._stream.isatty()

  def update(self, step: int, loss: float, examples_per_sec: float,
             steps_per_sec: float) -> None:
    if not self._enabled:
      return
    filled = int(self._width * step / max(self.total, 1))
    eta = (self.total - step) / steps_per_sec if steps_per_sec > 0 else math.inf
    line = (f'[{"#" * filled}{"." * (self._width - filled)}] {step}/{self.total} '
            f'{100 * step / max(self.total, 1):.0f}% | ETA {_format_duration(eta)} | '
            f'loss {loss:.4f} | {examples_per_sec:,.0f} ex/s')
    self._stream.write(('\r' + line) if self._interactive else line + '\n')
    self._stream.flush()

  def close(self) -> None:
    if self._enabled and self._interactive:
      self._stream.write('\n')
      self._stream.flush()


class Stopwatch:
  """Wall time of the training steps alone: evaluation is excluded; the part of a checkpoint
  save that blocks the loop (copying the state off the devices) is not, as it slows training."""

  def __init__(self):
    self._start = time.perf_counter()
    self._paused_at = None
    self._paused_total = 0.0

  def pause(self) -> None:
    if self._paused_at is None:
      self._paused_at = time.perf_counter()

  def resume(self) -> None:
    if self._paused_at is not None:
      self._paused_total += time.perf_counter() - self._paused_at
      self._paused_at = None

  def lap(self) -> float:
    """Running seconds since the last lap, then starts a new one."""
    now = time.perf_counter()
    elapsed = now - self._start - self._paused_total
    self._start, self._paused_total = now, 0.0
    return elapsed


def summarise(values: Sequence[Mapping], seconds: float, input_wait: float,
              global_batch_size: int, num_devices: int) -> dict[str, float]:
  """Means over the steps since the last log; lr at the latest step; honest throughput."""
  summary = {name: float(np.mean([v[name] for v in values]))
             for name in ('train/loss', 'train/accuracy', 'train/grad_norm')}
  summary['train/lr'] = float(values[-1]['train/lr'])
  if 'train/noise_scale' in values[-1]:
    summary['train/noise_scale'] = float(values[-1]['train/noise_scale'])  # an EMA already
  examples_per_sec = len(values) * global_batch_size / max(seconds, 1e-9)
  summary['train/examples_per_sec'] = examples_per_sec
  summary['train/examples_per_sec_per_device'] = examples_per_sec / num_devices
  summary['train/steps_per_sec'] = len(values) / max(seconds, 1e-9)
  summary['train/input_wait_fraction'] = input_wait / max(seconds, 1e-9)
  return summary


class LoopClock:
  """Where the loop's time goes: training steps (per log interval), waiting for input,
  evaluation and checkpoints, so throughput excludes evaluation and the costs read as shares."""

  def __init__(self, run_start: float | None = None, earlier_seconds: float = 0.0):
    """`run_start`: perf_counter() when the run began (before compiling); `earlier_seconds`:
    the elapsed time of the attempts before a resume, up to the checkpoint it resumed from."""
    self._loop_start = time.perf_counter()
    self._run_start = self._loop_start if run_start is None else run_start
    self._earlier_seconds = earlier_seconds
    self._steps = Stopwatch()
    self.input_wait = 0.0  # since the last take_input_wait
    self._eval_seconds = 0.0
    self._checkpoint_seconds = 0.0

  def lap(self) -> float:
    """Training seconds since the last lap."""
    return self._steps.lap()

  def take_input_wait(self) -> float:
    """Seconds spent waiting for input since the last call."""
    wait, self.input_wait = self.input_wait, 0.0
    return wait

  def waiting_for_input(self) -> '_Timer':
    return _Timer(self, 'input_wait')

  def evaluating(self) -> '_Timer':
    return _Timer(self, '_eval_seconds', pause=self._steps)

  def checkpointing(self) -> '_Timer':
    return _Timer(self, '_checkpoint_seconds')

  def elapsed(self) -> float:
    """Wall seconds of the run so far, compile and evaluation included (MLPerf's clock)."""
    return self._earlier_seconds + time.perf_counter() - self._run_start

  def split(self) -> dict[str, float]:
    return {'time/loop_seconds': time.perf_counter() - self._loop_start,
            'time/elapsed_seconds': self.elapsed(),
            'time/eval_seconds': self._eval_seconds,
            'time/checkpoint_seconds': self._checkpoint_seconds}


class _Timer:
  """Adds the seconds of a `with` block to one of a LoopClock's totals."""

  def __init__(self, clock: LoopClock, total: str, pause: Stopwatch | None = None):
    self._clock, self._total, self._pause = clock, total, pause

  def __enter__(self):
    self._start = time.perf_counter()
    if self._pause:
      self._pause.pause()

  def __exit__(self, *exc_info):
    setattr(self._clock, self._total,
            getattr(self._clock, self._total) + time.perf_counter() - self._start)
    if self._pause:
      self._pause.resume()
