"""Tables and plots of batch-size sweeps, from the runs' own records.

`lbtrain.sweep` stores each sweep's results in DIR/summary.json and renders them with
`write_report`; several sweeps (say one per recipe) can be drawn together with

    python -m lbtrain.sweep_report --sweep=LABEL=DIR [--sweep=LABEL=DIR ...] --out_dir=OUT \
        [--target_accuracy=0.85]

Steps to a target are read at evaluations: a run reaches the target at its first evaluation at
or above it, so the count is exact only to the run's evaluation interval. The perfect-scaling
line (Shallue et al. 2018: steps proportional to 1 / batch) goes through the point of the
smallest batch that reached the target, so the points above the line show where a bigger batch
stops paying for itself.

Each batch's steps to result (Shallue et al. 2018) is the earliest success over its runs, and
summary.json holds it per batch (`batches`, null when no run reached the target) next to the
fit of McCandlish et al. 2018's S = S_min (1 + B_crit / B) to those points (`fit`: s_min,
e_min, b_crit, null with a reason when the points do not determine them; see
`lbtrain.studies.critical_batch`). summary.md states the fit and the regimes the points show; the
steps-to-target plot draws the fitted curve.

Matplotlib is imported only to draw (backend Agg), so training never needs it.
"""

import csv
import dataclasses
import json
import math
import os
import textwrap
from typing import Iterable, Mapping, Sequence

from absl import flags
import numpy as np

from lbtrain import cli
from lbtrain.studies import critical_batch
from lbtrain.studies import steps_to_result
from lbtrain.studies import tune

SUMMARY_JSON = 'summary.json'
SUMMARY_CSV = 'summary.csv'
SUMMARY_MD = 'summary.md'
FINAL_ACCURACY_PNG = 'final_accuracy.png'
EVAL_ACCURACY_PNG = 'eval_accuracy.png'
STEPS_TO_TARGET_PNG = 'steps_to_target.png'
STEPS_EXAMPLES_PNG = 'steps_vs_examples.png'


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


