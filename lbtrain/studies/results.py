"""What a sweep measured, per run and per batch, from the runs' own records; summary.json.

Steps to a target are read at evaluations: a run reaches the target at its first evaluation at
or above it, so the count is exact only to the run's evaluation interval. A run already at the
target at its very first evaluation measured an upper bound only (nothing says how much sooner
it got there): its batch is marked so, kept out of the fit, and `Summary.fit` says how to
evaluate sooner.

Each batch's steps to result (Shallue et al. 2018) is the earliest success over its runs, and
summary.json holds it per batch (`batches`, null when no run reached the target) next to the
fit of McCandlish et al. 2018's S = S_min (1 + B_crit / B) to those points (`fit`: s_min,
e_min, b_crit, null with a reason when the points do not determine them; see
`lbtrain.studies.critical_batch`). A `Summary` derives them once for a sweep, and summary.json,
the tables and the plots all read that one.
"""

import dataclasses
import functools
import json
import os
from typing import Iterable, Mapping, Sequence

import numpy as np

from lbtrain.studies import critical_batch
from lbtrain.studies import steps_to_result

SUMMARY_JSON = 'summary.json'


@dataclasses.dataclass(frozen=True)
class RunResult:
  """One run of a sweep: the recipe lbtrain derived at this batch, and what it measured."""
  batch: int
  peak_lr: float
  total_steps: int
  steps_per_epoch: float
  evals: tuple[tuple[int, float], ...]  # (step, eval accuracy) of every evaluation, by step
  wall_seconds: float  # summed over every attempt, so a resumed run reports all its time
  diverged: str | None = None  # lbtrain's one-line reason when it stopped on a NaN/Inf
  # A tuned sweep's trial: the tuned config fields' values (lbtrain.studies.tune); empty otherwise.
  metaparameters: Mapping[str, float] = dataclasses.field(default_factory=dict)
  capped_at: int | None = None  # stopped here, as it could not beat its batch's best trial
  # Median train/steps_per_sec over its records: training only (compile, eval, saves excluded).
  steps_per_second: float | None = None
  # (step, train/noise_scale) of every record that has one (train.noise_scale_every set).
  noise_scale: tuple[tuple[int, float], ...] = ()
  # (step, train_eval/accuracy) of every evaluation of eval.train_accuracy_split, when set.
  train_evals: tuple[tuple[int, float], ...] = ()
  workdir: str | None = None  # where the run trained (its checkpoints, metrics and log)

  @property
  def final_accuracy(self) -> float | None:
    """Accuracy at the last step; None for a run that never got there."""
    if self.diverged is None and self.evals and self.evals[-1][0] == self.total_steps:
      return self.evals[-1][1]
    return None

  @property
  def final_train_accuracy(self) -> float | None:
    """Accuracy on the training slice (eval mode) at the last step, beside final_accuracy."""
    if self.final_accuracy is None:
      return None
    return dict(self.train_evals).get(self.total_steps)

  @property
  def best_accuracy(self) -> float | None:
    return max((accuracy for _, accuracy in self.evals), default=None)

  def steps_to(self, target: float) -> int | None:
    return steps_to(self.evals, target)

  def target_at_first_eval(self, target: float | None) -> bool:
    """Whether the run reached `target` at its first evaluation: its steps to it are then an
    upper bound, with no evaluation below the target before it."""
    steps = self.steps_to(target)
    return steps is not None and steps == self.evals[0][0]

  def examples_to(self, target: float) -> int | None:
    steps = self.steps_to(target)
    return None if steps is None else steps * self.batch


def steps_to(evals: Iterable[tuple[int, float]], target: float | None) -> int | None:
  """The step of the first evaluation at or above `target`; None when none was (or no target)."""
  if target is None:
    return None
  return next((step for step, accuracy in evals if accuracy >= target), None)


def eval_points(records: Iterable[Mapping], key: str = 'eval/accuracy'
                ) -> tuple[tuple[int, float], ...]:
  """(step, value of `key`) per record that has it, by step; a repeated step keeps its last
  record."""
  points = {int(r['step']): float(r[key]) for r in records if key in r}
  return tuple(sorted(points.items()))


def median_steps_per_second(records: Iterable[Mapping]) -> float | None:
  """The run's training throughput: the median over its records, so that the first steps'
  warm-up and an interval disturbed by other work on the host do not set it."""
  values = [r['train/steps_per_sec'] for r in records if 'train/steps_per_sec' in r]
  return float(np.median(values)) if values else None


def noise_scale_at(run: RunResult, step: int) -> float | None:
  """B_simple as last recorded at or before `step` (an EMA, so the value the run had then)."""
  return next((value for at, value in reversed(run.noise_scale) if at <= step), None)


