"""Joining the other processes of a run (`jax.distributed`), before any other jax call.

A run spans several processes (hosts) when

* flags or environment variables say so: `--coordinator_address=HOST:PORT --num_processes=N
  --process_id=I` (or `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`), as
  `scripts/launch_local.py` passes them; or
* jax's own cluster detection recognises the environment: a SLURM step of several tasks
  (`srun`), an Open MPI job of several ranks (`mpirun`), or a Cloud TPU VM (a pod slice's
  workers). Detection here only reads environment variables, plus jax's Cloud TPU check, which
  is already made when jax is imported, so on a plain machine nothing is contacted and nothing
  waits: the run is one process and jax.distributed is not started.

Then `initialize()` selects gloo for cross-process collectives on CPU and calls
`jax.distributed.initialize` with bounded timeouts, so that no failure leaves a process waiting
for CI's limit (docs/operations.md has the measured times):

* a process that does not arrive: the others abort (jax: "DEADLINE_EXCEEDED ... RegisterTask")
  about 5 s after `--distributed_init_timeout`;
* a process that dies (killed, out of memory, crashed): its connections close, so a survivor in
  an all-reduce fails at once ("Gloo all-reduce failed: ... Connection reset by peer", exit 1,
  within a second); a survivor elsewhere, or any survivor of a process that hangs without dying (SIGSTOP,
  a stuck host), is ended by jax when process 0's coordinator misses heartbeats for
  `--distributed_heartbeat_timeout` ("Terminating process because the JAX distributed service
  detected fatal errors ... stopped sending heartbeats", SIGABRT, exit 134); if process 0 dies, the others lose the coordinator and end at once;
* a process that fails with an exception while the others are inside a collective: it exits
  at once (see `_exit_at_once_on_uncaught_exception`), which the others see as a death (above);
* a process that ends on its own (exit code 2 or 0) while others go on: jax's shutdown barrier
  gives up after `--distributed_shutdown_timeout` and ends them all.
* a process whose checkpoint save fails: it publishes its line (`failure_notice`) and every
  process ends at once with it (`checkpoint.Checkpointer`, `fail_at_once`).

Bad flags are reported as a `UserError` (one line, exit code 2) before any jax backend or
jax.distributed starts.
"""

import dataclasses
import importlib.util
import os
import re
import sys
import time
from typing import Mapping

from absl import flags
from absl import logging

from lbtrain import cli
from lbtrain.errors import UserError

# jax's names for the cluster detection methods it implements (`jax._src.clusters`).
CLUSTERS = ('slurm', 'ompi', 'gcetpu', 'gketpu', 'mpi4py')

flags.DEFINE_string(
    'coordinator_address', None,
    'HOST:PORT of process 0, where jax.distributed coordinates a multi-process run; the same on '
    'every process. Default: $JAX_COORDINATOR_ADDRESS, else detected on SLURM, Open MPI and Cloud '
    'TPU, else one process.')
flags.DEFINE_integer('num_processes', None,
                     'Processes in the run. Default: $JAX_NUM_PROCESSES, else detected.')
flags.DEFINE_integer('process_id', None,
                     'This process, 0 .. num_processes - 1. Default: $JAX_PROCESS_ID, else '
                     'detected.')
flags.DEFINE_enum(
    'cluster_detection', 'auto', ('auto', 'off') + CLUSTERS,
    'How to find the processes of a run when the flags above do not say: auto (SLURM srun '
    'tasks, Open MPI ranks, Cloud TPU VM workers), off (flags or one process), or one of jax\'s '
    'methods by name (mpi4py: any MPI launcher, needs the mpi4py package).')
flags.DEFINE_integer(
    'distributed_init_timeout', 300,
    'Seconds the processes wait for each other to connect at start before failing.')
flags.DEFINE_integer(
    'distributed_heartbeat_timeout', 30,
    'Seconds without a heartbeat after which a process counts as dead and the whole run stops '
    '(the bound on how long the others go on after one is killed).')
flags.DEFINE_integer(
    'distributed_shutdown_timeout', 60,
    'Seconds a finishing process waits at exit for the others to finish before the run is '
    'declared failed.')

_ENV_COORDINATOR = 'JAX_COORDINATOR_ADDRESS'
_ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
_ENV_PROCESS_ID = 'JAX_PROCESS_ID'
_HOST_PORT = re.compile(r'^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(\d+)$')


