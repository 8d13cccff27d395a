"""The non-finite policy: what a NaN or Inf loss or gradient does to a run.

The step flags each non-finite step (`train/nonfinite`, see `steps.train_step`); the loop reads
the flags only when it reads metrics anyway, so watching costs no extra sync.
"""

import math

from lbtrain.errors import TrainingStopped


class NonfiniteWatch:
  """Reads each step's `train/nonfinite` flag when the loop reads the metrics anyway (as it
  writes a record, which may be a log interval after the step, and before a checkpoint).

  'stop' raises on the first non-finite step; 'skip' counts them (the step already left the
  state unchanged) and raises after `max_consecutive` in a row. Steps are observed in order,
  so a late read names the same step.
  """

  def __init__(self, policy: str, max_consecutive: int, checkpoint_dir: str):
    self._policy = policy
    self._max_consecutive = max_consecutive
    self._checkpoint_dir = checkpoint_dir
    self.last_good_checkpoint = None
    self.skipped = 0
    self._streak = 0

  def observe(self, values: list[dict], first_step: int) -> str | None:
    """Counts the non-finite steps among `values`; returns why training must stop, if it must."""
    problem = None
    for offset, step_values in enumerate(values):
      step = first_step + offset
      if not int(step_values['train/nonfinite']):
        self._streak = 0
        continue
      self.skipped += 1
      self._streak += 1
      metric = next((name for name in ('train/loss', 'train/grad_norm')
                     if not math.isfinite(float(step_values[name]))), 'train/grad_norm')
      if problem is None and self._policy == 'stop':
        problem = f'non-finite {metric} at step {step}'
      if problem is None and self._streak >= self._max_consecutive:
        problem = (f'{self._streak} consecutive non-finite steps up to step {step} '
                   f'({metric})')
    return problem

  def stop(self, what: str) -> None:
    where = (f'the last good checkpoint is step {self.last_good_checkpoint} in '
             f'{self._checkpoint_dir}' if self.last_good_checkpoint is not None else
             'no checkpoint was saved')
    raise TrainingStopped(f'{what}; stopped without saving this state ({where}). Lower the lr, '
                          'add --config.optimizer.grad_clip_norm, or set '
                          '--config.train.on_nonfinite=skip.')
