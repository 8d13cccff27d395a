"""Per-device memory and step time of `parallel.sharding`'s three layouts, printed as tables.

For one recipe (default: ResNet-50 + LARS, resnet50_32k_lars) on synthetic batches, per layout:
the compiled train step's bytes per device as XLA's memory analysis counts them (arguments,
temporaries, and the peak `lbtrain.memory.step_bytes` that the memory pre-check and
micro_batch_size='auto' use) and the collectives in it; the largest per-device batch whose step fits one fixed limit
(binary search over compiled steps, as 'auto' does); and seconds per step relative to
'replicated', measured side by side. On emulated CPU devices the collectives are memory copies,
so the time ratios say what the layouts cost in extra work there, not on a GPU or TPU.

  python scripts/sharding_memory.py --per_device_batch=32 --limit_gib=4 --max_batch=64
"""

import argparse
import importlib
import os
import re
import sys
import time

if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_force_host_platform_device_count=8').strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=g-import-not-at-top

import benchmark  # pylint: disable=g-import-not-at-top
from lbtrain import build  # pylint: disable=g-import-not-at-top
from lbtrain import memory  # pylint: disable=g-import-not-at-top
from lbtrain import parallel  # pylint: disable=g-import-not-at-top
from lbtrain import plan  # pylint: disable=g-import-not-at-top
from lbtrain import sharding  # pylint: disable=g-import-not-at-top

MiB = 2**20


def _config(args, mode: str, per_device: int, image_size: int):
  config = importlib.import_module(f'configs.{args.config}').get_config()
  config.data.dataset = 'synthetic'
  config.data.image_size = image_size
  config.model.name = args.model
  config.model.bn_group_size = None  # any per-device batch; BN memory is the same
  config.train.micro_batch_size = None
  config.train.global_batch_size = per_device * jax.device_count()
  config.parallel.sharding = mode
  config.schedule.warmup_epochs, config.schedule.warmup_steps = 0.0, None
  config.schedule.decay = 'constant'
  config.train.compilation_cache_dir = ''
  return config


def collectives(compiled) -> dict[str, int]:
  """How many of each collective the compiled per-device program holds (its HLO text)."""
  text = compiled.as_text()
  return {name: len(re.findall(rf' {name}(-start)?\(', text))
          for name in ('all-reduce', 'reduce-scatter', 'all-gather')}


def compiled_memory(args, mode: str, per_device: int) -> dict[str, float]:
  """The compiled step's bytes per device (MiB), its compile seconds and its collectives."""
  run = plan.plan(_config(args, mode, per_device, args.image_size))
  mesh = parallel.create_mesh()
  steps = build.build(run, mesh)
  start = time.perf_counter()
  compiled = steps.compile_train_step(run, mesh)
  seconds = time.perf_counter() - start
  stats = compiled.memory_analysis()
  state = sharding.per_device_bytes(steps.abstract_state, run.num_devices)[mode]
  return {'params': state['params'] / MiB, 'optimizer state': state['optimizer state'] / MiB,
          'arguments': stats.argument_size_in_bytes / MiB,
          'temporaries': stats.temp_size_in_bytes / MiB,
          'peak (step_bytes)': memory.step_bytes(compiled) / MiB, 'compile s': seconds,
          **collectives(compiled)}


def largest_batch(args, mode: str) -> tuple[int | None, dict[int, int]]:
  sizes = list(range(args.batch_multiple, args.max_batch + 1, args.batch_multiple))
  return memory.largest_fitting(
      sizes, lambda size: compiled_memory(args, mode, size)['peak (step_bytes)'] * MiB,
      int(args.limit_gib * memory.GiB))


def step_seconds(args) -> dict[str, float]:
  """Seconds per step of each layout, measured in alternation, best of `repeats` rounds."""
  steps = {mode: benchmark._CompiledStep(  # pylint: disable=protected-access
      _config(args, mode, args.time_batch, args.time_image_size)) for mode in sharding.MODES}
  best = {mode: float('inf') for mode in sharding.MODES}
  for _ in range(args.repeats):
    for mode, step in steps.items():
      best[mode] = min(best[mode], step.seconds_per_step(args.steps, warmup_steps=1))
  return best


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='resnet50_32k_lars')
  parser.add_argument('--model', default='resnet50')
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--per_device_batch', type=int, default=32,
                      help='the per-device batch of the bytes table')
  parser.add_argument('--limit_gib', type=float, default=4.0,
                      help='the fixed per-device limit of the largest-batch search')
  parser.add_argument('--max_batch', type=int, default=64)
  parser.add_argument('--batch_multiple', type=int, default=1)
  parser.add_argument('--time_batch', type=int, default=2, help='per-device batch of the timing')
  parser.add_argument('--time_image_size', type=int, default=64)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--skip', default='', help='comma-separated: bytes,largest,time')
  return parser.parse_args(argv)


def main() -> None:
  args = parse_args()
  skip = set(filter(None, args.skip.split(',')))
  print(f'{args.model} + {args.config} on synthetic batches; {benchmark._describe_devices()}')  # pylint: disable=protected-access
  if 'bytes' not in skip:
    rows = {mode: compiled_memory(args, mode, args.per_device_batch) for mode in sharding.MODES}
    names = list(rows['replicated'])
    print(f'\nbytes per device (MiB), per-device batch {args.per_device_batch} at '
          f'{args.image_size}px, XLA memory analysis of the compiled step:')
    benchmark._print_table(['sharding', *names], [  # pylint: disable=protected-access
        [mode, *(f'{value:,}' if isinstance(value, int) else f'{value:,.1f}'
                 for value in row.values())] for mode, row in rows.items()])
  if 'largest' not in skip:
    print(f'\nlargest per-device batch whose step fits {args.limit_gib} GiB per device '
          f'({args.image_size}px; searched {args.batch_multiple}..{args.max_batch} in steps of '
          f'{args.batch_multiple}):')
    table = []
    for mode in sharding.MODES:
      chosen, measured = largest_batch(args, mode)
      table.append([mode, chosen, ', '.join(f'{size}: {size_bytes / MiB:,.0f}'
                                            for size, size_bytes in sorted(measured.items()))])
    benchmark._print_table(['sharding', 'largest batch', 'measured (batch: MiB)'], table)  # pylint: disable=protected-access
  if 'time' not in skip:
    seconds = step_seconds(args)
    print(f'\nstep time (CPU, emulated devices), per-device batch {args.time_batch} at '
          f'{args.time_image_size}px, best of {args.repeats} rounds of {args.steps} steps:')
    benchmark._print_table(['sharding', 's/step', 'relative to replicated'], [  # pylint: disable=protected-access
        [mode, f'{value:.3f}', f'{value / seconds["replicated"]:.2f}']
        for mode, value in seconds.items()])


if __name__ == '__main__':
  main()
