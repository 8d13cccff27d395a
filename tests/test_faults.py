"""Faults users meet: a full disk, a second launch on a running workdir, a step too big for
memory. Real faults where the machine allows them (a small tmpfs, real processes, SIGKILL)."""

import json
import os
import shutil
import signal
import socket
import subprocess

import jax
import pytest

import lbtrain_process
from lbtrain import memory
from lbtrain import train
from lbtrain.errors import RunFailed
from lbtrain.errors import UserError
from lbtrain.workdir import Workdir

pytestmark = pytest.mark.slow


def _args(workdir, data_dir, steps, *extra):
  """`steps` of batch 256 on a small training split (lbtrain_process.small_splits), compiled
  into the worker's cache (outside any workdir)."""
  return ['--config=configs/quickstart.py', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', *lbtrain_process.shared_cache(),
          '--config.train.global_batch_size=256',
          *lbtrain_process.small_splits(steps, warmup_steps=0, eval_split=None),
          '--config.train.log_every_steps=1', '--config.eval.every_epochs=0', *extra]


def _one_error_line(stderr, prefix):
  lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
  assert len(lines) == 1 and 'Traceback' not in stderr, stderr[-3000:]
  return lines[0]


def test_a_killed_runs_workdir_is_taken_over_and_a_second_launch_on_it_is_refused(
    fmnist_data_dir, tmp_path):
  """SIGKILL leaves the lock file but not the lock: the same command takes the workdir over and
  resumes. While it trains, a second launch is refused with one line naming it, and the run
  goes on, the one writer of its metrics, to a clean SIGTERM exit."""
  workdir = tmp_path / 'run'
  args = _args(workdir, fmnist_data_dir, 400, '--config.checkpoint.every_steps=4')
  killed = lbtrain_process.start(args, tmp_path / 'killed.log')
  try:
    lbtrain_process.wait_for_step(killed, workdir, 9)
  finally:
    killed.kill()  # SIGKILL: no chance to release anything
    killed.wait()
  assert (workdir / 'lock').exists()
  killed_steps = lbtrain_process.logged_steps(workdir)
  log = tmp_path / 'resumed.log'
  resumed = lbtrain_process.start(args, log)
  try:
    # A step the killed run never logged: the resumed run is training.
    lbtrain_process.wait_for_step(resumed, workdir, killed_steps[-1] + 2)
    assert 'resumed from the checkpoint at step' in log.read_text()
    holder = json.loads((workdir / 'lock').read_text())
    assert holder['pid'] == resumed.pid and holder['host'] == socket.gethostname()
    second = lbtrain_process.run(args)
    assert second.returncode == 2, second.stderr[-3000:]
    line = _one_error_line(second.stderr, 'lbtrain: error:')
    assert f'{workdir} is in use' in line and f'pid {resumed.pid} since' in line
    resumed.send_signal(signal.SIGTERM)
    assert resumed.wait(timeout=120) == 0, log.read_text()[-3000:]
  finally:
    if resumed.poll() is None:
      resumed.kill()
      resumed.wait()
  steps = lbtrain_process.logged_steps(workdir)
  assert steps == list(range(1, steps[-1] + 1))  # one writer: no step twice
  assert Workdir(str(workdir)).checkpoint_steps()[-1] == steps[-1] > killed_steps[-1]


@pytest.fixture
def small_disk(tmp_path):
  """A 4 MiB tmpfs: two of the quickstart's checkpoints fit, the third does not."""
  mount = tmp_path / 'small_disk'
  mount.mkdir()
  if not shutil.which('mount') or os.geteuid() != 0:
    pytest.skip('mounting a tmpfs needs root and mount(8)')
  result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(mount)],
                          capture_output=True, text=True)
  if result.returncode != 0:
    pytest.skip(f'cannot mount a tmpfs here: {result.stderr.strip()}')
  try:
    yield mount
  finally:
    subprocess.run(['umount', '-l', str(mount)], check=False)


def test_a_full_disk_ends_the_run_with_one_line_and_the_same_command_resumes(
    fmnist_data_dir, small_disk):
  workdir = small_disk / 'run'  # its compilation cache is the worker's, not on the small disk
  every, total = 2, 12  # the third save, at step 6, meets the full disk
  args = _args(workdir, fmnist_data_dir, total, f'--config.checkpoint.every_steps={every}')
  result = lbtrain_process.run(args)
  assert result.returncode == 1, result.stderr[-3000:]
  line = _one_error_line(result.stderr, 'lbtrain: failed:')
  saved = Workdir(str(workdir)).checkpoint_steps()
  assert saved and 'run the same command to resume' in line
  assert f'the last complete checkpoint is step {saved[-1]}' in line
  # Whichever write meets the full disk first: the checkpoint save, or the metrics' writers.
  if 'checkpoint save at step' in line:
    assert 'No space left on device' in line
    failed_step = int(line.split('checkpoint save at step ')[1].split()[0])
    assert failed_step > saved[-1]
  else:
    assert 'cannot be written to' in line, line
    failed_step = saved[-1] + every
  # It stopped by the next save after the failed one, not at the end of training.
  assert lbtrain_process.logged_steps(workdir)[-1] <= failed_step + every < total
  subprocess.run(['mount', '-o', 'remount,size=64m', str(small_disk)], check=True)
  again = lbtrain_process.run(args)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f'resumed from the checkpoint at step {saved[-1]}' in again.stderr
  assert Workdir(str(workdir)).checkpoint_steps()[-1] == total


def test_a_step_too_big_for_memory_is_refused_before_training(tiny_config, tmp_path,
                                                             monkeypatch):
  monkeypatch.setattr(memory, 'device_memory_limit',
                      lambda: memory.MemoryLimit(10_000, 'a made-up 10 kB device'))
  workdir = tmp_path / 'run'
  with pytest.raises(UserError) as error:
    train.train_and_evaluate(tiny_config, str(workdir))
  message = str(error.value)
  assert 'GiB per device, over the 0.00 GiB there is (a made-up 10 kB device)' in message
  assert 'micro_batch_size=auto' in message and 'model.dtype=bfloat16' in message
  assert not workdir.exists()


def test_a_device_that_runs_out_of_memory_during_training_is_one_line(tiny_config, tmp_path,
                                                                     monkeypatch):
  def out_of_memory(*args, **kwargs):
    raise jax.errors.JaxRuntimeError(
        'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.50GiB.\n'
        'BufferAssignment OOM Debugging.\n' + 'allocation 0: size 9.5G\n' * 50)
  monkeypatch.setattr(train, '_restore_and_train', out_of_memory)
  with pytest.raises(RunFailed) as error:
    train.train_and_evaluate(tiny_config, str(tmp_path / 'run'))
  message = str(error.value)
  assert '\n' not in message and 'BufferAssignment' not in message
  assert message.startswith('the device ran out of memory (RESOURCE_EXHAUSTED: Out of memory '
                            'while trying to allocate 9.50GiB.)')
  assert 'micro_batch_size=auto' in message and 'global_batch_size (now 256)' in message
