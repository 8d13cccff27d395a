"""A Plan turned into compiled functions: the mesh's shardings, jitted init/train/eval.

Also where `train.micro_batch_size='auto'` is resolved, since only a compiled step knows its
memory: `choose_micro_batch` compiles candidate steps before the run's Plan is made, so the
Plan never changes once made.
"""

import dataclasses
import functools
import os
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from lbtrain import memory
from lbtrain import mixing
from lbtrain import models
from lbtrain import optim
from lbtrain import parallel
from lbtrain import plan as plan_lib
from lbtrain import sharding
from lbtrain import steps
from lbtrain.errors import UserError


@dataclasses.dataclass(frozen=True)
class Steps:
  """The jitted functions of a run, with the state's shardings and abstract shape."""
  init: Callable[[jax.Array], steps.TrainState]
  train_step: Callable[[steps.TrainState, Any], tuple[steps.TrainState, steps.Metrics]]
  eval_step: Callable[[steps.TrainState, Any], steps.Metrics]
  abstract_state: Any  # jax.ShapeDtypeStruct leaves carrying the target shardings

  def compile_train_step(self, run: plan_lib.Plan, mesh: Mesh, image_size: int | None = None,
                         global_batch_size: int | None = None):
    """The train step compiled ahead of time at `image_size` and `global_batch_size` (None:
    the run's largest train size and batch, the ones that need the most memory)."""
    image_size = image_size or max(run.resolution.train_sizes)
    batch_size = global_batch_size or max(run.batch_sizes)
    return self.train_step.lower(self.abstract_state,
                                 abstract_batch(run, mesh, image_size, batch_size)).compile()


def step_settings(run: plan_lib.Plan, mesh: Mesh) -> steps.StepSettings:
  train = run.config.train
  return steps.StepSettings(
      model=run.model, tx=run.optimizer, schedule=run.schedule,
      label_smoothing=train.label_smoothing, accum_steps=run.accum_steps,
      skip_nonfinite=train.on_nonfinite == 'skip',
      pixel_stats=(run.dataset.mean, run.dataset.std),
      noise_scale_every=train.noise_scale_every, noise_scale_decay=train.noise_scale_decay,
      unroll_micro_batches=parallel.loops_run_slowly(mesh),
      mix=mixing.MixSettings(mixup_alpha=train.mixup_alpha, cutmix_alpha=train.cutmix_alpha,
                             prob=train.mix_prob, seed=train.seed),
      num_classes=run.dataset.num_classes,
      sharding=run.config.parallel.sharding,
      lr_rule=run.lr_rule,
      optimizer_with=functools.partial(
          optim.create_optimizer, run.config.optimizer, params=run.abstract_params,
          peak_lr=run.schedule_info.peak_lr) if run.batch_changes else None)


def build(run: plan_lib.Plan, mesh: Mesh) -> Steps:
  """The jitted init/train/eval functions with explicit shardings and a donated state.

  The state's layout (`parallel.sharding`, see `lbtrain.sharding`) is init's output, both
  steps' input, the train step's output and the restore target, so the compiled step whose
  memory `check_memory` and `choose_micro_batch` read is the one the run trains with.
  """
  init_fn = functools.partial(steps.init_state, model=run.model, tx=run.optimizer,
                              image_shape=run.dataset.image_shape,
                              first_batch=(run.config.train.global_batch_size
                                           if run.batch_changes else None))
  abstract = jax.eval_shape(init_fn, jax.random.key(0))
  state_sharding = sharding.state_shardings(abstract, mesh, run.config.parallel.sharding)
  init = jax.jit(init_fn, out_shardings=state_sharding)
  strategy = run.config.parallel.strategy
  train_step = parallel.distribute(
      functools.partial(steps.train_step, settings=step_settings(run, mesh), mesh=mesh),
      mesh, strategy, donate_state=True, state_sharding=state_sharding,
      out_sharding=(state_sharding, parallel.replicated(mesh)))
  eval_step = parallel.distribute(
      functools.partial(steps.eval_step, model=run.model,
                        pixel_stats=(run.dataset.mean, run.dataset.std)), mesh, strategy,
      state_sharding=state_sharding)
  abstract_state = jax.tree.map(
      lambda x, layout: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=layout), abstract,
      state_sharding)
  return Steps(init=init, train_step=train_step, eval_step=eval_step,
               abstract_state=abstract_state)


