"""The maths of one step: pure functions of (state, batch), jitted once by the loop.

Nothing here knows about files, hosts or the loop. Everything is computed on the GLOBAL batch:
under `jax.jit` over the mesh, means and sums over the example axis are global, so a loss,
gradient or BN statistic is the same whatever number of devices holds the batch. Under the
`pmap` strategy the same functions run per device (`axis_name` set): each sees its own rows and
reduces over `axis_name` explicitly, which gives the same global means.
"""

import dataclasses
import functools
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lbtrain import mixing
from lbtrain import noise_scale
from lbtrain import parallel
from lbtrain import sharding

Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class DataPosition:
  """Where a run whose batch changes is in the data stream, and at which batch.

  The lr of such a run is read at the examples consumed (`batch_schedule.lr_rule`); `batch`
  is the batch the next step reads, so a checkpoint holds an adaptive run's last decision.
  """
  examples: jax.Array  # int32: the examples of the steps so far
  batch: jax.Array  # int32: the global batch of the next step

  @classmethod
  def start(cls, batch: int) -> 'DataPosition':
    return cls(examples=jnp.zeros((), jnp.int32), batch=jnp.asarray(batch, jnp.int32))


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint must hold to continue training exactly.

  With one batch throughout, the data position is `step` itself: the data stream is a pure
  function of (seed, step). A run whose batch changes also counts its examples (`position`).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  noise_scale: noise_scale.NoiseScaleState  # zeros unless config.train.noise_scale_every
  position: DataPosition | None = None  # None: one batch throughout


def init_state(rng: jax.Array, model: nn.Module, tx: optax.GradientTransformation,
               image_shape: tuple[int, ...], first_batch: int | None = None) -> TrainState:
  """`first_batch`: the first global batch of a run whose batch changes; None otherwise."""
  # train=False: initialisation must not depend on (or require) a batch's statistics.
  variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
                    noise_scale=noise_scale.NoiseScaleState.zeros(),
                    position=None if first_batch is None else DataPosition.start(first_batch))


def soft_targets(labels: jax.Array, num_classes: int, label_smoothing: float) -> jax.Array:
  """float32 [B, num_classes]: one-hot labels, smoothed if label_smoothing."""
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return optax.smooth_labels(targets, label_smoothing) if label_smoothing else targets


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float,
                  targets: jax.Array | None = None) -> jax.Array:
  """Per-example softmax cross-entropy in float32 against `targets` (soft labels, e.g. mixed)
  or else the labels one-hot, with optional label smoothing."""
  if targets is None:
    targets = soft_targets(labels, logits.shape[-1], label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


PixelStats = tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std) of x / 255


def model_input(images: jax.Array, pixel_stats: PixelStats | None) -> jax.Array:
  """uint8 pixels become normalised float32 here, on the device, so the host sends a quarter
  of the bytes and skips the arithmetic; pipelines that yield floats are already normalised."""
  if images.dtype != jnp.uint8:
    return images
  mean, std = (jnp.asarray(values, jnp.float32) * 255.0 for values in pixel_stats)
  return (images.astype(jnp.float32) - mean) / std


