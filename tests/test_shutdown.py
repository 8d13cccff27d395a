"""A signalled run saves its checkpoint and exits 0, every time, wherever the signal lands.

The input pipeline's threads were once left running at exit, and the interpreter's shutdown
killed them inside tf.data's C++ code: the process aborted (exit 134) after saving, in about
half the tries. A race, so each case runs three real processes (at once, to keep the suite
fast) and every one must exit 0 with its checkpoint restorable.
"""

import os
import re
import signal
import time

import jax
import orbax.checkpoint as ocp
import pytest

import lbtrain_process
from lbtrain.workdir import Workdir

pytestmark = pytest.mark.slow

TRIES = 3  # x 3 cases: a race that hit half the tries is missed with odds 2^-9
TOTAL_STEPS = 60  # far past the signalled steps, so no run ends before its signal


def _args(workdir, data_dir):
  # The input pipeline's threads are what matters, not how many images they gather from: a
  # small training split (lbtrain_process.small_splits) spares each process most of decoding.
  small = lbtrain_process.small_splits(TOTAL_STEPS, eval_split=None)
  return lbtrain_process.quickstart_args(workdir, data_dir, TOTAL_STEPS, *small,
                                         '--config.eval.every_epochs=0')


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
    # Each process is signalled as soon as it has logged `step`, while the others run on:
    # waiting for them one by one would let a fast one finish before its signal.
    waiting = {index for index in range(TRIES)}
    deadline = time.monotonic() + 300
    while waiting and time.monotonic() < deadline:
      for index in sorted(waiting):
        workdir, _, process = runs[index]
        assert process.poll() is None, f'run {index} exited ({process.returncode}) early'
        if lbtrain_process.logged_steps(workdir)[-1:] >= [step]:
          process.send_signal(signum)
          waiting.discard(index)
      time.sleep(0.02)
    assert not waiting, f'runs {sorted(waiting)} did not reach step {step}'
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
    saved = Workdir(workdir).checkpoint_steps()
    assert saved[-1] == stopped == lbtrain_process.logged_steps(workdir)[-1]
    restored = ocp.StandardCheckpointer().restore(
        os.path.join(Workdir(workdir).checkpoint_dir, str(stopped), 'default'))
    assert int(restored['step']) == stopped
    assert all(leaf.size for leaf in jax.tree.leaves(restored['params']))
