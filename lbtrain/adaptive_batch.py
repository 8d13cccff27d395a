"""A global batch that follows the measured gradient noise scale (McCandlish et al. 2018).

McCandlish et al. ("An Empirical Model of Large-Batch Training") find that the batch which
balances the steps a run needs against the examples it reads, the critical batch B_crit (where
a run needs 2 S_min steps and 2 E_min examples), is close to the noise scale B_noise, which
B_simple = tr(Sigma) / |G|^2 estimates; B_simple grows as the loss falls. `train.adaptive_batch`
acts on that: at every decision point the host reads the running B_simple from the train
state's EMAs (`lbtrain.noise_scale`) and sets the global batch to the allowed size nearest it
in log (or nearest `noise_scale_multiple` x B_simple: a multiple above 1 buys fewer steps with
more examples, where steps cost more than examples), the allowed sizes being the powers of 2 in
[min_batch_size, max_batch_size].

The lr follows `optimizer.scaling` at the chosen batch, the config's schedule being read at the
examples consumed (`batch_schedule.lr_rule`), as a fixed batch schedule's lr='scale' does; not
AdaScale's gain (Johnson et al. 2020, as Pollux uses): the gain needs a per-step estimate of
the gradient's variance against its norm at the current batch (what B_simple averages over
hundreds of steps, so a per-step value is too noisy to set an lr from), and it stretches the
schedule by its own measured amount, so the run's length in steps would depend on it as well.
The scaling rule is what the rest of lbtrain scales the lr with and what the critical-batch
study tuned (docs/critical_batch.md).

A decision point is every `every` steps or epochs after the first `first` (a warm-up in which
the EMAs settle; default: one `every`). Decisions in epochs are made after the step whose
examples reach the point. Each decision writes a record (`train/batch_decision`, with the
B_simple it read) and the chosen batch lives in the train state (`steps.DataPosition`), so a
resumed run continues with it and decides again where the first run would have, from the same
EMAs. B_simple is estimated from the gradients of one device's rows (or one micro-batch) and
of the global batch, so on another device count the estimates, and so possibly the decisions,
differ; the examples read stay those of the decided batches.
"""

import dataclasses
import math

import ml_collections

from lbtrain import durations
from lbtrain.errors import UserError

_BLOCK = 'train.adaptive_batch'


@dataclasses.dataclass(frozen=True)
class AdaptiveBatch:
  """The allowed batches and the decision points."""
  allowed: tuple[int, ...]  # ascending powers of 2
  points: durations.Recurring  # in steps, or in examples read (the config's epochs)
  multiple: float = 1.0  # the batch aimed at, in units of B_simple

  def choose(self, noise_scale: float, current: int) -> int:
    """The allowed batch nearest `multiple` x `noise_scale` in log; `current` while there is no
    positive estimate (before the first update, or while the two-batch estimate of |G|^2 is
    not positive)."""
    if not math.isfinite(noise_scale) or noise_scale <= 0:
      return current
    aim = self.multiple * noise_scale
    return min(self.allowed, key=lambda b: (abs(math.log(b / aim)), b))

  def describe(self, num_train_examples: int, scaling: str) -> list[tuple[str, str]]:
    return [('adaptive batch',
             f'{", ".join(map(str, self.allowed))}: the one nearest '
             f'{"" if self.multiple == 1 else f"{self.multiple:g} x "}B_simple in log, decided '
             f'{self.points.describe(num_train_examples)}; lr by optimizer.scaling ({scaling}) '
             'at each batch; one compiled step per batch')]


def _power_of_2(value) -> bool:
  return type(value) is int and value > 0 and value & (value - 1) == 0


def from_config(config: ml_collections.ConfigDict, num_train_examples: int,
                num_devices: int) -> AdaptiveBatch | None:
  """The config's adaptive batch, None when off; UserError for one that cannot work."""
  block, train = config.train.adaptive_batch, config.train
  low, high = block.min_batch_size, block.max_batch_size
  if low is None and high is None:
    return None
  if low is None or high is None or not (_power_of_2(low) and _power_of_2(high)) or low > high:
    raise UserError(f'{_BLOCK}.min_batch_size={low!r} and max_batch_size={high!r} must both be '
                    'powers of 2 with min <= max (e.g. 128 and 8192), or both None (off).')
  if low % num_devices:
    raise UserError(f'{_BLOCK}.min_batch_size={low} is not divisible by the {num_devices} '
                    f'devices; use a multiple of {num_devices}.')
  if not block.noise_scale_multiple > 0:
    raise UserError(f'{_BLOCK}.noise_scale_multiple={block.noise_scale_multiple!r} must be '
                    'positive (1 = the batch nearest B_simple).')
  if train.noise_scale_every is None:
    raise UserError(f'{_BLOCK} follows the gradient noise scale: set '
                    '--config.train.noise_scale_every (e.g. 1).')
  if tuple(train.batch_schedule.batch_sizes or ()):
    raise UserError(f'{_BLOCK} and train.batch_schedule both set the batch; use one of them.')
  for unit in ('epochs', 'steps'):  # (`durations.recurring` checks every_*)
    value = block[f'first_{unit}']
    if value is not None and not value > 0:
      raise UserError(f'{_BLOCK}.first_{unit}={value!r} must be positive.')
  if block.every_epochs is None and block.every_steps is None:
    raise UserError(f'set {_BLOCK}.every_epochs or every_steps: how often to decide.')
  points = durations.recurring(block, f'{_BLOCK}.every', num_train_examples,
                               examples_per_epoch=num_train_examples)
  allowed = tuple(2 ** k for k in range(low.bit_length() - 1, high.bit_length()))
  return AdaptiveBatch(allowed=allowed, points=points, multiple=float(block.noise_scale_multiple))
