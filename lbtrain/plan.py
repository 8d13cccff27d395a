"""Every number a run derives from its config and the hardware, with every rule checked once.

`plan()` is the one validation path: the loop, `--describe`, the sweep (through `recipe()`, the
part that needs no hardware) and the advisor all go through it, so a rule has one wording. It
runs before anything is compiled or written, and the `Plan` it returns is never changed
afterwards (`micro_batch_size='auto'` is resolved by `build` before the plan is made).
"""

import dataclasses
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from lbtrain import adaptive_batch as adaptive_lib
from lbtrain import batch_schedule
from lbtrain import data
from lbtrain import durations
from lbtrain import models
from lbtrain import optim
from lbtrain import parallel
from lbtrain import resolution as resolution_lib
from lbtrain import schedules
from lbtrain import sharding
from lbtrain.errors import UserError

NONFINITE_POLICIES = ('stop', 'skip')


@dataclasses.dataclass(frozen=True)
class Recipe:
  """What the config alone fixes once the training split's size is known: no hardware."""
  schedule: Any
  schedule_info: schedules.ScheduleInfo  # laid out at train.global_batch_size
  batches: batch_schedule.BatchSchedule  # the global batch of each step (adaptive: the first)
  lr_rule: Any  # (examples consumed, batch) -> lr where the batch changes; None otherwise
  eval_every: durations.Recurring | None  # None: no evaluation
  checkpoint_every: durations.Recurring
  log_every: durations.Recurring


@dataclasses.dataclass(frozen=True)
class Plan:
  """A recipe laid out on this hardware: the model, the optimizer and the batch layout."""
  config: ml_collections.ConfigDict
  dataset: data.DatasetInfo
  schedule_info: schedules.ScheduleInfo  # laid out at train.global_batch_size
  schedule: Any  # step -> lr, over the batch schedule
  # The global batch of each step; an adaptive run's, as far as decided (train.py extends it).
  batches: batch_schedule.BatchSchedule
  lr_rule: Any  # (examples consumed, batch) -> lr where the batch changes; None otherwise
  adaptive: adaptive_lib.AdaptiveBatch | None  # train.adaptive_batch; None when off
  model: Any
  optimizer: Any
  abstract_params: Any
  num_devices: int
  num_processes: int
  per_device_batch_size: int
  micro_batch_size: int  # per device
  accum_steps: int
  micro_batch_measured: bool  # 'auto' resolved from compiled steps' memory (not by --describe)
  eval_global_batch_size: int
  eval_every: durations.Recurring | None  # None: no evaluation
  checkpoint_every: durations.Recurring
  log_every: durations.Recurring
  resolution: resolution_lib.Resolution  # the image size of each step, and of evaluation
  # eval.train_accuracy_split's data config (its eval_split set to that split) and sizes; None
  # when off (or not read: --describe without the data).
  train_eval: tuple[ml_collections.ConfigDict, data.DatasetInfo] | None = None

  def _due(self, points: durations.Recurring, step: int) -> bool:
    return points.due(step, self.batches.examples_before)

  def evaluates_at(self, step: int) -> bool:
    """At eval.first, every eval.every after it, and at the end (of the schedule, or of this
    attempt at train.stop_at_step)."""
    if self.eval_every is None:
      return False
    return step in (self.total_steps, self.last_step) or self._due(self.eval_every, step)

  def checkpoints_at(self, step: int) -> bool:
    return self._due(self.checkpoint_every, step)

  def logs_at(self, step: int) -> bool:
    return self._due(self.log_every, step)

  def decides_at(self, step: int) -> bool:
    """Whether the adaptive batch decides after step `step - 1` (never at the end)."""
    return (self.adaptive is not None and step < self.last_step
            and self._due(self.adaptive.points, step))

  @property
  def total_steps(self) -> int:
    return self.batches.total_steps

  @property
  def last_step(self) -> int:
    """Where this attempt ends: the schedule's end, or train.stop_at_step before it."""
    return min(self.total_steps, self.config.train.stop_at_step or self.total_steps)

  @property
  def batch_changes(self) -> bool:
    """Whether the global batch may change: the state then counts the examples read."""
    return self.batches.scheduled or self.adaptive is not None

  @property
  def batch_sizes(self) -> tuple[int, ...]:
    """Every global batch the run may train at (a compiled step each), ascending."""
    return tuple(sorted({*self.batches.distinct, *(self.adaptive.allowed if self.adaptive
                                                   else ())}))

  @property
  def auto_micro_batch(self) -> bool:
    """micro_batch_size='auto': the layout above was chosen from compiled steps' memory."""
    return self.config.train.micro_batch_size == 'auto'


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise UserError(message)


