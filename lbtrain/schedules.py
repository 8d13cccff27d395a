"""The learning-rate schedule as the large-batch papers state it: scaling rule x warmup x decay.

Papers give durations in epochs and the lr at a reference batch; the training loop counts steps
at the global batch. `durations` converts the durations; `ScheduleInfo` records each derived
number so that a run's log and `--describe` show the recipe a reader can check against the paper.
"""

import dataclasses
import math
from typing import Callable

import ml_collections
import optax

from lbtrain import durations
from lbtrain.errors import UserError


@dataclasses.dataclass(frozen=True)
class Milestone:
  """A step where the lr changes course; `lr` is read back from the schedule itself."""
  name: str
  step: int
  epoch: float
  lr: float


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
  """Every number derived from the config, so the log shows the recipe rather than the inputs."""
  global_batch_size: int
  num_train_examples: int
  steps_per_epoch: float
  num_epochs: float
  total_steps: int
  base_lr: float
  base_batch_size: int
  scaling: str
  peak_lr: float
  peak_lr_derivation: str  # e.g. '0.1 x 8192 / 256 = 3.2 (linear)'
  warmup: str
  warmup_init_lr: float
  warmup_steps: int
  warmup_epochs: float  # warmup_steps / steps_per_epoch, after rounding to whole steps
  decay: str
  decay_detail: str  # e.g. 'x0.1 at steps 4692, 9384, 12511' or 'power 2 to 0.0001'
  milestones: tuple[Milestone, ...]


@dataclasses.dataclass(frozen=True)
class _Scaling:
  factor: Callable[[float], float]  # of global_batch_size / base_batch_size
  derivation: str  # format string over base_lr, batch, base_batch, peak


_SCALINGS = {
    'linear': _Scaling(lambda ratio: ratio, '{base_lr:g} x {batch} / {base_batch} = {peak:g}'),
    'sqrt': _Scaling(math.sqrt, '{base_lr:g} x sqrt({batch} / {base_batch}) = {peak:g}'),
    'none': _Scaling(lambda ratio: 1.0, '{peak:g} = base_lr, whatever the batch'),
}

# (warmup_init_lr, peak_lr, warmup_steps) -> schedule over the warmup steps. Linear counts up from
# init_lr rather than down from the peak (as optax.linear_schedule does) so that step 0 is exactly
# warmup_init_lr in float32.
_WARMUPS: dict[str, Callable[[float, float, int], optax.Schedule]] = {
    'linear': lambda init_lr, peak_lr, steps: (
        lambda step: init_lr + (peak_lr - init_lr) * step / steps),
    'constant': lambda init_lr, peak_lr, steps: optax.constant_schedule(init_lr),
}


@dataclasses.dataclass(frozen=True)
class _Plan:
  """What a decay needs: all in steps, boundaries counted from step 0."""
  peak_lr: float
  end_lr: float
  power: float
  decay_factor: float
  warmup_steps: int
  total_steps: int
  boundaries: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Decay:
  build: Callable[[_Plan], optax.Schedule]  # schedule over the steps after warmup
  detail: Callable[[_Plan], str]


_DECAYS = {
    'cosine': _Decay(
        lambda p: optax.cosine_decay_schedule(
            p.peak_lr, p.total_steps - p.warmup_steps, alpha=p.end_lr / p.peak_lr),
        lambda p: f'to {p.end_lr:g}'),
    'step': _Decay(
        lambda p: optax.piecewise_constant_schedule(
            p.peak_lr, {b - p.warmup_steps: p.decay_factor for b in p.boundaries}),
        lambda p: f'x{p.decay_factor:g} at steps {", ".join(map(str, p.boundaries))}'),
    'poly': _Decay(
        lambda p: optax.polynomial_schedule(
            p.peak_lr, p.end_lr, p.power, p.total_steps - p.warmup_steps),
        lambda p: f'power {p.power:g} to {p.end_lr:g}'),
    'constant': _Decay(lambda p: optax.constant_schedule(p.peak_lr), lambda p: 'at peak'),
}


def _choose(registry: dict, name: str, field: str):
  if name not in registry:
    raise UserError(f'unknown {field} {name!r}; known: {", ".join(registry)}')
  return registry[name]


def _step_boundaries(sched: ml_collections.ConfigDict, per_epoch: float, warmup_steps: int,
                     total_steps: int) -> tuple[int, ...]:
  """Boundaries in steps from step 0, checked to fall strictly between warmup end and the end."""
  boundaries = durations.interval(sched, 'schedule.boundaries', per_epoch)
  if not boundaries:
    raise UserError("decay='step' needs boundaries: set schedule.boundaries_epochs, e.g. "
                    "'(30,60,80)', or schedule.boundaries_steps")
  if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
    raise UserError(f'schedule.boundaries must be strictly increasing, got steps {boundaries}; '
                    'list each boundary once, in order')
  if boundaries[0] <= warmup_steps or boundaries[-1] >= total_steps:
    raise UserError(f'schedule.boundaries must lie after warmup ({warmup_steps} steps) and before '
                    f'the end ({total_steps} steps), got steps {boundaries}; move them or change '
                    'warmup/num_epochs')
  return boundaries


def peak_lr_at(config: ml_collections.ConfigDict, global_batch_size: int) -> float:
  """optimizer.scaling's peak lr at `global_batch_size`."""
  opt = config.optimizer
  scaling = _choose(_SCALINGS, opt.scaling, 'optimizer.scaling')
  return opt.base_lr * scaling.factor(global_batch_size / opt.base_batch_size)


