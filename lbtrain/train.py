"""The training loop: build, restore, train, evaluate, checkpoint, log. No maths lives here.

`plan()` derives every number of a run from its config and the hardware and validates it,
before anything is compiled or written; `train_and_evaluate()` carries the plan out.
"""

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Iterator

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lbtrain import checkpoint
from lbtrain import data
from lbtrain import memory
from lbtrain import metrics as metrics_lib
from lbtrain import models
from lbtrain import optim
from lbtrain import parallel
from lbtrain import schedules
from lbtrain import steps
from lbtrain import synthetic
from lbtrain import preemption
from lbtrain import workdir as workdir_lib
from lbtrain.errors import TrainingStopped
from lbtrain.errors import UserError

NONFINITE_POLICIES = ('stop', 'skip')

@dataclasses.dataclass(frozen=True)
class Plan:
  """Every number a run derives from its config and the hardware, fixed before compiling."""
  config: ml_collections.ConfigDict
  dataset: data.DatasetInfo
  schedule_info: schedules.ScheduleInfo
  schedule: Any
  model: Any
  optimizer: Any
  abstract_params: Any
  num_devices: int
  num_processes: int
  per_device_batch_size: int
  micro_batch_size: int  # per device
  accum_steps: int
  auto_micro_batch: bool  # micro_batch_size='auto': the two above are chosen at start
  eval_global_batch_size: int
  eval_every_steps: int | None  # None: no evaluation (eval.every_epochs=0)

  @property
  def total_steps(self) -> int:
    return self.schedule_info.total_steps


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise UserError(message)