def recipe(config: ml_collections.ConfigDict, num_train_examples: int) -> Recipe:
  """The schedule and intervals of `config`; UserError for any config-only rule it breaks."""
  train = config.train
  _require(train.on_nonfinite in NONFINITE_POLICIES,
           f'train.on_nonfinite={train.on_nonfinite!r}: use one of '
           f'{", ".join(NONFINITE_POLICIES)}.')
  _require(config.parallel.strategy in parallel.STRATEGIES,
           f'parallel.strategy={config.parallel.strategy!r}: use one of '
           f'{", ".join(parallel.STRATEGIES)}.')
  _require(config.parallel.sharding in sharding.MODES,
           f'parallel.sharding={config.parallel.sharding!r}: use one of '
           f'{", ".join(sharding.MODES)}.')
  _require(config.parallel.sharding == 'replicated' or config.parallel.strategy == 'jit',
           f'parallel.sharding={config.parallel.sharding!r} needs parallel.strategy=jit (the '
           'pmap program holds a whole state per device); set --config.parallel.strategy=jit '
           'or --config.parallel.sharding=replicated.')
  group = config.model.bn_group_size
  _require(group is None or (group > 0 and train.global_batch_size % group == 0),
           f'model.bn_group_size={group} must be a positive divisor of the global batch '
           f'{train.global_batch_size}; pick one, or None for global statistics.')
  if train.noise_scale_every is not None:
    _require(train.noise_scale_every > 0,
             f'train.noise_scale_every={train.noise_scale_every} must be a positive number of '
             'steps (or None for no noise scale).')
    _require(0 <= train.noise_scale_decay < 1,
             f'train.noise_scale_decay={train.noise_scale_decay} must be in [0, 1).')
  _require(train.mixup_alpha >= 0 and train.cutmix_alpha >= 0 and 0 <= train.mix_prob <= 1,
           f'train.mixup_alpha={train.mixup_alpha} and train.cutmix_alpha={train.cutmix_alpha} '
           f'must be >= 0 (0 = off) and train.mix_prob={train.mix_prob} in [0, 1].')
  _require(train.stop_at_step is None or train.stop_at_step > 0,
           f'train.stop_at_step={train.stop_at_step} must be a positive step (or None to train '
           'to the end).')
  schedule, info = schedules.create_schedule(config, num_train_examples)
  batches = batch_schedule.from_config(config, num_train_examples)
  lr_rule = None
  if batches.scheduled or config.train.adaptive_batch.min_batch_size is not None:
    # An adaptive batch follows optimizer.scaling ('scale'); a fixed schedule says.
    rule = (config.train.batch_schedule.lr if batches.scheduled else 'scale')
    lr_rule = batch_schedule.lr_rule(schedule, train.global_batch_size, batch_schedule.lr_factor(
        rule, lambda b: schedules.peak_lr_at(config, b), train.global_batch_size))
    _require(train.num_epochs * num_train_examples < 2 ** 30,
             f'train.num_epochs={train.num_epochs} x {num_train_examples:,} examples is too '
             'many to count in int32 for a batch that changes; train fewer epochs.')

    def schedule(step):  # host-side, for --describe: the lr of step `step` as planned
      return lr_rule(batches.examples_before(int(step)), batches.batch_at(int(step)))
  per_epoch = info.steps_per_epoch
  # Where the batch changes, intervals in epochs count examples (durations.Recurring).
  examples = num_train_examples if lr_rule is not None else None
  eval_every = durations.recurring(config.eval, 'eval.every', per_epoch,
                                   zero_means='no evaluation', examples_per_epoch=examples)
  first_given = config.eval.first_epochs is not None or config.eval.first_steps is not None
  if eval_every is not None and first_given:
    first, end = eval_every.first, batches.total_steps
    where = f'step {first}) must be within training (steps 1 to {end})'
    if eval_every.in_examples:
      end = train.num_epochs * num_train_examples
      where = f'{first:,} examples) must be within training (1 to {end:,.0f} examples)'
    _require(0 < first <= end, f'eval.first ({where}.')
  target = config.eval.target_accuracy
  _require(target is None or 0 < target <= 1,
           f'eval.target_accuracy={target} must be an accuracy in (0, 1], e.g. 0.759.')
  _require(target is None or eval_every is not None,
           f'eval.target_accuracy={target} needs evaluations to reach it: set eval.every_epochs '
           '(or eval.every_steps) above 0.')
  return Recipe(
      schedule=schedule, schedule_info=info, batches=batches, lr_rule=lr_rule,
      eval_every=eval_every,
      checkpoint_every=durations.recurring(config.checkpoint, 'checkpoint.every', per_epoch,
                                           examples_per_epoch=examples),
      log_every=durations.recurring(train, 'train.log_every', per_epoch,
                                    examples_per_epoch=examples))


