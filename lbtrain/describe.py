"""`--describe` and the start of a run's log: the recipe a plan lays out, as a table a human can
check against the paper before anything runs."""

import jax
import numpy as np

from lbtrain import batch_schedule
from lbtrain import optim
from lbtrain import parallel
from lbtrain import resolution as resolution_lib
from lbtrain import schedules
from lbtrain.plan import Plan


def _describe_eval(run: Plan) -> str:
  if run.eval_every_steps is None:
    return 'none (eval.every_epochs=0)'
  first = ('' if run.eval_first_step == run.eval_every_steps else
           f'at step {run.eval_first_step}, then ')
  target = run.config.eval.target_accuracy
  stop = ('' if target is None else
          f'; stops at the first that reaches accuracy {target} (time to target recorded)')
  split = run.config.eval.train_accuracy_split
  also = '' if split is None else (
      f'; also {split!r} in eval mode' + (f' ({run.train_eval[1].num_eval_examples:,} examples)'
                                          if run.train_eval else '') + ' (train_eval/*)')
  return (f'{first}every {run.eval_every_steps} steps and at the end, global batch '
          f'{run.eval_global_batch_size}{stop}{also}')


def _describe_micro_batch(run: Plan) -> str:
  layout = f'{run.micro_batch_size:,} per device x {run.accum_steps} accumulation step(s)'
  if not run.auto_micro_batch:
    return layout
  if run.micro_batch_measured:
    return f"{layout}, chosen from the compiled step's memory"
  return ("'auto': the largest that fits, chosen from the compiled step's memory when training "
          f'starts (up to {run.per_device_batch_size:,} per device, no accumulation)')


def describe(run: Plan) -> str:
  """The recipe as a table a human can check against the paper, before anything runs."""
  config = run.config
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(run.abstract_params))
  rows = [
      ('dataset', f'{run.dataset.name}: {run.dataset.num_train_examples:,} train / '
                  f'{run.dataset.num_eval_examples:,} eval examples, '
                  f'{run.dataset.num_classes} classes, image {run.dataset.image_shape}'),
      ('model', f'{config.model.name} ({num_params:,} parameters), dtype {config.model.dtype}'),
      ('devices', f'{run.num_devices} devices on {run.num_processes} process(es), '
                  f'mesh ({parallel.DATA_AXIS}: {run.num_devices})'),
      ('strategy', {'jit': 'jit: one program over the global batch',
                    'pmap': 'pmap: a per-device program, explicit pmean/psum over '
                            f'{parallel.DATA_AXIS!r}'}[config.parallel.strategy]),
      ('per-device batch', f'{run.per_device_batch_size:,}'),
      ('micro batch', _describe_micro_batch(run)),
      ('BN statistics', 'over the global batch' if config.model.bn_group_size is None else
       f'over groups of {config.model.bn_group_size} consecutive examples'),
      ('label smoothing', f'{config.train.label_smoothing}'),
      ('noise scale', 'off' if config.train.noise_scale_every is None else
       f'every {config.train.noise_scale_every} steps, EMA decay '
       f'{config.train.noise_scale_decay}, small batches of '
       + (f'{run.per_device_batch_size} (one device)' if config.parallel.strategy == 'pmap'
          else f'{config.train.global_batch_size // run.accum_steps} (one micro-batch)')),
      ('eval', _describe_eval(run)),
      *([('stop', f'this attempt ends at step {run.last_step:,} of {run.total_steps:,} '
                  '(train.stop_at_step; the schedule is unchanged)')]
        if run.last_step < run.total_steps else []),
      ('checkpoint', f'every {run.checkpoint_every_steps} steps, keep '
                     f'{config.checkpoint.keep}'),
      ('optimizer', optim.describe_optimizer(config.optimizer)),
  ]
  for name, summary in optim.describe_masks(config.optimizer, run.abstract_params).items():
    if summary is None:
      rows.append((name.replace('_', ' '), 'not applied'))
      continue
    rows.append((name.replace('_', ' '),
                 f'on {len(summary["on"])} tensors ({summary["on_params"]:,} parameters), '
                 f'off {len(summary["off"])} tensors ({summary["off_params"]:,} parameters)'))
    rows.append(('  off', _abbreviate(summary['off'])))
  if run.dataset.resizable:
    rows[1:1] = resolution_lib.describe(run.resolution, run.schedule_info.steps_per_epoch)
  if run.batches.scheduled:
    rows[0:0] = [
        *batch_schedule.describe(run.batches, lambda step: float(run.schedule(step)),
                                 config.train.batch_schedule.lr),
        ('training', f'{run.total_steps} steps over the batch schedule; the lr schedule above is '
                     f'laid out at batch {config.train.global_batch_size} and read at the '
                     'examples consumed')]
  width = 17
  lines = schedules.describe_schedule(run.schedule_info)
  lines += [f'{name:<{width}} {value}' for name, value in rows]
  return '\n'.join(lines)


def _abbreviate(names: list[str], limit: int = 8) -> str:
  shown = ', '.join(names[:limit])
  return shown + (f', ... ({len(names) - limit} more)' if len(names) > limit else '') or '-'
