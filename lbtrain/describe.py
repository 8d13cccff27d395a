"""`--describe` and the start of a run's log: the recipe a plan lays out, as a table a human can
check against the paper before anything runs."""

import functools

import jax
import numpy as np

from lbtrain import models
from lbtrain import batch_schedule
from lbtrain import optim
from lbtrain import parallel
from lbtrain import resolution as resolution_lib
from lbtrain import schedules
from lbtrain import sharding
from lbtrain import steps
from lbtrain.plan import Plan

_SHARDING = {
    'replicated': 'replicated: every device holds the whole model, gradient and optimizer state',
    'update': 'update: optimizer state and weight update sharded over the devices, gradient '
              'reduce-scattered, parameters all-gathered (ZeRO-1; Xu et al. 2020)',
    'fsdp': 'fsdp: parameters, gradient and optimizer state sharded, parameters gathered '
            'where the passes use them (ZeRO-3 / FSDP)',
}


def _describe_eval(run: Plan) -> str:
  if run.eval_every is None:
    return 'none (eval.every_epochs=0)'
  target = run.config.eval.target_accuracy
  stop = ('' if target is None else
          f'; stops at the first that reaches accuracy {target} (time to target recorded)')
  split = run.config.eval.train_accuracy_split
  also = '' if split is None else (
      f'; also {split!r} in eval mode' + (f' ({run.train_eval[1].num_eval_examples:,} examples)'
                                          if run.train_eval else '') + ' (train_eval/*)')
  return (f'{run.eval_every.describe(run.dataset.num_train_examples)} and at the end, global '
          f'batch {run.eval_global_batch_size}{stop}{also}')


def _model_name(model_config) -> str:
  if model_config.name != 'vit':
    return model_config.name
  vit = model_config.vit
  sizes = ', '.join(f'{field} {vit[field]}' for field in ('width', 'depth', 'num_heads')
                    if vit[field] is not None)
  return (f'vit {vit.variant}/{vit.patch_size}' + (f' ({sizes})' if sizes else '')
          + f': pool {vit.pool}, posemb {vit.posemb}, '
          + ('tanh pre-logits' if vit.pre_logits else 'no pre-logits') + ', zero-init head')


def _describe_mixing(train) -> str:
  kinds = [f'{name} alpha {alpha:g}' for name, alpha in (
      ('mixup', train.mixup_alpha), ('cutmix', train.cutmix_alpha)) if alpha > 0]
  if not kinds or train.mix_prob <= 0:
    return 'none'
  switch = ' (one of them per step, 1/2 each)' if len(kinds) == 2 else ''
  share = 'every step' if train.mix_prob == 1 else f'{train.mix_prob:g} of the steps'
  return f'{" and ".join(kinds)}{switch} on {share}, one draw per global batch, soft targets'



def _describe_micro_batch(run: Plan) -> str:
  layout = f'{run.micro_batch_size:,} per device x {run.accum_steps} accumulation step(s)'
  if not run.auto_micro_batch:
    return layout
  if run.micro_batch_measured:
    return f"{layout}, chosen from the compiled step's memory"
  return ("'auto': the largest that fits, chosen from the compiled step's memory when training "
          f'starts (up to {run.per_device_batch_size:,} per device, no accumulation)')


def _describe_sharding(run: Plan) -> list[tuple[str, str]]:
  """The chosen layout, and the state bytes per device that each layout would give."""
  abstract = jax.eval_shape(functools.partial(
      steps.init_state, model=run.model, tx=run.optimizer, image_shape=run.dataset.image_shape),
                            jax.random.key(0))
  chosen = run.config.parallel.sharding
  rows = [('sharding', _SHARDING[chosen])]
  for mode, parts in sharding.per_device_bytes(abstract, run.num_devices).items():
    sizes = ', '.join(f'{part} {size / 2**20:,.1f} MiB' for part, size in parts.items())
    rows.append((f'  {mode}', f'{sizes} per device' + (' (this run)' if mode == chosen else '')))
  whole = sharding.replicated_leaves(run.abstract_params, run.num_devices)
  rows.append(('  kept whole', f'{len(whole)} parameter tensors (no dimension divisible by '
                               f'{run.num_devices}): {_abbreviate(whole)}'))
  return rows


