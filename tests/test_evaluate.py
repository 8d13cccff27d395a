"""`lbtrain.evaluate`: a run's latest checkpoint on another split, with the run's own config."""

import json
import os
import subprocess
import sys

import pytest

from configs import quickstart
import lbtrain_process
from lbtrain.workdir import Workdir


def _evaluate(*args):
  return subprocess.run([sys.executable, '-m', 'lbtrain.evaluate', *args],
                        cwd=lbtrain_process.ROOT, env=lbtrain_process.environment(),
                        capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_latest_checkpoint_is_evaluated_on_the_split_asked_for(tmp_path, fmnist_data_dir):
  workdir = str(tmp_path / 'run')
  # Trained (on a small training split) and evaluated on the whole test split at its end
  # (step 6), with a tuned-looking override.
  trained = lbtrain_process.run(lbtrain_process.quickstart_args(
      workdir, fmnist_data_dir, 6, *lbtrain_process.small_splits(6, eval_split=None),
      '--config.optimizer.base_lr=0.3', '--config.eval.global_batch_size=2000'))
  assert trained.returncode == 0, trained.stderr[-3000:]
  last_eval = [r for r in Workdir(workdir).metric_records() if 'eval/accuracy' in r][-1]
  metrics_before = open(os.path.join(workdir, 'metrics.jsonl'), 'rb').read()

  again = _evaluate(f'--workdir={workdir}', '--split=test')  # the run's own eval split
  assert again.returncode == 0, again.stderr[-3000:]
  assert (f'evaluate: step 6 of {workdir} on test: loss {last_eval["eval/loss"]:.4f}, accuracy '
          f'{last_eval["eval/accuracy"]:.4f} over 10000 examples') in again.stdout
  other = _evaluate(f'--workdir={workdir}', '--split=train[:3000]')
  assert other.returncode == 0, other.stderr[-3000:]
  with open(os.path.join(workdir, 'evaluations.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  assert [(r['step'], r['split'], r['eval/num_examples']) for r in records] == [
      (6, 'test', 10000), (6, 'train[:3000]', 3000)]
  assert records[0]['eval/accuracy'] == last_eval['eval/accuracy']  # the same model, exactly
  assert open(os.path.join(workdir, 'metrics.jsonl'), 'rb').read() == metrics_before


@pytest.mark.slow
@pytest.mark.parametrize('make, args, fragment', [
    (None, ['--split=test'], '--workdir and --split are required'),
    ('empty', ['--split=test'], 'config.json does not exist'),
    ('untrained', ['--split=test'], 'holds no complete checkpoint to evaluate'),
])
def test_bad_input_is_one_line_and_exit_2(make, args, fragment, tmp_path):
  if make:
    os.makedirs(tmp_path / make)
    args = [f'--workdir={tmp_path / make}', *args]
  if make == 'untrained':
    Workdir(str(tmp_path / make)).write_config(quickstart.get_config())
  result = _evaluate(*args)
  assert result.returncode == 2, result.stderr[-3000:]
  assert result.stderr.count('\n') == 1 and fragment in result.stderr, result.stderr
