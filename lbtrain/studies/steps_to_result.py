"""Steps to result at one batch from its tuned trials (Shallue et al. 2018): the earliest step at
which any trial reached the target.

Only that earliest success matters, so a trial may be stopped once it cannot beat the best found
so far at its batch (`cap`): a trial that reaches the target exactly at the cap ties the best
and counts as reached; one stopped there without reaching it is "capped", which says nothing
about whether it would have reached the target later. Capping therefore never changes the steps
to result, only what the losing trials cost. A diverged trial is recorded and loses.

A trial that reached the target at its first evaluation measured an upper bound only: no earlier
evaluation below the target says how much sooner it got there. A batch whose steps to result
come from such a trial carries the mark (`steps_to_target_upper_bound`), and the critical-batch
fit leaves it out.

Where the winning metaparameters sit in their search range is part of the result: a best value
on the range's edge means the range was too narrow, and a wider one might reach the target
sooner.
"""

import dataclasses
from typing import Collection, Mapping, Sequence

REACHED = 'reached'
CAPPED = 'capped'  # stopped at the best steps so far without reaching the target
NOT_REACHED = 'not reached'  # ran its whole budget without reaching the target
DIVERGED = 'diverged'

LOWEST = 'lowest'
HIGHEST = 'highest'


@dataclasses.dataclass(frozen=True)
class Trial:
  """One run at one batch with one choice of the tuned metaparameters."""
  metaparameters: Mapping[str, float]  # tuned config field -> value, e.g. optimizer.base_lr
  steps_to_target: int | None  # the first evaluation at or above the target; None: never
  diverged: str | None = None  # lbtrain's one-line reason when it stopped on a NaN/Inf
  capped_at: int | None = None  # the step it was stopped at, as it could not beat the best
  # steps_to_target is the trial's first evaluation: an upper bound, not a measurement.
  upper_bound: bool = False

  def __post_init__(self):
    if (self.capped_at is not None and self.steps_to_target is not None
        and self.steps_to_target > self.capped_at):
      raise ValueError(f'a trial capped at step {self.capped_at} cannot reach the target at '
                       f'step {self.steps_to_target}')

  @property
  def outcome(self) -> str:
    """A success counts even if the run diverged after it: only the first success matters."""
    if self.steps_to_target is not None:
      return REACHED
    if self.diverged is not None:
      return DIVERGED
    return CAPPED if self.capped_at is not None else NOT_REACHED


def cap(trials: Sequence[Trial]) -> int | None:
  """The step the next trial at this batch needs to run to at most: the best so far (reaching
  the target there ties it); None while no trial has reached it."""
  return min((t.steps_to_target for t in trials if t.outcome == REACHED), default=None)


@dataclasses.dataclass(frozen=True)
class BatchResult:
  """What the trials at one batch measured."""
  global_batch_size: int
  steps_to_target: int | None  # None: no trial reached the target
  examples_to_target: int | None
  # A trial with the fewest steps reached the target at its first evaluation: the steps to
  # result are at most steps_to_target, how much fewer is not measured.
  steps_to_target_upper_bound: bool
  best_metaparameters: Mapping[str, float] | None  # of the first trial to reach it soonest
  outcomes: Mapping[str, int]  # trials per outcome: REACHED, CAPPED, NOT_REACHED, DIVERGED
  # Tuned field -> LOWEST or HIGHEST where every trial tied for the best took that end of the
  # field's search range: widen the range that way.
  on_range_edge: Mapping[str, str]

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def _range_edges(winners: Sequence[Trial],
                 search_space: Mapping[str, Collection[float]]) -> dict[str, str]:
  edges = {}
  for field, values in search_space.items():
    if len(set(values)) < 2:
      continue  # not tuned: no range to sit on the edge of
    for edge, value in ((LOWEST, min(values)), (HIGHEST, max(values))):
      if all(t.metaparameters[field] == value for t in winners):
        edges[field] = edge
  return edges


def batch_result(global_batch_size: int, trials: Sequence[Trial],
                 search_space: Mapping[str, Collection[float]]) -> BatchResult:
  """Steps to result over `trials`, which ran at this batch with the values in `search_space`
  (tuned field -> every value tried)."""
  outcomes = {name: 0 for name in (REACHED, CAPPED, NOT_REACHED, DIVERGED)}
  for trial in trials:
    outcomes[trial.outcome] += 1
  best = cap(trials)
  if best is None:
    return BatchResult(global_batch_size=global_batch_size, steps_to_target=None,
                       examples_to_target=None, steps_to_target_upper_bound=False,
                       best_metaparameters=None, outcomes=outcomes,
                       on_range_edge={})
  winners = [t for t in trials if t.steps_to_target == best]
  return BatchResult(global_batch_size=global_batch_size, steps_to_target=best,
                     examples_to_target=best * global_batch_size,
                     steps_to_target_upper_bound=any(t.upper_bound for t in winners),
                     best_metaparameters=dict(winners[0].metaparameters), outcomes=outcomes,
                     on_range_edge=_range_edges(winners, search_space))
