"""The training loop: open the workdir, restore, train, evaluate, checkpoint, log.

No maths and no validation live here: `plan` derives and checks every number, `build` compiles
the step, `steps` holds the maths, `workdir` owns the run folder, `train_records` writes the
train records. The loop only runs them.
"""

import contextlib
import dataclasses
import os
import shutil
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lbtrain import batch_schedule
from lbtrain import build
from lbtrain import checkpoint
from lbtrain import data
from lbtrain import describe
from lbtrain import failure_notice
from lbtrain import metrics as metrics_lib
from lbtrain import noise_scale
from lbtrain import nonfinite as nonfinite_lib
from lbtrain import parallel
from lbtrain import plan as plan_lib
from lbtrain import preemption
from lbtrain import train_records
from lbtrain.errors import RESUME_ADVICE
from lbtrain.errors import RunFailed
from lbtrain.errors import UserError
from lbtrain.workdir import RunLock
from lbtrain.workdir import Workdir


def evaluate(run: plan_lib.Plan, eval_step, state, mesh) -> dict[str, float]:
  """Loss and accuracy over every example of the eval split, each counted exactly once
  (eval/*), and the same over eval.train_accuracy_split when set (train_eval/*)."""
  results = _evaluate_split(run, eval_step, state, mesh, run.config.data, run.dataset, 'eval')
  if run.train_eval is not None:
    results.update(_evaluate_split(run, eval_step, state, mesh, *run.train_eval, 'train_eval'))
  return results


def _evaluate_split(run: plan_lib.Plan, eval_step, state, mesh,
                    data_config: ml_collections.ConfigDict, dataset: data.DatasetInfo,
                    prefix: str) -> dict[str, float]:
  """Loss and accuracy over every example of data_config.eval_split."""
  totals = None
  one_at_a_time = parallel.one_program_at_a_time(mesh)
  batches = data.eval_inputs(data_config, dataset, mesh,
                             global_batch_size=run.eval_global_batch_size,
                             image_size=run.resolution.eval_size)
  try:
    for batch in batches:
      sums = eval_step(state, batch)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
      if one_at_a_time:
        jax.block_until_ready(totals)
  finally:
    batches.close()
  totals = jax.device_get(totals)
  count = int(totals['count'])
  if count != dataset.num_eval_examples:
    raise RuntimeError(f'evaluation counted {count} examples, {data_config.eval_split} has '
                       f'{dataset.num_eval_examples}: the eval pipeline is broken.')
  return {
      f'{prefix}/loss': float(totals['loss_sum']) / count,
      f'{prefix}/accuracy': float(totals['correct']) / count,
      f'{prefix}/num_examples': count,
  }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir_path: str) -> dict[str, float]:
  """Trains `config` in `workdir_path`, resuming from its latest checkpoint; returns the last
  eval.

  Raises UserError (before writing anything) for a config, data or workdir that cannot work,
  TrainingStopped when training diverges, and RunFailed when the machine fails it (a full
  disk, out of memory).
  """
  run_start = time.perf_counter()  # MLPerf's clock: compiling counts
  workdir = Workdir(workdir_path)
  # Several processes learn of a held lock together, after the plan (`_lock`).
  workdir.open(config, check_lock=jax.process_count() == 1)
  mesh = parallel.create_mesh()
  micro_batch_size = (build.choose_micro_batch(config, mesh)
                      if config.train.micro_batch_size == 'auto' else None)
  run = plan_lib.plan(config, micro_batch_size=micro_batch_size)
  is_primary = jax.process_index() == 0
  logging.info('process %d of %d: %d local devices, %d global devices; workdir %s',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), workdir.path)
  if is_primary:
    for line in describe.describe(run).splitlines():
      logging.info('%s', line)
  compiled = build.build(run, mesh)
  train_steps = _compile_train_steps(run, compiled, mesh, workdir)
  lock = _lock(workdir)
  try:
    return _restore_and_train(run, compiled, train_steps, mesh, workdir, is_primary, run_start)
  except jax.errors.JaxRuntimeError as error:
    failure = failure_notice.published()
    if failure is not None:  # another process failed, and the collective it left failed here
      raise RunFailed(failure) from None
    if 'RESOURCE_EXHAUSTED' not in str(error) and 'Out of memory' not in str(error):
      raise
    first_line = str(error).strip().splitlines()[0][:300]
    raise RunFailed(f'the device ran out of memory ({first_line}); use '
                    f'{build.memory_advice(run)}.') from None
  finally:
    lock.release()


