"""Throughput of lbtrain's train step and loop, printed as tables; nothing here asserts a target.

The step, overhead and accumulation figures come from `config.data.dataset='synthetic'` (one
batch made on the devices), so the host's input pipeline is out of the picture;
`scripts/benchmark_input.py` measures that.

  step          images/sec of the train step alone, per dtype and per-device batch, with compile
                time, TFLOP/s from the compiled program's cost analysis, and MFU
  overhead      lbtrain's whole loop (train_and_evaluate: metrics, logging, checkpoint hooks)
                against a bare `jax.jit` loop over the same compiled step and on-device batch
  accumulation  k micro-batches per step against one batch of the same global size
  costs         how much of a run's loop time goes to evaluation and to checkpoint saves
  bn            throughput of one network's SGD step with lbtrain's BatchNorm against the
                same with flax's nn.BatchNorm, alternated step by step (no recipe config)

Examples (docs/performance.md lists what was measured with which command):

  python scripts/benchmark.py step --model=resnet50 --per_device_batch=128,256 \\
      --dtype=float32,bfloat16
  XLA_FLAGS=--xla_force_host_platform_device_count=1 python scripts/benchmark.py overhead \\
      --model=resnet20 --image_size=32 --per_device_batch=64
  XLA_FLAGS=--xla_force_host_platform_device_count=1 python scripts/benchmark.py bn \\
      --image_size=112 --per_device_batch=16 --dtype=float32,bfloat16 --steps=2 --repeats=11
"""

import argparse
import functools
import importlib
import os
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lbtrain import build
from lbtrain import parallel
from lbtrain import plan
from lbtrain import train
from lbtrain.data import synthetic
from lbtrain.models import batch_norm
from lbtrain.models import resnet
from lbtrain.workdir import Workdir
from lbtrain.errors import UserError

# Dense peak TFLOP/s per device from the vendors' datasheets, by (device_kind substring, dtype).
# float32 on NVIDIA GPUs: XLA runs f32 convolutions and matmuls on TF32 tensor cores by default.
_PEAK_TFLOPS = {
    ('H200', 'bfloat16'): 989.4, ('H200', 'float32'): 494.7,
    ('H100', 'bfloat16'): 989.4, ('H100', 'float32'): 494.7,
    ('A100', 'bfloat16'): 312.0, ('A100', 'float32'): 156.0,
    ('TPU v4', 'bfloat16'): 275.0, ('TPU v5 lite', 'bfloat16'): 197.0,
    ('TPU v5p', 'bfloat16'): 459.0, ('TPU v6', 'bfloat16'): 918.0,
}


def _config(args, per_device_batch: int, dtype: str, accum_steps: int = 1,
            dataset: str = 'synthetic'):
  """The recipe config with the model, dtype, batch and data set of this measurement."""
  config = importlib.import_module(f'configs.{args.config}').get_config()
  config.data.dataset = dataset
  config.data.image_size = args.image_size
  if args.data_dir:
    config.data.data_dir = args.data_dir
  config.model.name = args.model
  config.model.dtype = dtype
  # A ViT's sizes over the config's (device_check's dry run: a tiny one).
  config.model.vit.update(getattr(args, 'vit', None) or {})
  if dataset == 'synthetic':
    config.data.randaugment_layers = 0  # batches made on the device: no host pipeline
  config.train.global_batch_size = per_device_batch * jax.device_count()
  if accum_steps > 1 or args.bn_group_size:
    # Accumulation needs explicit BN groups; the same groups make k = 1 the same computation.
    config.model.bn_group_size = args.bn_group_size or per_device_batch // accum_steps
    config.train.micro_batch_size = per_device_batch // accum_steps
  # The lr schedule is evaluated inside the step; its shape does not change the step's cost,
  # and a benchmark's few steps cannot hold the recipe's warmup.
  config.schedule.warmup_epochs, config.schedule.warmup_steps = 0.0, None
  config.schedule.decay = 'constant'
  config.checkpoint.every_steps = 10**9  # only at the end
  config.train.compilation_cache_dir = ''  # compile time is one of the figures
  return config


