"""`train.micro_batch_size='auto'`: the largest micro-batch whose compiled step fits in memory.

XLA knows, once a step is compiled, how many bytes its arguments, outputs and temporaries take
(`memory_analysis()`), so the choice needs no trial run and cannot run out of memory while
choosing. Memory grows with the micro-batch, so a binary search over the allowed sizes compiles
about log2 of their number of steps.
"""

import dataclasses
import os
from typing import Callable

import jax

GiB = 1024**3


@dataclasses.dataclass(frozen=True)
class MemoryLimit:
  bytes_per_device: int
  source: str  # where the figure comes from, for the log


def device_memory_limit() -> MemoryLimit:
  """What one device may hold: its allocator's limit on GPU/TPU; on CPU, where devices report
  none, the host's RAM shared by this process's devices (emulated CPU devices share it)."""
  device = jax.local_devices()[0]
  stats = device.memory_stats() or {}
  if stats.get('bytes_limit'):
    return MemoryLimit(int(stats['bytes_limit']), f'{device.device_kind} allocator limit')
  host = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  return MemoryLimit(host // jax.local_device_count(),
                     f'host RAM {host / GiB:.1f} GiB / {jax.local_device_count()} local '
                     f'{device.platform} devices (no device memory limit reported)')


def step_bytes(compiled: jax.stages.Compiled) -> int:
  """Peak bytes per device of a compiled step: arguments + outputs that do not alias an
  argument (the donated state does) + temporaries (activations, gradients)."""
  stats = compiled.memory_analysis()
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes
          - stats.alias_size_in_bytes + stats.temp_size_in_bytes
          + stats.generated_code_size_in_bytes)


def candidates(per_device_batch: int, group_size: int | None) -> list[int]:
  """Micro-batch sizes the step allows, ascending: divisors of the per-device batch; with
  accumulation BN groups must stay whole, so multiples of `group_size`; without groups BN is
  over the whole batch, which only the un-accumulated step computes."""
  if group_size is None:
    return [per_device_batch]
  return [size for size in range(1, per_device_batch + 1)
          if per_device_batch % size == 0 and (size % group_size == 0 or
                                               size == per_device_batch)]


def largest_fitting(sizes: list[int], bytes_of: Callable[[int], int],
                    budget: int) -> tuple[int | None, dict[int, int]]:
  """Binary search for the largest size whose step takes at most `budget` bytes.

  Returns (that size or None when even the smallest does not fit, {size: bytes} measured).
  """
  measured = {}
  low, high, best = 0, len(sizes) - 1, None
  while low <= high:
    middle = (low + high) // 2
    measured[sizes[middle]] = bytes_of(sizes[middle])
    if measured[sizes[middle]] <= budget:
      best, low = sizes[middle], middle + 1
    else:
      high = middle - 1
  return best, measured
