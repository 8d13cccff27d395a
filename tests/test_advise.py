"""The advisor: its model's arithmetic on made-up measurements, and the command on real runs."""

import json
import os
import subprocess
import sys

import pytest

from configs import base
import lbtrain_process
from lbtrain.studies import advise
from lbtrain.studies import prediction
from lbtrain.errors import UserError
from lbtrain.workdir import Workdir

# B_crit = B_simple = 512; 60 steps at batch 1024 -> S_min = 60 / (1 + 512 / 1024) = 40 steps,
# E_min = 40 x 512 = 20,480 examples.
MEASURED = prediction.Measurement(global_batch_size=1024, steps_to_target=60, noise_scale=512.0)
THROUGHPUT = {256: 8.0, 1024: 2.5, 4096: 0.5}  # steps per second
RECIPES = {256: (0.1, 234), 1024: (0.4, 59), 4096: (1.6, 15)}  # (peak lr, warmup steps)


def test_the_model_predicts_steps_examples_time_and_efficiency_per_batch():
  advice = prediction.advise(MEASURED, THROUGHPUT, RECIPES, num_train_examples=60_000,
                         efficiency_floor=0.6)
  assert (advice.b_crit, advice.s_min, advice.e_min) == (512.0, 40.0, 20_480.0)
  by_batch = {c.global_batch_size: c for c in advice.candidates}
  # S(B) = 40 (1 + 512 / B); E = S B; T = S / steps per second; efficiency = E_min / E.
  small, measured, large = by_batch[256], by_batch[1024], by_batch[4096]
  assert (small.steps, small.examples, small.seconds) == (120.0, 30_720.0, 15.0)
  assert small.efficiency == pytest.approx(2 / 3) and small.epochs == pytest.approx(0.512)
  assert (measured.steps, measured.seconds) == (60.0, 24.0)  # the measured point itself
  assert (large.steps, large.seconds) == (45.0, 90.0)
  assert large.efficiency == pytest.approx(20_480 / (45 * 4096))
  assert (large.peak_lr, large.warmup_steps) == (1.6, 15)
  # The measured run warmed up 59 of its 60 steps: at 256, 234 config steps would outlast the
  # 120 predicted, so it gets the same share of them (118); elsewhere the config's warmup fits.
  assert advice.warmup_share == pytest.approx(59 / 60)
  assert (small.warmup_steps, small.fitted_warmup_steps) == (234, 118)
  assert measured.fitted_warmup_steps == 59 and large.fitted_warmup_steps == 15
  assert advice.fastest == 256 and advice.efficient == 256


def test_the_recommendations_follow_the_throughput_curve_and_the_floor():
  # A device that is 8 x faster per step at the large batch makes it the fastest.
  faster = {**THROUGHPUT, 4096: 4.0}
  advice = prediction.advise(MEASURED, faster, RECIPES, 60_000, efficiency_floor=0.3)
  assert advice.fastest == 4096  # 45 steps / 4 = 11.25 s against 15 s at 256
  assert advice.efficient == 1024  # efficiency 1/3 >= 0.3; 4096's is 0.11
  text = prediction.report(advice, target=0.9)
  recommend = [line for line in text.splitlines() if line.startswith('recommend')]
  assert recommend[0] == ('recommend (fastest): global batch 4096: predicted 11.2 s of training '
                          "to 0.9 (45 steps, peak lr 1.6, 15 warmup steps (the config's)).")
  assert recommend[1].startswith('recommend (efficient): global batch 1024: the largest that '
                                 'keeps >= 30 % of perfect scaling (33 %')
  assert 'This is a prediction from a model' in text
  assert '| 256 | 0.1 | 234 → 118 * | 120 | 30,720 | 0.51 | 67 % | 8 | 15.0 s |' in text
  # 234 warmup steps > 98 % of 120 predicted at 256; at 1024 and 4096 the warmup fits.
  assert 'more than 98 % of the predicted steps at batch 256 ' in text
  # The case: the recommended small batch comes with the warmup the prediction assumes.
  slow_large = prediction.advise(MEASURED, {**THROUGHPUT, 1024: 1.0}, RECIPES, 60_000, 0.6)
  recommend = [line for line in prediction.report(slow_large, 0.9).splitlines()
               if line.startswith('recommend')]
  for line in recommend:
    assert line.startswith('recommend (') and 'global batch 256:' in line
    assert line.endswith("120 steps, peak lr 0.1, 118 warmup steps, 98 % of the predicted steps "
                         "as in the measured run, not the config's 234: "
                         '--config.schedule.warmup_epochs=None '
                         '--config.schedule.warmup_steps=118).'), line
  unmeasured = prediction.advise(MEASURED, {256: None, 1024: None}, RECIPES, 60_000, 0.8)
  text = prediction.report(unmeasured, target=0.9)
  assert unmeasured.fastest is None and 'not measured' in text
  # No candidate keeps 80 %: B <= B_crit (1 / 0.8 - 1) = 128 would.
  assert unmeasured.efficient is None and 'B <= 128 would' in text