def _num_epochs(run_or_config, num_steps: int, num_train_examples: int) -> float:
  return num_steps * run_or_config.train.global_batch_size / num_train_examples


class _CompiledStep:
  """The run's train step compiled ahead of time, its state, and one on-device batch."""

  def __init__(self, config):
    self.run = plan.plan(config)
    self.mesh = parallel.create_mesh()
    compiled = build.build(self.run, self.mesh)
    self.state = compiled.init(jax.random.key(0))
    self.batch = next(synthetic.train_batches(
        self.run.dataset, self.mesh, global_batch_size=config.train.global_batch_size, seed=0,
        num_steps=1))
    start = time.perf_counter()
    self.compiled = compiled.train_step.lower(self.state, self.batch).compile()
    self.compile_seconds = time.perf_counter() - start
    self.sync_each_step = parallel.one_program_at_a_time(self.mesh)

  def flops_per_device(self) -> float | None:
    """FLOPs of one step of the per-device program, as XLA counts them."""
    analysis = self.compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
      analysis = analysis[0] if analysis else None
    return float(analysis['flops']) if analysis and analysis.get('flops') else None

  def seconds_per_step(self, num_steps: int, warmup_steps: int = 3) -> float:
    """Bare `jax.jit` loop: dispatch, and wait once at the end (per step where XLA:CPU
    must, as lbtrain's loop does: see parallel.one_program_at_a_time)."""
    state = self.state
    for _ in range(warmup_steps):
      state, metrics = self.compiled(state, self.batch)
      jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(num_steps):
      state, metrics = self.compiled(state, self.batch)
      if self.sync_each_step:
        jax.block_until_ready(metrics)
    jax.block_until_ready((state, metrics))
    elapsed = time.perf_counter() - start
    self.state = state
    return elapsed / num_steps


