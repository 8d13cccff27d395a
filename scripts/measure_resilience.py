"""Measures what preemption costs: SIGTERM-to-exit, and restart-to-first-step with and without
the persistent compilation cache. Prints a table; asserts nothing.

    .venv/bin/python scripts/measure_resilience.py [--model=resnet20] [--devices=8]

Each run is a real `python -m lbtrain.main` process on Fashion-MNIST (prepared in
--data_dir on first use). Restart time is from process start to the first new step recorded in
metrics.jsonl: interpreter and library start-up, restore, compile (or cache hit), first step.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _last_step(workdir):
  try:
    with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
      steps = [json.loads(line)['step'] for line in f if '"train/loss"' in line]
    return steps[-1] if steps else 0
  except (FileNotFoundError, json.JSONDecodeError):
    return 0


def _start(args, env, log):
  return subprocess.Popen([sys.executable, '-m', 'lbtrain.main', *args], cwd=ROOT, env=env,
                          stdout=log, stderr=subprocess.STDOUT)


def _wait_past(process, workdir, step, timeout=900):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if _last_step(workdir) > step:
      return
    if process.poll() is not None:
      raise SystemExit(f'lbtrain exited with {process.returncode}; see the log in {workdir}')
    time.sleep(0.02)
  raise SystemExit(f'no step after {step} within {timeout} s')


def _stop(process, workdir):
  """SIGTERM; returns (seconds to exit, exit code, step saved)."""
  sent = time.monotonic()
  process.send_signal(signal.SIGTERM)
  code = process.wait(timeout=600)
  return time.monotonic() - sent, code, _last_step(workdir)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='cnn')
  parser.add_argument('--devices', type=int, default=8)
  parser.add_argument('--global_batch_size', type=int, default=256)
  parser.add_argument('--data_dir', default='~/tensorflow_datasets')
  parser.add_argument('--repeats', type=int, default=2)
  flags = parser.parse_args()

  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={flags.devices}')
  workdir = tempfile.mkdtemp(prefix='lbtrain_resilience_')
  base = ['--config=configs/quickstart.py', f'--workdir={workdir}',
          f'--config.model.name={flags.model}', f'--config.data.data_dir={flags.data_dir}',
          f'--config.train.global_batch_size={flags.global_batch_size}',
          '--config.train.num_epochs=5', '--config.train.log_every_steps=1',
          '--config.eval.every_epochs=5', '--config.checkpoint.every_steps=100000']
  rows = []
  with open(os.path.join(workdir, 'log.txt'), 'a', encoding='utf-8') as log:
    process = _start(base, env, log)
    _wait_past(process, workdir, 3)
    seconds, code, step = _stop(process, workdir)
    rows.append(('SIGTERM to exit (first run)', seconds, f'exit {code}, saved step {step}'))
    for attempt in range(flags.repeats):
      for label, cache in (('with cache', None), ('without cache', '')):
        args = base if cache is None else base + [f'--config.train.compilation_cache_dir={cache}']
        step = _last_step(workdir)
        started = time.monotonic()
        process = _start(args, env, log)
        _wait_past(process, workdir, step)
        rows.append((f'restart to first step, {label} (#{attempt + 1})',
                     time.monotonic() - started, f'resumed at step {step}'))
        seconds, code, step = _stop(process, workdir)
        rows.append(('SIGTERM to exit', seconds, f'exit {code}, saved step {step}'))
  print(f'model {flags.model}, {flags.devices} CPU devices, global batch '
        f'{flags.global_batch_size}')
  print(f'| {"measurement":<44} | {"seconds":>7} | note |')
  print(f'|{"-" * 46}|{"-" * 9}|------|')
  for name, seconds, note in rows:
    print(f'| {name:<44} | {seconds:>7.2f} | {note} |')
  shutil.rmtree(workdir)


if __name__ == '__main__':
  main()