def create_schedule(config: ml_collections.ConfigDict,
                    num_train_examples: int) -> tuple[optax.Schedule, ScheduleInfo]:
  """Builds the lr schedule (step count -> lr) and the record of how it was derived.

  Warmup runs over steps [0, warmup_steps) and reaches the peak lr at step `warmup_steps`; the
  decay then runs over the remaining steps. Cosine and poly reach `end_lr` at step `total_steps`,
  the count after the last update (TF's polynomial_decay, as in MLPerf's reference): the last
  update, at step total_steps - 1, uses one decay step more than end_lr. Step boundaries count
  from step 0, as Goyal's epochs 30/60/80 do, and the new lr applies from the boundary step on.

  Args:
    config: the full config; reads `train`, `optimizer` and `schedule`.
    num_train_examples: size of the training split, which fixes the epoch length.

  Returns:
    The schedule and its `ScheduleInfo`.

  Raises:
    UserError: for an unknown name or a number that cannot make a schedule.
  """
  opt, sched = config.optimizer, config.schedule
  batch = config.train.global_batch_size
  scaling = _choose(_SCALINGS, opt.scaling, 'optimizer.scaling')
  warmup = _choose(_WARMUPS, sched.warmup, 'schedule.warmup')
  decay = _choose(_DECAYS, sched.decay, 'schedule.decay')
  if opt.base_lr <= 0:
    raise UserError(f'optimizer.base_lr must be > 0, got {opt.base_lr}')
  if batch <= 0 or opt.base_batch_size <= 0:
    raise UserError(f'train.global_batch_size ({batch}) and optimizer.base_batch_size '
                    f'({opt.base_batch_size}) must be > 0')
  if config.train.num_epochs <= 0:
    raise UserError(f'train.num_epochs must be positive, got {config.train.num_epochs}')
  if num_train_examples <= 0:
    raise UserError(f'the training split has {num_train_examples} examples; check data.dataset '
                    'and data.train_split')
  if sched.decay_factor <= 0:
    raise UserError(f'schedule.decay_factor must be > 0, got {sched.decay_factor}')

  per_epoch = durations.steps_per_epoch(num_train_examples, batch)
  total_steps = durations.to_steps(config.train.num_epochs, per_epoch)
  if total_steps < 1:
    raise UserError(f'train.num_epochs={config.train.num_epochs} is {total_steps} steps of '
                    f'{per_epoch:g} per epoch; train for at least one step')
  warmup_steps = durations.interval(sched, 'schedule.warmup', per_epoch)
  if not 0 <= warmup_steps < total_steps:
    raise UserError(f'warmup is {warmup_steps} steps but training is {total_steps} steps; '
                    'warmup must be >= 0 and shorter than training (schedule.warmup_epochs or '
                    'schedule.warmup_steps)')
  boundaries = (_step_boundaries(sched, per_epoch, warmup_steps, total_steps)
                if sched.decay == 'step' else ())

  ratio = batch / opt.base_batch_size
  peak_lr = opt.base_lr * scaling.factor(ratio)
  plan = _Plan(peak_lr=peak_lr, end_lr=sched.end_lr, power=sched.power,
               decay_factor=sched.decay_factor, warmup_steps=warmup_steps,
               total_steps=total_steps, boundaries=boundaries)
  schedule = decay.build(plan)
  if warmup_steps:
    schedule = optax.join_schedules(
        [warmup(sched.warmup_init_lr, peak_lr, warmup_steps), schedule], [warmup_steps])

  marks = [('start', 0)]
  if warmup_steps:
    marks.append(('warmup end', warmup_steps))
  marks += [(f'x{sched.decay_factor:g}', b) for b in boundaries]
  marks.append(('end', total_steps))
  milestones = tuple(Milestone(name, step, step / per_epoch, float(schedule(step)))
                     for name, step in marks)

  info = ScheduleInfo(
      global_batch_size=batch,
      num_train_examples=num_train_examples,
      steps_per_epoch=per_epoch,
      num_epochs=config.train.num_epochs,
      total_steps=total_steps,
      base_lr=opt.base_lr,
      base_batch_size=opt.base_batch_size,
      scaling=opt.scaling,
      peak_lr=peak_lr,
      peak_lr_derivation=scaling.derivation.format(
          base_lr=opt.base_lr, batch=batch, base_batch=opt.base_batch_size, peak=peak_lr)
      + f' ({opt.scaling})',
      warmup=sched.warmup,
      warmup_init_lr=sched.warmup_init_lr,
      warmup_steps=warmup_steps,
      warmup_epochs=warmup_steps / per_epoch,
      decay=sched.decay,
      decay_detail=decay.detail(plan),
      milestones=milestones,
  )
  return schedule, info


def describe_schedule(info: ScheduleInfo) -> list[str]:
  """Lines for `--describe` and the start-of-run log, in the order a paper states a recipe."""
  warmup = (f'{info.warmup} from {info.warmup_init_lr:g} over {info.warmup_steps} steps '
            f'({info.warmup_epochs:.2f} epochs)' if info.warmup_steps else 'none')
  lines = [
      f'global batch      {info.global_batch_size} ({info.num_train_examples} examples, '
      f'{info.steps_per_epoch:.4f} steps/epoch)',
      f'training          {info.total_steps} steps ({info.num_epochs:g} epochs)',
      f'peak lr           {info.peak_lr_derivation}',
      f'warmup            {warmup}',
      f'decay             {info.decay} {info.decay_detail}',
      f'{"step":>10} {"epoch":>9} {"lr":>12}',
  ]
  lines += [f'{m.step:>10} {m.epoch:>9.2f} {m.lr:>12.6g}  {m.name}' for m in info.milestones]
  return lines
