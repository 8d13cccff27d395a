"""The critical-batch fit on points drawn from its own model, and the regimes in words."""

import math

import numpy as np
import pytest

from lbtrain.studies import critical_batch

S_MIN, B_CRIT = 400.0, 2000.0
BATCHES = [2 ** k for k in range(5, 16)]  # 32 ... 32768


def _model_points(rng, relative_noise, batches=BATCHES):
  """Steps to target from the model, with multiplicative (log-normal) scatter."""
  return [(b, S_MIN * (1 + B_CRIT / b) * math.exp(rng.normal(scale=relative_noise)))
          for b in batches]


def test_the_fit_recovers_the_model_from_exact_points():
  fitted = critical_batch.fit(_model_points(np.random.default_rng(0), 0.0))
  assert fitted.reason is None and fitted.points == len(BATCHES)
  assert fitted.s_min == pytest.approx(S_MIN, rel=1e-5)
  assert fitted.b_crit == pytest.approx(B_CRIT, rel=1e-5)
  assert fitted.e_min == pytest.approx(S_MIN * B_CRIT, rel=1e-5)
  assert fitted.steps(B_CRIT) == pytest.approx(2 * S_MIN, rel=1e-5)


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_the_fit_recovers_the_model_from_noisy_points_within_its_uncertainty(seed):
  fitted = critical_batch.fit(_model_points(np.random.default_rng(seed), 0.1))
  assert fitted.s_min == pytest.approx(S_MIN, rel=0.15)
  assert fitted.b_crit == pytest.approx(B_CRIT, rel=0.3)
  for value, factor, truth in [(fitted.s_min, fitted.s_min_factor, S_MIN),
                               (fitted.b_crit, fitted.b_crit_factor, B_CRIT),
                               (fitted.e_min, fitted.e_min_factor, S_MIN * B_CRIT)]:
    assert factor > 1
    assert abs(math.log(value / truth)) < 3 * math.log(factor)  # within three sigma


def test_the_uncertainty_grows_with_the_scatter_of_the_points():
  quiet = critical_batch.fit(_model_points(np.random.default_rng(4), 0.02))
  noisy = critical_batch.fit(_model_points(np.random.default_rng(4), 0.2))
  assert noisy.b_crit_factor > quiet.b_crit_factor
  assert noisy.s_min_factor > quiet.s_min_factor


def test_the_log_space_fit_is_not_dragged_by_the_small_batches_absolute_errors():
  """+30 % at the smallest batch is thousands of steps; S_min (set by the large batches) must
  hardly move, as it would in a plain least-squares fit in S."""
  points = _model_points(np.random.default_rng(0), 0.0)
  points[0] = (points[0][0], points[0][1] * 1.3)
  fitted = critical_batch.fit(points)
  assert fitted.s_min == pytest.approx(S_MIN, rel=0.05)


def test_a_batch_measured_twice_counts_once_at_its_mean_log_steps():
  points = _model_points(np.random.default_rng(0), 0.0, batches=[64, 512, 4096, 32768])
  batch, steps = points[1]
  repeated = points + [(batch, steps * 1.2), (batch, steps / 1.2)]
  once, twice = critical_batch.fit(points), critical_batch.fit(repeated)
  assert twice.points == 4
  assert twice.b_crit == pytest.approx(once.b_crit, rel=1e-4)


@pytest.mark.parametrize('points', [[], [(256, 100)], [(256, 100), (256, 90)]])
def test_fewer_than_two_batches_give_no_fit_and_say_why(points):
  fitted = critical_batch.fit(points)
  assert fitted.s_min is None and fitted.b_crit is None and fitted.e_min is None
  assert 'at least 2' in fitted.reason
  assert fitted.as_dict()['reason'] == fitted.reason and fitted.as_dict()['b_crit'] is None


@pytest.mark.parametrize('batches', [(256, 1024), (512, 16384), (4096, 8192)])
def test_two_batches_give_the_exact_model_without_an_uncertainty(batches):
  fitted = critical_batch.fit(_model_points(np.random.default_rng(0), 0.0, batches=batches))
  assert fitted.reason is None and fitted.points == 2
  assert fitted.s_min == pytest.approx(S_MIN, rel=1e-9)
  assert fitted.b_crit == pytest.approx(B_CRIT, rel=1e-9)
  assert fitted.e_min == pytest.approx(S_MIN * B_CRIT, rel=1e-9)
  assert fitted.b_crit_factor is None and 'no uncertainty' in fitted.note