def _compile_train_steps(run: plan_lib.Plan, compiled: build.Steps, mesh,
                         workdir: Workdir) -> dict[tuple[int, int], Any]:
  """The train step compiled for each train image size and each global batch of the batch
  schedule (into the persistent cache), before training, so a change of either never stalls
  the loop; refuses one that cannot fit in memory. A refused run leaves no folder it made
  behind."""
  new_cache = not os.path.exists(workdir.compilation_cache_dir)
  new_workdir = not os.path.exists(workdir.path)
  build.enable_compilation_cache(run.config, workdir.compilation_cache_dir)
  train_steps = {}
  try:
    for size in run.resolution.train_sizes:
      for batch in run.batch_sizes:
        start = time.perf_counter()
        train_steps[size, batch] = compiled.compile_train_step(run, mesh, size, batch)
        logging.info('train step compiled for %d px images at global batch %d in %.1f s', size,
                     batch, time.perf_counter() - start)
        build.check_memory(run, train_steps[size, batch])
  except UserError:
    if jax.process_index() == 0 and new_cache:
      shutil.rmtree(workdir.compilation_cache_dir, ignore_errors=True)
      if new_workdir:
        with contextlib.suppress(OSError):
          os.rmdir(workdir.path)  # empty now, unless another process wrote in it meanwhile
    raise
  return train_steps


def _host_int(array: jax.Array) -> int:
  """A replicated scalar of the state, read from this process's copy."""
  return int(np.asarray(array.addressable_data(0)))


def _replicated_int(value: int, sharding) -> jax.Array:
  """An int32 scalar of the state, laid out as the one it replaces (every process sets the
  same value)."""
  return jax.make_array_from_callback((), sharding, lambda _: np.asarray(value, np.int32))


def _end_examples(run: plan_lib.Plan) -> float:
  return run.config.train.num_epochs * run.dataset.num_train_examples


def _lock(workdir: Workdir) -> RunLock:
  """Process 0 takes the run's lock; every process follows its answer (UserError if held)."""
  lock, refusal = RunLock(workdir), None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except UserError as error:
      refusal = error
  if not parallel.process_zero_says(refusal is None) and refusal is None:
    refusal = UserError(f'workdir {workdir.path} is in use by another run (process 0 says '
                        'who); wait for it to end or use another --workdir.')
  if refusal is not None:
    raise refusal
  return lock


def _restore_and_train(run: plan_lib.Plan, compiled: build.Steps,
                       train_steps: dict[tuple[int, int], Any],
                       mesh, workdir: Workdir, is_primary: bool,
                       run_start: float) -> dict[str, float]:
  config = run.config
  checkpoints = checkpoint.Checkpointer(workdir.checkpoint_dir, config.checkpoint.keep,
                                        config.checkpoint.keep_every_steps)
  # A damaged newest checkpoint is set aside and the one before it restored; one that cannot
  # be restored otherwise ends the run here, with the workdir only read (orbax made
  # checkpoints/ and removed interrupted saves; the compiled step is cached). Not inside the
  # `finally` below: closing the manager would collect orbax's abandoned reads and print each
  # one's traceback.
  restored = checkpoints.restore_latest(compiled.abstract_state, set_damaged_aside=True)
  try:
    if is_primary:
      workdir.write_config(config)
    if restored:
      state, start_step = restored
      logging.info('resumed from the checkpoint at step %d (saved as %s; now %r on %d '
                   'devices)', start_step, checkpoints.saved_layout(start_step) or 'unknown',
                   config.parallel.sharding, mesh.size)
    else:
      state, start_step = compiled.init(jax.random.key(config.train.seed)), 0
    if run.adaptive is not None:  # the batches decided so far live in the state
      run = dataclasses.replace(run, batches=batch_schedule.BatchSchedule.continued(
          start_step, _host_int(state.position.examples), _host_int(state.position.batch),
          run.dataset.num_train_examples, _end_examples(run)))
    loop = _Loop(run, compiled, train_steps, mesh, workdir, checkpoints, start_step, is_primary,
                 last_good_checkpoint=start_step if restored else None, run_start=run_start)
    try:
      return loop.train(state)
    except metrics_lib.Unwritable as error:
      with contextlib.suppress(checkpoint.SaveFailed):
        checkpoints.wait()  # a save in flight may still complete: it is where the run resumes
      raise RunFailed(f'{error}; {checkpoints.resume_point()}. {RESUME_ADVICE}') from None
  finally:
    checkpoints.close()


