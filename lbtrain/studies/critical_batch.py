"""The critical batch from measured steps to a target: McCandlish et al. 2018's model
S = S_min (1 + B_crit / B), fitted, and the regimes of Shallue et al. 2018 read off the points.

S_min is the fewest steps any batch can reach the target in, E_min = S_min B_crit the fewest
examples, and B_crit the batch where the run needs twice S_min steps and twice E_min examples.

The fit is least squares in log S, not S. Steps to a target span decades across a sweep and
their scatter (from seeds, from the evaluation interval) is a fraction of S rather than a fixed
number of steps; a fit in S would let the small batches, whose absolute errors are the largest,
set the intercept S_min that only the large batches measure. In log space every point counts
by its relative error, and S_min and B_crit are positive by construction. With the model's two
parameters as (log S_min, log B_crit), log S_min has a closed form for each B_crit, so the fit
is a one-dimensional search over log B_crit (a grid, then finer grids around its best point):
no starting guess, no local minimum to get stuck in.

Two batches determine the model exactly (two equations, two unknowns): the fit goes through
both points and has no residual to estimate an uncertainty from, so its factors are None and
`note` says so. A third batch gives the first uncertainty.

The uncertainty is the fit's own: the covariance sigma^2 (J^T J)^-1 of the log parameters, with
sigma^2 the residual variance over n - 2 degrees of freedom, reported as a one-sigma factor
(S_min x/÷ factor). Not a bootstrap over points: a sweep measures few batches (five to ten),
and resamples of so few points often hold fewer than three distinct batches, which cannot be
fitted. With three or four points the factor itself is rough; more batches narrow it.
"""

import dataclasses
import math
from typing import Sequence

import numpy as np

MIN_POINTS = 2
# B_crit is searched over this factor beyond the batches measured on each side; a best fit on
# the search's edge means the points do not bound B_crit (no knee in the measured range).
_SEARCH_BEYOND = 1e4
_COARSE_POINTS = 4001
_REFINE_POINTS = 401
_REFINEMENTS = 3

# Local log-log slopes -dlog S / dlog B between neighbouring batches. In the model the slope is
# B_crit / (B + B_crit): 0.8 at B = B_crit / 4 and 0.2 at B = 4 B_crit.
PERFECT_SCALING_SLOPE = 0.8  # doubling the batch cuts the steps by at least 2^0.8 = 1.74x
NO_GAIN_SLOPE = 0.2  # doubling the batch cuts the steps by at most 2^0.2 = 1.15x

PERFECT_SCALING = 'perfect scaling'
DIMINISHING_RETURNS = 'diminishing returns'
MAXIMAL_DATA_PARALLELISM = 'maximal data parallelism'


@dataclasses.dataclass(frozen=True)
class CriticalBatchFit:
  """The fitted model, or why there is none: then every number is None and `reason` says what
  the points lack."""
  points: int  # distinct batches fitted
  s_min: float | None = None
  b_crit: float | None = None
  e_min: float | None = None
  # One-sigma multiplicative uncertainties: the value lies in [value / f, value * f].
  s_min_factor: float | None = None
  b_crit_factor: float | None = None
  e_min_factor: float | None = None
  reason: str | None = None
  note: str | None = None  # what a reader must know about a fit that exists (two points: exact)
  # Batches left out of the fit, as their steps to the target are upper bounds only, and how
  # to measure them (see `lbtrain.studies.results`); None when every point was fitted.
  left_out: str | None = None

  def steps(self, global_batch_size: float) -> float:
    """The model's steps to the target at this batch."""
    return self.s_min * (1 + self.b_crit / global_batch_size)

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def _profile(batches: np.ndarray, log_steps: np.ndarray,
             log_b_crit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """For each candidate log B_crit: the best log S_min and the residual sum of squares."""
  shape = np.log1p(np.exp(log_b_crit)[:, None] / batches[None, :])
  residuals = log_steps[None, :] - shape
  log_s_min = residuals.mean(axis=1)
  return log_s_min, ((residuals - log_s_min[:, None]) ** 2).sum(axis=1)


def _merge_repeated_batches(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
  """Batches and log steps; a batch measured more than once counts once, at its mean log S,
  so that it does not outweigh the others."""
  by_batch: dict[float, list[float]] = {}
  for batch, steps in points:
    if not batch > 0 or not steps > 0:
      raise ValueError(f'(batch, steps) must both be positive, got ({batch}, {steps})')
    by_batch.setdefault(float(batch), []).append(math.log(steps))
  batches = np.array(sorted(by_batch))
  return batches, np.array([np.mean(by_batch[batch]) for batch in batches])


def fit(points: Sequence[tuple[float, float]]) -> CriticalBatchFit:
  """Fits S = S_min (1 + B_crit / B) to (global batch, steps to target) points."""
  batches, log_steps = _merge_repeated_batches(points)
  n = len(batches)
  if n < MIN_POINTS:
    return CriticalBatchFit(points=n, reason=(
        f'{n} batch{"" if n == 1 else "es"} reached the target; the fit needs at least '
        f'{MIN_POINTS} (two parameters)'))
  if n == 2:
    return _through_two_points(batches, np.exp(log_steps))
  low = math.log(batches[0] / _SEARCH_BEYOND)
  high = math.log(batches[-1] * _SEARCH_BEYOND)
  grid = np.linspace(low, high, _COARSE_POINTS)
  _, rss = _profile(batches, log_steps, grid)
  best = int(np.argmin(rss))
  if best == 0:
    return CriticalBatchFit(points=n, reason=_below_smallest(batches[0]))
  if best == len(grid) - 1:
    return CriticalBatchFit(points=n, reason=_above_largest(batches[-1]))
  for _ in range(_REFINEMENTS):
    grid = np.linspace(grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)],
                       _REFINE_POINTS)
    _, rss = _profile(batches, log_steps, grid)
    best = int(np.argmin(rss))
  log_b_crit = grid[best]
  log_s_min = _profile(batches, log_steps, np.array([log_b_crit]))[0][0]
  b_crit = math.exp(log_b_crit)
  jacobian = np.stack([np.ones(n), b_crit / (batches + b_crit)], axis=1)
  covariance = rss[best] / (n - 2) * np.linalg.inv(jacobian.T @ jacobian)
  var_log_e_min = covariance[0, 0] + covariance[1, 1] + 2 * covariance[0, 1]
  s_min = math.exp(log_s_min)
  return CriticalBatchFit(
      points=n, s_min=s_min, b_crit=b_crit, e_min=s_min * b_crit,
      s_min_factor=math.exp(math.sqrt(covariance[0, 0])),
      b_crit_factor=math.exp(math.sqrt(covariance[1, 1])),
      e_min_factor=math.exp(math.sqrt(max(var_log_e_min, 0.0))))