def _loss_and_grads(params, batch_stats, batch, *, model: nn.Module, label_smoothing: float,
                    pixel_stats: PixelStats | None):
  """Mean loss, accuracy, gradient and updated BN statistics of one (micro-)batch."""
  images = model_input(batch['image'], pixel_stats)

  def loss_fn(params):
    logits, updated = model.apply({'params': params, 'batch_stats': batch_stats},
                                  images, train=True, mutable=['batch_stats'])
    loss = cross_entropy(logits, batch['label'], label_smoothing, batch.get('targets')).mean()
    return loss, (logits, updated.get('batch_stats', {}))

  (loss, (logits, new_batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  # Against the example's own label: under Mixup the one with the larger weight.
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
  return loss, accuracy, grads, new_batch_stats


def split_micro_batches(batch: Any, accum_steps: int, mesh: Mesh | None) -> Any:
  """[B, ...] -> [accum_steps, B / accum_steps, ...] with every micro-batch on every device.

  Micro-batch j takes the j-th consecutive chunk of each device's rows, so no example moves
  between devices, and a BN group of consecutive examples that divides the per-device micro
  batch stays whole: the groups, hence the statistics, are those of the un-accumulated step.
  `mesh` None: `batch` is one device's rows (the pmap strategy), split the same way.
  """
  num_devices = 1 if mesh is None else mesh.size

  def split(x):
    micro = x.shape[0] // (num_devices * accum_steps)
    x = x.reshape(num_devices, accum_steps, micro, *x.shape[1:]).swapaxes(0, 1)
    x = x.reshape(accum_steps, num_devices * micro, *x.shape[3:])
    if mesh is None:
      return x
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, PartitionSpec(None, parallel.DATA_AXIS)))

  return jax.tree.map(split, batch)


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """What the train step computes besides (state, batch), fixed when it is compiled."""
  model: nn.Module
  tx: optax.GradientTransformation
  schedule: Callable[[jax.Array], jax.Array]
  # A run whose batch changes (state.position set): lr(examples consumed, global batch), and
  # the optimizer built around a schedule (the run's `tx` with another lr).
  lr_rule: Callable[[jax.Array, int], jax.Array] | None = None
  optimizer_with: Callable[[Callable], optax.GradientTransformation] | None = None
  label_smoothing: float = 0.0
  accum_steps: int = 1
  # A NaN/Inf step leaves params, BN statistics and optimizer state as they were.
  skip_nonfinite: bool = False
  pixel_stats: PixelStats | None = None
  # Every that many steps, fold the gradient noise scale's estimates into their EMAs.
  noise_scale_every: int | None = None
  noise_scale_decay: float = 0.99
  # Unroll the accumulation loop where the backend runs loops slowly (the same maths).
  unroll_micro_batches: bool = False
  # Mixup / CutMix of the global batch before the gradients (off by default).
  mix: mixing.MixSettings = mixing.MixSettings()
  num_classes: int | None = None  # the soft targets' width; needed when mixing
  # parallel.sharding: where the gradient and the parameters live (see lbtrain.sharding).
  sharding: str = 'replicated'


def _gradients(state: TrainState, batch: Any, settings: StepSettings, mesh: Mesh,
               axis_name: str | None):
  """(loss, accuracy, grads, BN statistics, squared norm of the small-batch gradients or None)
  of the global batch, accumulated over micro-batches and reduced over devices as needed.

  The small batches of the noise scale are the ones the step computes anyway: each micro-batch
  under jit; under pmap each device's whole gradient.
  """
  track_noise = settings.noise_scale_every is not None
  micro_batch_noise = track_noise and axis_name is None
  compute = functools.partial(_loss_and_grads, model=settings.model,
                              label_smoothing=settings.label_smoothing,
                              pixel_stats=settings.pixel_stats)
  small_sq_norm = None
  params = sharding.gathered(state.params, None if axis_name else mesh, settings.sharding)
  if settings.accum_steps == 1:
    loss, accuracy, grads, batch_stats = compute(params, state.batch_stats, batch)
  else:
    def compute_micro(params, batch_stats, micro_batch):
      result = compute(params, batch_stats, micro_batch)
      return (*result, noise_scale.sq_norm(result[2])) if micro_batch_noise else result

    def accumulate(carry, micro_batch):
      result = compute_micro(params, state.batch_stats, micro_batch)
      return jax.tree.map(jnp.add, carry, result), None

    micro_batches = split_micro_batches(batch, settings.accum_steps,
                                        None if axis_name else mesh)
    zeros = jax.tree.map(
        jnp.zeros_like,
        jax.eval_shape(compute_micro, params, state.batch_stats,
                       jax.tree.map(lambda x: x[0], micro_batches)))
    sums, _ = jax.lax.scan(accumulate, zeros, micro_batches,
                           unroll=settings.accum_steps if settings.unroll_micro_batches else 1)
    loss, accuracy, grads, batch_stats, *small = jax.tree.map(
        lambda s: s / settings.accum_steps, sums)
    small_sq_norm = small[0] if small else None
  if axis_name is not None:
    if track_noise:
      small_sq_norm = jax.lax.pmean(noise_scale.sq_norm(grads), axis_name)
    loss, accuracy, grads = jax.lax.pmean((loss, accuracy, grads), axis_name)
  return loss, accuracy, grads, batch_stats, small_sq_norm


def _tracked_noise(state: TrainState, batch: Any, settings: StepSettings, mesh: Mesh,
                   axis_name: str | None, small_sq_norm, grad_norm, finite):
  """The noise-scale EMAs after this step (unchanged between updates and on non-finite steps)."""
  rows = batch['label'].shape[0]  # the global batch, or this device's rows under pmap
  big_batch = rows * mesh.size if axis_name else rows
  small_batch = rows // settings.accum_steps if axis_name is None else rows
  return noise_scale.update(
      state.noise_scale, *noise_scale.estimate(small_sq_norm, jnp.square(grad_norm),
                                               small_batch, big_batch),
      decay=settings.noise_scale_decay,
      apply=finite & (state.step % settings.noise_scale_every == 0))