def perfect_scaling_reference(
    points: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
  """The (batch, steps) point the perfect-scaling line goes through: the smallest batch that
  reached the target (of several at that batch, the fewest steps); None without any."""
  return min(points, default=None)


def perfect_scaling_steps(reference: tuple[int, int], batch: float) -> float:
  """Steps at `batch` if doubling the batch halved the steps from `reference` on."""
  reference_batch, reference_steps = reference
  return reference_steps * reference_batch / batch


def batch_results(runs: Sequence[RunResult],
                  target: float | None) -> list[steps_to_result.BatchResult]:
  """Steps to result per batch, smallest first, each run a trial at its batch; the search
  range of a tuned field is every value its trials at that batch took."""
  trials: dict[int, list[steps_to_result.Trial]] = {}
  for run in runs:
    trials.setdefault(run.batch, []).append(steps_to_result.Trial(
        metaparameters=run.metaparameters,
        steps_to_target=None if target is None else run.steps_to(target), diverged=run.diverged,
        capped_at=run.capped_at))
  results = []
  for batch, batch_trials in sorted(trials.items()):
    space: dict[str, set[float]] = {}
    for trial in batch_trials:
      for field, value in trial.metaparameters.items():
        space.setdefault(field, set()).add(value)
    results.append(steps_to_result.batch_result(batch, batch_trials, space))
  return results


def _winner(runs: Sequence[RunResult], batch: steps_to_result.BatchResult,
            target: float) -> RunResult | None:
  """The run that set its batch's steps to result (the first of those tied)."""
  return next((run for run in runs if run.batch == batch.global_batch_size
               and batch.steps_to_target is not None
               and run.steps_to(target) == batch.steps_to_target), None)


def batch_measurements(runs: Sequence[RunResult], target: float | None) -> dict[int, dict]:
  """Per batch, what the hardware and the winning run add to the steps to result: training
  steps per second (median over the batch's runs), the time to target they predict (steps to
  result / steps per second: no compile, no evaluation; T(B) of the time-optimal batch), and
  B_simple at the step the target was reached, when the runs measured the noise scale; and
  the winning run's workdir (e.g. to evaluate its checkpoint on the test split once)."""
  measured = {}
  for batch in batch_results(runs, target):
    rates = [r.steps_per_second for r in runs
             if r.batch == batch.global_batch_size and r.steps_per_second]
    rate = float(np.median(rates)) if rates else None
    winner = None if target is None else _winner(runs, batch, target)
    measured[batch.global_batch_size] = {
        'steps_per_second': rate,
        'seconds_to_target': (batch.steps_to_target / rate
                              if rate and batch.steps_to_target is not None else None),
        'noise_scale_at_target': (noise_scale_at(winner, batch.steps_to_target)
                                  if winner else None),
        'best_workdir': winner.workdir if winner else None}
  return measured


def noise_scale_text(runs: Sequence[RunResult], target: float,
                     fitted: critical_batch.CriticalBatchFit) -> str | None:
  """McCandlish et al.'s prediction B_crit ~ B_simple, from the smallest batch whose winning
  run measured the noise scale: its value when the target was reached, and how it moved."""
  for batch in batch_results(runs, target):
    winner = _winner(runs, batch, target)
    at_target = winner and noise_scale_at(winner, batch.steps_to_target)
    if not at_target:
      continue
    first, last = winner.noise_scale[0], winner.noise_scale[-1]
    line = (f'Noise scale: B_simple = {at_target:,.0f} at step {batch.steps_to_target} (the '
            f'target) of batch {batch.global_batch_size}\'s best run; it moved from '
            f'{first[1]:,.0f} (step {first[0]}) to {last[1]:,.0f} (step {last[0]})')
    if fitted.b_crit is not None:
      line += (f'; fitted B_crit / B_simple = {fitted.b_crit / at_target:.2f} (McCandlish et al. '
               '2018 find B_simple within a small factor of B_crit)')
    return line + '.'
  return None


def _reached(batches: Sequence[steps_to_result.BatchResult]) -> list[tuple[int, int]]:
  return [(b.global_batch_size, b.steps_to_target) for b in batches
          if b.steps_to_target is not None]


def fit_critical_batch(runs: Sequence[RunResult],
                       target: float | None) -> critical_batch.CriticalBatchFit:
  if target is None:
    return critical_batch.CriticalBatchFit(points=0, reason=(
        'no target accuracy, so no steps to it: give --target_accuracy'))
  return critical_batch.fit(_reached(batch_results(runs, target)))


def save_results(sweep_dir: str, results: Sequence[RunResult], target: float | None,
                 command: Sequence[str]) -> str:
  path = os.path.join(sweep_dir, SUMMARY_JSON)
  measured = batch_measurements(results, target)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump({'command': list(command), 'target_accuracy': target,
               'runs': [dataclasses.asdict(r) for r in results],
               'batches': [dict(b.as_dict(), **measured[b.global_batch_size])
                           for b in batch_results(results, target)],
               'fit': fit_critical_batch(results, target).as_dict()}, f, indent=1)
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


def _tuned_fields(series: Mapping[str, Sequence[RunResult]]) -> list[str]:
  return sorted({field for runs in series.values() for run in runs
                 for field in run.metaparameters})


def _columns(target: float | None, tuned: Sequence[str]) -> list[str]:
  columns = ['batch', *tuned, 'peak_lr', 'steps', 'status', 'final_eval_accuracy',
             'final_train_accuracy', 'best_eval_accuracy']
  if target is not None:
    columns += ['steps_to_target', 'examples_to_target']
  return columns + ['wall_seconds']


def _status(run: RunResult) -> str:
  if run.diverged:
    return 'diverged'
  return 'finished' if run.capped_at is None else f'capped at step {run.capped_at}'


def _values(run: RunResult, target: float | None, tuned: Sequence[str]) -> list:
  values = [run.batch, *(run.metaparameters.get(field) for field in tuned), run.peak_lr,
            run.total_steps, _status(run), run.final_accuracy, run.final_train_accuracy,
            run.best_accuracy]
  if target is not None:
    values += [run.steps_to(target), run.examples_to(target)]
  return values + [run.wall_seconds]


def write_csv(path: str, series: Mapping[str, Sequence[RunResult]],
              target: float | None) -> None:
  """Raw numbers, one row per run; an empty cell is a value the run does not have."""
  several = len(series) > 1
  tuned = _tuned_fields(series)
  with open(path, 'w', encoding='utf-8', newline='') as f:
    writer = csv.writer(f)
    writer.writerow((['sweep'] if several else []) + _columns(target, tuned))
    for label, runs in series.items():
      for run in runs:
        writer.writerow(([label] if several else [])
                        + ['' if v is None else v for v in _values(run, target, tuned)])


def _percent(value: float | None) -> str:
  return '–' if value is None else f'{100 * value:.2f} %'


def _points(run: RunResult) -> str:
  """The generalization gap at the last step, in percentage points."""
  if run.final_train_accuracy is None:
    return '–'
  return f'{100 * (run.final_train_accuracy - run.final_accuracy):+.2f} points'


def markdown_table(series: Mapping[str, Sequence[RunResult]], target: float | None) -> str:
  """The table a reader compares batches in: accuracy in %, missing values spelled out."""
  several = len(series) > 1
  tuned = bool(_tuned_fields(series))
  gap = any(run.train_evals for runs in series.values() for run in runs)
  header = (['sweep'] if several else []) + ['batch'] + (['trial'] if tuned else []) + [
      'peak lr', 'steps', 'final eval accuracy'] + (
          ['final train accuracy (eval mode)', 'gap (train - eval)'] if gap else []) + [
              'best eval accuracy']
  if target is not None:
    header += [f'steps to {target:g}', f'examples to {target:g}']
  header.append('wall time')
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  notes = []
  for label, runs in series.items():
    for run in runs:
      row = ([label] if several else []) + [str(run.batch)] + (
          [_metaparameters_text(run.metaparameters)] if tuned else []) + [
          f'{run.peak_lr:.4g}', str(run.total_steps),
          _percent(run.final_accuracy) if _status(run) == 'finished' else _status(run)] + (
              [_percent(run.final_train_accuracy), _points(run)] if gap else []) + [
                  _percent(run.best_accuracy)]
      if target is not None:
        steps, examples = run.steps_to(target), run.examples_to(target)
        row += ['not reached' if steps is None else str(steps),
                'not reached' if examples is None else f'{examples:,}']
      row.append(f'{run.wall_seconds:.0f} s')
      lines.append('| ' + ' | '.join(row) + ' |')
      if run.diverged:
        notes.append(f'- {label + ", " if several else ""}batch {run.batch}: {run.diverged}')
  text = '\n'.join(lines) + '\n'
  if target is not None:
    text += (f'\nSteps to {target:g}: the first evaluation at or above it (exact to the '
             'evaluation interval); examples = steps x batch.\n')
    for label, runs in series.items():
      if any(run.metaparameters for run in runs):
        text += '\n' + steps_to_result_table(runs, target, label if several else None)
      text += '\n' + critical_batch_text(runs, target, label if several else None)
  if notes:
    text += '\nDiverged (lbtrain stopped the run on a NaN/Inf):\n' + '\n'.join(notes) + '\n'
  return text


def _metaparameters_text(metaparameters: Mapping[str, float] | None) -> str:
  return tune.describe(metaparameters) if metaparameters else '–'


def steps_to_result_table(runs: Sequence[RunResult], target: float, label: str | None) -> str:
  """A tuned sweep's result per batch: the steps of its best trial, which trial that was, how
  the others ended, and whether the best value sat on its range's edge (widen the range)."""
  outcomes = (steps_to_result.REACHED, steps_to_result.CAPPED, steps_to_result.NOT_REACHED,
              steps_to_result.DIVERGED)
  title = f'Steps to result ({label})' if label else 'Steps to result'
  lines = [f'{title}: per batch, the first step at which any trial reached {target:g}; steps '
           'per second: training only, the median over its trials; time to target = steps / '
           '(steps per second), without compile and evaluation.', '',
           f'| batch | steps to {target:g} | examples to {target:g} | best trial | trials '
           f'{" / ".join(outcomes)} | best on its range\'s edge | steps per second | time to '
           f'target |', '|' + '---|' * 8]
  measured = batch_measurements(runs, target)
  for batch in batch_results(runs, target):
    reached = batch.steps_to_target is not None
    edges = ', '.join(f'{field} ({edge})' for field, edge in batch.on_range_edge.items())
    rate = measured[batch.global_batch_size]['steps_per_second']
    seconds = measured[batch.global_batch_size]['seconds_to_target']
    lines.append(
        f'| {batch.global_batch_size} | {batch.steps_to_target if reached else "not reached"} | '
        f'{f"{batch.examples_to_target:,}" if reached else "not reached"} | '
        f'{_metaparameters_text(batch.best_metaparameters)} | '
        f'{" / ".join(str(batch.outcomes[name]) for name in outcomes)} | {edges or "–"} | '
        f'{"–" if rate is None else f"{rate:.3g}"} | '
        f'{"–" if seconds is None else f"{seconds:.1f} s"} |')
  timed = {b: m['seconds_to_target'] for b, m in measured.items() if m['seconds_to_target']}
  if timed:
    fastest = min(timed, key=timed.get)
    lines += ['', f'Fastest to the target on this hardware: batch {fastest} '
                  f'({timed[fastest]:.1f} s of training).']
  return '\n'.join(lines) + '\n'


def _with_factor(value: float, factor: float) -> str:
  return f'{value:,.0f} ×/÷ {factor:.2f}'


def critical_batch_text(runs: Sequence[RunResult], target: float, label: str | None) -> str:
  """The fit with its uncertainty, and the regimes in words that a reader can check against
  the steps-to-target plot without trusting the model."""
  fitted = fit_critical_batch(runs, target)
  name = f'Critical batch ({label})' if label else 'Critical batch'
  if fitted.reason:
    line = f'{name}: no fit, {fitted.reason}.'
  elif fitted.note:
    line = (f'{name}: B_crit = {fitted.b_crit:,.0f}, S_min = {fitted.s_min:,.0f} steps, E_min = '
            f'{fitted.e_min:,.0f} examples (S = S_min (1 + B_crit / B), {fitted.note}).')
  else:
    line = (f'{name}: B_crit = {_with_factor(fitted.b_crit, fitted.b_crit_factor)}, S_min = '
            f'{_with_factor(fitted.s_min, fitted.s_min_factor)} steps, E_min = '
            f'{_with_factor(fitted.e_min, fitted.e_min_factor)} examples (S = S_min (1 + B_crit '
            f'/ B) fitted to log steps over {fitted.points} batches; one-sigma factors from the '
            "fit's covariance).")
  regimes = critical_batch.regimes(_reached(batch_results(runs, target)))
  noise = noise_scale_text(runs, target, fitted)
  return (f'{line}\nRegimes: {critical_batch.describe_regimes(regimes)}\n'
          + (f'{noise}\n' if noise else ''))


# One marker shape per sweep: where two sweeps land on the same point, both stay visible.
_MARKERS = ('o', 's', 'D', '^', 'v', '<', '>', 'p')


def _marker(index: int) -> dict:
  return {'marker': _MARKERS[index % len(_MARKERS)], 'markersize': 8, 'fillstyle': 'none'}


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  return pyplot


def _batch_axis(ax, batches: Iterable[int]) -> None:
  """Log-2 batch axis labelled with the batches themselves (1024, not 2^10)."""
  batches = sorted(set(batches))
  ax.set_xscale('log', base=2)
  ax.set_xticks(batches, [str(b) for b in batches])
  ax.set_xticks([], minor=True)
  ax.set_xlabel('global batch')


def plot_final_accuracy(path: str, series: Mapping[str, Sequence[RunResult]]) -> None:
  """Diverged runs sit on the bottom edge as crosses in their sweep's colour; of a tuned
  sweep's trials at one batch, the best final accuracy."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  diverged = []
  for index, (label, runs) in enumerate(series.items()):
    best: dict[int, float] = {}
    for run in runs:
      if run.final_accuracy is not None:
        best[run.batch] = max(best.get(run.batch, 0.0), run.final_accuracy)
    done = sorted(best.items())
    line, = ax.plot([b for b, _ in done], [a for _, a in done], label=label, **_marker(index))
    diverged += [(r.batch, line.get_color(), label) for r in runs if r.diverged]
  if diverged:
    bottom = ax.get_ylim()[0]
    for batch, color, label in diverged:
      ax.plot([batch], [bottom], marker='x', markersize=10, color=color, clip_on=False,
              linestyle='none', label=f'{label}: diverged')
  _batch_axis(ax, [r.batch for runs in series.values() for r in runs])
  ax.set_ylabel('final eval accuracy')
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_eval_curves(path: str, series: Mapping[str, Sequence[RunResult]]) -> None:
  """One panel per sweep, one line per batch, in the same colour for a batch in every panel."""
  plt = _pyplot()
  columns = min(2, len(series))
  rows = math.ceil(len(series) / columns)
  fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.2 * rows), sharey=True,
                           squeeze=False)
  batches = sorted({r.batch for runs in series.values() for r in runs})
  colors = plt.get_cmap('viridis')([i / max(1, len(batches) - 1) * 0.9
                                    for i in range(len(batches))])
  color_of = dict(zip(batches, colors))
  for ax, (label, runs) in zip(axes.flat, series.items()):
    labelled = set()  # a tuned sweep's trials at one batch share its colour and legend entry
    for run in runs:
      name = f'{run.batch}' + (' (diverged)' if run.diverged else '')
      ax.plot([step / run.steps_per_epoch for step, _ in run.evals],
              [accuracy for _, accuracy in run.evals], marker='.', color=color_of[run.batch],
              linestyle='--' if run.diverged else '-',
              label='_nolegend_' if name in labelled else name)
      labelled.add(name)
    ax.set_title(label)
    ax.set_xlabel('epoch')
    ax.set_ylabel('eval accuracy')
    ax.grid(alpha=0.3)
    ax.legend(title='global batch', fontsize='small')
  for ax in list(axes.flat)[len(series):]:
    ax.set_visible(False)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_steps_to_target(path: str, series: Mapping[str, Sequence[RunResult]],
                         target: float) -> None:
  """Log-log steps to result against batch, with the fitted curve and the perfect-scaling line;
  the batches that never reached the target are listed under the plot."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  reached, missed = [], []
  for index, (label, runs) in enumerate(series.items()):
    batches = batch_results(runs, target)
    points = _reached(batches)
    reached += points
    never = [str(b.global_batch_size) for b in batches if b.steps_to_target is None]
    if never:
      missed.append(f'{label}: {", ".join(never)}' if len(series) > 1 else ', '.join(never))
    line, = ax.plot([b for b, _ in points], [s for _, s in points], label=label,
                    **_marker(index))
    fitted = fit_critical_batch(runs, target)
    if fitted.reason is None:
      curve = np.geomspace(batches[0].global_batch_size, batches[-1].global_batch_size, 100)
      ax.plot(curve, fitted.steps(curve), color=line.get_color(), linestyle='--',
              label=f'{label} fit: B_crit ≈ {fitted.b_crit:,.0f}')
  reference = perfect_scaling_reference(reached)
  all_batches = [r.batch for runs in series.values() for r in runs]
  if reference is not None:
    ends = [min(all_batches), max(all_batches)]
    ax.plot(ends, [perfect_scaling_steps(reference, b) for b in ends], color='black',
            linestyle=':', label='perfect scaling (steps ∝ 1 / batch)')
  ax.set_yscale('log')
  _batch_axis(ax, all_batches)
  ax.set_ylabel(f'steps to eval accuracy ≥ {target:g}')
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize='small')
  caption = textwrap.fill('Not reached: ' + '; '.join(missed), 100) if missed else ''
  if caption:
    fig.text(0.01, 0.01, caption, fontsize='x-small', va='bottom')
  fig.tight_layout(rect=(0, 0.03 * (caption.count('\n') + 1) if caption else 0, 1, 1))
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_steps_vs_examples(path: str, series: Mapping[str, Sequence[RunResult]],
                           target: float) -> None:
  """McCandlish et al.'s trade-off: examples against steps to the target, each point a batch,
  with the fitted hyperbola (S / S_min - 1)(E / E_min - 1) = 1 and its asymptotes S_min, E_min."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  if not any(_reached(batch_results(runs, target)) for runs in series.values()):
    ax.text(0.5, 0.5, f'no batch reached eval accuracy {target:g}', ha='center',
            transform=ax.transAxes)
    fig.savefig(path, dpi=120)  # no points: log axes would have no range to show
    plt.close(fig)
    return
  for index, (label, runs) in enumerate(series.items()):
    points = _reached(batch_results(runs, target))
    line, = ax.plot([s for _, s in points], [b * s for b, s in points], label=label,
                    **_marker(index))
    for batch, steps in points:
      ax.annotate(f'{batch}', (steps, batch * steps), textcoords='offset points',
                  xytext=(4, 4), fontsize='x-small')
    fitted = fit_critical_batch(runs, target)
    if fitted.reason is None:
      batches = np.geomspace(points[0][0] / 4, points[-1][0] * 4, 200)
      color = line.get_color()
      ax.plot(fitted.steps(batches), fitted.steps(batches) * batches, color=color,
              linestyle='--', label=f'{label} fit: B_crit ≈ {fitted.b_crit:,.0f}')
      ax.axvline(fitted.s_min, color=color, linestyle=':', linewidth=0.8)
      ax.axhline(fitted.e_min, color=color, linestyle=':', linewidth=0.8)
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel(f'steps to eval accuracy ≥ {target:g}')
  ax.set_ylabel('examples to the target')
  ax.set_title('each point a batch; dotted: S_min and E_min of the fit', fontsize='small')
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize='small')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(out_dir: str, series: Mapping[str, Sequence[RunResult]],
                 target: float | None) -> list[str]:
  """summary.csv, summary.md and the plots (steps to target only with a target); their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, name) for name in (SUMMARY_CSV, SUMMARY_MD,
                                                    FINAL_ACCURACY_PNG, EVAL_ACCURACY_PNG)]
  write_csv(paths[0], series, target)
  with open(paths[1], 'w', encoding='utf-8') as f:
    f.write(markdown_table(series, target))
  plot_final_accuracy(paths[2], series)
  plot_eval_curves(paths[3], series)
  if target is not None:
    paths.append(os.path.join(out_dir, STEPS_TO_TARGET_PNG))
    plot_steps_to_target(paths[-1], series, target)
    paths.append(os.path.join(out_dir, STEPS_EXAMPLES_PNG))
    plot_steps_vs_examples(paths[-1], series, target)
  return paths