@dataclasses.dataclass(frozen=True)
class Settings:
  """What `jax.distributed.initialize` is called with; None fields are left to the cluster."""
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None
  cluster: str | None  # jax cluster_detection_method; None: everything comes from flags
  init_timeout: int
  heartbeat_timeout: int
  shutdown_timeout: int
  source: str  # where the settings came from: 'flags', 'slurm cluster detection', ...
  known: str = ''  # for the log: each value this process knows, and what said it

  def describe(self) -> str:
    return (f'{self.known}; timeouts: init {self.init_timeout} s, heartbeat '
            f'{self.heartbeat_timeout} s, shutdown {self.shutdown_timeout} s')


# What a cluster jax detects says of the process (variables jax reads: jax._src.clusters).
_CLUSTER_VARIABLES = {
    'slurm': ('SLURM', 'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_STEP_NODELIST'),
    'ompi': ('Open MPI', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_MCA_orte_hnp_uri'),
}


def _known(values: dict[str, tuple[object, str]], cluster: str | None,
           environ: Mapping[str, str]) -> str:
  """'process 1 of 2 from SLURM (SLURM_PROCID, SLURM_NTASKS), coordinator ...': each value
  with what gave it (`values`: name -> (value, flag or variable), for those given)."""
  values = dict(values)
  if cluster in _CLUSTER_VARIABLES:
    name, rank, size, nodes = _CLUSTER_VARIABLES[cluster]
    for key, variable in (('id', rank), ('count', size)):
      if key not in values and environ.get(variable):
        values[key] = (environ[variable], variable)
    values.setdefault('coordinator', ('chosen by jax', f'from {nodes}={environ.get(nodes)}'))
  else:
    name = {'gcetpu': 'the Cloud TPU VM', 'gketpu': 'the Cloud TPU VM (GKE)',
            'mpi4py': 'MPI (mpi4py)', None: ''}.get(cluster, cluster)
  for key in ('id', 'count', 'coordinator'):
    values.setdefault(key, ('?', f'from {name}, asked by jax'))
  (rank, rank_from), (size, size_from) = values['id'], values['count']
  origin = rank_from if rank_from == size_from else f'{rank_from}, {size_from}'
  coordinator, coordinator_from = values['coordinator']
  return (f'process {rank} of {size}' + (f' from {name}' if cluster else '') + f' ({origin}), '
          f'coordinator {coordinator} ({coordinator_from})')


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
  value = environ.get(name)
  if value is None or value == '':
    return None
  try:
    return int(value)
  except ValueError:
    raise UserError(f'${name}={value!r} is not an integer.') from None


def _detect_cluster(environ: Mapping[str, str]) -> tuple[str, int | None] | None:
  """(jax method name, process count if known) of the cluster this process runs in, or None.

  The same tests as jax's own detection (jax._src.clusters), in its order, reading only
  environment variables: nothing here can wait. Like jax, SLURM counts only inside `srun`
  (SLURM_STEP_NODELIST): python started directly in a batch script is one process.
  """
  if 'OMPI_MCA_orte_hnp_uri' in environ:  # set by Open MPI's mpirun / mpiexec (up to 4.x)
    return 'ompi', _env_int(environ, 'OMPI_COMM_WORLD_SIZE')
  if all(name in environ for name in ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS',
                                      'SLURM_PROCID', 'SLURM_LOCALID')):
    return 'slurm', _env_int(environ, 'SLURM_NTASKS')
  if _in_cloud_tpu_vm():
    # How many workers the slice has is only known from the metadata server; jax asks it.
    if environ.get('TPU_PROCESS_ADDRESSES') or environ.get('TPU_WORKER_HOSTNAMES'):
      return 'gketpu', None
    return 'gcetpu', None
  return None


def _in_cloud_tpu_vm() -> bool:
  """jax's own test, made when jax is imported (it looks for TPU chips, nothing remote)."""
  try:
    from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return bool(getattr(cloud_tpu_init, 'running_in_cloud_tpu_vm', False))