class Summary:
  """One sweep's runs and what they give per batch: steps to result, the hardware's throughput
  and the critical-batch fit, each derived once, when first asked for, however many tables and
  plots read it."""

  def __init__(self, runs: Sequence[RunResult], target: float | None):
    self.runs, self.target = runs, target

  @functools.cached_property
  def batches(self) -> list[steps_to_result.BatchResult]:
    """Steps to result per batch, smallest first, each run a trial at its batch; the search
    range of a tuned field is every value its trials at that batch took."""
    trials: dict[int, list[steps_to_result.Trial]] = {}
    for run in self.runs:
      trials.setdefault(run.batch, []).append(steps_to_result.Trial(
          metaparameters=run.metaparameters,
          steps_to_target=None if self.target is None else run.steps_to(self.target),
          diverged=run.diverged, capped_at=run.capped_at,
          upper_bound=run.target_at_first_eval(self.target)))
    results = []
    for batch, batch_trials in sorted(trials.items()):
      space: dict[str, set[float]] = {}
      for trial in batch_trials:
        for field, value in trial.metaparameters.items():
          space.setdefault(field, set()).add(value)
      results.append(steps_to_result.batch_result(batch, batch_trials, space))
    return results

  @functools.cached_property
  def reached(self) -> list[tuple[int, int]]:
    """(batch, steps to result) of each batch that reached the target, measured: not those
    whose steps are an upper bound only (`upper_bounds`)."""
    return [(b.global_batch_size, b.steps_to_target) for b in self.batches
            if b.steps_to_target is not None and not b.steps_to_target_upper_bound]

  @functools.cached_property
  def upper_bounds(self) -> list[tuple[int, int]]:
    """(batch, steps) of each batch whose best run reached the target at its first
    evaluation: the steps to result are at most these."""
    return [(b.global_batch_size, b.steps_to_target) for b in self.batches
            if b.steps_to_target_upper_bound]

  def _left_out(self) -> str | None:
    """The upper bounds the fit leaves out, and the evaluation interval that would measure
    them: a tenth of the earliest of their first evaluations, in epochs."""
    if not self.upper_bounds:
      return None
    first_epochs = min(steps / self.winners[batch].steps_per_epoch
                       for batch, steps in self.upper_bounds)
    points = ', '.join(f'batch {batch} at step {steps}' for batch, steps in self.upper_bounds)
    return (f'left out of the fit: {points} reached the target at the run\'s first evaluation, '
            'so those steps are upper bounds only; evaluate sooner to measure them, e.g. '
            f'--config.eval.every_epochs={first_epochs / 10:.2g}')

  @functools.cached_property
  def winners(self) -> dict[int, RunResult | None]:
    """Per batch, the run that set its steps to result (the first of those tied); None where
    none reached the target."""
    winners = {}
    for batch in self.batches:
      steps = batch.steps_to_target
      winners[batch.global_batch_size] = None if steps is None else next(
          (run for run in self.runs
           if run.batch == batch.global_batch_size and run.steps_to(self.target) == steps), None)
    return winners

  @functools.cached_property
  def measured(self) -> dict[int, dict]:
    """Per batch, what the hardware and the winning run add to the steps to result: training
    steps per second (median over the batch's runs), the time to target they predict (steps to
    result / steps per second: no compile, no evaluation; T(B) of the time-optimal batch), and
    B_simple at the step the target was reached, when the runs measured the noise scale; and
    the winning run's workdir (e.g. to evaluate its checkpoint on the test split once)."""
    measured = {}
    for batch in self.batches:
      rates = [r.steps_per_second for r in self.runs
               if r.batch == batch.global_batch_size and r.steps_per_second]
      rate = float(np.median(rates)) if rates else None
      winner = self.winners[batch.global_batch_size]
      measured[batch.global_batch_size] = {
          'steps_per_second': rate,
          'seconds_to_target': (batch.steps_to_target / rate
                                if rate and batch.steps_to_target is not None else None),
          'noise_scale_at_target': (noise_scale_at(winner, batch.steps_to_target)
                                    if winner else None),
          'best_workdir': winner.workdir if winner else None}
    return measured

  @functools.cached_property
  def fit(self) -> critical_batch.CriticalBatchFit:
    """S = S_min (1 + B_crit / B) fitted to the batches that reached the target."""
    if self.target is None:
      return critical_batch.CriticalBatchFit(points=0, reason=(
          'no target accuracy, so no steps to it: give --target_accuracy'))
    fitted = critical_batch.fit(self.reached)
    left_out = self._left_out()
    if left_out and fitted.points < critical_batch.MIN_POINTS:
      fitted = dataclasses.replace(fitted, reason=(
          f'{fitted.points} of the batches that reached the target measured their steps to it '
          f'(the others only bound them); the fit needs at least {critical_batch.MIN_POINTS}'))
    return dataclasses.replace(fitted, left_out=left_out)


def fit_critical_batch(runs: Sequence[RunResult],
                       target: float | None) -> critical_batch.CriticalBatchFit:
  """The critical-batch fit of `runs` alone, without the rest of their summary."""
  return Summary(runs, target).fit


def save_results(sweep_dir: str, results: Sequence[RunResult], target: float | None,
                 command: Sequence[str]) -> str:
  path = os.path.join(sweep_dir, SUMMARY_JSON)
  summary = Summary(results, target)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump({'command': list(command), 'target_accuracy': target,
               'runs': [dataclasses.asdict(r) for r in results],
               'batches': [dict(b.as_dict(), **summary.measured[b.global_batch_size])
                           for b in summary.batches],
               'fit': summary.fit.as_dict()}, f, indent=1)
    f.write('\n')
  os.replace(path + '.tmp', path)
  return path


def load_results(sweep_dir: str) -> tuple[list[RunResult], float | None]:
  with open(os.path.join(sweep_dir, SUMMARY_JSON), encoding='utf-8') as f:
    saved = json.load(f)
  runs = [RunResult(**dict(run, evals=tuple(tuple(point) for point in run['evals']),
                           noise_scale=tuple(tuple(point) for point in run['noise_scale']),
                           train_evals=tuple(tuple(point) for point in run['train_evals'])))
          for run in saved['runs']]
  return runs, saved['target_accuracy']

