"""The train records of the loop, written one log interval late so that no log waits for the
devices (`TrainRecords`)."""

from typing import Any

import jax
import jax.numpy as jnp

from lbtrain import metrics as metrics_lib
from lbtrain import nonfinite as nonfinite_lib
from lbtrain import plan as plan_lib


# One program per interval length stacks an interval's per-step metrics on the devices, so
# that a log copies one array per metric to the host rather than one per metric and step.
_stack = jax.jit(lambda values: jax.tree.map(lambda *steps: jnp.stack(steps), *values))


class _Interval:
  """The steps from `first` to `done` once logged: their metrics, stacked on the devices and
  on their way to the host; the host's wait for their input; and, from when their last step is
  seen finished, their training seconds and the clock's split at that moment."""

  def __init__(self, first: int, done: int, values: dict[str, jax.Array], input_wait: float):
    self.first, self.done, self.values, self.input_wait = first, done, values, input_wait
    self.seconds: float | None = None
    self.times: dict[str, float] = {}

  def finished(self, clock: metrics_lib.LoopClock) -> None:
    self.seconds, self.times = clock.lap(), clock.split()


class TrainRecords:
  """The train records of one pass of the loop, each written one log interval late, so that
  no log waits for the devices.

  At a log, the interval's metrics are stacked on the devices and their copy to the host
  starts; the record written then is the previous interval's, whose steps have finished, or
  finish, while this interval's are queued behind them. The host so never drains the queue of
  dispatched steps at a log, and the devices never idle while it writes a record.

  An interval's seconds end when its last step is seen finished (polled after each step's
  dispatch, or waited for at the next log), not when the host logs it. A host far ahead of
  the devices waits for that step, so the moment is exact; a host that keeps the devices
  waiting sees it within one step of it. Either way `train/steps_per_sec` and
  `train/examples_per_sec` are the devices' throughput, as when each log waited for its own
  interval. The input wait is the host's while it dispatched the interval's steps: the same
  span when input is what the devices wait for, as they then finish each step soon after it
  is dispatched; so `train/input_wait_fraction` keeps its meaning.

  The non-finite policy reads the intervals in order, so 'stop' still names the first bad
  step, if one log late; no record follows the interval that holds it (the steps the devices
  ran on meanwhile would not have been run without the lag). `flush` writes every logged
  interval: before an evaluation record, a checkpoint (where it also stops a run whose steps
  up to the checkpoint were not all finite) and at the end of the pass. What still waits for
  the devices: an evaluation and a checkpoint (both need the state), and every step where
  programs must run one at a time (`parallel.one_program_at_a_time`).
  """

  def __init__(self, run: plan_lib.Plan, writer: metrics_lib.MetricWriter,
               progress: metrics_lib.ProgressBar, clock: metrics_lib.LoopClock,
               nonfinite: nonfinite_lib.NonfiniteWatch, one_at_a_time: bool):
    self.run = run  # an adaptive batch's decisions extend its batch schedule
    self._writer, self._progress, self._clock = writer, progress, clock
    self._nonfinite = nonfinite
    self._one_at_a_time = one_at_a_time
    self.pending: list[Any] = []  # metrics of the steps since the last log, on the devices
    self._unwritten: _Interval | None = None
    self._running: _Interval | None = None  # the unwritten one, until seen finished

  def add(self, step_metrics: dict[str, jax.Array]) -> None:
    self.pending.append(step_metrics)
    self._poll()

  def _poll(self) -> None:
    if self._running is not None and self._running.values['train/loss'].is_ready():
      self._running.finished(self._clock)
      self._running = None

  def log(self, done: int) -> None:
    """Starts the copy of the steps since the last log; writes the interval logged before."""
    values = _stack(self.pending)
    if self._one_at_a_time:
      jax.block_until_ready(values)  # not in flight beside the next step (see parallel)
    for array in values.values():
      array.copy_to_host_async()
    interval = _Interval(done - len(self.pending) + 1, done, values,
                         self._clock.take_input_wait())
    self.pending = []
    self.flush()
    self._unwritten = self._running = interval
    self._poll()  # finished already where steps run one at a time

  def flush(self) -> None:
    """Writes the logged interval not yet written, if any; raises TrainingStopped when the
    non-finite policy stops training on it."""
    interval, self._unwritten = self._unwritten, None
    if interval is None:
      return
    if self._running is not None:
      jax.block_until_ready(interval.values)
      interval.finished(self._clock)
      self._running = None
    values = jax.device_get(interval.values)
    steps = [{name: column[i] for name, column in values.items()}
             for i in range(interval.done - interval.first + 1)]
    problem = self._nonfinite.observe(steps, interval.first)
    run = self.run
    batch = run.batches.batch_at(interval.done - 1)  # one per record (the loop logs at changes)
    summary = metrics_lib.summarise(steps, interval.seconds, interval.input_wait, batch,
                                    run.num_devices)
    summary['train/global_batch_size'] = batch
    summary['train/epoch'] = (run.batches.epoch_at(interval.done) if run.batch_changes
                              else interval.done / run.schedule_info.steps_per_epoch)
    if run.dataset.resizable:  # throughput per image size: group the records by it
      summary['train/image_size'] = run.resolution.size_at(interval.done - 1)
    summary.update(interval.times)
    if run.config.train.on_nonfinite == 'skip':
      summary['train/skipped_steps'] = self._nonfinite.skipped
    self._writer.write(interval.done, summary)
    self._progress.update(interval.done, summary['train/loss'],
                          summary['train/examples_per_sec'], summary['train/steps_per_sec'])
    if problem:
      self._nonfinite.stop(problem)
