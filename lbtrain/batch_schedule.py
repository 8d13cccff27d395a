"""The global batch of every step: fixed, or changed at given points of training.

Smith, Kindermans, Ying and Le 2017 ("Don't Decay the Learning Rate, Increase the Batch Size")
replace each lr decay by a batch increase of the same factor; McCandlish et al. 2018 suggest
growing the batch as the gradient noise scale grows. `train.batch_schedule` gives the batch from
each boundary on (`batch_sizes`, after `train.global_batch_size` up to the first boundary), the
boundaries in epochs or in steps (`lbtrain.durations`, like every other interval).

The data stream is one sequence of examples, a pure function of the seed (`lbtrain.data`):
batches cut it into consecutive pieces, step s reading examples [offset(s), offset(s) + B(s)),
offset(s) being the examples the steps before it read. So a run with a schedule reads the same
examples in the same order as a fixed-batch run over the same epochs, and since offset(s) is a
function of s alone, every process and every resumed run reads where it should. With one batch
throughout, offset(s) = s B: the stream every run has always read.

Boundaries in epochs become steps segment by segment, each segment's epochs at its own batch,
rounded half up as every interval; boundaries in steps are taken as given. Training ends at
`train.num_epochs`: the last segment's remaining epochs, at its batch.

The lr: the config's schedule (scaling rule, warmup, decay) is laid out at the first batch B0
and read at the examples consumed (reference step offset(s) / B0), so its epochs mean the same
whatever the batch; a segment's lr is then multiplied by the scaling rule's factor for its batch
over B0's (`lr='scale'`), or left as it is (`lr='hold'`: Smith et al., where the batch increase
replaces the decay). `lr_rule` is that function of (examples consumed, batch): the examples are
counted in the train state (`steps.DataPosition`) and the batch is a compiled step's own, so no
table of segments is compiled in, and a schedule decided while training runs
(`lbtrain.adaptive_batch`, which extends one with `decided`) trains with the same steps.
"""

import bisect
import dataclasses
from typing import Any, Callable

import ml_collections

from lbtrain import durations
from lbtrain.errors import UserError

_BLOCK = 'train.batch_schedule'
LR_RULES = ('scale', 'hold')


@dataclasses.dataclass(frozen=True)
class BatchSchedule:
  """Segments of steps at one global batch each."""
  starts: tuple[int, ...]  # first step of each segment; the first is 0
  batches: tuple[int, ...]  # the global batch of each segment
  total_steps: int
  num_train_examples: int
  first_examples: int = 0  # the examples read before starts[0] (a run resumed there)

  def _segment(self, step: int) -> int:
    return bisect.bisect_right(self.starts, step) - 1

  def batch_at(self, step: int) -> int:
    return self.batches[self._segment(step)]

  def examples_before(self, step: int) -> int:
    """The stream position of step `step`'s first example: the examples of the steps before."""
    offsets = self._offsets()
    index = self._segment(step)
    return offsets[index] + (step - self.starts[index]) * self.batches[index]

  def _offsets(self) -> list[int]:
    offsets = [self.first_examples]
    for start, end, batch in self.segments()[:-1]:
      offsets.append(offsets[-1] + (end - start) * batch)
    return offsets

  def segments(self) -> list[tuple[int, int, int]]:
    """(first step, last step + 1, batch) of each segment."""
    return list(zip(self.starts, self.starts[1:] + (self.total_steps,), self.batches))

  @property
  def distinct(self) -> tuple[int, ...]:
    """Each batch once, in the order training first meets it."""
    return tuple(dict.fromkeys(self.batches))

  @property
  def scheduled(self) -> bool:
    return len(self.batches) > 1

  def epoch_at(self, step: int) -> float:
    return self.examples_before(step) / self.num_train_examples

  def decided(self, step: int, batch: int, end_examples: float) -> 'BatchSchedule':
    """This schedule up to `step`, then `batch` until `end_examples` examples are read (the
    last segment rounded to whole steps, half up, as every segment): a decision of the
    adaptive batch. Ends at `step` if the examples left are under half a batch."""
    index = self._segment(step)
    keep = index + (step > self.starts[index])  # the segments that begin before `step`
    starts, batches = self.starts[:keep], self.batches[:keep]
    if not batches or batches[-1] != batch:
      starts, batches = starts + (step,), batches + (batch,)
    left = (end_examples - self.examples_before(step)) / self.num_train_examples
    total = step + max(0, durations.to_steps(
        left, durations.steps_per_epoch(self.num_train_examples, batch)))
    return BatchSchedule(starts, batches, total, self.num_train_examples, self.first_examples)

  @classmethod
  def continued(cls, step: int, examples: int, batch: int, num_train_examples: int,
                end_examples: float) -> 'BatchSchedule':
    """From `step`, where `examples` have been read, at `batch` to `end_examples`: a resumed
    adaptive run, whose earlier segments live in its records only."""
    return cls((step,), (batch,), step, num_train_examples, examples).decided(
        step, batch, end_examples)