def _below_smallest(smallest: float) -> str:
  return ('the steps barely fall with the batch: B_crit lies below the smallest batch measured '
          f'({smallest:g}); measure smaller batches')


def _above_largest(largest: float) -> str:
  return ('the steps fall as 1 / batch throughout (perfect scaling): B_crit lies above the '
          f'largest batch measured ({largest:g}); measure larger batches')


def _through_two_points(batches: np.ndarray, steps: np.ndarray) -> CriticalBatchFit:
  """S_1 (1 + B_crit / B_2) = S_2 (1 + B_crit / B_1) solved for B_crit: a knee exists only if
  the larger batch takes fewer steps (S_2 < S_1) but more examples (S_2 B_2 > S_1 B_1)."""
  (b1, b2), (s1, s2) = batches, steps
  if not s2 < s1:
    return CriticalBatchFit(points=2, reason=_below_smallest(b1))
  if not s2 * b2 > s1 * b1:
    return CriticalBatchFit(points=2, reason=_above_largest(b2))
  b_crit = (s1 - s2) / (s2 / b1 - s1 / b2)
  # The same verdict as the search of three or more points, whose range ends here: beyond it
  # two points do not bound B_crit either (a tiny gain, or a knee far outside the batches).
  if b_crit > b2 * _SEARCH_BEYOND:
    return CriticalBatchFit(points=2, reason=_above_largest(b2))
  if b_crit < b1 / _SEARCH_BEYOND:
    return CriticalBatchFit(points=2, reason=_below_smallest(b1))
  s_min = s1 / (1 + b_crit / b1)
  return CriticalBatchFit(points=2, s_min=float(s_min), b_crit=float(b_crit),
                          e_min=float(s_min * b_crit), note=(
                              'exact through 2 batches: no residual, so no uncertainty; a third '
                              'batch gives one'))


@dataclasses.dataclass(frozen=True)
class Regime:
  """A run of neighbouring measured batches in one regime."""
  name: str  # PERFECT_SCALING, DIMINISHING_RETURNS or MAXIMAL_DATA_PARALLELISM
  first_batch: int
  last_batch: int
  speedup_per_doubling: float  # S(first) / S(last), per doubling of the batch between them


def _regime_of(slope: float) -> str:
  if slope >= PERFECT_SCALING_SLOPE:
    return PERFECT_SCALING
  if slope <= NO_GAIN_SLOPE:
    return MAXIMAL_DATA_PARALLELISM
  return DIMINISHING_RETURNS


def _slope(first: tuple[int, int], last: tuple[int, int]) -> float:
  (first_batch, first_steps), (last_batch, last_steps) = first, last
  return -math.log(last_steps / first_steps) / math.log(last_batch / first_batch)


def regimes(points: Sequence[tuple[int, int]]) -> list[Regime]:
  """The regimes from the measured points alone (no fit), smallest batch first: each pair of
  neighbouring batches is classed by its log-log slope, and neighbouring pairs of one class
  merge. The points are the batches that reached the target, one (batch, steps) each."""
  points = sorted(points)
  if len({batch for batch, _ in points}) < len(points):
    raise ValueError(f'one point per batch, got {points}')
  found: list[Regime] = []
  start = 0
  for index in range(1, len(points)):
    name = _regime_of(_slope(points[index - 1], points[index]))
    if index + 1 < len(points) and _regime_of(_slope(points[index], points[index + 1])) == name:
      continue
    found.append(Regime(name=name, first_batch=points[start][0], last_batch=points[index][0],
                        speedup_per_doubling=2 ** _slope(points[start], points[index])))
    start = index
  return found


def describe_regimes(found: Sequence[Regime]) -> str:
  """The regimes as one sentence a reader of summary.md can check against the plot."""
  if not found:
    return 'Fewer than two batches reached the target: no regimes to tell apart.'
  parts = [f'batches {r.first_batch} to {r.last_batch}: {r.name} (each doubling of the batch '
           f'cut the steps {r.speedup_per_doubling:.2f}x)' for r in found]
  return ('; '.join(parts) + f'. Thresholds: a doubling that cuts the steps by at least '
          f'{2 ** PERFECT_SCALING_SLOPE:.2f}x is perfect scaling, by at most '
          f'{2 ** NO_GAIN_SLOPE:.2f}x maximal data parallelism (no gain).')
