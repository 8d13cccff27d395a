"""The search space of a tuned sweep: `--tune=FIELD=SPEC` flags, and the trials they make.

A spec is `log:LOW:HIGH:N` (N values evenly spaced in log, both ends included: the form for
learning rates), `lin:LOW:HIGH:N` (evenly spaced), or a list `V1,V2,...`. Several `--tune` flags
make a grid, every combination once. A grid, not a quasi-random search: the trial numbers stay
tied to the same values whatever else the sweep runs (so trial k resumes as trial k), and
"the best value is on the range's edge" is a plain statement about a grid's axis.

The trials come in an order that tends to find a good run early, which matters once each trial
is capped at the best steps to the target found so far: each axis from its middle value outward
(ranges are usually centred on the value one expects to be best), the first flag varying slowest.

A tuned field is the config's own value before the config's rules apply: tuning
optimizer.base_lr tunes the lr at the config's base batch, which its scaling rule still scales
to each batch, so one range serves every batch, centred where the rule predicts.
"""

import dataclasses
import itertools
import math
from typing import Mapping, Sequence

import ml_collections
import numpy as np

from lbtrain.errors import UserError

EXAMPLE = '--tune=optimizer.base_lr=log:0.01:1:5'
MAX_TRIALS = 1000  # per batch: beyond this a spec is far more likely a typo than a plan


@dataclasses.dataclass(frozen=True)
class Axis:
  """One tuned config field and the values to try, ascending."""
  field: str  # dotted config path, e.g. optimizer.base_lr
  values: tuple[float, ...]


def _number(text: str, spec: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = math.nan
  if not math.isfinite(value):
    raise UserError(f'--tune={spec}: {text!r} is not a finite number; e.g. {EXAMPLE}.')
  return value


def _field_type(config: ml_collections.ConfigDict, field: str, spec: str) -> type:
  *blocks, name = field.split('.')
  block = config
  try:
    for part in blocks:
      block = block[part]
    field_type = block.get_type(name)
  except (KeyError, AttributeError, TypeError):
    raise UserError(f'--tune={spec}: the config has no field {field}; give a dotted path such '
                    f'as optimizer.base_lr.') from None
  if field_type not in (int, float):
    raise UserError(f'--tune={spec}: {field} is a {field_type.__name__} field; only number '
                    'fields can be tuned.')
  return field_type


def _range_values(kind: str, bounds: list[str], spec: str) -> list[float]:
  if len(bounds) != 3:
    raise UserError(f'--tune={spec}: {kind}: takes LOW:HIGH:N, e.g. {EXAMPLE}.')
  low, high = _number(bounds[0], spec), _number(bounds[1], spec)
  if not bounds[2].strip().isdigit() or int(bounds[2]) < 2:
    raise UserError(f'--tune={spec}: N={bounds[2]!r} must be a whole number of values, at least '
                    f'2 (for one value use --config.FIELD=VALUE); e.g. {EXAMPLE}.')
  count = int(bounds[2])
  if not low < high:
    raise UserError(f'--tune={spec}: LOW={low:g} must be below HIGH={high:g}.')
  if kind == 'log':
    if low <= 0:
      raise UserError(f'--tune={spec}: a log range needs LOW > 0 (got {low:g}); use lin: for '
                      'ranges that reach 0 or below.')
    values = np.geomspace(low, high, count)
  else:
    values = np.linspace(low, high, count)
  # 12 significant digits: log:0.01:1:5 tries 0.1, not 0.10000000000000002.
  return [float(f'{value:.12g}') for value in values]


def parse_axis(spec: str, config: ml_collections.ConfigDict) -> Axis:
  """One `--tune` value, checked against the config; a bad spec is a UserError (one line)."""
  field, equals, values_text = spec.partition('=')
  field = field.strip()
  if not equals or not field or not values_text.strip():
    raise UserError(f'--tune={spec}: expected FIELD=log:LOW:HIGH:N, FIELD=lin:LOW:HIGH:N or '
                    f'FIELD=V1,V2,...; e.g. {EXAMPLE}.')
  if field == 'train.global_batch_size':
    raise UserError(f'--tune={spec}: the sweep sets train.global_batch_size itself; give the '
                    'batches with --batch_sizes.')
  field_type = _field_type(config, field, spec)
  kind, _, rest = values_text.partition(':')
  if kind in ('log', 'lin'):
    values = _range_values(kind, rest.split(':'), spec)
  elif ':' in values_text:
    raise UserError(f'--tune={spec}: unknown range {kind!r}; use log:LOW:HIGH:N or '
                    f'lin:LOW:HIGH:N, e.g. {EXAMPLE}.')
  else:
    values = [_number(text.strip(), spec) for text in values_text.split(',')]
  if len(set(values)) < len(values):
    raise UserError(f'--tune={spec}: a value is listed more than once; give each once.')
  if field_type is int:
    if any(not value.is_integer() for value in values):
      raise UserError(f'--tune={spec}: {field} is a whole-number field; give whole numbers.')
    values = [int(value) for value in values]
  return Axis(field=field, values=tuple(sorted(values)))


def parse_axes(specs: Sequence[str], config: ml_collections.ConfigDict) -> list[Axis]:
  """Every `--tune` flag, in the order given; the grid they make must be of a sensible size."""
  axes = [parse_axis(spec, config) for spec in specs]
  fields = [axis.field for axis in axes]
  repeated = sorted({field for field in fields if fields.count(field) > 1})
  if repeated:
    raise UserError(f'--tune names {", ".join(repeated)} more than once; give each field in one '
                    'flag.')
  trials = math.prod(len(axis.values) for axis in axes)
  if trials > MAX_TRIALS:
    raise UserError(f'--tune makes {trials:,} trials per batch (at most {MAX_TRIALS:,}); use '
                    'fewer values.')
  return axes


def _middle_out(values: Sequence[float]) -> list[float]:
  """The middle value, then its neighbours alternately below and above, outward."""
  middle = (len(values) - 1) // 2
  order = sorted(range(len(values)), key=lambda index: (abs(index - middle), index))
  return [values[index] for index in order]


def trials(axes: Sequence[Axis]) -> list[dict[str, float]]:
  """Every combination of the axes' values (field -> value), in trial order; trial k is
  `trials(axes)[k]`. No axes: the one untuned trial."""
  ordered = [_middle_out(axis.values) for axis in axes]
  return [dict(zip((axis.field for axis in axes), combination))
          for combination in itertools.product(*ordered)]


def search_space(axes: Sequence[Axis]) -> dict[str, tuple[float, ...]]:
  return {axis.field: axis.values for axis in axes}


def describe(metaparameters: Mapping[str, float]) -> str:
  """A trial as a reader names it, in log lines and tables: 'optimizer.base_lr=0.1'."""
  return ', '.join(f'{field}={value:g}' for field, value in metaparameters.items())


def overrides(metaparameters: Mapping[str, float]) -> list[str]:
  """The `--config.*` arguments that give a run these values (a trial's, the batch); repr keeps
  every digit."""
  return [f'--config.{field}={value!r}' for field, value in metaparameters.items()]
