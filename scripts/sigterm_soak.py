"""SIGTERMs (or SIGINTs) at random steps of the quickstart: every run must exit 0 with a
checkpoint at the step it stopped at. Prints one line per run and a summary; exits 1 if any run
did not.

    .venv/bin/python scripts/sigterm_soak.py [--runs=20] [--signal=TERM] [--parallel=2]

Each run is a real `python -m lbtrain.main` process on Fashion-MNIST (prepared in --data_dir on
first use), 8 emulated devices, 60 steps of batch 256, signalled once the step drawn for it
(1 .. 58, seeded) is logged.
"""

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lbtrain.workdir import Workdir  # pylint: disable=g-import-not-at-top

TOTAL_STEPS = 60


def _start(workdir: str, data_dir: str, log_path: str) -> subprocess.Popen:
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             XLA_FLAGS='--xla_force_host_platform_device_count=8')
  args = ['--config=configs/quickstart.py', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', '--config.train.global_batch_size=256',
          f'--config.train.num_epochs={TOTAL_STEPS * 256 / 60000}',
          '--config.train.log_every_steps=1', '--config.schedule.warmup_epochs=0.02',
          '--config.eval.every_epochs=0', '--config.checkpoint.every_steps=8']
  with open(log_path, 'w', encoding='utf-8') as log:
    return subprocess.Popen([sys.executable, '-m', 'lbtrain.main', *args], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _logged_step(workdir: str) -> int:
  steps = [r['step'] for r in Workdir(workdir).metric_records() if 'train/loss' in r]
  return steps[-1] if steps else 0


def _outcome(workdir: str, log_path: str, code: int, signal_name: str) -> tuple[bool, str]:
  with open(log_path, encoding='utf-8') as f:
    text = f.read()
  stopped = re.search(r'stopping at step (\d+) on ' + signal_name, text)
  saved = Workdir(workdir).checkpoint_steps()
  step = int(stopped.group(1)) if stopped else None
  good = code == 0 and step is not None and saved and saved[-1] == step
  return bool(good), f'exit {code}, stopped at {step}, checkpoints {saved}'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', type=int, default=20)
  parser.add_argument('--signal', default='TERM', choices=('TERM', 'INT'))
  parser.add_argument('--parallel', type=int, default=2)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--data_dir', default='~/tensorflow_datasets')
  args = parser.parse_args()
  signum = getattr(signal, f'SIG{args.signal}')
  targets = random.Random(args.seed).choices(range(1, TOTAL_STEPS - 1), k=args.runs)
  failures = 0
  with tempfile.TemporaryDirectory() as scratch:
    pending = list(enumerate(targets))
    while pending:
      batch, pending = pending[:args.parallel], pending[args.parallel:]
      running = []
      for index, target in batch:
        workdir, log = os.path.join(scratch, f'run{index}'), os.path.join(scratch, f'{index}.log')
        running.append((index, target, workdir, log, _start(workdir, args.data_dir, log)))
      waiting = list(running)
      while waiting:  # signal each as soon as it is there, while the others run on
        for run in list(waiting):
          if _logged_step(run[2]) >= run[1] or run[4].poll() is not None:
            run[4].send_signal(signum)
            waiting.remove(run)
        time.sleep(0.02)
      for index, target, workdir, log, process in running:
        good, detail = _outcome(workdir, log, process.wait(timeout=300), f'SIG{args.signal}')
        failures += not good
        print(f'run {index:2d}: SIG{args.signal} after step {target:2d}: {detail}'
              f'{"" if good else "  <-- FAILED"}', flush=True)
  print(f'{args.runs - failures} of {args.runs} runs exited 0 with their checkpoint saved')
  sys.exit(1 if failures else 0)


if __name__ == '__main__':
  main()