class _Loop:
  """One pass of training from `start_step` to the end, a stop signal or a non-finite stop."""

  def __init__(self, run: plan_lib.Plan, compiled: build.Steps,
               train_steps: dict[tuple[int, int], Any],
               mesh, workdir: Workdir, checkpoints: checkpoint.Checkpointer, start_step: int,
               is_primary: bool, last_good_checkpoint: int | None, run_start: float):
    self.run, self.compiled, self.train_steps, self.mesh = run, compiled, train_steps, mesh
    self.run_start = run_start
    self.checkpoints = checkpoints
    self.start_step = start_step
    self.is_primary = is_primary
    train = run.config.train
    self.nonfinite = nonfinite_lib.NonfiniteWatch(train.on_nonfinite,
                                                  train.max_consecutive_nonfinite,
                                                  checkpoints.directory)
    self.nonfinite.last_good_checkpoint = last_good_checkpoint
    self.workdir = workdir
    self.final: dict[str, float] = {}

  def train(self, state) -> dict[str, float]:
    run = self.run
    writer = self.workdir.metric_writer(enabled=self.is_primary, resume_step=self.start_step)
    try:
      if self.start_step >= run.last_step:
        logging.info('training already complete (%d steps%s); nothing to do', run.last_step,
                     '' if run.last_step == run.total_steps else
                     f' of {run.total_steps}: train.stop_at_step')
      else:
        reached_earlier, earlier_seconds = self._earlier_attempts()
        if reached_earlier:
          logging.info('eval.target_accuracy %s was reached at step %d; nothing to do',
                       run.config.eval.target_accuracy, self.start_step)
        else:
          self._steps(state, writer, metrics_lib.LoopClock(self.run_start, earlier_seconds))
    except BaseException:
      writer.close(quietly=True)  # what stopped the loop is what the user must read
      raise
    writer.close()
    return self.final

  def _earlier_attempts(self) -> tuple[bool, float]:
    """(whether an earlier attempt stopped at the target at this checkpoint, the wall seconds
    of the attempts up to it), from process 0's metrics; every process follows its answer."""
    reached, seconds = False, 0.0
    if self.is_primary and self.start_step:
      target = self.run.config.eval.target_accuracy
      for record in self.workdir.metric_records():  # none after start_step: the writer cut them
        seconds = record.get('time/elapsed_seconds', seconds)
        reached = reached or (target is not None and record['step'] == self.start_step
                              and record.get('eval/accuracy', -1.0) >= target)
    return parallel.process_zero_says(reached), seconds

  def _steps(self, state, writer: metrics_lib.MetricWriter,
             clock: metrics_lib.LoopClock) -> dict[str, float]:
    run, config = self.run, self.run.config
    sizes = run.resolution
    progress = metrics_lib.ProgressBar(run.last_step, enabled=self.is_primary)
    one_at_a_time = parallel.one_program_at_a_time(self.mesh)
    records = train_records.TrainRecords(run, writer, progress, clock, self.nonfinite, one_at_a_time)
    inputs = self._inputs(self.start_step)
    # Each record's steps have one image size and one batch.
    changes = frozenset(sizes.segment_starts[1:]) | frozenset(run.batches.starts[1:])
    step_at = lambda step: self.train_steps[sizes.size_at(step),
                                            self.run.batches.batch_at(step)]
    train_step = step_at(self.start_step)
    done = self.start_step
    try:
      with preemption.StopSignal() as stop_signal:
        while done < self.run.last_step:
          with clock.waiting_for_input():
            batch = next(inputs)
          state, step_metrics = train_step(state, batch)
          if one_at_a_time:
            jax.block_until_ready(step_metrics)
          records.add(step_metrics)
          done += 1
          changing = done in changes
          if self.run.decides_at(done):
            changing = self._decide(state, done, records, writer, progress)
            if changing:  # a new stream of pieces from here, at the decided batch
              inputs.close()
              inputs = self._inputs(done)
          if changing and run.batch_changes:  # the next step's batch, for the checkpoint
            state = state.replace(position=state.position.replace(
                batch=_replicated_int(self.run.batches.batch_at(done),
                                      state.position.batch.sharding)))
          stopping = stop_signal.should_stop(done)
          last = done == self.run.last_step
          if self.run.logs_at(done) or last or stopping or changing:
            self._log(done, records)
          if changing:
            train_step = step_at(done)
          reached = False
          if self.run.evaluates_at(done):
            records.flush()  # the train records up to `done` come before its eval record
            self._evaluate(state, done, writer, clock)
            reached = self._reached_target(done, writer, clock)
          if self.run.checkpoints_at(done) or last or stopping or reached:
            self._save(state, done, clock, records)
          if reached:
            if records.pending:
              self._log(done, records)
            break
          if stopping:
            logging.info('stopping at step %d on %s; run the same command to resume', done,
                         stop_signal.signal_name)
            break
    finally:
      inputs.close()  # stops the input threads before the interpreter may shut down
    records.flush()
    progress.close()
    with clock.checkpointing():
      self.checkpoints.wait()  # the last save: part of what the run cost
    writer.write(done, clock.split())  # the whole loop, last eval and save included
    return self.final

  def _inputs(self, start_step: int):
    """The global batches of the steps from `start_step` on, as far as they are decided."""
    run = self.run
    return data.train_inputs(run.config.data, run.dataset, self.mesh,
                             global_batch_size=run.config.train.global_batch_size,
                             seed=run.config.train.seed, start_step=start_step,
                             num_steps=run.last_step - start_step, sizes=run.resolution,
                             batches=run.batches)

  def _decide(self, state, done: int, records: train_records.TrainRecords,
              writer: metrics_lib.MetricWriter, progress: metrics_lib.ProgressBar) -> bool:
    """The adaptive batch's decision before step `done`, recorded; whether the batch changes.

    Reads the noise-scale EMAs (so waits for the steps before), the same values on every
    process and in a run resumed from any checkpoint before `done`: the same decision.
    """
    run = self.run
    current = run.batches.batch_at(done)
    ema = state.noise_scale
    measured = float(noise_scale.value(noise_scale.NoiseScaleState(
        gradient_sq_norm=np.asarray(ema.gradient_sq_norm.addressable_data(0)),
        trace=np.asarray(ema.trace.addressable_data(0)))))
    chosen = run.adaptive.choose(measured, current)
    records.flush()  # the records before `done` come before its decision
    writer.write(done, {'train/batch_decision': chosen,
                        'train/batch_decision_noise_scale': measured,
                        'train/batch_decision_epoch': run.batches.epoch_at(done)})
    if chosen == current:
      logging.info('step %d: B_simple %.1f; the batch stays %d', done, measured, current)
      return False
    self.run = dataclasses.replace(run, batches=run.batches.decided(done, chosen,
                                                                    _end_examples(run)))
    records.run, progress.total = self.run, self.run.last_step
    logging.info('step %d: B_simple %.1f; the batch goes from %d to %d (training ends at step '
                 '%d)', done, measured, current, chosen, self.run.total_steps)
    return True

  def _log(self, done: int, records: train_records.TrainRecords) -> None:
    self.checkpoints.check()  # a save that failed in the background stops the run here
    records.log(done)

  def _evaluate(self, state, done: int, writer, clock: metrics_lib.LoopClock) -> None:
    jax.block_until_ready(state)  # steps still running count as training, not eval
    with clock.evaluating():
      self.final = evaluate(self.run, self.compiled.eval_step, state, self.mesh)
    writer.write(done, self.final)
    logging.info('step %d: eval loss %.4f, accuracy %.4f over %d examples', done,
                 self.final['eval/loss'], self.final['eval/accuracy'],
                 self.final['eval/num_examples'])
    if 'train_eval/accuracy' in self.final:
      logging.info('step %d: train slice (eval mode) loss %.4f, accuracy %.4f over %d examples',
                   done, self.final['train_eval/loss'], self.final['train_eval/accuracy'],
                   self.final['train_eval/num_examples'])

  def _reached_target(self, done: int, writer, clock: metrics_lib.LoopClock) -> bool:
    target = self.run.config.eval.target_accuracy
    if target is None or self.final['eval/accuracy'] < target:
      return False
    seconds = clock.elapsed()
    writer.write(done, {'eval/target_accuracy': target, 'time/to_target_seconds': seconds})
    logging.info('step %d: eval accuracy %.4f reached eval.target_accuracy %s after %.1f s '
                 '(compile and evaluation included); stopping', done,
                 self.final['eval/accuracy'], target, seconds)
    return True

  def _save(self, state, done: int, clock: metrics_lib.LoopClock,
            records: train_records.TrainRecords) -> None:
    # Every record up to `done` is written before its checkpoint exists: a resume from it
    # drops the records after it and writes them again, and would lose none it had not.
    records.flush()  # and a non-finite step in them stops the run before this save
    if records.pending and self.run.config.train.on_nonfinite == 'stop':
      # Steps since the last log: none may have produced this state from a NaN/Inf. (With
      # 'skip' the state is finite by construction; they are counted at the next log.)
      problem = self.nonfinite.observe(jax.device_get(records.pending),
                                       done - len(records.pending) + 1)
      if problem:
        self.nonfinite.stop(problem)
    with clock.checkpointing():
      self.checkpoints.save(done, state)
    self.nonfinite.last_good_checkpoint = done
    logging.info('checkpoint saved at step %d', done)
