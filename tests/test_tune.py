"""`--tune` specs: the values they make, the grid's order, and one-line errors for bad specs."""

import math

import pytest

from configs import quickstart
from lbtrain.studies import tune
from lbtrain.errors import UserError


@pytest.fixture(name='config')
def _config():
  return quickstart.get_config()


def test_a_log_range_spans_its_ends_evenly_in_log(config):
  axis = tune.parse_axis('optimizer.base_lr=log:0.01:1:5', config)
  assert axis.field == 'optimizer.base_lr'
  assert axis.values == (0.01, 0.0316227766017, 0.1, 0.316227766017, 1.0)
  ratios = [b / a for a, b in zip(axis.values, axis.values[1:])]
  assert all(r == pytest.approx(math.sqrt(10), rel=1e-10) for r in ratios)


def test_a_linear_range_and_a_list(config):
  assert tune.parse_axis('optimizer.momentum=lin:0.8:0.95:4', config).values == (
      0.8, 0.85, 0.9, 0.95)
  assert tune.parse_axis('optimizer.momentum=0.99, 0.9,0.95', config).values == (0.9, 0.95, 0.99)
  assert tune.parse_axis('optimizer.weight_decay=1e-4', config).values == (1e-4,)


def test_a_whole_number_field_gets_whole_numbers(config):
  axis = tune.parse_axis('train.seed=lin:0:4:3', config)
  assert axis.values == (0, 2, 4) and all(isinstance(v, int) for v in axis.values)
  assert tune.overrides({'train.seed': 2}) == ['--config.train.seed=2']


def test_several_flags_make_a_grid_tried_from_each_axis_middle_outward(config):
  axes = tune.parse_axes(['optimizer.base_lr=log:0.01:1:5', 'optimizer.momentum=0.9,0.99'],
                         config)
  grid = tune.trials(axes)
  assert len(grid) == 10
  assert len({tuple(sorted(t.items())) for t in grid}) == 10  # every combination once
  assert [t['optimizer.base_lr'] for t in grid[::2]] == [0.1, 0.0316227766017, 0.316227766017,
                                                          0.01, 1.0]
  assert [t['optimizer.momentum'] for t in grid[:2]] == [0.9, 0.99]
  assert tune.search_space(axes) == {'optimizer.base_lr': axes[0].values,
                                     'optimizer.momentum': (0.9, 0.99)}
  assert tune.trials([]) == [{}]


def test_overrides_keep_every_digit_for_the_run_to_parse(config):
  value = tune.parse_axis('optimizer.base_lr=log:0.01:1:5', config).values[1]
  [override] = tune.overrides({'optimizer.base_lr': value})
  assert override.startswith('--config.optimizer.base_lr=')
  assert float(override.partition('=')[2]) == value


@pytest.mark.parametrize('spec, fragment', [
    ('optimizer.base_lr', 'expected FIELD=log:LOW:HIGH:N'),
    ('optimizer.base_lr=', 'expected FIELD=log:LOW:HIGH:N'),
    ('optimizer.lr=log:0.01:1:5', 'no field optimizer.lr'),
    ('nothing.base_lr=0.1', 'no field nothing.base_lr'),
    ('optimizer.name=adam,lamb', 'is a str field'),
    ('optimizer.nesterov=0,1', 'is a bool field'),
    ('optimizer.base_lr=log:0.01:1', 'takes LOW:HIGH:N'),
    ('optimizer.base_lr=log:0.01:1:5:6', 'takes LOW:HIGH:N'),
    ('optimizer.base_lr=log:0:1:5', 'needs LOW > 0'),
    ('optimizer.base_lr=log:1:0.01:5', 'LOW=1 must be below HIGH=0.01'),
    ('optimizer.base_lr=lin:0.1:0.1:3', 'must be below'),
    ('optimizer.base_lr=log:0.01:1:1', 'N=\'1\' must be a whole number'),
    ('optimizer.base_lr=log:0.01:1:2.5', 'must be a whole number'),
    ('optimizer.base_lr=log:abc:1:5', "'abc' is not a finite number"),
    ('optimizer.base_lr=lin:nan:1:5', "'nan' is not a finite number"),
    ('optimizer.base_lr=geo:0.01:1:5', "unknown range 'geo'"),
    ('optimizer.base_lr=0.1,,0.2', "'' is not a finite number"),
    ('optimizer.base_lr=0.1,0.1', 'more than once'),
    ('train.seed=0.5,1', 'whole-number field'),
    ('train.global_batch_size=256,512', '--batch_sizes'),
])
def test_bad_specs_are_one_line_user_errors(spec, fragment, config):
  with pytest.raises(UserError) as error:
    tune.parse_axis(spec, config)
  message = str(error.value)
  assert fragment in message and '\n' not in message
  assert message.startswith(f'--tune={spec}:')


def test_a_field_tuned_twice_or_a_huge_grid_is_refused(config):
  with pytest.raises(UserError, match='names optimizer.base_lr more than once'):
    tune.parse_axes(['optimizer.base_lr=0.1,0.2', 'optimizer.base_lr=log:0.01:1:3'], config)
  with pytest.raises(UserError, match='1,600 trials per batch'):
    tune.parse_axes(['optimizer.base_lr=log:0.01:1:40', 'optimizer.momentum=lin:0.5:0.99:40'],
                    config)


def test_a_trial_is_described_as_a_reader_names_it():
  assert tune.describe({'optimizer.base_lr': 0.1, 'train.seed': 2}) == (
      'optimizer.base_lr=0.1, train.seed=2')
  assert tune.describe({}) == ''