def test_the_suggested_schedule_grows_the_batch_with_the_measured_noise_scale():
  # Measured at batch 1024 of 60,000 examples: step 20 is epoch 0.34. With an 80 % floor a
  # batch B fits while B <= B_simple / 4.
  curve = ((5, -20.0), (10, 300.0), (20, 700.0), (30, 500.0), (40, 1100.0), (60, 2400.0))
  measured = prediction.Measurement(1024, 60, 2400.0, noise_scale_curve=curve[1:])
  advice = prediction.advise(measured, THROUGHPUT, RECIPES, 60_000, efficiency_floor=0.8)
  # 300 and 700 fit none (the smallest, 256); 1100 fits 256; 2400 fits 256 (not yet 1024);
  # the batch never shrinks again.
  assert advice.schedule == ((0.0, 256),)
  assert 'schedule: one batch, 256' in prediction.report(advice, 0.9)
  wide = prediction.advise(measured, {64: 1.0, 128: 1.0, 256: 1.0, 512: 1.0}, {
      64: (0.025, 0), 128: (0.05, 0), 256: (0.1, 0), 512: (0.2, 0), 1024: (0.4, 0)}, 60_000, 0.8)
  # 300 / 4 fits 64, 700 / 4 128 (step 20), 500 / 4 would shrink it, 1,100 / 4 fits 256 (step
  # 40), 2,400 / 4 512 (step 60).
  assert wide.schedule == ((0.0, 64), (0.34, 128), (0.68, 256), (1.02, 512))
  line = [l for l in prediction.report(wide, 0.9).splitlines() if l.startswith('schedule')][0]
  assert line.endswith("--config.train.global_batch_size=64 --config.train.batch_schedule."
                       "batch_sizes='(128,256,512,)' --config.train.batch_schedule."
                       "boundaries_epochs='(0.34,0.68,1.02,)'"), line
  assert prediction.advise(MEASURED, THROUGHPUT, RECIPES, 60_000, 0.8).schedule == ()


@pytest.mark.parametrize('changes, devices, expected', [
    # BN over the global batch under pmap couples the devices' gradients: per device instead.
    ({}, 2, ['--config.parallel.strategy=pmap', '--config.parallel.sharding=replicated',
             '--config.model.bn_group_size=512']),
    ({'parallel.strategy': 'pmap', 'model.bn_group_size': 64}, 2, []),  # already per device
    ({'parallel.strategy': 'pmap', 'model.bn_group_size': 1024}, 2,
     ['--config.model.bn_group_size=512']),  # groups spanning both devices
    ({'model.name': 'vit'}, 8, ['--config.parallel.strategy=pmap',
                                '--config.parallel.sharding=replicated']),  # no BN
    ({}, 1, ['--config.train.micro_batch_size=512', '--config.model.bn_group_size=512']),
    ({'train.micro_batch_size': 128, 'model.bn_group_size': 128}, 1, []),
])
def test_the_noise_scale_is_measured_from_small_batches_with_their_own_bn_statistics(
    changes, devices, expected):
  config = base.get_config()  # the CNN with BatchNorm, batch 1024, jit
  for path, value in changes.items():
    block, name = path.split('.')
    config[block][name] = value
  assert advise._noise_scale_settings(config, devices) == [  # pylint: disable=protected-access
      '--config.train.noise_scale_every=1', *expected]


def test_default_candidates_span_the_measured_critical_batch():
  assert prediction.default_batches(469, 1024, num_devices=2) == [32, 64, 128, 256, 512, 1024, 2048,
                                                              4096]
  # 100 / 8 = 12.5 -> from 8, 8 x 100 -> to 1024; the config's own batch always.
  assert prediction.default_batches(100, 1000, num_devices=8) == [8, 16, 32, 64, 128, 256, 512,
                                                              1000, 1024]
  # Only batches every device gets a share of: not 8 on 16 devices.
  assert prediction.default_batches(100, 1024, num_devices=16) == [16, 32, 64, 128, 256, 512, 1024]