def batch_layout(config: ml_collections.ConfigDict, num_devices: int,
                 micro_batch_size: int | None = None) -> tuple[int, int, int]:
  """(per-device batch, per-device micro batch, accumulation steps), validated.

  `micro_batch_size` stands for the config's ('auto' resolved, or a candidate of that search);
  an unresolved 'auto' is laid out as no accumulation.
  """
  global_batch = config.train.global_batch_size
  _require(global_batch > 0, f'train.global_batch_size must be positive, got {global_batch}.')
  _require(global_batch % num_devices == 0,
           f'train.global_batch_size={global_batch} is not divisible by the {num_devices} '
           f'devices; use a multiple of {num_devices} (e.g. '
           f'--config.train.global_batch_size={max(1, global_batch // num_devices) * num_devices}).')
  per_device = global_batch // num_devices
  configured = config.train.micro_batch_size
  _require(configured in (None, 'auto') or (type(configured) is int and configured > 0),
           f'train.micro_batch_size={configured!r} must be a positive number of examples per '
           "device, None (no accumulation) or 'auto' (the largest that fits in memory).")
  micro = micro_batch_size or (per_device if configured in (None, 'auto') else configured)
  _require(0 < micro <= per_device and per_device % micro == 0,
           f'train.micro_batch_size={micro} must divide the per-device batch {per_device} '
           f'(= {global_batch} / {num_devices} devices); pick a divisor of {per_device}.')
  accum_steps = per_device // micro
  group = config.model.bn_group_size
  if accum_steps > 1 and group is None and models.uses_batch_norm(config.model):
    raise UserError(
        f'gradient accumulation ({accum_steps} micro-batches of {micro} per device) computes BN '
        f'statistics per micro-batch; set --config.model.bn_group_size to a divisor of {micro} '
        'to make those groups explicit (the same value then gives the same training on any '
        'number of devices).')
  _require(accum_steps == 1 or group is None or micro % group == 0,
           f'model.bn_group_size={group} must divide the per-device micro batch {micro}; pick '
           'a divisor of it or None for global statistics.')
  return per_device, micro, accum_steps


def _check_batch_sizes(config, batches: tuple[int, ...], block: str, num_devices: int) -> None:
  """Every batch the run may train at laid out on these devices, without accumulation (one
  compiled step per batch, each its own shapes)."""
  if len(batches) < 2:
    return
  _require(config.train.micro_batch_size is None,
           f'{block} with train.micro_batch_size={config.train.micro_batch_size!r} '
           'is not supported: each batch would need its own micro-batch layout; use None.')
  for batch in batches:
    other = config.copy_and_resolve_references()
    other.train.global_batch_size = batch
    try:
      batch_layout(other, num_devices)
      group = other.model.bn_group_size
      _require(group is None or batch % group == 0,
               f'model.bn_group_size={group} must divide every batch the run may train at.')
    except UserError as error:
      raise UserError(f'{block}, batch {batch}: {error}') from None