def _peak_tflops(args, dtype: str) -> float | None:
  if args.peak_tflops:
    return args.peak_tflops
  kind = jax.devices()[0].device_kind
  return next((peak for (name, peak_dtype), peak in _PEAK_TFLOPS.items()
               if name in kind and peak_dtype == dtype), None)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
  widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
  line = lambda cells: '| ' + ' | '.join(f'{c!s:>{w}}' for c, w in zip(cells, widths)) + ' |'
  print(line(header))
  print('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
  for row in rows:
    print(line(row))


def _describe_devices() -> str:
  device = jax.devices()[0]
  return (f'{jax.device_count()} x {device.device_kind} ({device.platform}), '
          f'{jax.process_count()} process(es), jax {jax.__version__}')


def measure_step(args, per_device: int, dtype: str) -> dict[str, Any]:
  """The train step alone: images/sec, seconds per step, compile seconds, FLOPs per device and
  step as XLA's cost analysis of the compiled program counts them, TFLOP/s per device, and MFU
  against the device's peak (None where XLA gives no FLOP count or the peak is unknown)."""
  step = _CompiledStep(_config(args, per_device, dtype))
  seconds = step.seconds_per_step(args.steps)
  global_batch = step.run.config.train.global_batch_size
  flops = step.flops_per_device()
  tflops = flops / seconds / 1e12 if flops else None
  peak = _peak_tflops(args, dtype)
  return {'per_device_batch': per_device, 'global_batch': global_batch,
          'images_per_sec': global_batch / seconds, 'seconds_per_step': seconds,
          'compile_seconds': step.compile_seconds, 'flops_per_device_step': flops,
          'tflops_per_device': tflops,
          'peak_tflops_per_device': peak, 'mfu': tflops / peak if tflops and peak else None}


def benchmark_step(args) -> None:
  print(f'train step, synthetic data: {args.model} at {args.image_size}px, {args.config} '
        f'recipe; {_describe_devices()}')
  rows = []
  for dtype in args.dtype:
    for per_device in args.per_device_batch:
      m = measure_step(args, per_device, dtype)
      rows.append([dtype, per_device, m['global_batch'], f'{m["images_per_sec"]:,.0f}',
                   f'{m["images_per_sec"] / jax.device_count():,.0f}',
                   f'{m["seconds_per_step"] * 1e3:.1f}', f'{m["compile_seconds"]:.1f}',
                   f'{m["tflops_per_device"]:.2f}' if m['tflops_per_device'] else '-',
                   f'{100 * m["mfu"]:.1f} %' if m['mfu'] else '-'])
  _print_table(['dtype', 'batch/device', 'global batch', 'img/s', 'img/s/device', 'ms/step',
                'compile s', 'TFLOP/s/device', 'MFU'], rows)


def _loop_seconds_per_step(config, workdir: str, skip_records: int) -> float:
  """lbtrain's loop: mean seconds per step over the logged intervals after the first ones."""
  train.train_and_evaluate(config, workdir)
  records = [r for r in Workdir(workdir).metric_records()
             if 'train/steps_per_sec' in r][skip_records:]
  steps = [b['step'] - a['step'] for a, b in zip(records, records[1:])]
  seconds = [n / b['train/steps_per_sec'] for n, b in zip(steps, records[1:])]
  return sum(seconds) / sum(steps)


def measure_overhead(args, per_device: int) -> dict[str, Any]:
  """Seconds per step of lbtrain's loop and of a bare jit loop over the same compiled step,
  `args.repeats` of each, alternated; `ratio` is bare / loop of their medians."""
  config = _config(args, per_device, args.dtype[0])
  log_every = args.log_every_steps
  num_steps = log_every * (args.steps // log_every + 2)
  step = _CompiledStep(config)
  config.train.num_epochs = _num_epochs(config, num_steps, step.run.dataset.num_train_examples)
  config.train.log_every_steps = log_every
  config.eval.every_epochs = 0  # none: only the training steps are compared
  bare, loop = [], []
  for _ in range(args.repeats):  # alternated, so load changes on a shared machine hit both
    bare.append(step.seconds_per_step(num_steps - 2 * log_every))
    with tempfile.TemporaryDirectory() as workdir:
      loop.append(_loop_seconds_per_step(config, workdir, skip_records=1))
  return {'per_device_batch': per_device, 'global_batch': config.train.global_batch_size,
          'bare_seconds_per_step': bare, 'loop_seconds_per_step': loop,
          'ratio': float(np.median(bare)) / float(np.median(loop))}


def benchmark_overhead(args) -> None:
  print(f'lbtrain loop vs bare jit loop: {args.model} at {args.image_size}px, '
        f'{_describe_devices()}')
  rows = []
  for per_device in args.per_device_batch:
    m = measure_overhead(args, per_device)
    bare, loop = m['bare_seconds_per_step'], m['loop_seconds_per_step']
    # Other jobs only ever slow a repeat down: the fastest of each is the least disturbed.
    rows.append([per_device, m['global_batch'], f'{1e3 * np.median(bare):.1f}',
                 f'{1e3 * np.median(loop):.1f}', f'{m["ratio"]:.3f}',
                 f'{min(bare) / min(loop):.3f}',
                 ' '.join(f'{b / l:.3f}' for b, l in zip(bare, loop))])
  _print_table(['batch/device', 'global batch', 'bare ms/step', 'lbtrain ms/step',
                'ratio (median)', 'ratio of fastest', 'ratio per repeat'], rows)


def measure_accumulation(args, per_device: int) -> dict[int, float]:
  """Median seconds per step by k, the number of micro-batches of the per-device batch
  (1 and each of `args.accum_steps`), timed in alternation."""
  compiled = {accum_steps: _CompiledStep(_config(args, per_device, args.dtype[0], accum_steps))
              for accum_steps in [1, *args.accum_steps]}
  timings = {accum_steps: [] for accum_steps in compiled}
  for _ in range(args.repeats):  # alternated, so load changes on a shared machine hit all
    for accum_steps, step in compiled.items():
      timings[accum_steps].append(step.seconds_per_step(args.steps))
  return {accum_steps: float(np.median(seconds)) for accum_steps, seconds in timings.items()}


def benchmark_accumulation(args) -> None:
  print(f'accumulation: {args.model} at {args.image_size}px, {args.dtype[0]}, '
        f'{_describe_devices()}')
  rows = []
  for per_device in args.per_device_batch:
    seconds = measure_accumulation(args, per_device)
    for accum_steps in args.accum_steps:
      rows.append([per_device, accum_steps, per_device // accum_steps,
                   f'{1e3 * seconds[1]:.1f}', f'{1e3 * seconds[accum_steps]:.1f}',
                   f'{seconds[1] / seconds[accum_steps]:.3f}'])
  _print_table(['batch/device', 'k', 'micro batch/device', 'one batch ms/step',
                'k micro-batches ms/step', 'throughput ratio'], rows)


def benchmark_costs(args) -> None:
  """A run with evaluations and checkpoints; fractions of its loop time."""
  config = _config(args, args.per_device_batch[0], args.dtype[0], dataset=args.dataset)
  num_steps = args.steps
  run = plan.plan(config)
  config.train.num_epochs = _num_epochs(config, num_steps, run.dataset.num_train_examples)
  config.train.log_every_steps = args.log_every_steps
  config.eval.every_epochs = config.train.num_epochs / args.evals
  config.eval.global_batch_size = args.eval_batch or config.train.global_batch_size
  config.checkpoint.every_steps = max(1, num_steps // args.checkpoints)
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    total = time.perf_counter() - start
    last = [r for r in Workdir(workdir).metric_records() if 'time/loop_seconds' in r][-1]
  loop = last['time/loop_seconds']
  print(f'costs: {args.model} on {config.data.dataset} {run.dataset.image_shape}, {num_steps} '
        f'steps of global batch {config.train.global_batch_size}, {args.evals} evaluations of '
        f'{run.dataset.num_eval_examples:,} examples, {args.checkpoints} checkpoints; '
        f'{_describe_devices()}')
  _print_table(['part', 'seconds', 'fraction of the loop'], [
      ['training loop, all of it', f'{loop:.1f}', '1.000'],
      ['evaluation', f'{last["time/eval_seconds"]:.1f}',
       f'{last["time/eval_seconds"] / loop:.3f}'],
      ['checkpoint saves (blocking part + last wait)', f'{last["time/checkpoint_seconds"]:.1f}',
       f'{last["time/checkpoint_seconds"] / loop:.3f}'],
      ['train_and_evaluate (+ start-up, compile)', f'{total:.1f}', '-'],
  ])


class _FlaxBatchNorm(nn.Module):
  """flax's nn.BatchNorm behind lbtrain's norm interface, `norm(name=...)(x, train)`.

  Its output is in the compute dtype, as lbtrain's is, so that the layers after it do the same
  work in both networks.
  """
  momentum: float
  epsilon: float
  dtype: Any
  scale_init: Callable[..., jax.Array] = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    return nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                        epsilon=self.epsilon, dtype=self.dtype, scale_init=self.scale_init,
                        name='bn')(x)


_RESNETS = {'resnet20': resnet.ResNet20, 'resnet18': resnet.ResNet18, 'resnet34': resnet.ResNet34,
            'resnet50': resnet.ResNet50, 'resnet101': resnet.ResNet101,
            'resnet152': resnet.ResNet152}


class _SgdStep:
  """A jitted plain SGD step of one network, its state and one batch.

  Deliberately not lbtrain's train step: no recipe, sharding or BN groups, so that the two
  networks compared differ in their BatchNorm only.
  """

  def __init__(self, model: nn.Module, per_device_batch: int, image_size: int):
    images = jax.random.normal(jax.random.key(1), (per_device_batch, image_size, image_size, 3))
    labels = jax.random.randint(jax.random.key(2), (per_device_batch,), 0, 1000)
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), images)
    tx = optax.sgd(0.1, momentum=0.9)

    def loss_fn(params, batch_stats):
      logits, mutated = model.apply({'params': params, 'batch_stats': batch_stats}, images,
                                    train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, mutated['batch_stats']

    def step(state):
      params, batch_stats, opt_state = state
      grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params, batch_stats)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), batch_stats, opt_state

    self.state = (variables['params'], variables['batch_stats'], tx.init(variables['params']))
    self.step = jax.jit(step, donate_argnums=0)

  def seconds_per_step(self) -> float:
    """One step, waited for."""
    start = time.perf_counter()
    self.state = jax.block_until_ready(self.step(self.state))
    return time.perf_counter() - start


