"""Devices: the mesh, the shardings, the one place host data becomes a global array, and the
agreements between processes.

Everything else in lbtrain sees either host-local numpy (the data package) or global
`jax.Array`s (the step); only this module knows how one maps onto the other.
"""

import functools
import queue
import threading
from typing import Any, Callable, Iterator

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

DATA_AXIS = 'data'
# 'jit': one program over the global mesh; each step function sees the global batch (pjit).
# 'pmap': the same functions as a per-device program that sees one device's rows and reduces
# over DATA_AXIS explicitly.
STRATEGIES = ('jit', 'pmap')


def create_mesh() -> Mesh:
  """One `data` axis over every device of every process, ordered process by process.

  `jax.make_mesh` orders devices so that each process's devices are contiguous, which is what
  lets each process feed a contiguous slice of the global batch.
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def one_program_at_a_time(mesh: Mesh) -> bool:
  """Whether the loop must wait for each multi-device program before dispatching the next.

  XLA:CPU runs the per-device parts of a program on one shared thread pool; with two programs
  in flight, a device's convolution can wait for pool threads that all sit in another
  program's all-reduce, and the run hangs (then aborts), most readily on few cores: waiting
  per step avoids it. GPUs and TPUs keep fully asynchronous dispatch.
  """
  return mesh.size > 1 and mesh.devices.flat[0].platform == 'cpu'


def loops_run_slowly(mesh: Mesh) -> bool:
  """Whether a `lax.scan` over the model should be unrolled: XLA:CPU runs convolutions inside
  a while loop tens of times slower than the same ones outside it (docs/performance.md,
  `scripts/benchmark.py accumulation`). GPUs and TPUs keep the loop, which bounds memory to one
  micro-batch's activations."""
  return mesh.devices.flat[0].platform == 'cpu'


def process_zero_says(flag: bool) -> bool:
  """Process 0's `flag` on every process, for decisions read from files only it may see."""
  if jax.process_count() == 1:
    return flag
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def processes_where(flag: bool) -> list[int]:
  """The processes whose `flag` is true, the same list on every process (a collective: every
  process must call it at the same point)."""
  if jax.process_count() == 1:
    return [0] if flag else []
  flags = multihost_utils.process_allgather(np.int32(flag))
  return [index for index, value in enumerate(np.ravel(flags)) if value]


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """The global batch split on its first (example) axis over the data axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def distribute(step_fn: Callable[..., Any], mesh: Mesh, strategy: str,
               donate_state: bool = False, state_sharding: Any = None,
               out_sharding: Any = None) -> Callable[[Any, Any], Any]:
  """`step_fn(state, batch, axis_name=...)` jitted over `mesh`: the state laid out by
  `state_sharding` (None: replicated; see `lbtrain.sharding`), batch split on its first axis,
  outputs laid out by `out_sharding` (None: replicated), under either strategy.

  'pmap' runs `step_fn(..., axis_name=DATA_AXIS)` under `jax.shard_map` with pmap's semantics
  (`check_vma=False`: a gradient is this device's until the step `pmean`s it). That is what
  `jax.pmap` itself has lowered to since jax 0.8; calling shard_map directly keeps the state a
  global replicated array, so both strategies share the data path, the ahead-of-time compile
  and the checkpoints (a run may switch strategy on resume), with no per-device copies of the
  state to stack and unstack around every save.
  """
  if strategy == 'pmap':
    body = jax.shard_map(functools.partial(step_fn, axis_name=DATA_AXIS), mesh=mesh,
                         in_specs=(PartitionSpec(), PartitionSpec(DATA_AXIS)),
                         out_specs=PartitionSpec(), check_vma=False)
  elif strategy == 'jit':
    body = functools.partial(step_fn, axis_name=None)
  else:
    raise ValueError(f'unknown strategy {strategy!r}; expected one of {STRATEGIES}')
  return jax.jit(body, in_shardings=(state_sharding or replicated(mesh), batch_sharded(mesh)),
                 out_shardings=out_sharding or replicated(mesh),
                 donate_argnums=0 if donate_state else ())


def host_local_to_global(batch: Any, mesh: Mesh) -> Any:
  """This process's rows of a global batch -> global arrays sharded over the whole mesh."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def prefetch_to_mesh(batches: Iterator[Any], mesh: Mesh, size: int) -> Iterator[Any]:
  """Moves up to `size` batches onto the devices ahead of the consumer, from a thread.

  The host->device copy of batch n+1 then overlaps step n, so the step never waits on a
  transfer unless the input pipeline itself is slower than the step. An exception in the
  producer is re-raised in the consumer rather than silently ending the stream.

  Closing the generator (`.close()`, or its end) stops the thread and waits for it: a thread
  left inside tf.data's or jax's C++ code when the interpreter shuts down is cancelled there,
  which aborts the process ("FATAL: exception not rethrown", exit code 134) after a run that
  ended well.
  """
  if size <= 0:
    yield from (host_local_to_global(batch, mesh) for batch in batches)
    return
  buffer: queue.Queue = queue.Queue(maxsize=size)
  end = object()
  stop = threading.Event()

  def put(item) -> bool:
    """Waits for room in the buffer unless the consumer has gone; False if it has."""
    while not stop.is_set():
      try:
        buffer.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      for batch in batches:
        if stop.is_set() or not put(host_local_to_global(batch, mesh)):
          return
      put(end)
    except BaseException as error:  # pylint: disable=broad-except
      put(error)

  thread = threading.Thread(target=produce, name='prefetch_to_mesh', daemon=True)
  thread.start()
  try:
    while True:
      item = buffer.get()
      if item is end:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
    thread.join()
