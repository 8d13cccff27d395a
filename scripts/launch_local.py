#!/usr/bin/env python3
"""Runs N processes of `python -m lbtrain.main` on this machine, as N hosts would run.

    python scripts/launch_local.py 2 [--devices_per_process=4] [--port=PORT] -- \\
        --config=configs/quickstart.py --workdir=/tmp/run

Each process gets its own emulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count,
JAX_PLATFORMS=cpu) and joins the others through jax.distributed on 127.0.0.1 (the flags
--coordinator_address, --num_processes and --process_id are added to the arguments). Their output
is interleaved line by line, each line prefixed with `[pI]`.

When a process exits with a non-zero status, the others get --grace_period seconds to stop on
their own (jax.distributed stops them within its heartbeat timeout), then are killed; the
launcher then exits with the first failure's status (128 + signal for a signal). SIGTERM or
SIGINT (Ctrl-C) to the launcher sends SIGTERM to every process, which under jax.distributed makes
all of them save a checkpoint at the same step and exit 0 (lbtrain/preemption.py); they are
killed if still running after the grace period, or at once on a second Ctrl-C. --timeout bounds
the whole run.

Standard library only: it starts quickly and needs no jax.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'


def free_port() -> int:
  """A port free on 127.0.0.1 now (the OS picks it; it may in principle be taken again)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def process_environment(devices: int, base=None) -> dict:
  env = dict(os.environ if base is None else base)
  xla_flags = [flag for flag in env.get('XLA_FLAGS', '').split()
               if not flag.startswith(_DEVICE_COUNT_FLAG)]
  env['XLA_FLAGS'] = ' '.join(xla_flags + [f'{_DEVICE_COUNT_FLAG}={devices}'])
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONUNBUFFERED'] = '1'  # lines appear as they are written, in order
  env['PYTHONPATH'] = os.pathsep.join(
      [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
  # The flags added below say it all; a stale variable from the caller's shell must not count.
  for name in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
    env.pop(name, None)
  return env


def _libc_prctl():
  try:
    import ctypes  # pylint: disable=g-import-not-at-top
    return ctypes.CDLL(None, use_errno=True).prctl
  except (OSError, AttributeError):
    return None  # not Linux: children outlive a killed launcher


_PRCTL = _libc_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
  """In the child, before exec: SIGKILL when the launcher dies, so no process is left behind.

  Only a call into libc prepared beforehand: nothing here may take a lock (pump threads run).
  """
  if _PRCTL is not None:
    _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _describe_status(code: int) -> str:
  if code < 0:
    try:
      return f'signal {signal.Signals(-code).name}'
    except ValueError:
      return f'signal {-code}'
  return f'exit code {code}'


def _exit_code(code: int) -> int:
  return 128 - code if code < 0 else code


def _pump(index: int, stream, lock: threading.Lock) -> None:
  prefix = f'[p{index}] '
  for line in iter(stream.readline, b''):
    text = line.decode('utf-8', errors='replace').rstrip('\r\n')
    with lock:
      sys.stdout.write(prefix + text.replace('\r', '\n' + prefix) + '\n')
      sys.stdout.flush()
  stream.close()


def _log(message: str, lock: threading.Lock) -> None:
  with lock:
    sys.stdout.flush()
    sys.stderr.write(f'launch_local: {message}\n')
    sys.stderr.flush()


def launch(num_processes: int, args: list[str], *, devices_per_process: int = 4,
           port: int | None = None, grace_period: float = 30.0, timeout: float = 0.0,
           module: str = 'lbtrain.main') -> int:
  """Runs the processes to the end; returns the launcher's exit status."""
  port = port or free_port()
  coordinator = f'127.0.0.1:{port}'
  env = process_environment(devices_per_process)
  lock = threading.Lock()
  processes, pumps = [], []
  start = time.monotonic()
  _log(f'{num_processes} processes x {devices_per_process} CPU devices, coordinator '
       f'{coordinator}', lock)
  signals = []  # (signal, time) received by the launcher, acted on by the loop below

  def record(signum, frame):
    del frame
    signals.append((signum, time.monotonic()))

  previous = {signum: signal.signal(signum, record) for signum in (signal.SIGTERM, signal.SIGINT)}
  first_failure = None  # (index, status, time)
  reported = set()
  stop_requested = None  # when the first SIGTERM / SIGINT was passed on
  handled = 0
  try:
    for index in range(num_processes):
      command = [sys.executable, '-m', module, *args, f'--coordinator_address={coordinator}',
                 f'--num_processes={num_processes}', f'--process_id={index}']
      # Own session: a Ctrl-C in the terminal reaches only the launcher, which passes it on.
      process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=_die_with_parent)
      processes.append(process)
      _log(f'process {index}: pid {process.pid}', lock)
      pump = threading.Thread(target=_pump, args=(index, process.stdout, lock), daemon=True)
      pump.start()
      pumps.append(pump)

    while True:
      now = time.monotonic()
      for signum, _ in signals[handled:]:
        handled += 1
        name = signal.Signals(signum).name
        if stop_requested is None:
          stop_requested = now
          _log(f'{name}: asking every process to stop (SIGTERM: save and exit at the same '
               f'step); they are killed if still running in {grace_period:g} s', lock)
          for process in processes:
            if process.poll() is None:
              process.send_signal(signal.SIGTERM)
        elif signum == signal.SIGINT:
          _log(f'second {name}: killing every process now', lock)
          for process in processes:
            if process.poll() is None:
              process.kill()
      for index, process in enumerate(processes):
        code = process.poll()
        if code is None or index in reported:
          continue
        reported.add(index)
        since = (f', {now - first_failure[2]:.1f} s after process {first_failure[0]} failed'
                 if first_failure else '')
        _log(f'process {index} ended: {_describe_status(code)} at {now - start:.1f} s{since}',
             lock)
        if code != 0 and first_failure is None:
          first_failure = (index, code, now)
      if len(reported) == len(processes):
        break
      deadline_reasons = []
      if first_failure is not None and now - first_failure[2] > grace_period:
        deadline_reasons.append(f'process {first_failure[0]} failed {grace_period:g} s ago')
      if stop_requested is not None and now - stop_requested > grace_period:
        deadline_reasons.append(f'stop requested {grace_period:g} s ago')
      if timeout and now - start > timeout:
        deadline_reasons.append(f'--timeout={timeout:g} s reached')
      if deadline_reasons:
        alive = [i for i, p in enumerate(processes) if p.poll() is None]
        _log(f'killing processes {alive}: {"; ".join(deadline_reasons)}', lock)
        for i in alive:
          processes[i].kill()  # SIGKILL: jax's preemption notifier catches SIGTERM
        for i in alive:
          processes[i].wait()
        if first_failure is None:
          first_failure = (alive[0], -signal.SIGKILL, now)
        continue
      time.sleep(0.05)
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
    for pump in pumps:
      pump.join(timeout=5)

  if first_failure is None:
    _log(f'all {num_processes} processes succeeded in {time.monotonic() - start:.1f} s', lock)
    return 0
  index, code, _ = first_failure
  _log(f'failed: process {index} ended first with {_describe_status(code)}', lock)
  return _exit_code(code) or 1


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  if '--' in argv:
    split = argv.index('--')
    own, forwarded = argv[:split], argv[split + 1:]
  else:
    own, forwarded = argv, []
  parser = argparse.ArgumentParser(
      prog='launch_local.py', description=__doc__.split('\n\n')[0],
      usage='%(prog)s N [--devices_per_process=4] [--port=PORT] -- [lbtrain.main flags ...]')
  parser.add_argument('num_processes', type=int, help='processes to start')
  parser.add_argument('--devices_per_process', type=int, default=4,
                      help='emulated CPU devices of each process (default 4)')
  parser.add_argument('--port', type=int, default=None,
                      help='coordinator port on 127.0.0.1 (default: a free one)')
  parser.add_argument('--grace_period', type=float, default=30.0,
                      help='seconds the others get to stop after one fails (default 30)')
  parser.add_argument('--timeout', type=float, default=0.0,
                      help='kill everything after this many seconds (default 0: no limit)')
  parser.add_argument('--module', default='lbtrain.main', help=argparse.SUPPRESS)
  options = parser.parse_args(own)
  if options.num_processes < 1:
    parser.error(f'N must be at least 1, got {options.num_processes}')
  if options.devices_per_process < 1:
    parser.error(f'--devices_per_process must be at least 1, got {options.devices_per_process}')
  if options.port is not None and not 0 < options.port < 65536:
    parser.error(f'--port must be in 1..65535, got {options.port}')
  for flag in ('--coordinator_address', '--num_processes', '--process_id'):
    if any(arg.split('=')[0] == flag for arg in forwarded):
      parser.error(f'{flag} is set by the launcher; leave it out of the arguments after --')
  return options, forwarded


def main(argv: list[str]) -> int:
  options, forwarded = parse(argv)
  return launch(options.num_processes, forwarded, devices_per_process=options.devices_per_process,
                port=options.port, grace_period=options.grace_period, timeout=options.timeout,
                module=options.module)


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
