"""The run folder: the one owner of its file names, of opening it, and of resuming it.

A workdir belongs to one training run. Resuming it with a config that trains differently would
silently splice two experiments into one set of checkpoints and metrics, so that is refused;
fields that only change how a run is observed or laid out on the hardware may change.

    DIR/config.json         the resolved config that made the checkpoints
    DIR/metrics.jsonl       one JSON record per log / eval event
    DIR/events.out.tfevents.*   the same scalars for TensorBoard
    DIR/checkpoints/<step>  orbax checkpoints
    DIR/compilation_cache/  XLA's persistent cache (unless train.compilation_cache_dir says)
    DIR/train.log, DIR/sweep_run.json   a sweep's record of the run (lbtrain.sweep)
    DIR/lock                who trains here now (host, pid, since): see `RunLock`
"""

import datetime
import fcntl
import json
import os
import socket

from absl import logging
import ml_collections

from lbtrain import metrics
from lbtrain.errors import UserError

# Fields a resumed run may change: they do not change the trained parameters (logging, eval,
# checkpoint cadence, where data lives, how the batch is laid out on devices).
MAY_CHANGE_ON_RESUME = (
    'train.log_every_steps',
    'train.log_every_epochs',
    'train.stop_at_step',
    'train.micro_batch_size',
    'train.on_nonfinite',
    'train.max_consecutive_nonfinite',
    'train.compilation_cache_dir',
    'eval.',
    'checkpoint.',
    'data.data_dir',
    'data.source_dir',
    'data.prefetch_batches',
    'data.threads',
    'parallel.',
)

# Fields lbtrain no longer has: the TFRecord ImageNet pipeline's (until 2026-12-02). They never
# touched the other data sets, so a run that saved them resumes, except on ImageNet, whose data
# order changed with them.
_RETIRED = ('data.shuffle_buffer', 'data.autotune', 'data.deterministic', 'data.cache')

_INCOMPLETE_CHECKPOINT = '.orbax-checkpoint-tmp'  # orbax's mark of a save in progress


def default_path(config_file: str) -> str:
  """runs/<config file name>: the same command then resumes the same run."""
  return os.path.join('runs', os.path.splitext(os.path.basename(config_file))[0])


class Workdir:
  """Paths of one run folder, and the checks made before anything is written to it."""

  def __init__(self, path: str):
    if not path:
      raise UserError('--workdir is required: the folder for checkpoints and metrics.')
    self.path = os.path.abspath(os.path.expanduser(path))
    self._given = path
    self.config_file = os.path.join(self.path, 'config.json')
    self.metrics_file = os.path.join(self.path, 'metrics.jsonl')
    self.events_dir = self.path  # TensorBoard's event files
    self.checkpoint_dir = os.path.join(self.path, 'checkpoints')
    self.compilation_cache_dir = os.path.join(self.path, 'compilation_cache')
    self.sweep_log = os.path.join(self.path, 'train.log')
    self.sweep_record = os.path.join(self.path, 'sweep_run.json')
    self.lock_file = os.path.join(self.path, 'lock')

  def metric_records(self) -> list[dict]:
    return metrics.read_records(self.metrics_file)

  def metric_writer(self, enabled: bool, resume_step: int) -> metrics.MetricWriter:
    return metrics.MetricWriter(self.metrics_file, self.events_dir, enabled=enabled,
                                resume_step=resume_step)

  def checkpoint_steps(self) -> list[int]:
    """Steps of the complete checkpoints, ascending, without creating anything."""
    return complete_checkpoint_steps(self.checkpoint_dir)

  def incomplete_checkpoints(self) -> list[str]:
    if not os.path.isdir(self.checkpoint_dir):
      return []
    return sorted(name for name in os.listdir(self.checkpoint_dir)
                  if _INCOMPLETE_CHECKPOINT in name)

  def check_usable(self) -> None:
    """Fails before any file is written when the workdir cannot be used."""
    existing = self.path
    while not os.path.exists(existing):
      existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
      raise UserError(f'workdir {self._given!r}: {existing!r} exists and is not a folder; '
                      'choose another path.')
    if not os.access(existing, os.W_OK | os.X_OK):
      raise UserError(f'workdir {self._given!r} is not writable ({existing!r}); choose a folder '
                      'you can write to.')

  def open(self, config: ml_collections.ConfigDict, check_lock: bool = True) -> None:
    """Checks that `config` may train here (UserError if not), writing nothing; logs the
    allowed config changes since its checkpoints and the half-written saves orbax removes.
    `check_lock`: also refuse at once a workdir that a live run holds."""
    self.check_usable()
    if check_lock:
      RunLock(self).check_free()
    if self.checkpoint_steps():
      for change in self.resume_changes(config):
        logging.info('resuming with a changed field: %s', change)
    for name in self.incomplete_checkpoints():
      logging.warning('skipping incomplete checkpoint %s (a save was interrupted); it is '
                      'removed', name)

  def write_config(self, config: ml_collections.ConfigDict) -> None:
    os.makedirs(self.path, exist_ok=True)
    with open(self.config_file + '.tmp', 'w', encoding='utf-8') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')
    os.replace(self.config_file + '.tmp', self.config_file)

  def resume_changes(self, config: ml_collections.ConfigDict) -> list[str]:
    """Compares `config` with the one that wrote the workdir's checkpoints.

    Returns the allowed changes as 'field: old -> new' lines (for the log) and raises UserError
    naming every field whose change would alter the training itself.
    """
    if not os.path.exists(self.config_file):
      raise UserError(f'workdir {self._given!r} holds checkpoints but no '
                      f'{os.path.basename(self.config_file)}, so they cannot be checked against '
                      'this config; use a new workdir.')
    with open(self.config_file, encoding='utf-8') as f:
      saved = _flatten(json.load(f))
    current = _flatten(json.loads(config.to_json_best_effort()))
    changed = sorted(name for name in saved.keys() | current.keys()
                     if saved.get(name) != current.get(name))
    retired = [name for name in changed if name in _RETIRED and name not in current]
    if retired and saved.get('data.dataset') == 'imagenet2012':
      raise UserError(f'workdir {self._given!r} was written by lbtrain\'s TFRecord ImageNet '
                      'pipeline, whose data order the ArrayRecord one cannot continue; use a new '
                      'workdir.')
    refused = [name for name in changed
               if not name.startswith(MAY_CHANGE_ON_RESUME) and name not in retired]
    if refused:
      details = ', '.join(f'{name} ({saved.get(name)!r} -> {current.get(name)!r})'
                          for name in refused)
      raise UserError(f'workdir {self._given!r} holds checkpoints of a run with a different '
                      f'training config: {details}. Use a new workdir, or the original values to '
                      'resume.')
    return [f'{name}: {saved.get(name)!r} -> {current.get(name)!r}' for name in changed]


