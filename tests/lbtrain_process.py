"""Runs `python -m lbtrain.main` as a real subprocess, as a user or a scheduler would."""

import concurrent.futures
import contextlib
import fcntl
import os
import subprocess
import sys
import time

from lbtrain.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def exclusive(path: str):
  """Holds an exclusive lock on the file `path` (made if missing): the first pytest worker to
  get it does what both need once, while the other waits."""
  with open(path, 'w', encoding='utf-8') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    yield


def shared_cache() -> list[str]:
  """The override that points a run at this pytest worker's compilation cache (conftest.py):
  the same small programs are compiled once per worker, not once per run."""
  return [f'--config.train.compilation_cache_dir={os.environ["LBTRAIN_TEST_COMPILATION_CACHE"]}']


def quickstart_args(workdir, data_dir, total_steps: int, *extra: str) -> list[str]:
  """The quickstart for `total_steps` steps of batch 256, a record per step, a short warmup
  and a checkpoint every 4 steps, compiled into the shared cache; `extra` flags come last and
  win."""
  return ['--config=configs/quickstart.py', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', *shared_cache(),
          '--config.train.global_batch_size=256',
          f'--config.train.num_epochs={total_steps * 256 / 60000}',
          '--config.train.log_every_steps=1',
          '--config.schedule.warmup_epochs=0.02',
          '--config.checkpoint.every_steps=4', *extra]


SMALL_TRAIN_EXAMPLES = 6144  # 24 global batches of 256


def small_splits(total_steps: int, warmup_steps: int = 5,
                 eval_split: str | None = 'test[:2000]') -> list[str]:
  """Overrides, to put after the others, for tests of what a run does with its steps (resume,
  signals, faults, its files), not of what it learns: `total_steps` steps of batch 256 and
  `warmup_steps` of warmup on the first 6,144 training images, and evaluations over
  `eval_split` (None: the config's). A process then decodes a tenth of the training split
  (about 3 s less each) and evaluates in a fifth of the time."""
  epoch = 256 / SMALL_TRAIN_EXAMPLES  # epochs per step
  return [f'--config.data.train_split=train[:{SMALL_TRAIN_EXAMPLES}]',
          f'--config.train.num_epochs={total_steps * epoch}',
          f'--config.schedule.warmup_epochs={warmup_steps * epoch}',
          *([f'--config.data.eval_split={eval_split}'] if eval_split else [])]


def environment(devices: int = 8) -> dict:
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
              # Behaviour, not speed: as conftest.py does in-process (much faster compiles).
              JAX_DISABLE_MOST_OPTIMIZATIONS='1')


def run(args, devices=8, timeout=300, cwd=ROOT, probe_backends=False) -> subprocess.CompletedProcess:
  """`probe_backends`: let jax look for every backend (TPU, GPU) as a user's run does."""
  env = environment(devices)
  env['PYTHONPATH'] = ROOT  # as `pip install -e .` would make it importable from anywhere
  if probe_backends:
    del env['JAX_PLATFORMS']
  return subprocess.run([sys.executable, '-m', 'lbtrain.main', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def run_all(arg_lists, **kwargs) -> list[subprocess.CompletedProcess]:
  """`run(args, **kwargs)` for each of `arg_lists`, a few at a time, results in order: for
  independent runs (none may share a workdir)."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    return list(pool.map(lambda args: run(args, **kwargs), arg_lists))


def start(args, log_path, devices=8) -> subprocess.Popen:
  log = open(log_path, 'w', encoding='utf-8')  # pylint: disable=consider-using-with
  return subprocess.Popen([sys.executable, '-m', 'lbtrain.main', *args], cwd=ROOT,
                          env=environment(devices), stdout=log, stderr=subprocess.STDOUT)


def logged_steps(workdir) -> list[int]:
  """Steps of the train records so far (a line being written right now is left out)."""
  return [record['step'] for record in Workdir(str(workdir)).metric_records()
          if 'train/loss' in record]


def wait_for_step(process, workdir, step, timeout=240) -> int:
  """Blocks until metrics.jsonl records `step` (or later); returns the latest logged step."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    steps = logged_steps(workdir)
    if steps and steps[-1] >= step:
      return steps[-1]
    if process.poll() is not None:
      raise AssertionError(f'lbtrain exited ({process.returncode}) before step {step}')
    time.sleep(0.05)
  raise AssertionError(f'step {step} not reached in {timeout} s')