def resolve(*, coordinator_address: str | None, num_processes: int | None,
            process_id: int | None, cluster_detection: str, init_timeout: int,
            heartbeat_timeout: int, shutdown_timeout: int,
            environ: Mapping[str, str]) -> Settings | None:
  """The settings of a multi-process run, None for a single process; UserError if contradictory.

  Flags win over environment variables, which win over cluster detection.
  """
  for name, value in (('distributed_init_timeout', init_timeout),
                      ('distributed_heartbeat_timeout', heartbeat_timeout),
                      ('distributed_shutdown_timeout', shutdown_timeout)):
    if value is None or value <= 0:
      raise UserError(f'--{name}={value} must be a positive number of seconds.')
  given = {}  # name -> (value, the flag or variable that gave it), for the log
  for key, value, flag, variable in (
      ('coordinator', coordinator_address, '--coordinator_address', _ENV_COORDINATOR),
      ('count', num_processes, '--num_processes', _ENV_NUM_PROCESSES),
      ('id', process_id, '--process_id', _ENV_PROCESS_ID)):
    if value is not None:
      given[key] = (value, flag)
    elif environ.get(variable):
      given[key] = (environ[variable], f'${variable}')
  coordinator_address = coordinator_address or environ.get(_ENV_COORDINATOR) or None
  if num_processes is None:
    num_processes = _env_int(environ, _ENV_NUM_PROCESSES)
  if process_id is None:
    process_id = _env_int(environ, _ENV_PROCESS_ID)
  timeouts = dict(init_timeout=init_timeout, heartbeat_timeout=heartbeat_timeout,
                  shutdown_timeout=shutdown_timeout)

  if coordinator_address is not None and not _HOST_PORT.match(coordinator_address):
    raise UserError(f'--coordinator_address={coordinator_address!r} is not HOST:PORT '
                    '(e.g. 10.0.0.1:1234, the address of process 0 and a free port).')
  if coordinator_address is not None and not 0 < int(coordinator_address.rsplit(':', 1)[1]) < 65536:
    raise UserError(f'--coordinator_address={coordinator_address!r}: the port must be in '
                    '1..65535.')
  if num_processes is not None and num_processes < 1:
    raise UserError(f'--num_processes={num_processes} must be at least 1.')
  if process_id is not None and process_id < 0:
    raise UserError(f'--process_id={process_id} must be at least 0.')
  if num_processes is not None and process_id is not None and process_id >= num_processes:
    raise UserError(f'--process_id={process_id} is not below --num_processes={num_processes}; '
                    f'processes are numbered 0 .. {num_processes - 1}.')

  cluster = None
  if None not in (coordinator_address, num_processes, process_id):
    pass  # all given: nothing to detect
  elif cluster_detection == 'auto':
    detected = _detect_cluster(environ)
    if detected is not None:
      cluster, detected_count = detected
      if num_processes is None and detected_count is not None:
        num_processes = detected_count
  elif cluster_detection != 'off':
    cluster = cluster_detection
    if cluster in ('slurm', 'ompi') and (_detect_cluster(environ) or ('',))[0] != cluster:
      raise UserError(f'--cluster_detection={cluster}, but this process was not started by '
                      + ('srun (no SLURM_STEP_NODELIST, SLURM_PROCID, ...).' if cluster == 'slurm'
                         else "Open MPI's mpirun (no OMPI_MCA_orte_hnp_uri)."))
    if cluster in ('gcetpu', 'gketpu') and not _in_cloud_tpu_vm():
      raise UserError(f'--cluster_detection={cluster}, but this is not a Cloud TPU VM (jax '
                      'found no TPU chips).')
    if cluster == 'mpi4py' and importlib.util.find_spec('mpi4py') is None:
      raise UserError('--cluster_detection=mpi4py needs the mpi4py package '
                      '(pip install mpi4py) and an MPI launcher (mpirun, srun --mpi=...).')

  explicit = [name for name, value in (('--coordinator_address', coordinator_address),
                                       ('--num_processes', num_processes),
                                       ('--process_id', process_id)) if value is not None]
  if cluster is None:
    if not explicit or num_processes == 1:
      if num_processes == 1 and process_id not in (None, 0):
        raise UserError(f'--process_id={process_id} is not below --num_processes=1.')
      return None  # one process: nothing to join
    missing = [name for name in ('--coordinator_address', '--num_processes', '--process_id')
               if name not in explicit]
    if missing:
      raise UserError(
          f'{" and ".join(explicit)} given without {" and ".join(missing)}: a multi-process '
          'run needs all three (the same --coordinator_address=HOST:PORT of process 0 and '
          '--num_processes on every process, and a different --process_id on each), or a '
          'launcher jax detects (srun, mpirun, Cloud TPU); scripts/launch_local.py does it on '
          'one machine.')
    return Settings(coordinator_address, num_processes, process_id, None, source='flags',
                    known=_known(given, None, environ), **timeouts)
  if num_processes == 1:
    return None  # e.g. `srun --ntasks=1`: one process, every local device
  return Settings(coordinator_address, num_processes, process_id, cluster,
                  source=f'{cluster} cluster detection' + (' and flags' if given else ''),
                  known=_known(given, cluster, environ), **timeouts)


