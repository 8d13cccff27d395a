"""The image size of every step: fixed, or ramped over training (progressive resizing).

FFCV's ResNet-50 recipes and fast.ai's DAWNBench run train most epochs at a low resolution and
the last ones at a higher one, because a conv net's cost grows with the pixels while most of
what it learns early does not need them. The size is a pure function of the step, so a resumed
run (and every process) sees the same size at the same step, and the loop compiles one train
step per distinct size.

The ramp is FFCV's `get_resolution`: `start_image_size` up to the ramp's start, `data.image_size`
from its end, in between the linear interpolation rounded to the nearest multiple of `multiple`.
It is evaluated at whole epochs when the ramp is given in epochs (as FFCV does, so the size is
fixed within an epoch: the epoch of a step is that of its first example) and at every step when
given in steps. Evaluation has its own size, `data.eval_image_size` (FFCV evaluates its 192 px
models at 256 px, after "Fixing the train-test resolution discrepancy", Touvron et al. 2019).
"""

import bisect
import dataclasses

import ml_collections
import numpy as np

from lbtrain import durations
from lbtrain.errors import UserError

_RAMP = 'data.progressive_resizing'


@dataclasses.dataclass(frozen=True)
class Resolution:
  """Train sizes as segments of steps, and the eval size."""
  segment_starts: tuple[int, ...]  # first step of each segment; the first is 0
  segment_sizes: tuple[int, ...]  # the side of the square images of each segment
  total_steps: int
  eval_size: int
  final_size: int  # data.image_size: the size training ends at, and the reference for FLOPs

  def size_at(self, step: int) -> int:
    return self.segment_sizes[bisect.bisect_right(self.segment_starts, step) - 1]

  @property
  def train_sizes(self) -> tuple[int, ...]:
    """Each distinct train size once, in the order training first meets it."""
    return tuple(dict.fromkeys(self.segment_sizes))

  @property
  def ramped(self) -> bool:
    return len(self.segment_sizes) > 1

  def segments(self) -> list[tuple[int, int, int]]:
    """(first step, last step + 1, size) of each run of steps at one size."""
    ends = self.segment_starts[1:] + (self.total_steps,)
    return list(zip(self.segment_starts, ends, self.segment_sizes))

  def pixel_fraction(self) -> float:
    """Train pixels over those of every step at `final_size`: the predicted share of the FLOPs,
    as a conv net's cost is proportional to its input's pixels."""
    pixels = sum((end - start) * size**2 for start, end, size in self.segments())
    return pixels / (self.total_steps * self.final_size**2)


def resolution(config: ml_collections.ConfigDict, num_train_examples: int,
               total_steps: int) -> Resolution:
  """The run's sizes; UserError for a ramp that cannot work."""
  data, global_batch = config.data, config.train.global_batch_size
  steps_per_epoch = durations.steps_per_epoch(num_train_examples, global_batch)
  final = data.image_size
  eval_size = data.eval_image_size or final  # both checked with the data set's other fields
  ramp = data.progressive_resizing
  if ramp.start_image_size is None:
    for name in ('ramp_start', 'ramp_end'):
      if durations.interval(ramp, f'{_RAMP}.{name}', steps_per_epoch, optional=True) is not None:
        raise UserError(f'{_RAMP}.{name} is set but {_RAMP}.start_image_size is not; set it '
                        '(e.g. 160) to ramp the train size, or unset the ramp.')
    return Resolution((0,), (final,), total_steps, eval_size, final)
  start_size, multiple = ramp.start_image_size, ramp.multiple
  if not 1 <= start_size <= final:
    raise UserError(f'{_RAMP}.start_image_size={start_size} must be between 1 and '
                    f'data.image_size={final} (the size the ramp ends at).')
  if multiple < 1:
    raise UserError(f'{_RAMP}.multiple={multiple} must be a positive number of pixels.')
  in_epochs = [ramp[f'{name}_epochs'] is not None for name in ('ramp_start', 'ramp_end')]
  if in_epochs[0] != in_epochs[1]:
    raise UserError(f'give {_RAMP}.ramp_start and ramp_end in the same unit (both _epochs or '
                    'both _steps): the size changes per epoch or per step accordingly.')
  start_step = durations.interval(ramp, f'{_RAMP}.ramp_start', steps_per_epoch)
  end_step = durations.interval(ramp, f'{_RAMP}.ramp_end', steps_per_epoch)
  if not 0 <= start_step <= end_step <= total_steps:
    raise UserError(f'{_RAMP}: the ramp (steps {start_step} to {end_step}) must start at or '
                    f'after 0, end at or after its start, and within training ({total_steps} '
                    'steps).')
  steps = np.arange(total_steps)
  if in_epochs[0]:
    where = steps * global_batch // num_train_examples  # the epoch of each step's first example
    start, end = ramp.ramp_start_epochs, ramp.ramp_end_epochs
  else:
    where, start, end = steps, start_step, end_step
  # FFCV: the start size up to and at the ramp's start, the end size from its end on.
  progress = np.clip((where - start) / max(end - start, 1e-12), 0.0, 1.0)
  sizes = np.floor((start_size + progress * (final - start_size)) / multiple + 0.5) * multiple
  sizes = np.where(where <= start, start_size, np.where(where >= end, final, sizes)).astype(int)
  changes = np.flatnonzero(np.diff(sizes)) + 1
  starts = (0, *(int(step) for step in changes))
  return Resolution(starts, tuple(int(sizes[step]) for step in starts), total_steps,
                    eval_size, final)


def describe(info: Resolution, steps_per_epoch: float, crop: str = '') -> list[str]:
  """Rows for `--describe`: the train size per range of steps and epochs, the eval size (and
  `crop`, how the eval image is cut) and the predicted FLOPs."""
  if not info.ramped:
    rows = [('image size', f'{info.final_size} px train, {info.eval_size} px eval'
                           + (f' ({crop})' if crop else ''))]
  else:
    rows = [('image size', f'{len(info.train_sizes)} train sizes (one compiled step each); '
                           f'{info.eval_size} px eval' + (f' ({crop})' if crop else ''))]
    for start, end, size in info.segments():
      rows.append(('', f'{size} px: steps {start}-{end - 1} (epochs {start / steps_per_epoch:.2f}'
                       f'-{end / steps_per_epoch:.2f})'))
    rows.append(('', f'train FLOPs predicted {info.pixel_fraction():.3f} x those of '
                     f'{info.final_size} px throughout (proportional to pixels; '
                     f'{1 - info.pixel_fraction():.1%} saved)'))
  return rows
