"""Batch-size sweeps: `python -m lbtrain.sweep --config=configs/X.py --batch_sizes=256,1024
--workdir=DIR [--config.a.b=value ...] [--target_accuracy=0.9]`.

Each global batch B trains in DIR/batch_<B> as its own `python -m lbtrain.main` process, with the
config, the `--config.*` overrides as typed, and `--config.train.global_batch_size=B`; so the
config's scaling rule and its warmup in epochs set each run's peak lr and warmup steps, a crash
stays inside its run, and every run starts with a clean jax. A run's output goes to its
train.log. Runs go one after another; several hosts sharing one sweep are not supported.

Running the same command again skips finished runs and resumes an unfinished one from its last
checkpoint, which lbtrain does exactly. A run that diverges (lbtrain stops on a NaN/Inf, exit 1)
is recorded as diverged and the sweep goes on: at a large batch that is a result. Any other
failure stops the sweep with lbtrain's exit code, naming the batch and its log. SIGTERM or Ctrl-C
is passed to the run, which saves a checkpoint and exits; the sweep then stops (exit 0, as
lbtrain) and the same command resumes it.

A tuned sweep (`--tune=optimizer.base_lr=log:0.01:1:5`, several flags make a grid; see
`lbtrain.studies.tune`) trains every trial at every batch in DIR/batch_<B>/trial_<k>, each its own
resumable run like an untuned batch, and stops each at --target_accuracy (which it requires):
steps to result (Shallue et al. 2018) only needs each trial's first evaluation at the target.
So a trial also stops (train.stop_at_step) at the best steps to the target of the trials before
it at its batch: it cannot beat them later, and reaching the target there ties them.

Once every run is done, DIR/summary.{json,csv,md} and the plots describe them
(`lbtrain.studies.sweep_report`).
"""

import os
import sys
from typing import Mapping

from absl import flags
from absl import logging
from ml_collections import config_flags

from lbtrain import cli
from lbtrain.errors import UserError
from lbtrain.studies import child_run
from lbtrain.studies import results
from lbtrain.studies import sweep_report
from lbtrain.studies import sweep_runs
from lbtrain.studies import tune
from lbtrain.workdir import RunLock
from lbtrain.workdir import Workdir

config_flags.DEFINE_config_file(
    'config', None, 'Training config file: a Python file with get_config().', lock_config=True)
flags.DEFINE_string('workdir', None, 'Sweep folder: a workdir per batch (batch_<B>) and the '
                    'summary.')
flags.DEFINE_list('batch_sizes', None, 'Global batches to train, e.g. 256,1024,4096.')
flags.DEFINE_float('target_accuracy', None, 'Also report the steps and examples each run took '
                   'to reach this eval accuracy, plot them against perfect scaling and fit the '
                   'critical batch; with --tune, each trial stops here.')
flags.DEFINE_multi_string('tune', None, 'FIELD=log:LOW:HIGH:N, FIELD=lin:LOW:HIGH:N or '
                          'FIELD=V1,V2,...: train every value (with several flags, every '
                          'combination) at every batch, each a trial stopped at '
                          '--target_accuracy; e.g. --tune=optimizer.base_lr=log:0.01:1:5.')
FLAGS = flags.FLAGS

def _batches(values: list[str] | None) -> list[int]:
  """The batches, smallest first: the smallest is the reference of the scaling plot."""
  example = 'e.g. --batch_sizes=256,1024,4096'
  if not values:
    cli.fail(f'--batch_sizes is required, {example}.')
  batches = []
  for value in values:
    if not value.strip().isdigit() or int(value) <= 0:
      cli.fail(f'--batch_sizes: {value!r} is not a positive whole number; {example}.')
    batches.append(int(value))
  if len(set(batches)) < len(batches):
    cli.fail(f'--batch_sizes lists a batch more than once ({",".join(values)}); give each once.')
  return sorted(batches)


def _cap(run: sweep_runs.Run, best: Mapping[int, int]) -> int | None:
  """The step a trial stops at because it cannot beat the best earlier trial at its batch
  (reaching the target there ties it); None: no earlier trial reached the target (or the run
  is no trial). Trials run in order, so a resumed trial gets the cap it started with.

  `best`: per batch, the fewest steps to the target of the trials before this one."""
  steps = best.get(run.batch)
  return steps if steps is not None and steps < run.total_steps else None


def _stop(run: sweep_runs.Run, signal_name: str | None) -> None:
  """Exit 0 like lbtrain after a signal: nothing failed, and the same command goes on."""
  on_signal = f' on {signal_name}' if signal_name else ''
  print(f'sweep: stopped{on_signal} before batch {run.batch} finished (latest checkpoint: step '
        f'{run.latest_checkpoint() or 0}); run the same command to resume', flush=True)
  sys.exit(0)


def _sweep(runs: list[sweep_runs.Run], base_command: list[str], target: float | None) -> None:
  """Trains every unfinished run in batch order; exits the process when the sweep must stop.

  SIGTERM / SIGINT while a run trains go to the run; the sweep then starts no further run."""
  best: dict[int, int] = {}  # per batch, the fewest steps to the target of its trials so far
  with child_run.forwarding_signals() as children:
    for index, run in enumerate(runs, start=1):
      if children.signal_name:
        _stop(run, children.signal_name)
      _train_unless_done(run, f'sweep: {run.name} ({index}/{len(runs)})', base_command,
                         _cap(run, best), children)
      if run.trial and target is not None:  # each trial's metrics read once, once it is done
        steps = results.steps_to(run.evals(), target)
        if steps is not None:
          best[run.batch] = min(steps, best.get(run.batch, steps))