def describe(run: Plan) -> str:
  """The recipe as a table a human can check against the paper, before anything runs."""
  config = run.config
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(run.abstract_params))
  rows = [
      ('dataset', f'{run.dataset.name}: {run.dataset.num_train_examples:,} train '
                  f'({config.data.train_split}) / {run.dataset.num_eval_examples:,} eval '
                  f'({config.data.eval_split}) examples, '
                  f'{run.dataset.num_classes} classes, image {run.dataset.image_shape}'),
      ('model', f'{_model_name(config.model)} ({num_params:,} parameters), '
                f'dtype {config.model.dtype}'),
      ('devices', f'{run.num_devices} devices on {run.num_processes} process(es), '
                  f'mesh ({parallel.DATA_AXIS}: {run.num_devices})'),
      ('strategy', {'jit': 'jit: one program over the global batch',
                    'pmap': 'pmap: a per-device program, explicit pmean/psum over '
                            f'{parallel.DATA_AXIS!r}'}[config.parallel.strategy]),
      *_describe_sharding(run),
      ('per-device batch', f'{run.per_device_batch_size:,}'),
      ('micro batch', _describe_micro_batch(run)),
      ('BN statistics', 'none (no BatchNorm)' if not models.uses_batch_norm(config.model) else
       'over the global batch' if config.model.bn_group_size is None else
       f'over groups of {config.model.bn_group_size} consecutive examples'),
      ('label smoothing', f'{config.train.label_smoothing}'),
      ('mixing', _describe_mixing(config.train)),
      ('RandAugment', 'off' if not config.data.randaugment_layers else
       f'N {config.data.randaugment_layers}, M {config.data.randaugment_magnitude:g} '
       "(big_vision's ops and magnitudes), after the crop and flip"),
      ('noise scale', 'off' if config.train.noise_scale_every is None else
       f'every {config.train.noise_scale_every} steps, EMA decay '
       f'{config.train.noise_scale_decay}, small batches of '
       + (f'{run.per_device_batch_size} (one device)' if config.parallel.strategy == 'pmap'
          else f'{config.train.global_batch_size // run.accum_steps} (one micro-batch)')),
      ('eval', _describe_eval(run)),
      *([('stop', f'this attempt ends at step {run.last_step:,} of {run.total_steps:,} '
                  '(train.stop_at_step; the schedule is unchanged)')]
        if run.last_step < run.total_steps else []),
      ('checkpoint', f'{run.checkpoint_every.describe(run.dataset.num_train_examples)}, keep '
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
    ratio = config.data.eval_crop_ratio
    size = run.resolution.eval_size
    crop = (f'resize the shorter side to {size / ratio:.4g}, central crop {size}'
            if run.dataset.name != 'synthetic' else '')
    rows[1:1] = resolution_lib.describe(run.resolution, run.schedule_info.steps_per_epoch, crop)
  if run.batches.scheduled:
    rows[0:0] = [
        *batch_schedule.describe(run.batches, lambda step: float(run.schedule(step)),
                                 config.train.batch_schedule.lr),
        ('training', f'{run.total_steps} steps over the batch schedule; the lr schedule above is '
                     f'laid out at batch {config.train.global_batch_size} and read at the '
                     'examples consumed')]
  if run.adaptive is not None:
    rows[0:0] = [
        *run.adaptive.describe(run.dataset.num_train_examples, config.optimizer.scaling),
        ('training', f'{run.total_steps} steps if the batch stays {config.train.global_batch_size}'
                     f'; ends at {config.train.num_epochs:g} epochs of examples at the batches '
                     'decided; the lr schedule above is laid out at that batch and read at the '
                     'examples consumed')]
  width = 17
  lines = schedules.describe_schedule(run.schedule_info)
  lines += [f'{name:<{width}} {value}' for name, value in rows]
  return '\n'.join(lines)


def _abbreviate(names: list[str], limit: int = 8) -> str:
  shown = ', '.join(names[:limit])
  return shown + (f', ... ({len(names) - limit} more)' if len(names) > limit else '') or '-'