def settings_from_flags(flag_values=flags.FLAGS,
                        environ: Mapping[str, str] = os.environ) -> Settings | None:
  return resolve(coordinator_address=flag_values.coordinator_address,
                 num_processes=flag_values.num_processes,
                 process_id=flag_values.process_id,
                 cluster_detection=flag_values.cluster_detection,
                 init_timeout=flag_values.distributed_init_timeout,
                 heartbeat_timeout=flag_values.distributed_heartbeat_timeout,
                 shutdown_timeout=flag_values.distributed_shutdown_timeout,
                 environ=environ)


def initialize(flag_values=flags.FLAGS) -> Settings | None:
  """Joins the run's other processes when there are any; call before any other jax call.

  Returns the settings used, or None for a single-process run (where nothing is done and jax
  is not even imported here).
  """
  settings = settings_from_flags(flag_values)
  if settings is None:
    return None
  import jax  # pylint: disable=g-import-not-at-top

  # Cross-process collectives of the CPU backend (emulated devices, tests); without it a CPU
  # run of several processes cannot all-reduce. No effect on the GPU and TPU backends.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  logging.info('jax.distributed: joining as %s', settings.describe())
  cli.flush_output()  # if joining fails, jax aborts the process; this line must be out first
  try:
    jax.distributed.initialize(
        coordinator_address=settings.coordinator_address,
        num_processes=settings.num_processes,
        process_id=settings.process_id,
        cluster_detection_method=settings.cluster or 'deactivate',
        initialization_timeout=settings.init_timeout,
        heartbeat_timeout_seconds=settings.heartbeat_timeout,
        shutdown_timeout_seconds=settings.shutdown_timeout)
  except ValueError as error:  # what cluster detection could not find
    raise UserError(f'jax.distributed cannot start ({settings.source}): {error} Pass '
                    '--coordinator_address, --num_processes and --process_id.') from None
  _exit_at_once_on_uncaught_exception()
  logging.info('jax.distributed: process %d of %d: %d local devices, %d global devices (%s)',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.default_backend())
  return settings


_COORDINATOR_LINGER_SECONDS = 2.0


def fail_at_once(line: str) -> None:
  """Writes `line` to stderr and exits with status 1 at once: no shutdown barrier, no waiting
  for the threads of a save that the others will never complete (see `_exit_at_once_...`)."""
  sys.stderr.write(line + '\n')
  cli.flush_output()
  import jax  # pylint: disable=g-import-not-at-top  (jax is up: this is a run's failure)
  if jax.process_count() > 1 and jax.process_index() == 0:
    # Process 0 hosts the coordination service: leaving first would end the others' clients
    # (a gRPC error in place of their own line) while they write the same failure.
    time.sleep(_COORDINATOR_LINGER_SECONDS)
  os._exit(1)  # pylint: disable=protected-access


def _exit_at_once_on_uncaught_exception() -> None:
  """After the traceback of an uncaught exception, exits without jax's shutdown barrier.

  Otherwise the failed process would wait at exit for the others, which wait inside the next
  collective for it, until --distributed_shutdown_timeout; exiting at once lets the others see
  a dead process and stop within --distributed_heartbeat_timeout. Orbax writes checkpoints
  into a temporary folder and renames it, so cutting an asynchronous save short loses nothing
  but that save.
  """
  previous = sys.excepthook

  def hook(kind, value, traceback):
    try:
      previous(kind, value, traceback)
      sys.stderr.write(f'lbtrain: process failed ({kind.__name__}); exiting without waiting for '
                       'the other processes, which stop within the heartbeat timeout.\n')
    finally:
      cli.flush_output()
      os._exit(130 if issubclass(kind, KeyboardInterrupt) else 1)  # pylint: disable=protected-access

  sys.excepthook = hook