def _check_noise_scale_source(config, accum_steps: int, num_devices: int,
                              smallest_batch: int) -> None:
  if config.train.noise_scale_every is None:
    return
  per_device_gradients = config.parallel.strategy == 'pmap' and num_devices > 1
  _require(per_device_gradients or accum_steps > 1,
           'train.noise_scale_every needs gradients of small batches that the step computes '
           'anyway: set --config.parallel.strategy=pmap on more than one device (per-device '
           'gradients, same training) or accumulate micro-batches '
           '(--config.train.micro_batch_size).')
  if per_device_gradients:
    _warn_shared_statistics(config, smallest_batch // num_devices)


def _warn_shared_statistics(config, smallest_per_device: int) -> None:
  """BN statistics shared between devices couple their gradients (each device's backward pass
  carries the other devices' losses through the shared mean and variance), which then are not
  the independent small-batch gradients the noise scale assumes. Measured on Fashion-MNIST
  (docs/critical_batch.md): B_simple 6x the per-device-statistics value at batch 1024, and
  negative from step ~60 at batch 256."""
  group = config.model.bn_group_size
  if models.uses_batch_norm(config.model) and (group is None or smallest_per_device % group):
    logging.warning('train.noise_scale_every with BatchNorm statistics shared between devices '
                    '(model.bn_group_size=%s): the per-device gradients are coupled and B_simple '
                    'from them is biased (measured 6x too high, or negative, on Fashion-MNIST); '
                    'set model.bn_group_size to a divisor of %d, the per-device batch.',
                    group, smallest_per_device)


def dataset_info(config: ml_collections.ConfigDict, describe_only: bool = False):
  """The data set's sizes; with `describe_only`, a data set that is not prepared here is
  described from its published split sizes, so a recipe can be checked without its data."""
  try:
    return data.get_dataset_info(config.data)
  except UserError as error:
    dataset = data.published_dataset_info(config.data) if describe_only else None
    if dataset is None:
      raise
    logging.warning('%s; describing it from its published split sizes.', str(error).rstrip('.'))
    return dataset


def _train_eval(config: ml_collections.ConfigDict, describe_only: bool
                ) -> tuple[ml_collections.ConfigDict, data.DatasetInfo] | None:
  """The training slice evaluated beside the eval split: the data config evaluating it."""
  split = config.eval.train_accuracy_split
  if split is None:
    return None
  data_config = config.data.copy_and_resolve_references()
  data_config.eval_split = split
  try:
    return data_config, data.get_dataset_info(data_config)
  except UserError as error:
    if describe_only:
      return None
    raise UserError(str(error).replace('--config.data.eval_split=',
                                       '--config.eval.train_accuracy_split=')) from None


def plan(config: ml_collections.ConfigDict, *, micro_batch_size: int | None = None,
         dataset: data.DatasetInfo | None = None, describe_only: bool = False) -> Plan:
  """Validates the config against the data and hardware; raises UserError on bad input.

  `micro_batch_size`: the resolved 'auto' (see `build.choose_micro_batch`). `dataset`: its info
  when already read. `describe_only`: see `dataset_info`.
  """
  num_devices, num_processes = jax.device_count(), jax.process_count()
  per_device, micro, accum_steps = batch_layout(config, num_devices, micro_batch_size)
  eval_batch = config.eval.global_batch_size or config.train.global_batch_size
  _require(eval_batch > 0 and eval_batch % num_devices == 0,
           f'eval.global_batch_size={eval_batch} must be a positive multiple of the '
           f'{num_devices} devices.')
  dataset = dataset or dataset_info(config, describe_only)
  run_recipe = recipe(config, dataset.num_train_examples)
  adaptive = adaptive_lib.from_config(config, dataset.num_train_examples, num_devices)
  block = 'train.adaptive_batch' if adaptive else 'train.batch_schedule'
  _check_batch_sizes(config, tuple(sorted({*run_recipe.batches.distinct,
                                           *(adaptive.allowed if adaptive else ())})),
                     block, num_devices)
  _check_noise_scale_source(config, accum_steps, num_devices,
                            adaptive.allowed[0] if adaptive else min(run_recipe.batches.distinct))
  per_device_program = config.parallel.strategy == 'pmap'
  model = models.create_model(config.model, num_classes=dataset.num_classes,
                              axis_name=parallel.DATA_AXIS if per_device_program else None)
  abstract_params = _abstract_params(model, dataset.image_shape)
  layers = config.data.randaugment_layers
  _require(isinstance(layers, int) and layers >= 0 and config.data.randaugment_magnitude >= 0,
           f'data.randaugment_layers={layers!r} must be a whole number >= 0 (0 = off) and '
           f'data.randaugment_magnitude={config.data.randaugment_magnitude} >= 0.')
  _require(layers == 0 or dataset.name == 'imagenet2012',
           f'data.randaugment_layers={layers}: only the imagenet2012 host pipeline applies '
           f'RandAugment, not {dataset.name}; set it to 0.')
  sizes = _resolution(config, dataset, run_recipe.batches.total_steps)
  _require(not (sizes.ramped and (run_recipe.batches.scheduled or adaptive)),
           f'data.progressive_resizing and {block} together are not supported: '
           'one compiled step per image size or per batch; use one of them.')
  for size in {*sizes.train_sizes, sizes.eval_size} - {dataset.image_shape[0]}:
    other = _abstract_params(model, (size, size, dataset.image_shape[2]))
    _require(jax.tree.structure(other) == jax.tree.structure(abstract_params) and all(
        x.shape == y.shape for x, y in zip(jax.tree.leaves(other),
                                           jax.tree.leaves(abstract_params))),
             f'model.name={config.model.name!r} has parameters whose shapes depend on the image '
             f'size ({dataset.image_shape[0]} vs {size} px), so it cannot train or evaluate at '
             'several sizes; use a model with global pooling (resnet*, or vit with '
             "posemb='sincos2d') or one image size.")
  optimizer = optim.create_optimizer(config.optimizer, run_recipe.schedule, abstract_params,
                                     peak_lr=run_recipe.schedule_info.peak_lr)
  return Plan(config=config, dataset=dataset, schedule_info=run_recipe.schedule_info,
              schedule=run_recipe.schedule, batches=run_recipe.batches,
              lr_rule=run_recipe.lr_rule, adaptive=adaptive, model=model,
              optimizer=optimizer,
              abstract_params=abstract_params, num_devices=num_devices,
              num_processes=num_processes, per_device_batch_size=per_device,
              micro_batch_size=micro, accum_steps=accum_steps,
              micro_batch_measured=micro_batch_size is not None,
              eval_global_batch_size=eval_batch, eval_every=run_recipe.eval_every,
              checkpoint_every=run_recipe.checkpoint_every, log_every=run_recipe.log_every,
              resolution=sizes,
              train_eval=_train_eval(config, describe_only))


def _abstract_params(model, image_shape: tuple) -> Any:
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape), jnp.float32),
                         train=False))['params']


def _resolution(config: ml_collections.ConfigDict, dataset: data.DatasetInfo,
                total_steps: int) -> resolution_lib.Resolution:
  """The sizes of the config's ramp and eval on a data set that resizes; the data set's own
  size throughout on one that does not (and UserError if the config asks for other sizes)."""
  if dataset.resizable:
    return resolution_lib.resolution(config, dataset.num_train_examples, total_steps)
  asked = [name for name, value in (
      ('data.eval_image_size', config.data.eval_image_size),
      ('data.progressive_resizing.start_image_size',
       config.data.progressive_resizing.start_image_size)) if value is not None]
  _require(not asked,
           f'{" and ".join(asked)}: only a data set whose pipeline crops and resizes '
           f'(imagenet2012, synthetic) has other image sizes; {dataset.name} images are '
           f'{"x".join(map(str, dataset.image_shape[:2]))}: unset it.')
  side = dataset.image_shape[0]
  return resolution_lib.Resolution((0,), (side,), total_steps, side, side)