def _batch_layout(config, num_devices: int,
                  micro: int | None = None) -> tuple[int, int, int]:
  """(per-device batch, per-device micro batch, accumulation steps), validated.

  `micro` overrides the config's micro_batch_size ('auto' is resolved by its caller; until then
  the layout is that of no accumulation).
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
  if micro is None:
    micro = per_device if configured in (None, 'auto') else configured
  _require(0 < micro <= per_device and per_device % micro == 0,
           f'train.micro_batch_size={micro} must divide the per-device batch {per_device} '
           f'(= {global_batch} / {num_devices} devices); pick a divisor of {per_device}.')
  accum_steps = per_device // micro
  group = config.model.bn_group_size
  if group is not None:
    step_examples = micro if accum_steps > 1 else global_batch
    _require(group > 0 and step_examples % group == 0,
             f'model.bn_group_size={group} must divide the '
             + ('per-device micro batch' if accum_steps > 1 else 'global batch')
             + f' {step_examples}; pick a divisor of it or None for global statistics.')
  elif accum_steps > 1:
    raise UserError(
        f'gradient accumulation ({accum_steps} micro-batches of {micro} per device) computes BN '
        f'statistics per micro-batch; set --config.model.bn_group_size to a divisor of {micro} '
        'to make those groups explicit (the same value then gives the same training on any '
        'number of devices).')
  return per_device, micro, accum_steps


def _check_noise_scale(config, accum_steps: int, num_devices: int) -> None:
  every = config.train.noise_scale_every
  if every is None:
    return
  _require(every > 0, f'train.noise_scale_every={every} must be a positive number of steps '
                      '(or None for no noise scale).')
  _require(0 <= config.train.noise_scale_decay < 1,
           f'train.noise_scale_decay={config.train.noise_scale_decay} must be in [0, 1).')
  per_device_gradients = config.parallel.strategy == 'pmap' and num_devices > 1
  _require(per_device_gradients or accum_steps > 1,
           'train.noise_scale_every needs gradients of small batches that the step computes '
           'anyway: set --config.parallel.strategy=pmap on more than one device (per-device '
           'gradients, same training) or accumulate micro-batches '
           '(--config.train.micro_batch_size).')


def plan(config: ml_collections.ConfigDict, describe_only: bool = False) -> Plan:
  """Validates the config against the data and hardware; raises UserError on bad input.

  `describe_only`: a data set that is not prepared here is described from its published split
  sizes, so a recipe can be checked on a machine without the data.
  """
  _require(config.train.num_epochs > 0,
           f'train.num_epochs must be positive, got {config.train.num_epochs}.')
  _require(config.train.on_nonfinite in NONFINITE_POLICIES,
           f'train.on_nonfinite={config.train.on_nonfinite!r}: use one of '
           f'{", ".join(NONFINITE_POLICIES)}.')
  _require(config.parallel.strategy in parallel.STRATEGIES,
           f'parallel.strategy={config.parallel.strategy!r}: use one of '
           f'{", ".join(parallel.STRATEGIES)}.')
  num_devices, num_processes = jax.device_count(), jax.process_count()
  per_device, micro, accum_steps = _batch_layout(config, num_devices)
  _check_noise_scale(config, accum_steps, num_devices)
  eval_batch = config.eval.global_batch_size or config.train.global_batch_size
  _require(eval_batch > 0 and eval_batch % num_devices == 0,
           f'eval.global_batch_size={eval_batch} must be a positive multiple of the '
           f'{num_devices} devices.')
  try:
    dataset = data.get_dataset_info(config.data)
  except UserError as error:
    dataset = data.published_dataset_info(config.data) if describe_only else None
    if dataset is None:
      raise
    logging.warning('%s; describing it from its published split sizes.', str(error).rstrip('.'))
  per_device_program = config.parallel.strategy == 'pmap'
  model = models.create_model(config.model, num_classes=dataset.num_classes,
                              axis_name=parallel.DATA_AXIS if per_device_program else None)
  schedule, schedule_info = schedules.create_schedule(config, dataset.num_train_examples)
  abstract_params = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, *dataset.image_shape), jnp.float32),
                         train=False))['params']
  optimizer = optim.create_optimizer(config.optimizer, schedule, abstract_params)
  _require(config.eval.every_epochs >= 0,
           f'eval.every_epochs={config.eval.every_epochs} must be positive, or 0 for no '
           'evaluation.')
  eval_every_steps = max(1, schedules.to_steps(config.eval.every_epochs,
                                               schedule_info.steps_per_epoch)
                         ) if config.eval.every_epochs else None
  return Plan(config=config, dataset=dataset, schedule_info=schedule_info, schedule=schedule,
              model=model, optimizer=optimizer, abstract_params=abstract_params,
              num_devices=num_devices, num_processes=num_processes,
              per_device_batch_size=per_device, micro_batch_size=micro,
              accum_steps=accum_steps,
              auto_micro_batch=config.train.micro_batch_size == 'auto',
              eval_global_batch_size=eval_batch,
              eval_every_steps=eval_every_steps)


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
      ('micro batch', f'{run.micro_batch_size:,} per device x {run.accum_steps} accumulation '
                      'step(s)' + (', chosen from the compiled step\'s memory'
                                   if run.auto_micro_batch else '')),
      ('BN statistics', 'over the global batch' if config.model.bn_group_size is None else
       f'over groups of {config.model.bn_group_size} consecutive examples'),
      ('label smoothing', f'{config.train.label_smoothing}'),
      ('noise scale', 'off' if config.train.noise_scale_every is None else
       f'every {config.train.noise_scale_every} steps, EMA decay '
       f'{config.train.noise_scale_decay}, small batches of '
       + (f'{run.per_device_batch_size} (one device)' if config.parallel.strategy == 'pmap'
          else f'{config.train.global_batch_size // run.accum_steps} (one micro-batch)')),
      ('eval', 'none (eval.every_epochs=0)' if run.eval_every_steps is None else
               f'every {run.eval_every_steps} steps and at the end, global batch '
               f'{run.eval_global_batch_size}'),
      ('checkpoint', f'every {config.checkpoint.every_steps} steps, keep '
                     f'{config.checkpoint.keep}'),
  ]
  for name, summary in optim.describe_masks(config.optimizer, run.abstract_params).items():
    if summary is None:
      rows.append((name.replace('_', ' '), 'not applied'))
      continue
    rows.append((name.replace('_', ' '),
                 f'on {len(summary["on"])} tensors ({summary["on_params"]:,} parameters), '
                 f'off {len(summary["off"])} tensors ({summary["off_params"]:,} parameters)'))
    rows.append(('  off', _abbreviate(summary['off'])))
  width = 17
  lines = schedules.describe_schedule(run.schedule_info)
  lines += [f'{name:<{width}} {value}' for name, value in rows]
  return '\n'.join(lines)


def _abbreviate(names: list[str], limit: int = 8) -> str:
  shown = ', '.join(names[:limit])
  return shown + (f', ... ({len(names) - limit} more)' if len(names) > limit else '') or '-'


def build_steps(run: Plan, mesh):
  """The jitted init/train/eval functions with explicit shardings and a donated state."""
  replicated = parallel.replicated(mesh)
  init_fn = functools.partial(steps.init_state, model=run.model, tx=run.optimizer,
                              image_shape=run.dataset.image_shape)
  state_shardings = jax.tree.map(lambda _: replicated,
                                 jax.eval_shape(init_fn, jax.random.key(0)))
  init = jax.jit(init_fn, out_shardings=state_shardings)
  strategy = run.config.parallel.strategy
  pixel_stats = (run.dataset.mean, run.dataset.std)
  train_step = parallel.distribute(
      functools.partial(steps.train_step, model=run.model, tx=run.optimizer,
                        schedule=run.schedule, label_smoothing=run.config.train.label_smoothing,
                        accum_steps=run.accum_steps, mesh=mesh,
                        skip_nonfinite=run.config.train.on_nonfinite == 'skip',
                        pixel_stats=pixel_stats,
                        noise_scale_every=run.config.train.noise_scale_every,
                        noise_scale_decay=run.config.train.noise_scale_decay,
                        unroll_micro_batches=parallel.loops_run_slowly(mesh)),
      mesh, strategy, donate_state=True)
  eval_step = parallel.distribute(
      functools.partial(steps.eval_step, model=run.model, pixel_stats=pixel_stats), mesh,
      strategy)
  return init, train_step, eval_step, state_shardings


def _choose_micro_batch(run: Plan, mesh, abstract_state) -> Plan:
  """Resolves micro_batch_size='auto': the largest allowed micro-batch whose compiled train
  step fits `train.memory_fraction` of a device's memory (see `memory`)."""
  config = run.config
  limit = memory.device_memory_limit()
  budget = int(limit.bytes_per_device * config.train.memory_fraction)

  def with_micro_batch(size: int) -> Plan:
    _, micro, accum_steps = _batch_layout(config, run.num_devices, micro=size)
    return dataclasses.replace(run, micro_batch_size=micro, accum_steps=accum_steps)

  def bytes_of(size: int) -> int:
    candidate = with_micro_batch(size)
    _, train_step, _, _ = build_steps(candidate, mesh)
    compiled = train_step.lower(abstract_state, _abstract_batch(candidate, mesh)).compile()
    return memory.step_bytes(compiled)

  sizes = memory.candidates(run.per_device_batch_size, config.model.bn_group_size)
  chosen, measured = memory.largest_fitting(sizes, bytes_of, budget)
  logging.info('micro_batch_size=auto: budget %.2f GiB per device = %.2f x %s (%.2f GiB)',
               budget / memory.GiB, config.train.memory_fraction, limit.source,
               limit.bytes_per_device / memory.GiB)
  for size, size_bytes in sorted(measured.items()):
    logging.info('  micro-batch %d per device (%d accumulation steps): step needs %.2f GiB',
                 size, run.per_device_batch_size // size, size_bytes / memory.GiB)
  if chosen is None:
    smallest = min(measured)
    hint = ('set --config.model.bn_group_size so that accumulation may split the per-device '
            'batch' if config.model.bn_group_size is None else
            'use more devices, a smaller model.bn_group_size, or model.dtype=bfloat16')
    raise UserError(f'train.micro_batch_size=auto: even a micro-batch of {smallest} per device '
                    f'needs {measured[smallest] / memory.GiB:.2f} GiB, over the '
                    f'{budget / memory.GiB:.2f} GiB budget ({limit.source}); {hint}.')
  logging.info('micro_batch_size=auto: chose %d per device, %d accumulation steps (the '
               'largest allowed size that fits)', chosen, run.per_device_batch_size // chosen)
  return with_micro_batch(chosen)


def _abstract_batch(run: Plan, mesh) -> dict:
  sharding = parallel.batch_sharded(mesh)
  batch_size = run.config.train.global_batch_size
  return {
      'image': jax.ShapeDtypeStruct((batch_size, *run.dataset.image_shape),
                                    jnp.dtype(run.dataset.image_dtype), sharding=sharding),
      'label': jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharding),
  }


def _train_inputs(run: Plan, mesh, start_step: int) -> Iterator[Any]:
  """Global batches of steps [start_step, total_steps), on the devices ahead of the step."""
  config = run.config
  if run.dataset.name == 'synthetic':
    return synthetic.train_batches(run.dataset, mesh,
                                   global_batch_size=config.train.global_batch_size,
                                   seed=config.train.seed, num_steps=run.total_steps - start_step)
  return parallel.prefetch_to_mesh(
      data.train_batches(config.data, run.dataset,
                         global_batch_size=config.train.global_batch_size,
                         seed=config.train.seed, start_step=start_step,
                         num_steps=run.total_steps - start_step,
                         process_index=jax.process_index(), process_count=jax.process_count()),
      mesh, config.data.prefetch_batches)


def _eval_inputs(run: Plan, mesh) -> Iterator[Any]:
  if run.dataset.name == 'synthetic':
    return synthetic.eval_batches(run.dataset, mesh, global_batch_size=run.eval_global_batch_size)
  return parallel.prefetch_to_mesh(
      data.eval_batches(run.config.data, run.dataset,
                        global_batch_size=run.eval_global_batch_size,
                        process_index=jax.process_index(), process_count=jax.process_count()),
      mesh, run.config.data.prefetch_batches)


def evaluate(run: Plan, eval_step, state, mesh) -> dict[str, float]:
  """Loss and accuracy over every example of the eval split, each counted exactly once."""
  totals = None
  one_at_a_time = parallel.one_program_at_a_time(mesh)
  for batch in _eval_inputs(run, mesh):
    sums = eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if one_at_a_time:
      jax.block_until_ready(totals)
  totals = jax.device_get(totals)
  count = int(totals['count'])
  if count != run.dataset.num_eval_examples:
    raise RuntimeError(f'evaluation counted {count} examples, the eval split has '
                       f'{run.dataset.num_eval_examples}: the eval pipeline is broken.')
  return {
      'eval/loss': float(totals['loss_sum']) / count,
      'eval/accuracy': float(totals['correct']) / count,
      'eval/num_examples': count,
  }


class _NonfiniteWatch:
  """Reads each step's `train/nonfinite` flag when the loop syncs anyway (log, checkpoint).

  'stop' raises on the first non-finite step; 'skip' counts them (the step already left the
  state unchanged) and raises after `max_consecutive` in a row.
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


def _summarise(values: list[dict], seconds: float, input_wait: float,
               run: Plan) -> dict[str, float]:
  """Means over the steps since the last log; lr at the latest step; honest throughput."""
  summary = {name: float(np.mean([v[name] for v in values]))
             for name in ('train/loss', 'train/accuracy', 'train/grad_norm')}
  summary['train/lr'] = float(values[-1]['train/lr'])
  if 'train/noise_scale' in values[-1]:
    summary['train/noise_scale'] = float(values[-1]['train/noise_scale'])  # an EMA already
  examples_per_sec = len(values) * run.config.train.global_batch_size / max(seconds, 1e-9)
  summary['train/examples_per_sec'] = examples_per_sec
  summary['train/examples_per_sec_per_device'] = examples_per_sec / run.num_devices
  summary['train/steps_per_sec'] = len(values) / max(seconds, 1e-9)
  summary['train/input_wait_fraction'] = input_wait / max(seconds, 1e-9)
  return summary


def _enable_compilation_cache(config, workdir: str) -> None:
  """Persists compiled XLA programs so a restart after preemption skips compiling."""
  directory = config.train.compilation_cache_dir
  if directory == '':
    return
  directory = directory or os.path.join(workdir, 'compilation_cache')
  jax.config.update('jax_compilation_cache_dir', os.path.abspath(os.path.expanduser(directory)))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the last eval.

  Raises UserError (before writing anything) for a config, data or workdir that cannot work,
  and TrainingStopped when training diverges.
  """
  workdir_lib.check_usable(workdir)
  run = plan(config)
  is_primary = jax.process_index() == 0
  mesh = parallel.create_mesh()
  skipped_saves = checkpoint.incomplete_checkpoints(workdir)
  resuming = checkpoint.Checkpointer.has_checkpoints(workdir)
  changes = workdir_lib.resume_changes(config, workdir) if resuming else []

  logging.info('process %d of %d: %d local devices, %d global devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  init, train_step, eval_step, state_shardings = build_steps(run, mesh)
  abstract_state = checkpoint.abstract_like(jax.eval_shape(init, jax.random.key(0)),
                                            state_shardings)
  if run.auto_micro_batch:
    run = _choose_micro_batch(run, mesh, abstract_state)
    init, train_step, eval_step, state_shardings = build_steps(run, mesh)
  if is_primary:
    for line in describe(run).splitlines():
      logging.info('%s', line)
  for change in changes:
    logging.info('resuming with a changed field: %s', change)
  checkpoint.log_skipped(skipped_saves)

  checkpoints = checkpoint.Checkpointer(workdir, config.checkpoint.every_steps,
                                        config.checkpoint.keep,
                                        config.checkpoint.keep_every_steps)
  restored = checkpoints.restore_latest(abstract_state)
  # Up to here the workdir was only read (orbax made checkpoints/ and removed interrupted
  # saves), so a refused checkpoint leaves it as it was.
  if is_primary:
    workdir_lib.write_config(config, workdir)
  _enable_compilation_cache(config, workdir)
  if restored:
    state, start_step = restored
    logging.info('resumed from the checkpoint at step %d', start_step)
  else:
    state, start_step = init(jax.random.key(config.train.seed)), 0

  nonfinite = _NonfiniteWatch(config.train.on_nonfinite, config.train.max_consecutive_nonfinite,
                              checkpoints.directory)
  nonfinite.last_good_checkpoint = start_step if restored else None
  writer = metrics_lib.MetricWriter(workdir, enabled=is_primary, resume_step=start_step)
  final = {}
  batches = iter(())
  try:
    if start_step >= run.total_steps:
      logging.info('training already complete (%d steps); nothing to do', run.total_steps)
      return final

    compile_start = time.perf_counter()
    compiled_step = train_step.lower(state, _abstract_batch(run, mesh)).compile()
    logging.info('train step compiled in %.1f s', time.perf_counter() - compile_start)

    batches = _train_inputs(run, mesh, start_step)
    progress = metrics_lib.ProgressBar(run.total_steps, enabled=is_primary)
    stopwatch = metrics_lib.Stopwatch()
    pending, input_wait = [], 0.0
    # Where this process's loop time goes, so eval and checkpoint cost read as fractions.
    loop_start, eval_seconds, checkpoint_seconds = time.perf_counter(), 0.0, 0.0

    def time_split() -> dict[str, float]:
      return {'time/loop_seconds': time.perf_counter() - loop_start,
              'time/eval_seconds': eval_seconds,
              'time/checkpoint_seconds': checkpoint_seconds}

    one_at_a_time = parallel.one_program_at_a_time(mesh)
    with preemption.StopSignal() as stop_signal:
      for step in range(start_step, run.total_steps):
        wait_start = time.perf_counter()
        batch = next(batches)
        input_wait += time.perf_counter() - wait_start
        state, step_metrics = compiled_step(state, batch)
        if one_at_a_time:
          jax.block_until_ready(step_metrics)
        pending.append(step_metrics)
        done = step + 1
        stopping = stop_signal.should_stop(done)
        last = done == run.total_steps

        if done % config.train.log_every_steps == 0 or last or stopping:
          values = jax.device_get(pending)
          problem = nonfinite.observe(values, done - len(values) + 1)
          summary = _summarise(values, stopwatch.lap(), input_wait, run)
          pending, input_wait = [], 0.0
          summary['train/epoch'] = done / run.schedule_info.steps_per_epoch
          summary.update(time_split())
          if config.train.on_nonfinite == 'skip':
            summary['train/skipped_steps'] = nonfinite.skipped
          writer.write(done, summary)
          progress.update(done, summary['train/loss'], summary['train/examples_per_sec'],
                          summary['train/steps_per_sec'])
          if problem:
            nonfinite.stop(problem)

        if run.eval_every_steps and (done % run.eval_every_steps == 0 or last):
          jax.block_until_ready(state)  # steps still running count as training, not eval
          stopwatch.pause()
          eval_start = time.perf_counter()
          final = evaluate(run, eval_step, state, mesh)
          eval_seconds += time.perf_counter() - eval_start
          writer.write(done, final)
          logging.info('step %d: eval loss %.4f, accuracy %.4f over %d examples', done,
                       final['eval/loss'], final['eval/accuracy'], final['eval/num_examples'])
          stopwatch.resume()

        if checkpoints.is_due(done) or last or stopping:
          if pending and config.train.on_nonfinite == 'stop':
            # Steps since the last log: none may have produced this state from a NaN/Inf.
            # (With 'skip' the state is finite by construction; they are counted at the log.)
            problem = nonfinite.observe(jax.device_get(pending), done - len(pending) + 1)
            if problem:
              nonfinite.stop(problem)
          save_start = time.perf_counter()
          checkpoints.save(done, state)
          checkpoint_seconds += time.perf_counter() - save_start
          nonfinite.last_good_checkpoint = done
          logging.info('checkpoint saved at step %d', done)
        if stopping:
          logging.info('stopping at step %d on %s; run the same command to resume', done,
                       stop_signal.signal_name or 'a preemption notice')
          break
    progress.close()
    wait_start = time.perf_counter()
    checkpoints.wait()  # the last save: part of what the run cost
    checkpoint_seconds += time.perf_counter() - wait_start
    writer.write(done, time_split())  # the whole loop, last eval and save included
    return final
  finally:
    if hasattr(batches, 'close'):
      batches.close()  # stops the input threads before the interpreter may shut down
    checkpoints.close()
    writer.close()