def _define_flags() -> None:
  """Only when run as a program: `lbtrain.sweep` imports this module and has flags of its own."""
  flags.DEFINE_multi_string('sweep', None, 'LABEL=DIR of a sweep folder holding summary.json; '
                            'repeat for each sweep, in legend order. LABEL=DIR1,DIR2 pools '
                            'several folders into one sweep (e.g. one that extends another\'s '
                            '--tune range): their trials count together at each batch.')
  flags.DEFINE_string('out_dir', None, 'Folder for the combined summary and plots.')
  flags.DEFINE_float('target_accuracy', None, 'Eval accuracy for steps-to-target; default: the '
                     'sweeps\' own, when they agree.')


def main(argv: list[str]) -> None:
  args = flags.FLAGS
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; use --sweep=LABEL=DIR.')
  if not args.sweep or not args.out_dir:
    cli.fail('--sweep=LABEL=DIR (one or more) and --out_dir are required.')
  series, targets = {}, set()
  for value in args.sweep:
    label, _, sweep_dirs = value.partition('=')
    if not label or not sweep_dirs:
      cli.fail(f'--sweep={value}: expected LABEL=DIR, e.g. --sweep=LARS=runs/study/lars.')
    series[label] = []
    for sweep_dir in sweep_dirs.split(','):
      if not os.path.exists(os.path.join(sweep_dir, SUMMARY_JSON)):
        cli.fail(f'{os.path.join(sweep_dir, SUMMARY_JSON)} does not exist; run the sweep '
                 '(python -m lbtrain.sweep) to the end first.')
      runs, target = load_results(sweep_dir)
      series[label] += runs
      targets.add(target)
  target = args.target_accuracy
  if target is None and len(targets) > 1:
    cli.fail(f'the sweeps were summarised at different targets {sorted(targets, key=str)}; '
          'choose one with --target_accuracy.')
  target = target if target is not None else targets.pop()
  for path in write_report(args.out_dir, series, target):
    print(path)


def run() -> None:
  _define_flags()  # here, not at import: lbtrain.sweep imports this module and has its own
  cli.run(main)


if __name__ == '__main__':
  run()