def _train_unless_done(run: sweep_runs.Run, name: str, base_command: list[str], cap: int | None,
                       children: child_run.Children) -> None:
  """Trains (or resumes) the run unless it finished or diverged earlier; exits the process when
  the sweep must stop."""
  if run.is_finished():
    print(f'{name}: finished earlier, skipped', flush=True)
    return
  if run.record()['diverged']:
    print(f'{name}: diverged earlier, skipped (delete {run.workdir.path} to run it again)',
          flush=True)
    return
  try:
    RunLock(run.workdir).check_free()  # another sweep (or lbtrain) is training it now
  except UserError as error:
    cli.fail(f'{run.name}: {error}')
  resume_step = run.latest_checkpoint()
  capped = [] if cap is None else [f'--config.train.stop_at_step={cap}']
  print(f'{name}: {f"resuming at step {resume_step}" if resume_step else "starting"}, '
        f'{run.total_steps} steps'
        f'{"" if cap is None else f" (capped at step {cap}, the best so far)"}, peak lr '
        f'{run.peak_lr:g}; log {run.log}', flush=True)
  finished = children.run(base_command + list(run.arguments) + capped, run.log)
  code, seconds = finished.code, finished.seconds
  stopped = cli.last_line(finished.output, 'lbtrain: stopped:') if code == 1 else None
  record = run.add_attempt(seconds, stopped and stopped.split(";")[0], cap)
  if stopped:
    print(f"{name}: diverged after {seconds:.0f} s ({record['diverged']}); going on",
          flush=True)
  elif code != 0:
    sys.stderr.write(f'lbtrain: error: the run at {run.name} failed (exit code {code}): '
                     f'{finished.reason()} Its log: {run.log}\n')
    sys.exit(finished.exit_status)
  elif run.is_finished():
    last_step, accuracy = run.evals()[-1]
    print(f'{name}: finished in {seconds:.0f} s ({record["wall_seconds"]:.0f} s in all), '
          f'last eval accuracy {accuracy:.4f} at step {last_step}', flush=True)
  else:  # exit 0 before the last step: the run saved a checkpoint on a signal
    _stop(run, children.signal_name)


def _trials(config, overridden: Mapping, target: float | None) -> list[dict[str, float]]:
  """The trials at each batch of a tuned sweep; none for an untuned one."""
  if not FLAGS.tune:
    return []
  try:
    axes = tune.parse_axes(FLAGS.tune, config)
  except UserError as error:
    cli.fail(str(error))
  if target is None:
    cli.fail('--tune needs --target_accuracy: trials are compared by the steps they take to '
             'reach it, e.g. --target_accuracy=0.85.')
  for field in [axis.field for axis in axes] + ['eval.target_accuracy']:
    if field in overridden:
      cli.fail(f'--config.{field} and --tune both set {field}: the sweep sets it for each trial '
               f'({"from --target_accuracy" if field == "eval.target_accuracy" else "from --tune"}'
               '); drop the --config one.')
  return tune.trials(axes)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  config = cli.load_config()
  if not FLAGS.workdir:
    cli.fail('--workdir is required: the sweep folder, e.g. --workdir=runs/sweep.')
  batches = _batches(FLAGS.batch_sizes)
  target = FLAGS.target_accuracy
  if target is not None and not 0 < target <= 1:
    cli.fail(f'--target_accuracy={target}: give an eval accuracy in (0, 1], e.g. 0.9.')
  overridden = config_flags.get_override_values(FLAGS['config'])
  if 'train.global_batch_size' in overridden:
    cli.fail('the sweep sets train.global_batch_size itself: give the batches with --batch_sizes, '
          'not --config.train.global_batch_size.')
  trials = _trials(config, overridden, target)
  sweep_dir = os.path.abspath(os.path.expanduser(FLAGS.workdir))
  try:
    runs = sweep_runs.plan_runs(config, batches, sweep_dir, trials, target)
  except UserError as error:
    cli.fail(str(error))
  base_command = [sys.executable, '-m', 'lbtrain.main',
                  f'--config={cli.config_file()}',
                  *cli.config_overrides()]
  sweep_lock = RunLock(Workdir(sweep_dir))  # one sweep per folder; each run also has its own
  try:
    sweep_lock.acquire()
  except UserError as error:
    cli.fail(str(error))
  try:
    _sweep(runs, base_command, target)
  finally:
    sweep_lock.release()

  run_results = [run.result(target) for run in runs]
  results.save_results(sweep_dir, run_results, target,
                       ['python', '-m', 'lbtrain.sweep', *cli.command_line()[1:]])
  paths = sweep_report.write_report(sweep_dir, {os.path.basename(sweep_dir): run_results},
                                    target)
  with open(os.path.join(sweep_dir, sweep_report.SUMMARY_MD), encoding='utf-8') as f:
    print(f.read())  # the table summary.md holds
  print('sweep: wrote ' + ', '.join(paths), flush=True)


def run() -> None:
  # The sweep speaks in its own lines; runs log to theirs.
  cli.run(main, verbosity=logging.WARNING)


if __name__ == '__main__':
  run()
