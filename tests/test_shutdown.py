"""A signalled run saves its checkpoint and exits 0, every time, wherever the signal lands.

The input pipeline's threads were once left running at exit, and the interpreter's shutdown
killed them inside tf.data's C++ code: the process aborted (exit 134) after saving, in about
half the tries. A race, so each case runs several real processes (at once, to keep the suite
fast) and every one must exit 0 with its checkpoint restorable.
"""

import os
import re
import signal

import jax
import orbax.checkpoint as ocp
import pytest

import lbtrain_process
from lbtrain.workdir import Workdir

pytestmark = pytest.mark.slow

TRIES = 5
TOTAL_STEPS = 23


def _args(workdir, data_dir):
  return ['--config=configs/quickstart.py', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}',
          '--config.train.global_batch_size=256',
          f'--config.train.num_epochs={TOTAL_STEPS * 256 / 60000}',
          '--config.train.log_every_steps=1',
          '--config.schedule.warmup_epochs=0.02',
          '--config.eval.every_epochs=0',
          '--config.checkpoint.every_steps=4']


@pytest.mark.parametrize('signum,step', [(signal.SIGTERM, 2), (signal.SIGTERM, 18),
                                         (signal.SIGINT, 6)],
                         ids=['sigterm_early', 'sigterm_late', 'sigint'])
def test_a_signalled_run_saves_its_step_and_exits_0(signum, step, fmnist_data_dir, tmp_path):
  runs = []
  for index in range(TRIES):
    workdir = str(tmp_path / f'run{index}')
    log = tmp_path / f'log{index}.txt'
    runs.append((workdir, log, lbtrain_process.start(_args(workdir, fmnist_data_dir), log)))
  try:
    for workdir, _, process in runs:
      lbtrain_process.wait_for_step(process, workdir, step)
      process.send_signal(signum)
    codes = [process.wait(timeout=120) for _, _, process in runs]
  finally:
    for _, _, process in runs:
      if process.poll() is None:
        process.kill()
        process.wait()
  for (workdir, log, _), code in zip(runs, codes):
    text = log.read_text()
    assert code == 0, f'exit code {code}:\n{text[-3000:]}'
    stopped = int(re.search(r'stopping at step (\d+) on ' + signal.Signals(signum).name,
                            text).group(1))
    assert step <= stopped < TOTAL_STEPS
    saved = sorted(int(name) for name in
                   os.listdir(os.path.join(Workdir(workdir).checkpoint_dir)) if name.isdigit())
    assert saved[-1] == stopped == lbtrain_process.logged_steps(workdir)[-1]
    restored = ocp.StandardCheckpointer().restore(
        os.path.join(Workdir(workdir).checkpoint_dir, str(stopped), 'default'))
    assert int(restored['step']) == stopped
    assert all(leaf.size for leaf in jax.tree.leaves(restored['params']))