def benchmark_bn(args) -> None:
  print(f'BatchNorm, lbtrain vs flax: {args.model} at {args.image_size}px, batch '
        f'{args.per_device_batch[0]}, SGD step, {args.repeats} repeats of {args.steps} steps '
        f'of each, alternated step by step; {_describe_devices()}')
  if args.model not in _RESNETS:
    raise UserError(f'bn compares ResNets; --model is one of {", ".join(_RESNETS)}.')
  rows = []
  for dtype_name in args.dtype:
    dtype = jnp.dtype(dtype_name)
    norms = {'lbtrain': functools.partial(batch_norm.BatchNorm, momentum=0.9, epsilon=1e-5,
                                          dtype=dtype),
             'flax': functools.partial(_FlaxBatchNorm, momentum=0.9, epsilon=1e-5, dtype=dtype)}
    steps = {name: _SgdStep(_RESNETS[args.model](num_classes=1000, dtype=dtype, norm=norm),
                            args.per_device_batch[0], args.image_size)
             for name, norm in norms.items()}
    for step in steps.values():
      step.seconds_per_step()  # compiles
    per_step = {name: [] for name in steps}
    ratios = []
    for _ in range(args.repeats):
      seconds = dict.fromkeys(steps, 0.0)
      for i in range(args.steps):  # each first in turn, so load changes hit both alike
        for name in (list(steps) if i % 2 == 0 else list(steps)[::-1]):
          seconds[name] += steps[name].seconds_per_step()
      ratios.append(seconds['flax'] / seconds['lbtrain'])
      for name in steps:
        per_step[name].append(seconds[name] / args.steps)
    del steps
    rows.append([dtype_name, f'{1e3 * np.median(per_step["lbtrain"]):,.0f}',
                 f'{1e3 * np.median(per_step["flax"]):,.0f}', f'{np.median(ratios):.3f}',
                 ' '.join(f'{r:.3f}' for r in ratios)])
  _print_table(['dtype', 'lbtrain BN ms/step', 'flax BN ms/step',
                'throughput lbtrain / flax (median)', 'per repeat'], rows)


