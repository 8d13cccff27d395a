"""The tables of one or more sweeps: summary.csv (raw numbers, one row per run) and summary.md
(what a reader compares batches in: the runs, then per sweep the steps to result of a tuned
sweep, the critical-batch fit and the regimes its points show)."""

import csv
from typing import Mapping, Sequence

from lbtrain.studies import critical_batch
from lbtrain.studies import steps_to_result
from lbtrain.studies import tune
from lbtrain.studies.results import noise_scale_at
from lbtrain.studies.results import RunResult
from lbtrain.studies.results import Summary


def _tuned_fields(series: Mapping[str, Sequence[RunResult]]) -> list[str]:
  return sorted({field for runs in series.values() for run in runs
                 for field in run.metaparameters})


def _columns(target: float | None, tuned: Sequence[str]) -> list[str]:
  columns = ['batch', *tuned, 'peak_lr', 'steps', 'status', 'final_eval_accuracy',
             'final_train_accuracy', 'best_eval_accuracy']
  if target is not None:
    columns += ['steps_to_target', 'examples_to_target', 'steps_to_target_upper_bound']
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
    values += [run.steps_to(target), run.examples_to(target), run.target_at_first_eval(target)]
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
  """summary.md of the runs of each sweep in `series`."""
  return markdown({label: Summary(runs, target) for label, runs in series.items()}, target)


def markdown(summaries: Mapping[str, Summary], target: float | None) -> str:
  """The table a reader compares batches in: accuracy in %, missing values spelled out; the
  summaries are at `target`."""
  series = {label: summary.runs for label, summary in summaries.items()}
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
        at_most = '≤ ' if run.target_at_first_eval(target) else ''
        row += ['not reached' if steps is None else f'{at_most}{steps}',
                'not reached' if examples is None else f'{at_most}{examples:,}']
      row.append(f'{run.wall_seconds:.0f} s')
      lines.append('| ' + ' | '.join(row) + ' |')
      if run.diverged:
        notes.append(f'- {label + ", " if several else ""}batch {run.batch}: {run.diverged}')
  text = '\n'.join(lines) + '\n'
  if target is not None:
    text += (f'\nSteps to {target:g}: the first evaluation at or above it (exact to the '
             'evaluation interval; ≤: the run\'s first evaluation, an upper bound only); '
             'examples = steps x batch.\n')
    for label, summary in summaries.items():
      if any(run.metaparameters for run in summary.runs):
        text += '\n' + steps_to_result_table(summary, label if several else None)
      text += '\n' + critical_batch_text(summary, label if several else None)
  if notes:
    text += '\nDiverged (lbtrain stopped the run on a NaN/Inf):\n' + '\n'.join(notes) + '\n'
  return text


def _metaparameters_text(metaparameters: Mapping[str, float] | None) -> str:
  return tune.describe(metaparameters) if metaparameters else '–'


def steps_to_result_table(summary: Summary, label: str | None) -> str:
  """A tuned sweep's result per batch: the steps of its best trial, which trial that was, how
  the others ended, and whether the best value sat on its range's edge (widen the range)."""
  target = summary.target
  outcomes = (steps_to_result.REACHED, steps_to_result.CAPPED, steps_to_result.NOT_REACHED,
              steps_to_result.DIVERGED)
  title = f'Steps to result ({label})' if label else 'Steps to result'
  lines = [f'{title}: per batch, the first step at which any trial reached {target:g}; steps '
           'per second: training only, the median over its trials; time to target = steps / '
           '(steps per second), without compile and evaluation.', '',
           f'| batch | steps to {target:g} | examples to {target:g} | best trial | trials '
           f'{" / ".join(outcomes)} | best on its range\'s edge | steps per second | time to '
           f'target |', '|' + '---|' * 8]
  measured = summary.measured
  for batch in summary.batches:
    reached = batch.steps_to_target is not None
    at_most = '≤ ' if batch.steps_to_target_upper_bound else ''
    edges = ', '.join(f'{field} ({edge})' for field, edge in batch.on_range_edge.items())
    rate = measured[batch.global_batch_size]['steps_per_second']
    seconds = measured[batch.global_batch_size]['seconds_to_target']
    lines.append(
        f'| {batch.global_batch_size} | '
        f'{f"{at_most}{batch.steps_to_target}" if reached else "not reached"} | '
        f'{f"{at_most}{batch.examples_to_target:,}" if reached else "not reached"} | '
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


def critical_batch_text(summary: Summary, label: str | None) -> str:
  """The fit with its uncertainty, and the regimes in words that a reader can check against
  the steps-to-target plot without trusting the model."""
  fitted = summary.fit
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
  if fitted.left_out:
    line += f'\n{name}: {fitted.left_out}.'
  regimes = critical_batch.regimes(summary.reached)
  noise = noise_scale_text(summary)
  return (f'{line}\nRegimes: {critical_batch.describe_regimes(regimes)}\n'
          + (f'{noise}\n' if noise else ''))


def noise_scale_text(summary: Summary) -> str | None:
  """McCandlish et al.'s prediction B_crit ~ B_simple, from the smallest batch whose winning
  run measured the noise scale: its value when the target was reached, and how it moved."""
  fitted = summary.fit
  for batch in summary.batches:
    winner = summary.winners[batch.global_batch_size]
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