def test_the_measurement_is_the_first_evaluation_at_the_target_and_the_noise_scale_then():
  records = [{'step': 10, 'train/noise_scale': 100.0}, {'step': 10, 'eval/accuracy': 0.5},
             {'step': 20, 'train/noise_scale': 300.0}, {'step': 20, 'eval/accuracy': 0.91},
             {'step': 30, 'train/noise_scale': 900.0}, {'step': 30, 'eval/accuracy': 0.95}]
  assert prediction.measurement_from_records(records, 512, 0.9) == prediction.Measurement(
      512, 20, 300.0, noise_scale_curve=((10, 100.0), (20, 300.0)))
  assert prediction.measurement_from_records(records, 512, 0.99) is None
  with pytest.raises(UserError, match='before any positive noise-scale estimate'):
    prediction.measurement_from_records(records[1:2] + [{'step': 10, 'eval/accuracy': 0.95}], 512, 0.9)
  rates = [{'step': s, 'train/steps_per_sec': v} for s, v in ((4, 1.0), (8, 5.0), (12, 6.0),
                                                              (16, 4.0))]
  assert prediction.throughput_from_records(rates) == 5.0  # the first record (warm-up) dropped


def _advise(*args):
  return subprocess.run([sys.executable, '-m', 'lbtrain.advise', *args],
                        cwd=lbtrain_process.ROOT, env=lbtrain_process.environment(),
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize('args, fragment', [
    ([], '--workdir is required'),
    (['--workdir=W'], '--target_accuracy=None'),
    (['--workdir=W', '--target_accuracy=0.9', '--efficiency=1.5'], '--efficiency=1.5'),
    (['--workdir=W', '--target_accuracy=0.9', '--batch_sizes=256,x'], 'positive whole numbers'),
    (['--workdir=W', '--target_accuracy=0.9', '--config.eval.target_accuracy=0.8'],
     'the advisor sets eval.target_accuracy'),
    (['--workdir=W', '--target_accuracy=0.9', '--batch_sizes=256,1000',
      '--config.model.bn_group_size=256'], 'batch 1000: model.bn_group_size=256'),
])
def test_bad_flags_are_one_line_and_exit_2(args, fragment, tmp_path, fmnist_data_dir):
  args = [a.replace('W', str(tmp_path / 'advice')) for a in args]
  result = _advise('--config=configs/quickstart.py', f'--config.data.data_dir={fmnist_data_dir}',
                   *args)
  assert result.returncode == 2, result.stderr[-3000:]
  assert result.stderr.count('\n') == 1 and fragment in result.stderr, result.stderr
  assert not os.path.exists(tmp_path / 'advice')  # nothing written before the error


@pytest.mark.slow
def test_the_advisor_measures_times_and_recommends(tmp_path, fmnist_data_dir):
  workdir = tmp_path / 'advice'
  args = ['--config=configs/quickstart.py', f'--workdir={workdir}', '--target_accuracy=0.6',
          '--batch_sizes=256,512', '--eval_every_epochs=0.02',
          f'--config.data.data_dir={fmnist_data_dir}', '--config.schedule.warmup_epochs=0',
          '--config.eval.global_batch_size=2000', '--config.data.eval_split=test[:2000]',
          f'--config.data.train_split=train[:{lbtrain_process.SMALL_TRAIN_EXAMPLES}]',
          *lbtrain_process.shared_cache()]
  result = _advise(*args)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  recommend = [line for line in result.stdout.splitlines() if line.startswith('recommend')]
  assert [line.split(':')[0] for line in recommend] == ['recommend (fastest)',
                                                        'recommend (efficient)']
  with open(workdir / 'advice.json', encoding='utf-8') as f:
    advice = json.load(f)
  measure = Workdir(str(workdir / 'measure'))
  evals = [(r['step'], r['eval/accuracy']) for r in measure.metric_records()
           if 'eval/accuracy' in r]
  assert evals[-1][1] >= 0.6 and all(accuracy < 0.6 for _, accuracy in evals[:-1])
  assert advice['measurement']['steps_to_target'] == evals[-1][0]
  assert advice['measurement']['noise_scale'] > 0
  assert [c['global_batch_size'] for c in advice['candidates']] == [256, 512]
  for candidate in advice['candidates']:
    assert candidate['steps_per_second'] > 0
    assert candidate['seconds'] == pytest.approx(candidate['steps'] / candidate['steps_per_second'])
    run = Workdir(str(workdir / 'throughput' / f'batch_{candidate["global_batch_size"]:05d}'))
    assert not any('eval/accuracy' in r for r in run.metric_records())  # timing only
  with open(measure.config_file, encoding='utf-8') as f:
    config = json.load(f)
  assert config['train']['noise_scale_every'] == 1 and config['parallel']['strategy'] == 'pmap'
  # The quickstart's CNN has BN over the global batch: measured with statistics per device.
  assert config['model']['bn_group_size'] == config['train']['global_batch_size'] // 8

  before = measure.metric_records()
  again = _advise(*args)  # everything measured: nothing trains again
  assert again.returncode == 0, again.stderr[-3000:]
  assert measure.metric_records() == before
  assert again.stdout.count('recommend') == 2