def _ints(text: str) -> list[int]:
  return [int(x) for x in text.split(',')]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """The command line (sys.argv[1:] unless `argv`); scripts/device_check.py builds its
  measurements' settings from it too."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('benchmark', choices=['step', 'overhead', 'accumulation', 'costs', 'bn'])
  parser.add_argument('--config', default='resnet50_8k',
                      help='recipe in configs/ whose optimizer and schedule the step runs')
  parser.add_argument('--dataset', default='synthetic',
                      help='step/overhead/accumulation compare steps on synthetic data; costs '
                           'may use a real data set (e.g. fashion_mnist with --model=cnn)')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--model', default='resnet50')
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--per_device_batch', type=_ints, default=[128])
  parser.add_argument('--dtype', type=lambda s: s.split(','), default=['bfloat16'])
  parser.add_argument('--accum_steps', type=_ints, default=[2, 4])
  parser.add_argument('--bn_group_size', type=int, default=None)
  parser.add_argument('--steps', type=int, default=20, help='timed steps per measurement')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--log_every_steps', type=int, default=10)
  parser.add_argument('--evals', type=int, default=2)
  parser.add_argument('--checkpoints', type=int, default=2)
  parser.add_argument('--eval_batch', type=int, default=None)
  parser.add_argument('--peak_tflops', type=float, default=None,
                      help='per-device peak for MFU where the device is not in the table')
  return parser.parse_args(argv)


def main() -> None:
  args = parse_args()
  try:
    {'step': benchmark_step, 'overhead': benchmark_overhead,
     'accumulation': benchmark_accumulation, 'costs': benchmark_costs,
     'bn': benchmark_bn}[args.benchmark](args)
  except UserError as error:
    sys.stderr.write(f'benchmark: error: {error}\n')
    sys.exit(2)


if __name__ == '__main__':
  main()
