"""Every interval of a run in epochs or in steps, converted to steps in one place.

Papers state warmup and decay in epochs; operations think of checkpoints and logs in steps; a
batch-size study needs both. Each interval is a pair of config fields, `<name>_epochs` and
`<name>_steps`, of which exactly one is set (the other None): a config or an override that
sets both would leave a reader guessing which one wins, so that is an error, as is neither.
"""

import dataclasses
import math
from typing import Any, Callable

import ml_collections

from lbtrain.errors import UserError


def steps_per_epoch(num_train_examples: int, global_batch_size: int) -> float:
  """Kept fractional: batches run across epoch boundaries, so rounding here would drift."""
  return num_train_examples / global_batch_size


def to_steps(epochs: float, per_epoch: float) -> int:
  """floor(epochs * per_epoch + 0.5): rounded half up, so that e.g. Goyal's 5 warmup epochs at
  156.39 steps/epoch are 782 steps. Half up (not Python's round-half-even) keeps the rule a
  reader can redo by hand."""
  return math.floor(epochs * per_epoch + 0.5)


def _is_set(value: Any) -> bool:
  # An empty list of boundaries is "no boundaries given", like None.
  return value is not None and value != ()


def interval(block: ml_collections.ConfigDict, path: str, per_epoch: float,
             optional: bool = False) -> Any:
  """The interval `path` ('schedule.warmup', 'eval.every', ...) in steps.

  Reads `block[<name>_epochs]` and `block[<name>_steps]`, `block` being the config block that
  `path` starts with. A tuple of durations (decay boundaries) gives a tuple of steps; an unset
  tuple gives (). Raises UserError when both are set, or neither unless `optional` (None then).
  """
  name = path.rsplit('.', 1)[1]
  epochs, steps = block[f'{name}_epochs'], block[f'{name}_steps']
  if _is_set(epochs) and _is_set(steps):
    raise UserError(
        f'{path}_epochs={epochs!r} and {path}_steps={steps!r} are both set; keep one and set the '
        f'other to None (e.g. --config.{path}_epochs=None --config.{path}_steps={steps!r}).')
  if isinstance(epochs, (tuple, list)) or isinstance(steps, (tuple, list)):
    if _is_set(steps):
      return tuple(int(s) for s in steps)
    return tuple(to_steps(e, per_epoch) for e in epochs or ())
  if not _is_set(epochs) and not _is_set(steps):
    if optional:
      return None
    raise UserError(f'set {path}_epochs or {path}_steps (one of them; the other stays None).')
  if _is_set(steps):
    if steps != int(steps):
      raise UserError(f'{path}_steps={steps!r} must be a whole number of steps.')
    return int(steps)
  return to_steps(epochs, per_epoch)


@dataclasses.dataclass(frozen=True)
class Recurring:
  """A point of training that recurs (an evaluation, a checkpoint, a log line, a batch
  decision): at `first`, then every `every` after it, counted in steps or, with `in_examples`,
  in examples read. Where the batch changes, a step no longer stands for a fixed share of an
  epoch, so an interval given in epochs is counted in examples: it falls after the step whose
  examples reach it."""
  every: int
  first: int
  in_examples: bool = False

  def _reached(self, position: int) -> int:
    return 0 if position < self.first else (position - self.first) // self.every + 1

  def due(self, done: int, examples_before: Callable[[int], int]) -> bool:
    """Whether a point falls after step `done - 1`; `examples_before(step)` is the number of
    examples the steps before `step` read."""
    if not self.in_examples:
      return done >= self.first and (done - self.first) % self.every == 0
    return self._reached(examples_before(done)) > self._reached(examples_before(done - 1))

  def describe(self, num_train_examples: int) -> str:
    if not self.in_examples:
      first = '' if self.first == self.every else f'at step {self.first}, then '
      return f'{first}every {self.every} steps'
    epochs = lambda examples: f'{examples / num_train_examples:g} epochs'
    first = '' if self.first == self.every else f'at {epochs(self.first)}, then '
    return f'{first}every {epochs(self.every)} (of examples read: the batch changes)'


def recurring(block: ml_collections.ConfigDict, path: str, per_epoch: float, *,
              zero_means: str | None = None,
              examples_per_epoch: int | None = None) -> Recurring | None:
  """A recurring interval (eval, checkpoint, log), every at least 1, from `<name>_epochs` /
  `<name>_steps` and, where the block has them, `first_epochs` / `first_steps` (default: one
  interval).

  `zero_means`: what 0 means (eval: 'no evaluation'), returned as None; without it 0 is an
  error. `examples_per_epoch`: given where the batch changes; an interval in epochs is then
  counted in examples (see `Recurring`), and its first point must be given in the same unit.
  """
  name = path.rsplit('.', 1)[1]
  steps = interval(block, path, per_epoch)
  unit = 'epochs' if _is_set(block[f'{name}_epochs']) else 'steps'
  given = block[f'{name}_{unit}']
  if given == 0 and zero_means:
    return None
  if given <= 0:
    raise UserError(f'{path}_{unit}={given!r} must be positive'
                    + (f', or 0 for {zero_means}.' if zero_means else '.'))
  in_examples = examples_per_epoch is not None and unit == 'epochs'
  first = None
  if 'first_epochs' in block:
    first_path = f'{path.rsplit(".", 1)[0]}.first'
    first_unit = 'epochs' if _is_set(block['first_epochs']) else 'steps'
    if (examples_per_epoch is not None and _is_set(block[f'first_{first_unit}'])
        and first_unit != unit):
      raise UserError(f'{first_path}_{first_unit} and {path}_{unit} where the batch changes: '
                      'give both in epochs or both in steps (steps no longer measure epochs '
                      'there).')
    first = interval(block, first_path,
                     examples_per_epoch if in_examples else per_epoch, optional=True)
  every = max(1, to_steps(given, examples_per_epoch) if in_examples else steps)
  return Recurring(every, every if first is None else first, in_examples=in_examples)
