"""Steps to result: earliest success over trials, capped and diverged trials, range edges."""

import numpy as np
import pytest

from lbtrain.studies import steps_to_result
from lbtrain.studies.steps_to_result import Trial

LR = 'optimizer.base_lr'
MOMENTUM = 'optimizer.momentum'
LRS = [0.01, 0.1, 1.0]


def _trial(lr, steps, **kwargs):
  return Trial(metaparameters={LR: lr}, steps_to_target=steps, **kwargs)


def test_steps_to_result_is_the_earliest_success_over_trials():
  trials = [_trial(0.01, None), _trial(0.1, 120), _trial(1.0, 80)]
  result = steps_to_result.batch_result(512, trials, {LR: LRS})
  assert result.steps_to_target == 80
  assert result.examples_to_target == 80 * 512
  assert result.best_metaparameters == {LR: 1.0}
  assert result.outcomes == {steps_to_result.REACHED: 2, steps_to_result.CAPPED: 0,
                             steps_to_result.NOT_REACHED: 1, steps_to_result.DIVERGED: 0}
  assert result.on_range_edge == {LR: steps_to_result.HIGHEST}


def test_capped_and_diverged_trials_lose_and_are_counted_apart():
  trials = [_trial(0.1, 60), _trial(0.01, None, capped_at=60),
            _trial(1.0, None, diverged='non-finite train/loss at step 7'),
            _trial(0.3, 60, capped_at=60)]  # reached exactly at the cap: a tie, reached
  result = steps_to_result.batch_result(256, trials, {LR: LRS + [0.3]})
  assert result.steps_to_target == 60
  assert result.best_metaparameters == {LR: 0.1}  # of the tied, the first to run
  assert result.outcomes == {steps_to_result.REACHED: 2, steps_to_result.CAPPED: 1,
                             steps_to_result.NOT_REACHED: 0, steps_to_result.DIVERGED: 1}
  assert result.on_range_edge == {}  # 0.1 and 0.3 are inside [0.01, 1]


def test_a_success_before_a_divergence_still_counts():
  trial = _trial(1.0, 40, diverged='non-finite train/loss at step 55')
  assert trial.outcome == steps_to_result.REACHED
  assert steps_to_result.batch_result(64, [trial], {LR: LRS}).steps_to_target == 40


def test_no_trial_reaching_the_target_gives_no_steps_and_no_winner():
  trials = [_trial(0.01, None), _trial(1.0, None, diverged='non-finite')]
  result = steps_to_result.batch_result(4096, trials, {LR: LRS})
  assert result.steps_to_target is None and result.examples_to_target is None
  assert result.best_metaparameters is None and result.on_range_edge == {}
  assert result.as_dict()['steps_to_target'] is None
  assert steps_to_result.cap(trials) is None


def test_a_trial_cannot_reach_the_target_after_its_cap():
  with pytest.raises(ValueError, match='capped at step 50'):
    _trial(0.1, 51, capped_at=50)


@pytest.mark.parametrize('seed', range(5))
def test_capping_each_trial_at_the_best_so_far_never_changes_the_result(seed):
  """Trials run in turn, each stopped at the best steps so far: same steps to result and winner
  as running every trial to its end."""
  rng = np.random.default_rng(seed)
  lrs = list(np.geomspace(1e-3, 1, 8))
  true_steps = [None if rng.random() < 0.3 else int(rng.integers(10, 200)) for _ in lrs]
  uncapped = [_trial(lr, steps) for lr, steps in zip(lrs, true_steps)]
  capped = []
  for lr, steps in zip(lrs, true_steps):
    limit = steps_to_result.cap(capped)
    if limit is None or (steps is not None and steps <= limit):
      capped.append(_trial(lr, steps, capped_at=limit))
    else:
      capped.append(_trial(lr, None, capped_at=limit))
  full = steps_to_result.batch_result(128, uncapped, {LR: lrs})
  cheap = steps_to_result.batch_result(128, capped, {LR: lrs})
  assert cheap.steps_to_target == full.steps_to_target
  assert cheap.best_metaparameters == full.best_metaparameters
  assert cheap.on_range_edge == full.on_range_edge


def test_range_edges_are_per_field_and_need_every_tied_winner_on_the_edge():
  space = {LR: LRS, MOMENTUM: [0.9, 0.99], 'optimizer.weight_decay': [5e-4]}

  def trial(lr, momentum, steps):
    return Trial(metaparameters={LR: lr, MOMENTUM: momentum, 'optimizer.weight_decay': 5e-4},
                 steps_to_target=steps)

  lowest_lr = steps_to_result.batch_result(
      128, [trial(0.01, 0.99, 30), trial(0.1, 0.9, 45)], space)
  # A field with one value is not tuned, so it is never on an edge.
  assert lowest_lr.on_range_edge == {LR: steps_to_result.LOWEST, MOMENTUM: steps_to_result.HIGHEST}
  tied = steps_to_result.batch_result(128, [trial(0.01, 0.99, 30), trial(0.1, 0.99, 30)], space)
  assert tied.on_range_edge == {MOMENTUM: steps_to_result.HIGHEST}