def lr_rule(base: Callable, first_batch: int,
            factor: Callable[[int], float]) -> Callable[[Any, int], Any]:
  """lr(examples consumed, global batch): `base` (laid out at `first_batch`) read at the
  examples consumed, times `factor(batch)` (the scaling rule's over the first batch's, or 1).
  Jittable in the examples; the batch is a compiled step's static one."""
  def lr(examples, batch: int):
    return base(examples / first_batch) * factor(batch)
  return lr


def from_config(config: ml_collections.ConfigDict, num_train_examples: int) -> BatchSchedule:
  """The run's segments; UserError for a schedule that cannot work."""
  train, block = config.train, config.train.batch_schedule
  first = train.global_batch_size
  sizes = tuple(block.batch_sizes or ())
  if block.lr not in LR_RULES:
    raise UserError(f'{_BLOCK}.lr={block.lr!r}: use scale (each batch\'s lr by '
                    'optimizer.scaling) or hold (the first batch\'s lr throughout).')
  if any(type(size) is not int or size <= 0 for size in sizes):
    raise UserError(f'{_BLOCK}.batch_sizes={sizes!r} must be positive whole numbers.')
  per_epoch = durations.steps_per_epoch(num_train_examples, first)
  total_fixed = durations.to_steps(train.num_epochs, per_epoch)
  if not sizes:
    for name in ('boundaries_epochs', 'boundaries_steps'):
      if block[name]:
        raise UserError(f'{_BLOCK}.{name} is set but {_BLOCK}.batch_sizes is not; give the '
                        'batch from each boundary on (e.g. batch_sizes=(2048, 8192)).')
    return BatchSchedule((0,), (first,), total_fixed, num_train_examples)
  in_epochs = bool(block.boundaries_epochs)
  given = durations.interval(block, f'{_BLOCK}.boundaries', per_epoch, optional=True) or ()
  if len(given) != len(sizes):
    raise UserError(f'{_BLOCK}: {len(sizes)} batch_sizes need as many boundaries (epochs or '
                    f'steps), got {len(given)}.')
  batches = (first, *sizes)
  if in_epochs:
    epochs = (0.0, *block.boundaries_epochs, train.num_epochs)
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
      raise UserError(f'{_BLOCK}.boundaries_epochs={tuple(block.boundaries_epochs)} must '
                      f'increase, after 0 and before train.num_epochs={train.num_epochs}.')
    steps = [0]
    for index, batch in enumerate(batches):
      length = durations.to_steps(epochs[index + 1] - epochs[index],
                                  durations.steps_per_epoch(num_train_examples, batch))
      steps.append(steps[-1] + length)
    starts, total = tuple(steps[:-1]), steps[-1]
  else:
    starts = (0, *given)
    if any(b <= a for a, b in zip(starts, starts[1:])):
      raise UserError(f'{_BLOCK}.boundaries_steps={tuple(given)} must increase, after step 0.')
    schedule = BatchSchedule(starts, batches, starts[-1] + 1, num_train_examples)
    left = train.num_epochs * num_train_examples - schedule.examples_before(starts[-1])
    if left <= 0:
      raise UserError(f'{_BLOCK}: the boundary at step {starts[-1]} comes after '
                      f'train.num_epochs={train.num_epochs} epochs; move it earlier.')
    total = starts[-1] + durations.to_steps(
        left / num_train_examples, durations.steps_per_epoch(num_train_examples, batches[-1]))
  if len(set(starts)) < len(starts) or total <= starts[-1]:
    raise UserError(f'{_BLOCK}: a segment of no steps (starts {starts}, {total} steps in '
                    'all); space the boundaries further apart.')
  return BatchSchedule(starts, batches, total, num_train_examples)


def lr_factor(rule: str, scaling: Callable[[float], float],
              first_batch: int) -> Callable[[int], float]:
  """A batch's lr over the first batch's: the scaling rule's factor ratio, or 1 (hold)."""
  if rule == 'hold':
    return lambda batch: 1.0
  return lambda batch: scaling(batch) / scaling(first_batch)


def describe(schedule: BatchSchedule, lr_at: Callable[[int], float], rule: str) -> list[tuple]:
  """Rows for `--describe`: each segment's batch, steps, epochs and lr at its start."""
  if not schedule.scheduled:
    return []
  how = ('optimizer.scaling at each batch' if rule == 'scale'
         else "the first batch's schedule, unscaled")
  rows = [('batch schedule', f'{len(schedule.batches)} segments, lr {rule} ({how}); one '
                             'compiled step per batch')]
  for start, end, batch in schedule.segments():
    rows.append(('', f'batch {batch}: steps {start}-{end - 1} (epochs '
                     f'{schedule.epoch_at(start):.2f}-{schedule.epoch_at(end):.2f}), lr '
                     f'{lr_at(start):.6g} at its start'))
  return rows
