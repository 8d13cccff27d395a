"""The plots of one or more sweeps: final accuracy and eval curves per batch, and with a target
the steps to it and the examples against the steps, each batch's steps to result beside the
critical-batch fit.

The perfect-scaling line (Shallue et al. 2018: steps proportional to 1 / batch) goes through the
point of the smallest batch that reached the target, so the points above the line show where a
bigger batch stops paying for itself.

Matplotlib is imported only to draw (backend Agg), so training never needs it.
"""

import math
import textwrap
from typing import Iterable, Mapping, Sequence

import numpy as np

from lbtrain.studies.results import RunResult
from lbtrain.studies.results import Summary


def perfect_scaling_reference(
    points: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
  """The (batch, steps) point the perfect-scaling line goes through: the smallest batch that
  reached the target (of several at that batch, the fewest steps); None without any."""
  return min(points, default=None)


def perfect_scaling_steps(reference: tuple[int, int], batch: float) -> float:
  """Steps at `batch` if doubling the batch halved the steps from `reference` on."""
  reference_batch, reference_steps = reference
  return reference_steps * reference_batch / batch


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


def plot_steps_to_target(path: str, summaries: Mapping[str, Summary], target: float) -> None:
  """Log-log steps to result against batch, with the fitted curve and the perfect-scaling line;
  the batches that never reached the target are listed under the plot, those that reached it at
  their first evaluation drawn as hollow triangles (upper bounds)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  reached, missed = [], []
  for index, (label, summary) in enumerate(summaries.items()):
    batches = summary.batches
    points = summary.reached
    reached += points
    never = [str(b.global_batch_size) for b in batches if b.steps_to_target is None]
    if never:
      missed.append(f'{label}: {", ".join(never)}' if len(summaries) > 1 else ', '.join(never))
    line, = ax.plot([b for b, _ in points], [s for _, s in points], label=label,
                    **_marker(index))
    bounds = summary.upper_bounds  # reached at the first evaluation: at most these steps
    if bounds:
      ax.scatter([b for b, _ in bounds], [s for _, s in bounds], marker='v',
                 facecolors='none', edgecolors=line.get_color(),
                 label=f'{label}: first evaluation (upper bound, not fitted)')
    fitted = summary.fit
    if fitted.reason is None:
      curve = np.geomspace(batches[0].global_batch_size, batches[-1].global_batch_size, 100)
      ax.plot(curve, fitted.steps(curve), color=line.get_color(), linestyle='--',
              label=f'{label} fit: B_crit ≈ {fitted.b_crit:,.0f}')
  reference = perfect_scaling_reference(reached)
  all_batches = [r.batch for summary in summaries.values() for r in summary.runs]
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


def plot_steps_vs_examples(path: str, summaries: Mapping[str, Summary], target: float) -> None:
  """McCandlish et al.'s trade-off: examples against steps to the target, each point a batch,
  with the fitted hyperbola (S / S_min - 1)(E / E_min - 1) = 1 and its asymptotes S_min, E_min."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  if not any(summary.reached for summary in summaries.values()):
    ax.text(0.5, 0.5, f'no batch reached eval accuracy {target:g}', ha='center',
            transform=ax.transAxes)
    fig.savefig(path, dpi=120)  # no points: log axes would have no range to show
    plt.close(fig)
    return
  for index, (label, summary) in enumerate(summaries.items()):
    points = summary.reached
    line, = ax.plot([s for _, s in points], [b * s for b, s in points], label=label,
                    **_marker(index))
    for batch, steps in points:
      ax.annotate(f'{batch}', (steps, batch * steps), textcoords='offset points',
                  xytext=(4, 4), fontsize='x-small')
    fitted = summary.fit
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