def _mixed(batch: Any, step: jax.Array, settings: StepSettings, axis_name: str | None) -> Any:
  """The batch with normalised, mixed float images and their soft 'targets' (mixing is linear,
  so mixing normalised pixels is normalising mixed ones, without rounding to uint8)."""
  images = model_input(batch['image'], settings.pixel_stats)
  targets = soft_targets(batch['label'], settings.num_classes, settings.label_smoothing)
  images, targets = mixing.mix(images, targets, step, settings.mix, axis_name)
  return {**batch, 'image': images, 'targets': targets}


def train_step(state: TrainState, batch: Any, *, settings: StepSettings, mesh: Mesh,
               axis_name: str | None = None) -> tuple[TrainState, Metrics]:
  """One optimizer step on one global batch, optionally as `accum_steps` micro-batches.

  With accumulation the micro-batch gradients, losses and BN statistics are averaged (equal
  micro-batch sizes make that the global-batch mean exactly); every micro-batch starts from
  the same running BN statistics, so their average is the update one big batch would make.

  `train/nonfinite` is 1 when the loss or gradient is NaN/Inf. With `skip_nonfinite` such a
  step leaves params, BN statistics and optimizer state as they were (the step counter, and
  so the data, still moves on); otherwise the loop stops on it before saving anything.

  With Mixup or CutMix on (`settings.mix`) the global batch is mixed first, from (seed, step)
  (`lbtrain.mixing`), and the loss takes the mixed soft targets.

  `axis_name` set (the pmap strategy): `batch` holds this device's rows only, the model's BN
  sums its statistics over that axis, and the per-device mean loss, accuracy and gradient are
  averaged over it (`pmean`: every device holds as many examples, so that is the global mean).
  """
  if settings.mix.on:
    batch = _mixed(batch, state.step, settings, axis_name)
  loss, accuracy, grads, batch_stats, small_sq_norm = _gradients(state, batch, settings, mesh,
                                                                 axis_name)
  # 'update'/'fsdp': each device keeps the slice of the averaged gradient it updates; the
  # step's output layout then all-gathers the new parameters ('update') or keeps them so.
  grads = sharding.reduced_gradient(grads, None if axis_name else mesh, settings.sharding)
  tx, position = settings.tx, state.position
  if position is None:
    lr = settings.schedule(state.step)
  else:
    # The lr at the examples consumed and this step's batch (static: one program per batch).
    global_batch = batch['label'].shape[0] * (mesh.size if axis_name else 1)
    lr = settings.lr_rule(position.examples, global_batch)
    tx = settings.optimizer_with(lambda count: lr)
    position = DataPosition(examples=position.examples + global_batch, batch=position.batch)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if settings.skip_nonfinite:
    params, batch_stats, opt_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old),
        (params, batch_stats, opt_state), (state.params, state.batch_stats, state.opt_state))
  metrics = {
      'train/loss': loss,
      'train/accuracy': accuracy,
      'train/grad_norm': grad_norm,
      'train/lr': lr,
      'train/nonfinite': jnp.logical_not(finite).astype(jnp.int32),
  }
  noise = state.noise_scale
  if settings.noise_scale_every is not None:
    noise = _tracked_noise(state, batch, settings, mesh, axis_name, small_sq_norm, grad_norm,
                           finite)
    metrics['train/noise_scale'] = noise_scale.value(noise)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state, noise_scale=noise, position=position)
  return new_state, metrics


def eval_step(state: TrainState, batch: Any, *, model: nn.Module,
              pixel_stats: PixelStats | None = None, axis_name: str | None = None) -> Metrics:
  """Sums (not means) over the real examples of a padded eval batch, so batches add up.

  `axis_name` set (the pmap strategy): `batch` is this device's rows; the sums are psum-ed.
  """
  logits = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                       model_input(batch['image'], pixel_stats), train=False)
  mask = batch['mask'].astype(jnp.int32)
  losses = cross_entropy(logits, batch['label'], 0.0)
  correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.int32)
  sums = {
      'loss_sum': jnp.sum(losses * mask),
      'correct': jnp.sum(correct * mask),
      'count': jnp.sum(mask),
  }
  return sums if axis_name is None else jax.lax.psum(sums, axis_name)
