"""Batch-size sweeps: the summary maths on hand-made records, then the CLI on real runs."""

import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

from matplotlib import image
import pytest

from configs import quickstart
from lbtrain.studies import critical_batch
from lbtrain import metrics
from lbtrain.studies import plots
from lbtrain.studies import results
from lbtrain.studies import sweep_report
from lbtrain.studies import tables
from lbtrain.workdir import RunLock
from lbtrain.workdir import Workdir
from lbtrain.studies.results import RunResult

import lbtrain_process

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _run(batch, evals, total_steps, diverged=None, peak_lr=0.1, metaparameters=None):
  return RunResult(batch=batch, peak_lr=peak_lr, total_steps=total_steps,
                   steps_per_epoch=60000 / batch, evals=tuple(evals), wall_seconds=10.0,
                   diverged=diverged, metaparameters=metaparameters or {})


def test_eval_points_keep_evaluations_only_by_step_and_the_last_of_a_repeated_step():
  records = [{'step': 10, 'train/loss': 1.0}, {'step': 20, 'eval/accuracy': 0.5},
             {'step': 10, 'eval/accuracy': 0.3}, {'step': 20, 'eval/accuracy': 0.6}]
  assert results.eval_points(records) == ((10, 0.3), (20, 0.6))


def test_read_records_skips_a_half_written_last_line(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text(
      '{"step": 5, "eval/accuracy": 0.5}\n{"step": 10, "eval/acc')
  assert metrics.read_records(str(tmp_path / 'metrics.jsonl')) == [{'step': 5, 'eval/accuracy': 0.5}]
  assert metrics.read_records(str(tmp_path / 'none.jsonl')) == []


def test_steps_and_examples_to_target_are_the_first_evaluation_at_or_above_it():
  run = _run(1024, [(10, 0.70), (20, 0.85), (30, 0.84), (40, 0.90)], total_steps=40)
  assert run.steps_to(0.85) == 20  # reached exactly counts, and later dips do not matter
  assert run.examples_to(0.85) == 20 * 1024
  assert run.steps_to(0.86) == 40
  assert run.steps_to(0.95) is None and run.examples_to(0.95) is None
  assert run.best_accuracy == 0.90
  assert run.final_accuracy == 0.90


def test_a_run_without_its_last_evaluation_or_diverged_has_no_final_accuracy():
  short = _run(256, [(10, 0.7), (20, 0.8)], total_steps=30)
  assert short.final_accuracy is None and short.best_accuracy == 0.8
  diverged = _run(256, [(10, 0.7), (30, 0.1)], total_steps=30,
                  diverged='non-finite train/loss at step 25')
  assert diverged.final_accuracy is None and diverged.best_accuracy == 0.7
  assert _run(256, [], total_steps=30).best_accuracy is None


def test_perfect_scaling_goes_through_the_smallest_batch_that_reached_the_target():
  assert plots.perfect_scaling_reference([(1024, 50), (256, 300), (4096, 20)]) == (256, 300)
  # Two sweeps sharing the smallest batch: the fewer steps.
  assert plots.perfect_scaling_reference([(256, 300), (256, 280)]) == (256, 280)
  assert plots.perfect_scaling_reference([]) is None
  assert plots.perfect_scaling_steps((256, 300), 1024) == 75
  assert plots.perfect_scaling_steps((256, 300), 128) == 600


def test_markdown_and_csv_spell_out_missing_values(tmp_path):
  runs = [_run(256, [(100, 0.80), (200, 0.91)], total_steps=200),
          _run(16384, [(2, 0.10)], total_steps=4, peak_lr=6.4,
               diverged='non-finite train/loss at step 3')]
  table = tables.markdown_table({'a': runs}, target=0.9)
  lines = table.splitlines()
  assert lines[2] == '| 256 | 0.1 | 200 | 91.00 % | 91.00 % | 200 | 51,200 | 10 s |'
  assert lines[3] == '| 16384 | 6.4 | 4 | diverged | 10.00 % | not reached | not reached | 10 s |'
  assert '- batch 16384: non-finite train/loss at step 3' in table
  assert 'steps to' not in tables.markdown_table({'a': runs}, target=None)

  tables.write_csv(str(tmp_path / 'two.csv'), {'a': runs, 'b': runs[:1]}, target=0.9)
  with open(tmp_path / 'two.csv', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  assert [(r['sweep'], r['batch'], r['status']) for r in rows] == [
      ('a', '256', 'finished'), ('a', '16384', 'diverged'), ('b', '256', 'finished')]
  assert rows[1]['final_eval_accuracy'] == '' and rows[1]['steps_to_target'] == ''
  assert rows[0]['examples_to_target'] == '51200'


def _model_runs(s_min=400, b_crit=2000, batches=(256, 1024, 4096, 16384)):
  """Runs that reach 0.9 exactly at the model's steps S = S_min (1 + B_crit / B)."""
  runs = []
  for batch in batches:
    steps = round(s_min * (1 + b_crit / batch))
    runs.append(_run(batch, [(steps // 2, 0.5), (steps, 0.9)], total_steps=steps))
  return runs


def test_summary_json_holds_steps_to_target_per_batch_and_the_fit(tmp_path):
  runs = _model_runs() + [_run(64, [(900, 0.8)], total_steps=900),
                          _run(32768, [(2, 0.1)], total_steps=4, diverged='non-finite at step 3')]
  results.save_results(str(tmp_path), runs, 0.9, ['python', '-m', 'lbtrain.sweep'])
  with open(tmp_path / 'summary.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert [(b['global_batch_size'], b['steps_to_target']) for b in saved['batches']] == [
      (64, None), (256, 3525), (1024, 1181), (4096, 595), (16384, 449), (32768, None)]
  assert saved['batches'][1]['examples_to_target'] == 3525 * 256
  assert saved['batches'][-1]['outcomes']['diverged'] == 1
  fit = saved['fit']
  assert fit['reason'] is None and fit['points'] == 4
  assert fit['s_min'] == pytest.approx(400, rel=0.01)
  assert fit['b_crit'] == pytest.approx(2000, rel=0.01)
  assert fit['e_min'] == pytest.approx(fit['s_min'] * fit['b_crit'])
  assert results.load_results(str(tmp_path)) == (runs, 0.9)  # the derived parts are not read

  results.save_results(str(tmp_path), runs[:2], 0.9, ['python'])
  with open(tmp_path / 'summary.json', encoding='utf-8') as f:
    fit = json.load(f)['fit']  # two batches: exact through both (steps rounded to whole steps)
  assert fit['b_crit'] == pytest.approx(2000, rel=0.01) and fit['b_crit_factor'] is None
  assert 'exact through 2 batches' in fit['note']
  results.save_results(str(tmp_path), runs[:1], 0.9, ['python'])
  with open(tmp_path / 'summary.json', encoding='utf-8') as f:
    fit = json.load(f)['fit']
  assert fit['s_min'] is None and fit['e_min'] is None and fit['b_crit'] is None
  assert 'at least 2' in fit['reason']
  assert 'give --target_accuracy' in results.fit_critical_batch(runs, None).reason


def test_markdown_states_the_fit_and_the_regimes():
  runs = _model_runs(batches=(64, 256, 1024, 4096, 16384, 65536))
  table = tables.markdown_table({'a': runs}, target=0.9)
  b_crit = re.search(r'Critical batch: B_crit = ([\d,]+) ×/÷ ', table).group(1)
  assert float(b_crit.replace(',', '')) == pytest.approx(2000, rel=0.01)
  assert 'steps, E_min = ' in table and 'over 6 batches' in table
  assert 'Regimes: batches 64 to 256: perfect scaling' in table
  assert 'batches 256 to 16384: diminishing returns' in table
  assert 'batches 16384 to 65536: maximal data parallelism' in table
  several = tables.markdown_table({'a': _model_runs(), 'b': _model_runs()[:2]}, 0.9)
  assert 'Critical batch (a): B_crit' in several
  assert 'Critical batch (b): B_crit = 2,0' in several and 'exact through 2 batches' in several
  one = tables.markdown_table({'a': _model_runs()[:1]}, 0.9)
  assert 'Critical batch: no fit, 1 batch reached the target' in one
  assert 'Critical batch' not in tables.markdown_table({'a': _model_runs()}, None)


def test_steps_reached_at_the_first_evaluation_are_upper_bounds_kept_out_of_the_fit(tmp_path):
  # The quickstart of issue 27: two batches, each at the target at its first and only
  # evaluation; the exact two-point fit through them would say B_crit = 89,600.
  runs = [_run(256, [(234, 0.81)], total_steps=234), _run(1024, [(59, 0.80)], total_steps=59)]
  assert runs[0].target_at_first_eval(0.8) and not runs[0].target_at_first_eval(0.9)
  summary = results.Summary(runs, 0.8)
  assert summary.reached == [] and summary.upper_bounds == [(256, 234), (1024, 59)]
  assert summary.fit.b_crit is None and summary.fit.reason == (
      '0 of the batches that reached the target measured their steps to it (the others only '
      'bound them); the fit needs at least 2')
  # A tenth of the earliest first evaluation: 59 steps of 1024 = 1.007 epochs.
  assert summary.fit.left_out == (
      'left out of the fit: batch 256 at step 234, batch 1024 at step 59 reached the target at '
      "the run's first evaluation, so those steps are upper bounds only; evaluate sooner to "
      'measure them, e.g. --config.eval.every_epochs=0.1')
  table = tables.markdown_table({'a': runs}, target=0.8)
  assert '| 256 | 0.1 | 234 | 81.00 % | 81.00 % | ≤ 234 | ≤ 59,904 | 10 s |' in table
  assert 'Critical batch: no fit, 0 of the batches that reached the target measured' in table
  assert 'Critical batch: left out of the fit: batch 256 at step 234' in table
  assert 'B_crit =' not in table
  results.save_results(str(tmp_path), runs, 0.8, ['python'])
  with open(tmp_path / 'summary.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert [b['steps_to_target_upper_bound'] for b in saved['batches']] == [True, True]
  assert saved['fit']['b_crit'] is None and 'upper bounds' in saved['fit']['left_out']
  tables.write_csv(str(tmp_path / 'bound.csv'), {'a': runs}, target=0.8)
  with open(tmp_path / 'bound.csv', encoding='utf-8') as f:
    assert [r['steps_to_target_upper_bound'] for r in csv.DictReader(f)] == ['True', 'True']

  # Measured batches are fitted, the bound one is left out and named.
  mixed = _model_runs() + [_run(65536, [(420, 0.9)], total_steps=420)]
  fit = results.Summary(mixed, 0.9).fit
  assert fit.points == 4 and fit.b_crit == pytest.approx(2000, rel=0.01)
  assert 'batch 65536 at step 420' in fit.left_out
  assert results.Summary(_model_runs(), 0.9).fit.left_out is None


LR = 'optimizer.base_lr'


def _tuned_runs():
  """Three lrs at two batches: at 256 the middle lr wins, at 1024 the highest."""
  def trial(batch, lr, evals, diverged=None):
    return _run(batch, evals, total_steps=200 * 256 // batch, diverged=diverged,
                peak_lr=lr * batch / 256, metaparameters={LR: lr})
  return [trial(256, 0.1, [(100, 0.8), (150, 0.9)]), trial(256, 0.3, [(50, 0.5), (100, 0.9)]),
          trial(256, 1.0, [(50, 0.1)], diverged='non-finite train/loss at step 60'),
          trial(1024, 0.1, [(25, 0.7), (50, 0.8)]), trial(1024, 0.3, [(25, 0.8), (40, 0.9)]),
          trial(1024, 1.0, [(15, 0.6), (30, 0.9)])]


def test_a_tuned_sweeps_summary_gives_each_batch_its_best_trial(tmp_path):
  runs = _tuned_runs()
  results.save_results(str(tmp_path), runs, 0.9, ['python'])
  with open(tmp_path / 'summary.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert [(b['global_batch_size'], b['steps_to_target'], b['best_metaparameters'],
           b['on_range_edge']) for b in saved['batches']] == [
               (256, 100, {LR: 0.3}, {}), (1024, 30, {LR: 1.0}, {LR: 'highest'})]
  assert saved['batches'][0]['outcomes'] == {'reached': 2, 'capped': 0, 'not reached': 0,
                                             'diverged': 1}
  assert saved['runs'][0]['metaparameters'] == {LR: 0.1}
  # 100 steps at 256, 30 at 1024: B_crit = (100 - 30) / (30 / 256 - 100 / 1024) = 3584.
  assert saved['fit']['b_crit'] == pytest.approx(3584)
  assert saved['fit']['s_min'] == pytest.approx(100 / 15)
  assert results.load_results(str(tmp_path)) == (runs, 0.9)

  table = tables.markdown_table({'a': runs}, target=0.9)
  assert '| 256 | optimizer.base_lr=0.1 | 0.1 | 200 | ' in table
  assert '| 256 | 100 | 25,600 | optimizer.base_lr=0.3 | 2 / 0 / 0 / 1 | – |' in table
  assert ('| 1024 | 30 | 30,720 | optimizer.base_lr=1 | 2 / 0 / 1 / 0 | optimizer.base_lr '
          '(highest) |') in table
  tables.write_csv(str(tmp_path / 'tuned.csv'), {'a': runs}, target=0.9)
  with open(tmp_path / 'tuned.csv', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  assert [(r['batch'], r[LR], r['steps_to_target']) for r in rows[:3]] == [
      ('256', '0.1', '150'), ('256', '0.3', '100'), ('256', '1.0', '')]
  paths = sweep_report.write_report(str(tmp_path / 'report'), {'a': runs}, target=0.9)
  for path in paths[2:]:
    _assert_png(path)


def test_capped_trials_throughput_and_the_noise_scale_reach_the_summary(tmp_path):
  def trial(batch, lr, evals, steps_per_second, capped_at=None, noise_scale=()):
    return dataclasses.replace(
        _run(batch, evals, total_steps=200 * 256 // batch, metaparameters={LR: lr}),
        capped_at=capped_at, steps_per_second=steps_per_second, noise_scale=noise_scale)
  runs = [trial(256, 0.3, [(50, 0.5), (100, 0.9)], 50.0,
                noise_scale=((50, 300.0), (100, 500.0))),
          trial(256, 0.1, [(50, 0.5), (100, 0.8)], 40.0, capped_at=100),
          trial(1024, 0.3, [(15, 0.6), (30, 0.9)], 20.0),
          trial(1024, 0.1, [(15, 0.6), (30, 0.7)], 10.0, capped_at=30)]
  results.save_results(str(tmp_path), runs, 0.9, ['python'])
  with open(tmp_path / 'summary.json', encoding='utf-8') as f:
    saved = json.load(f)
  first, second = saved['batches']
  assert first['outcomes'] == {'reached': 1, 'capped': 1, 'not reached': 0, 'diverged': 0}
  assert first['steps_per_second'] == 45.0 and first['seconds_to_target'] == 100 / 45
  assert second['steps_per_second'] == 15.0 and second['seconds_to_target'] == 2.0
  assert first['noise_scale_at_target'] == 500.0 and second['noise_scale_at_target'] is None
  assert results.load_results(str(tmp_path)) == (runs, 0.9)

  table = tables.markdown_table({'a': runs}, target=0.9)
  assert '| 256 | optimizer.base_lr=0.1 | 0.1 | 200 | capped at step 100 |' in table
  assert ('| 256 | 100 | 25,600 | optimizer.base_lr=0.3 | 1 / 1 / 0 / 0 | optimizer.base_lr (highest) '
          '| 45 | 2.2 s |') in table
  assert 'Fastest to the target on this hardware: batch 1024 (2.0 s of training)' in table
  # B_crit = (100 - 30) / (30 / 256 - 100 / 1024) = 3584: 7.17 x B_simple at the target.
  assert ('Noise scale: B_simple = 500 at step 100 (the target) of batch 256\'s best run; it '
          'moved from 300 (step 50) to 500 (step 100); fitted B_crit / B_simple = 7.17') in table


def test_a_fixed_budget_summary_shows_the_generalization_gap(tmp_path):
  runs = [dataclasses.replace(_run(256, [(100, 0.8), (200, 0.9)], 200),
                              train_evals=((100, 0.82), (200, 0.95))),
          dataclasses.replace(_run(4096, [(6, 0.1)], 12, diverged='non-finite train/loss'),
                              train_evals=((6, 0.1),))]
  assert runs[0].final_train_accuracy == 0.95 and runs[1].final_train_accuracy is None
  table = tables.markdown_table({'a': runs}, target=None)
  assert '| final eval accuracy | final train accuracy (eval mode) | gap (train - eval) |' in table
  assert '| 256 | 0.1 | 200 | 90.00 % | 95.00 % | +5.00 points | 90.00 % |' in table
  assert '| 4096 | 0.1 | 12 | diverged | – | – | 10.00 % |' in table
  tables.write_csv(str(tmp_path / 'gap.csv'), {'a': runs}, target=None)
  with open(tmp_path / 'gap.csv', encoding='utf-8') as f:
    assert [row['final_train_accuracy'] for row in csv.DictReader(f)] == ['0.95', '']
  assert 'train accuracy' not in tables.markdown_table({'a': _model_runs()}, None)


@pytest.mark.slow
def test_the_report_pools_folders_that_extend_a_sweeps_search_range(tmp_path):
  """A second sweep with lower lrs: at 1024 its trial beats the first sweep's best."""
  first, extension = _tuned_runs(), [
      _run(1024, [(10, 0.5), (20, 0.9)], total_steps=50, metaparameters={LR: 0.03},
           peak_lr=0.12)]
  for name in ('first', 'lower'):
    os.makedirs(tmp_path / name)
  results.save_results(str(tmp_path / 'first'), first, 0.9, ['python'])
  results.save_results(str(tmp_path / 'lower'), extension, 0.9, ['python'])
  result = subprocess.run(
      [sys.executable, '-m', 'lbtrain.sweep_report', f'--out_dir={tmp_path / "out"}',
       f'--sweep=Nesterov={tmp_path / "first"},{tmp_path / "lower"}'],
      cwd=lbtrain_process.ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  table = (tmp_path / 'out' / 'summary.md').read_text()
  assert '| 256 | 100 | 25,600 | optimizer.base_lr=0.3 | 2 / 0 / 0 / 1 | – |' in table
  assert '| 1024 | 20 | 20,480 | optimizer.base_lr=0.03 | 3 / 0 / 1 / 0 | optimizer.base_lr ' \
         '(lowest) |' in table


def _assert_png(path):
  with open(path, 'rb') as f:
    assert f.read(8) == PNG_MAGIC, path
  pixels = image.imread(path)
  assert pixels.shape[0] > 200 and pixels.shape[1] > 200, (path, pixels.shape)


def test_report_of_several_sweeps_draws_valid_pngs(tmp_path):
  series = {
      'linear': [_run(256, [(100, 0.8), (200, 0.9)], 200),
                 _run(4096, [(6, 0.1)], 12, diverged='non-finite train/loss at step 7')],
      'lars': [_run(1024, [(25, 0.85), (50, 0.9)], 50), _run(4096, [(6, 0.8), (12, 0.88)], 12)],
      'model': _model_runs(),  # enough batches for the fitted curve
  }
  paths = sweep_report.write_report(str(tmp_path / 'with_target'), series, target=0.9)
  assert [os.path.basename(p) for p in paths] == [
      'summary.csv', 'summary.md', 'final_accuracy.png', 'eval_accuracy.png',
      'steps_to_target.png', 'steps_vs_examples.png']
  for path in paths[2:]:
    _assert_png(path)
  paths = sweep_report.write_report(str(tmp_path / 'no_target'), series, target=None)
  assert not any(p.endswith('steps_to_target.png') for p in paths)
  # A target no batch reached (every run diverged): both target plots are still drawn.
  paths = sweep_report.write_report(str(tmp_path / 'none_reached'), series, target=0.99)
  for path in paths[-2:]:
    _assert_png(path)


# ---- the CLI, on real runs of the small CNN on real Fashion-MNIST ----

STEPS_AT_512 = 4  # 8 steps at 256; an evaluation every 2 steps at 512 and every 4 at 256
# The runs train on the first 6,144 training images (lbtrain_process.small_splits): each
# process decodes a tenth of the split.
NUM_EPOCHS = STEPS_AT_512 * 512 / lbtrain_process.SMALL_TRAIN_EXAMPLES
BASE_LR = 0.3  # set on the command line, so that the runs show the overrides reached them
TARGET = 0.4


def _sweep(args, timeout=300):
  """`python -m lbtrain.sweep` as a user runs it; its runs inherit the test environment."""
  return subprocess.run([sys.executable, '-m', 'lbtrain.sweep', *args], cwd=lbtrain_process.ROOT,
                        env=lbtrain_process.environment(), capture_output=True, text=True,
                        timeout=timeout)


def _tiny_sweep_args(sweep_dir, data_dir, batches='512,256'):
  return ['--config=configs/quickstart.py', f'--workdir={sweep_dir}', f'--batch_sizes={batches}',
          f'--target_accuracy={TARGET}', f'--config.data.data_dir={data_dir}',
          f'--config.data.train_split=train[:{lbtrain_process.SMALL_TRAIN_EXAMPLES}]',
          f'--config.train.num_epochs={NUM_EPOCHS}', '--config.schedule.warmup_epochs=0',
          f'--config.eval.every_epochs={2 * 512 / lbtrain_process.SMALL_TRAIN_EXAMPLES}',
          '--config.eval.global_batch_size=2000',
          '--config.data.eval_split=test[:2000]',  # a fifth of the split: evaluations are cheap
          '--config.checkpoint.every_steps=2', '--config.train.log_every_steps=2',
          *lbtrain_process.shared_cache(),
          '--config.optimizer.base_lr', str(BASE_LR)]  # the space-separated form, forwarded too


def _metrics(run_dir):
  return Workdir(run_dir).metric_records()


def _evals(run_dir):
  return [(r['step'], r['eval/accuracy']) for r in _metrics(run_dir) if 'eval/accuracy' in r]


def _summary_rows(sweep_dir):
  with open(os.path.join(sweep_dir, 'summary.csv'), encoding='utf-8') as f:
    return list(csv.DictReader(f))


def _run_record(run_dir):
  with open(os.path.join(run_dir, 'sweep_run.json'), encoding='utf-8') as f:
    return json.load(f)


@pytest.mark.slow
def test_sweep_runs_each_batch_summarises_skips_finished_and_resumes_unfinished(
    tmp_path, fmnist_data_dir):
  sweep_dir = tmp_path / 'sweep'
  args = _tiny_sweep_args(sweep_dir, fmnist_data_dir) + [
      '--config.eval.train_accuracy_split=train[:3000]']
  result = _sweep(args)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]

  config = quickstart.get_config()
  config.optimizer.base_lr = BASE_LR
  assert config.optimizer.scaling == 'linear'
  run_dirs = {b: sweep_dir / f'batch_{b:05d}' for b in (256, 512)}
  rows = _summary_rows(sweep_dir)
  assert [int(r['batch']) for r in rows] == [256, 512]  # smallest first, as given or not
  for row in rows:
    batch = int(row['batch'])
    with open(run_dirs[batch] / 'config.json', encoding='utf-8') as f:
      run_config = json.load(f)
    assert run_config['train']['global_batch_size'] == batch
    assert run_config['optimizer']['base_lr'] == BASE_LR
    expected_lr = config.optimizer.base_lr * batch / config.optimizer.base_batch_size
    assert float(row['peak_lr']) == pytest.approx(expected_lr)
    assert int(row['steps']) == STEPS_AT_512 * 512 // batch
    evals = _evals(run_dirs[batch])
    assert len(evals) == 2 and evals[-1][0] == int(row['steps'])
    assert float(row['final_eval_accuracy']) == evals[-1][1]
    train_evals = [(r['step'], r['train_eval/accuracy'], r['train_eval/num_examples'])
                   for r in _metrics(run_dirs[batch]) if 'train_eval/accuracy' in r]
    assert [step for step, _, _ in train_evals] == [step for step, _ in evals]
    assert train_evals[-1][2] == 3000  # the generalization gap, on a fixed training slice
    assert float(row['final_train_accuracy']) == train_evals[-1][1]
    assert float(row['best_eval_accuracy']) == max(a for _, a in evals)
    reached = [s for s, a in evals if a >= TARGET]
    assert row['steps_to_target'] == (str(reached[0]) if reached else '')
    assert row['examples_to_target'] == (str(reached[0] * batch) if reached else '')
    assert row['status'] == 'finished'
    assert float(row['wall_seconds']) > 0
    assert 'lbtrain.main' in (run_dirs[batch] / 'train.log').read_text()
  markdown = (sweep_dir / 'summary.md').read_text()
  assert markdown.count('\n| 256 | ') == 1 and markdown.count('\n| 512 | ') == 1
  for name in ('final_accuracy.png', 'eval_accuracy.png', 'steps_to_target.png'):
    _assert_png(sweep_dir / name)

  # Again, after losing batch 512's final checkpoint: 256 is skipped and 512 resumes at step 2.
  metrics_256 = run_dirs[256] / 'metrics.jsonl'
  before = (metrics_256.read_bytes(), metrics_256.stat().st_mtime_ns)
  evals_512 = _evals(run_dirs[512])
  seconds_512 = _run_record(run_dirs[512])['wall_seconds']
  shutil.rmtree(run_dirs[512] / 'checkpoints' / str(STEPS_AT_512))
  result = _sweep(args)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert 'batch 256 (1/2): finished earlier, skipped' in result.stdout
  assert 'batch 512 (2/2): resuming at step 2' in result.stdout
  assert (metrics_256.read_bytes(), metrics_256.stat().st_mtime_ns) == before
  assert 'resumed from the checkpoint at step 2' in (run_dirs[512] / 'train.log').read_text()
  assert _evals(run_dirs[512]) == evals_512  # lbtrain resumes exactly
  record = _run_record(run_dirs[512])
  assert record['attempts'] == 2 and record['wall_seconds'] > seconds_512
  assert float(_summary_rows(sweep_dir)[1]['wall_seconds']) == record['wall_seconds']

  # A finished run made with another training config is not passed off as this one's.
  result = _sweep(args + ['--config.train.seed=1'])
  assert result.returncode == 2, result.stdout + result.stderr[-3000:]
  assert 'batch 256: ' in result.stderr and 'train.seed (0 -> 1)' in result.stderr
  assert 'skipped' not in result.stdout


@pytest.mark.slow
def test_a_tuned_sweep_trains_each_trial_to_the_target_and_summarises_steps_to_result(
    tmp_path, fmnist_data_dir):
  sweep_dir = tmp_path / 'sweep'
  lrs = (0.1, 0.3)
  args = [a for a in _tiny_sweep_args(sweep_dir, fmnist_data_dir)
          if a not in ('--config.optimizer.base_lr', str(BASE_LR))]
  args.append(f'--tune={LR}={",".join(map(str, lrs))}')
  result = _sweep(args)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert 'batch 256 trial 1 (optimizer.base_lr=0.3) (2/4)' in result.stdout

  with open(sweep_dir / 'summary.json', encoding='utf-8') as f:
    summary = json.load(f)
  points = []
  for batch_summary in summary['batches']:
    batch = batch_summary['global_batch_size']
    first_at_target, cap = [], None
    for index, lr in enumerate(lrs):
      trial_dir = sweep_dir / f'batch_{batch:05d}' / f'trial_{index:03d}'
      with open(trial_dir / 'config.json', encoding='utf-8') as f:
        run_config = json.load(f)
      assert run_config['optimizer']['base_lr'] == lr
      assert run_config['eval']['target_accuracy'] == TARGET
      # Each trial runs at most to the best steps to the target before it at its batch.
      assert run_config['train']['stop_at_step'] == cap
      evals = _evals(trial_dir)
      reached = [step for step, accuracy in evals if accuracy >= TARGET]
      if reached:  # the trial stopped at its first evaluation at the target
        assert evals[-1][0] == reached[0]
        first_at_target.append(reached[0])
      elif cap is not None:
        assert evals[-1][0] == cap and Workdir(trial_dir).checkpoint_steps()[-1] == cap
      cap = min(first_at_target, default=None)
    assert batch_summary['steps_to_target'] == cap
    assert sum(batch_summary['outcomes'].values()) == len(lrs)
    assert batch_summary['steps_per_second'] > 0
    if cap is not None and not batch_summary['steps_to_target_upper_bound']:
      points.append((batch, cap))
      assert batch_summary['seconds_to_target'] == pytest.approx(
          cap / batch_summary['steps_per_second'])
  assert [b['global_batch_size'] for b in summary['batches']] == [256, 512]
  # The measured points' exact model, or why there is none (first-evaluation steps only bound).
  if len(points) >= 2:
    fitted = critical_batch.fit(points)
    assert summary['fit']['reason'] == fitted.reason
    assert summary['fit']['b_crit'] == (None if fitted.b_crit is None else
                                        pytest.approx(fitted.b_crit))
  else:
    assert summary['fit']['b_crit'] is None
  assert 'Steps to result:' in (sweep_dir / 'summary.md').read_text()

  result = _sweep(args)  # every trial finished: nothing trains again
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert result.stdout.count('finished earlier, skipped') == 4, result.stdout


@pytest.mark.slow
def test_a_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path, fmnist_data_dir):
  sweep_dir = tmp_path / 'sweep'
  args = _tiny_sweep_args(sweep_dir, fmnist_data_dir) + ['--config.optimizer.base_lr=1e30']
  result = _sweep(args)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert result.stdout.count('diverged after') == 2, result.stdout
  rows = _summary_rows(sweep_dir)
  assert [(r['batch'], r['status'], r['final_eval_accuracy']) for r in rows] == [
      ('256', 'diverged', ''), ('512', 'diverged', '')]
  assert 'non-finite' in (sweep_dir / 'summary.md').read_text()

  result = _sweep(args)  # a divergence is a result: not tried again
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert result.stdout.count('diverged earlier, skipped') == 2, result.stdout


@pytest.mark.slow
def test_a_failing_run_stops_the_sweep_with_its_exit_code_and_log(tmp_path, fmnist_data_dir):
  sweep_dir = tmp_path / 'sweep'
  result = _sweep(_tiny_sweep_args(sweep_dir, fmnist_data_dir, batches='260'))
  assert result.returncode == 2, result.stdout + result.stderr[-3000:]
  error = result.stderr.strip().splitlines()[-1]
  assert error.startswith('lbtrain: error: the run at batch 260 failed (exit code 2)')
  assert 'not divisible by the 8 devices' in error
  assert error.endswith(str(sweep_dir / 'batch_00260' / 'train.log'))
  assert not (sweep_dir / 'summary.csv').exists()


@pytest.mark.slow
@pytest.mark.parametrize('args, fragment', [
    (['--batch_sizes=256,abc'], "'abc' is not a positive whole number"),
    (['--batch_sizes=256,0'], "'0' is not a positive whole number"),
    (['--batch_sizes=256,256'], 'more than once'),
    (['--batch_sizes=256', '--config.train.global_batch_size=512'], 'give the batches with'),
    (['--batch_sizes=256', '--target_accuracy=90'], '--target_accuracy'),
    (['--batch_sizes=256', '--config.train.no_such_field=1'], 'no_such_field'),
    (['--batch_sizes=256', '--config=configs/does_not_exist.py'], 'does_not_exist.py'),
    (['--batch_sizes=256', '--config.schedule.warmup_epochs=100'], 'batch 256: warmup'),
    (['--batch_sizes=256', '--tune=optimizer.base_lr=0.1,0.3'], '--tune needs --target_accuracy'),
    (['--batch_sizes=256', '--target_accuracy=0.5', '--tune=optimizer.base_lr=log:0:1:3'],
     '--tune=optimizer.base_lr=log:0:1:3: a log range needs LOW > 0'),
    (['--batch_sizes=256', '--target_accuracy=0.5', '--tune=optimizer.lr=0.1'],
     'no field optimizer.lr'),
    (['--batch_sizes=256', '--target_accuracy=0.5', '--tune=optimizer.base_lr=0.1,0.3',
      '--config.optimizer.base_lr=0.2'], '--config.optimizer.base_lr and --tune both set'),
    (['--batch_sizes=256', '--target_accuracy=0.5', '--tune=optimizer.base_lr=0.1,0.3',
      '--config.eval.target_accuracy=0.2'], 'from --target_accuracy'),
    (['--batch_sizes=256', '--target_accuracy=0.5', '--tune=schedule.warmup_epochs=0,100'],
     'batch 256 trial 1 (schedule.warmup_epochs=100): warmup'),
])
def test_bad_flags_are_one_line_and_exit_2(args, fragment, tmp_path, fmnist_data_dir):
  config = [a for a in args if a.startswith('--config=')] or ['--config=configs/quickstart.py']
  others = [a for a in args if not a.startswith('--config=')]
  result = _sweep([*config, f'--workdir={tmp_path / "sweep"}',
                   f'--config.data.data_dir={fmnist_data_dir}', *others], timeout=120)
  assert result.returncode == 2, result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith('lbtrain: error:')]
  assert len(errors) == 1 and fragment in errors[0], result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'sweep').exists()


@pytest.mark.slow
def test_a_sweep_refuses_a_folder_or_run_that_another_process_trains(tmp_path, fmnist_data_dir):
  sweep_dir = tmp_path / 'sweep'
  args = _tiny_sweep_args(sweep_dir, fmnist_data_dir, batches='512,256')
  for held, fragment in [(sweep_dir, f'workdir {sweep_dir} is in use'),
                         (sweep_dir / 'batch_00256', 'batch 256: workdir')]:
    lock = RunLock(Workdir(str(held)))
    lock.acquire()  # as another sweep, or lbtrain on one run, would hold it
    try:
      result = _sweep(args, timeout=120)
    finally:
      lock.release()
    assert result.returncode == 2, result.stdout + result.stderr[-3000:]
    errors = [l for l in result.stderr.splitlines() if l.startswith('lbtrain: error:')]
    assert len(errors) == 1 and fragment in errors[0], result.stderr[-3000:]
    assert f'pid {os.getpid()} since' in errors[0]
    assert not (held / 'checkpoints').exists() and not (held / 'train.log').exists()