def test_two_batches_measured_twice_fit_through_their_mean_log_steps():
  # 256: geometric mean of 100 and 64 = 80 steps; 1024: 30 steps.
  fitted = critical_batch.fit([(256, 100), (1024, 30), (256, 64)])
  assert fitted.points == 2
  assert fitted.steps(256) == pytest.approx(80) and fitted.steps(1024) == pytest.approx(30)


@pytest.mark.parametrize('points, where', [
    ([(256, 100), (1024, 100)], 'below the smallest'),  # no fewer steps
    ([(256, 100), (1024, 25)], 'above the largest'),  # exactly perfect scaling
    ([(256, 100), (1024, 20)], 'above the largest'),  # better than perfect
])
def test_two_batches_without_a_knee_do_not_bound_b_crit(points, where):
  fitted = critical_batch.fit(points)
  assert fitted.b_crit is None and where in fitted.reason


@pytest.mark.parametrize('points, where', [
    # Steps fall almost 4x for a 4x batch: B_crit = 4.8e7, beyond 1e4 x the largest batch.
    ([(256, 1000), (1024, 250.004)], 'above the largest'),
    # Steps barely fall: B_crit = 0.014, below the smallest batch / 1e4.
    ([(256, 1000.04), (1024, 1000)], 'below the smallest')])
def test_two_batches_never_put_b_crit_outside_the_range_more_batches_search(points, where):
  fitted = critical_batch.fit(points)
  assert fitted.b_crit is None and where in fitted.reason
  inside = critical_batch.fit([(256, 1000), (1024, 255)])  # B_crit = 38,144: 37 x the largest
  assert inside.b_crit == pytest.approx(38144) and inside.reason is None


def test_points_that_never_leave_perfect_scaling_do_not_bound_b_crit():
  fitted = critical_batch.fit([(b, 1e6 / b) for b in [64, 256, 1024, 4096]])
  assert fitted.b_crit is None and 'above the largest batch' in fitted.reason


def test_points_without_any_gain_do_not_bound_b_crit():
  fitted = critical_batch.fit([(b, 500) for b in [64, 256, 1024, 4096]])
  assert fitted.b_crit is None and 'below the smallest batch' in fitted.reason


def test_non_positive_points_are_a_bug_of_the_caller():
  with pytest.raises(ValueError, match='positive'):
    critical_batch.fit([(256, 0), (512, 10), (1024, 5)])


def test_regimes_follow_the_model_around_b_crit():
  # The model's slope is B_crit / (B + B_crit): >= 0.8 up to B_crit / 4, <= 0.2 from 4 B_crit.
  points = [(b, round(S_MIN * (1 + B_CRIT / b))) for b in BATCHES]
  found = critical_batch.regimes(points)
  assert [r.name for r in found] == [critical_batch.PERFECT_SCALING,
                                     critical_batch.DIMINISHING_RETURNS,
                                     critical_batch.MAXIMAL_DATA_PARALLELISM]
  assert found[0].first_batch == 32 and found[-1].last_batch == 32768
  for earlier, later in zip(found, found[1:]):
    assert earlier.last_batch == later.first_batch
  # Neighbouring batches are a doubling apart: each boundary is within one of the model's.
  assert B_CRIT / 4 / 2 <= found[0].last_batch <= B_CRIT / 4 * 2
  assert 4 * B_CRIT / 2 <= found[1].last_batch <= 4 * B_CRIT * 2
  assert found[0].speedup_per_doubling > 2 ** critical_batch.PERFECT_SCALING_SLOPE
  assert found[-1].speedup_per_doubling < 2 ** critical_batch.NO_GAIN_SLOPE


def test_a_slower_bigger_batch_is_no_gain_and_regimes_read_as_a_sentence():
  found = critical_batch.regimes([(1024, 52), (256, 200), (512, 100), (2048, 70)])
  assert [(r.name, r.first_batch, r.last_batch) for r in found] == [
      (critical_batch.PERFECT_SCALING, 256, 1024),
      (critical_batch.MAXIMAL_DATA_PARALLELISM, 1024, 2048)]
  assert found[0].speedup_per_doubling == pytest.approx(math.sqrt(200 / 52))
  text = critical_batch.describe_regimes(found)
  assert 'batches 256 to 1024: perfect scaling (each doubling of the batch cut the steps 1.96x)' in text
  assert 'batches 1024 to 2048: maximal data parallelism' in text
  assert '0.74x' in text  # 52 -> 70 steps: slower
  assert 'Fewer than two' in critical_batch.describe_regimes(critical_batch.regimes([(256, 9)]))
