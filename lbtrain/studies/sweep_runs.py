"""The runs of a sweep: what each is (a batch, or one trial at a batch, in its own workdir), what
lbtrain will derive for it, the sweep's record of its attempts, and what it measured.

All of it is read from the run's folder (lbtrain.workdir), which the run itself writes as a child
process: the sweep knows a run only by its files.
"""

import dataclasses
import json
import os
from typing import Mapping, Sequence

from lbtrain.errors import UserError
from lbtrain.studies import results
from lbtrain.studies import tune
from lbtrain.workdir import Workdir


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the sweep (a batch, or one trial at a batch): where it trains, the arguments
  that make it, and what lbtrain will derive for it."""
  batch: int
  workdir: Workdir
  total_steps: int
  steps_per_epoch: float
  peak_lr: float
  trial: Mapping[str, float]  # the tuned fields' values; empty in an untuned sweep
  arguments: tuple[str, ...]  # added to the sweep's command line for this run
  name: str  # 'batch 256', or 'batch 256 trial 3 (optimizer.base_lr=0.1)'

  @property
  def log(self) -> str:
    return self.workdir.sweep_log

  def evals(self) -> tuple[tuple[int, float], ...]:
    return results.eval_points(self.workdir.metric_records())

  def record(self) -> dict:
    return read_record(self.workdir)

  def latest_checkpoint(self) -> int | None:
    return (self.workdir.checkpoint_steps() or [None])[-1]

  def add_attempt(self, seconds: float, diverged: str | None,
                  stop_at_step: int | None) -> dict:
    """The sweep's record of the run with one more attempt, of `seconds`, written."""
    record = self.record()
    record = {'attempts': record['attempts'] + 1,
              'wall_seconds': record['wall_seconds'] + seconds, 'diverged': diverged,
              'stop_at_step': stop_at_step}
    path = self.workdir.sweep_record
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      json.dump(record, f)
    os.replace(path + '.tmp', path)
    return record

  def is_finished(self) -> bool:
    """lbtrain's last acts are the final evaluation and the final checkpoint: both are on disk
    (the final step's, or that of the evaluation that reached eval.target_accuracy).

    (A run killed between the two is resumed: lbtrain redoes the steps after its last
    checkpoint.)
    """
    evals = self.evals()
    saved = self.workdir.checkpoint_steps()
    if saved and any('time/to_target_seconds' in record and record['step'] == saved[-1]
                     for record in self.workdir.metric_records()):
      return True  # stopped at eval.target_accuracy
    last = self.record()['stop_at_step'] or self.total_steps
    return last in saved and bool(evals) and evals[-1][0] == last

  def result(self, target: float | None) -> results.RunResult:
    """What the run measured, for the summary."""
    record = self.record()
    evals, records = self.evals(), self.workdir.metric_records()
    stop = record['stop_at_step']
    capped = (stop is not None and evals and evals[-1][0] == stop and record['diverged'] is None
              and results.steps_to(evals, target) is None)
    return results.RunResult(
        batch=self.batch, peak_lr=self.peak_lr, total_steps=self.total_steps,
        steps_per_epoch=self.steps_per_epoch, wall_seconds=record['wall_seconds'],
        diverged=record['diverged'], evals=evals, metaparameters=dict(self.trial),
        capped_at=stop if capped else None,
        steps_per_second=results.median_steps_per_second(records),
        noise_scale=results.eval_points(records, 'train/noise_scale'),
        train_evals=results.eval_points(records, 'train_eval/accuracy'),
        workdir=self.workdir.path)


def read_record(workdir: Workdir) -> dict:
  """The sweep's record of a run: wall time over attempts, divergence, and the step its last
  attempt was capped at (train.stop_at_step; None: uncapped)."""
  if not os.path.exists(workdir.sweep_record):
    return {'attempts': 0, 'wall_seconds': 0.0, 'diverged': None, 'stop_at_step': None}
  with open(workdir.sweep_record, encoding='utf-8') as f:
    return {'stop_at_step': None, **json.load(f)}


def _run_settings(batch: int, trials: Sequence[Mapping[str, float]],
                  target: float | None
                  ) -> list[tuple[str, Mapping[str, float], list[tuple[str, float]]]]:
  """(folder below the sweep's, trial values, config settings) of each run at `batch`."""
  folder = f'batch_{batch:05d}'
  settings = [('train.global_batch_size', batch)]
  if not trials:
    return [(folder, {}, settings)]
  settings.append(('eval.target_accuracy', target))
  return [(os.path.join(folder, f'trial_{index:03d}'), trial, settings + list(trial.items()))
          for index, trial in enumerate(trials)]


def plan_runs(config, batches: list[int], sweep_dir: str,
              trials: Sequence[Mapping[str, float]], target: float | None) -> list[Run]:
  """Each run's steps and peak lr from lbtrain's own plan (the config-only part: the runs
  check the hardware), checked before any run.

  A batch or trial that makes no valid recipe, or a workdir holding checkpoints or a divergence
  of a different training config, is a UserError here rather than a failure hours into the
  sweep (or a result skipped as done that another config produced).
  """
  import jax  # pylint: disable=g-import-not-at-top
  # The schedule's milestones are computed with jax: on the CPU, so that the sweep never holds
  # accelerator memory its runs need.
  jax.config.update('jax_platforms', 'cpu')
  from lbtrain import data  # pylint: disable=g-import-not-at-top
  from lbtrain import plan  # pylint: disable=g-import-not-at-top

  num_train_examples = data.get_dataset_info(config.data).num_train_examples
  runs = []
  for batch in batches:
    for index, (folder, trial, settings) in enumerate(_run_settings(batch, trials, target)):
      run_config = config.copy_and_resolve_references()
      run_config.update_from_flattened_dict(dict(settings))
      workdir = Workdir(os.path.join(sweep_dir, folder))
      name = f'batch {batch}'
      if trials:
        name += f' trial {index} ({tune.describe(trial)})'
      try:
        recipe = plan.recipe(run_config, num_train_examples)
        info = recipe.schedule_info
        if workdir.checkpoint_steps() or read_record(workdir)['diverged']:
          workdir.resume_changes(run_config)
      except UserError as error:
        raise UserError(f'{name}: {error}') from None
      runs.append(Run(batch=batch, workdir=workdir, total_steps=recipe.batches.total_steps,
                      steps_per_epoch=info.steps_per_epoch, peak_lr=info.peak_lr, trial=trial,
                      arguments=(*tune.overrides(dict(settings)), f'--workdir={workdir.path}'),
                      name=name))
  return runs