def complete_checkpoint_steps(checkpoint_dir: str) -> list[int]:
  """Steps of the complete checkpoints in an orbax folder, ascending: orbax names a finished
  save by its step and a save in progress `<step>.orbax-checkpoint-tmp-*`."""
  if not os.path.isdir(checkpoint_dir):
    return []
  return sorted(int(name) for name in os.listdir(checkpoint_dir) if name.isdigit())


class RunLock:
  """One training process per workdir: an exclusive `flock` on DIR/lock, held for the run.

  The kernel drops the lock when its process ends in any way (kill -9 included), so a workdir
  left by a dead run is never blocked; the file only says who held it last. A lost node's lock
  on a network filesystem lasts until the server's lease for it expires.
  """

  def __init__(self, workdir: Workdir):
    self._workdir = workdir
    self._fd = None

  def _refusal(self) -> UserError:
    try:
      with open(self._workdir.lock_file, encoding='utf-8') as f:
        holder = json.load(f)
      who = f"{holder['host']} pid {holder['pid']} since {holder['since']}"
    except (OSError, ValueError, KeyError):
      who = 'another process'
    return UserError(f'workdir {self._workdir.path} is in use: {who} is training in it '
                     f'({self._workdir.lock_file}). Wait for that run to end or stop it, or use '
                     'another --workdir.')

  def _try_lock(self, create: bool) -> bool:
    """Takes the lock (the file made if `create`); False if another process holds it."""
    if not create and not os.path.exists(self._workdir.lock_file):
      return True
    if create:
      os.makedirs(self._workdir.path, exist_ok=True)
    fd = os.open(self._workdir.lock_file, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      return False
    self._fd = fd
    return True

  def check_free(self) -> None:
    """Refuses at once (UserError, nothing written) when a live run holds the workdir."""
    if not self._try_lock(create=False):
      raise self._refusal()
    self.release()

  def acquire(self) -> None:
    """Takes the lock for this run and records who holds it; UserError if another run does."""
    if not self._try_lock(create=True):
      raise self._refusal()
    since = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    record = json.dumps({'host': socket.gethostname(), 'pid': os.getpid(), 'since': since})
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, (record + '\n').encode(), 0)

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _flatten(tree, prefix='') -> dict:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = value
  return flat