def abstract_batch(run: plan_lib.Plan, mesh: Mesh, image_size: int,
                   batch_size: int | None = None) -> dict:
  sharding = parallel.batch_sharded(mesh)
  batch_size = batch_size or run.config.train.global_batch_size
  channels = run.dataset.image_shape[2]
  return {
      'image': jax.ShapeDtypeStruct((batch_size, image_size, image_size, channels),
                                    jnp.dtype(run.dataset.image_dtype), sharding=sharding),
      'label': jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharding),
  }


def choose_micro_batch(config: ml_collections.ConfigDict, mesh: Mesh,
                       dataset=None) -> int:
  """Resolves micro_batch_size='auto': the largest allowed micro-batch whose compiled train
  step fits `train.memory_fraction` of a device's memory (see `memory`)."""
  draft = plan_lib.plan(config, dataset=dataset)
  limit = memory.device_memory_limit()
  budget = int(limit.bytes_per_device * config.train.memory_fraction)

  def bytes_of(size: int) -> int:
    candidate = plan_lib.plan(config, micro_batch_size=size, dataset=draft.dataset)
    return memory.step_bytes(build(candidate, mesh).compile_train_step(candidate, mesh))

  per_device = draft.per_device_batch_size
  # A model without BatchNorm may split its batch anywhere: groups of one.
  group = config.model.bn_group_size if models.uses_batch_norm(config.model) else 1
  sizes = memory.candidates(per_device, group)
  chosen, measured = memory.largest_fitting(sizes, bytes_of, budget)
  logging.info('micro_batch_size=auto: budget %.2f GiB per device = %.2f x %s (%.2f GiB)',
               budget / memory.GiB, config.train.memory_fraction, limit.source,
               limit.bytes_per_device / memory.GiB)
  for size, size_bytes in sorted(measured.items()):
    logging.info('  micro-batch %d per device (%d accumulation steps): step needs %.2f GiB',
                 size, per_device // size, size_bytes / memory.GiB)
  if chosen is None:
    smallest = min(measured)
    hint = ('set --config.model.bn_group_size so that accumulation may split the per-device '
            'batch' if group is None else
            'use more devices or model.dtype=bfloat16' if group == 1 else
            'use more devices, a smaller model.bn_group_size, or model.dtype=bfloat16')
    raise UserError(f'train.micro_batch_size=auto: even a micro-batch of {smallest} per device '
                    f'needs {measured[smallest] / memory.GiB:.2f} GiB, over the '
                    f'{budget / memory.GiB:.2f} GiB budget ({limit.source}); {hint}.')
  logging.info('micro_batch_size=auto: chose %d per device, %d accumulation steps (the '
               'largest allowed size that fits)', chosen, per_device // chosen)
  return chosen


def memory_advice(run: plan_lib.Plan) -> str:
  """How to make a step that does not fit fit, as the config can say it."""
  advice = []
  if not run.auto_micro_batch:
    advice.append('--config.train.micro_batch_size=auto (with --config.model.bn_group_size if '
                  'unset) to accumulate smaller micro-batches')
  advice.append(f'a smaller --config.train.global_batch_size (now '
                f'{run.config.train.global_batch_size})')
  if run.config.model.dtype != 'bfloat16':
    advice.append('--config.model.dtype=bfloat16')
  return ', or '.join(advice)


def check_memory(run: plan_lib.Plan, compiled_step) -> None:
  """Refuses, before training, a compiled step that needs more than a device's memory (on CPU
  the kernel would kill the process without a word, part way through the first step)."""
  limit = memory.device_memory_limit()
  need = memory.step_bytes(compiled_step)
  if need > limit.bytes_per_device:
    raise UserError(f'the train step needs {need / memory.GiB:.2f} GiB per device, over the '
                    f'{limit.bytes_per_device / memory.GiB:.2f} GiB there is ({limit.source}); '
                    f'use {memory_advice(run)}.')


def enable_compilation_cache(config: ml_collections.ConfigDict, default_directory: str) -> None:
  """Persists compiled XLA programs so a restart after preemption skips compiling."""
  directory = config.train.compilation_cache_dir
  if directory == '':
    return
  directory = directory or default_directory
  jax.config.update('jax_compilation_cache_dir', os.path.abspath(os.path.expanduser(directory)))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
