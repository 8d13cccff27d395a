"""scripts/device_check.py: its dry run, in a Python that looks like the device machine's.

PYTHONPATH=tests/device_machine_python makes every top-level module outside jax, flax, optax,
orbax-checkpoint, absl-py, chex, numpy and their dependencies unimportable from site-packages
(tensorflow, tensorflow_datasets, ml_collections, tensorboardX among them), in the check's
child processes too; ml_collections and tensorboardX then come from the wheels in
.device_wheels/ (scripts/setup.sh downloads them), as they would on the device machine.
"""

import glob
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'scripts', 'device_check.py')
DEVICE_MACHINE_PYTHON = os.path.join(REPO, 'tests', 'device_machine_python')

_spec = importlib.util.spec_from_file_location('device_check', SCRIPT)
device_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(device_check)

REPORT_KEYS = {'check', 'date_utc', 'command', 'commit', 'model', 'config', 'dtype', 'budget_s',
               'elapsed_s', 'environment', 'wheels', 'settings', 'measurements',
               'process_problems'}


def _check(*args: str, device_machine: bool = True, xla_flags: str = '', hang_part: str = ''):
  """`hang_part`: that part's process blocks until killed (tests/device_machine_python)."""
  if not glob.glob(os.path.join(device_check.WHEEL_DIR, '*.whl')):
    pytest.fail(f'no wheels in {device_check.WHEEL_DIR}: run bash scripts/setup.sh')
  env = dict(os.environ, XLA_FLAGS=xla_flags)  # one CPU device, as the machine has one GPU
  if hang_part:
    assert device_machine, 'the hang is made by tests/device_machine_python'
    env['DEVICE_CHECK_HANG_PART'] = hang_part
  if device_machine:
    env['PYTHONPATH'] = DEVICE_MACHINE_PYTHON
  else:
    env.pop('PYTHONPATH', None)
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        env=env, cwd=REPO, timeout=400)


def _report(completed) -> dict:
  assert completed.returncode == 0, completed.stderr[-3000:]
  report = json.loads(completed.stdout)  # the whole of stdout is one JSON object
  assert set(report) == REPORT_KEYS
  return report


def _positive(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_the_device_plan_measures_what_the_issue_asks():
  names = [n for part in device_check._Plan(False).parts().values() for n in part]
  assert names == ['step_batch_128', 'step_batch_256', 'vit_s16_step_batch_256',
                   'image_size_160', 'image_size_192',
                   'image_size_224', 'loop_over_bare', 'accumulation', 'sharding',
                   'input_pipeline', 'xla_flags']


@pytest.mark.slow
def test_dry_run_without_tensorflow_or_installed_ml_collections():
  plan = device_check._Plan(True)
  report = _report(_check('--dry_run'))
  measurements = report['measurements']
  assert set(measurements) == {n for part in plan.parts().values() for n in part}
  assert report['process_problems'] == {}
  assert report['elapsed_s'] < report['budget_s']
  environment = report['environment']
  assert environment['backend'] == 'cpu' and environment['device_count'] == 1
  for module in ('ml_collections', 'tensorboardX'):  # imported from the wheels, not installed
    assert environment['modules'][module].startswith(device_check.WHEEL_DIR + os.sep), module

  for batch in plan.batches:
    step = measurements[f'step_batch_{batch}']
    assert step['status'] == 'measured', step
    assert step['per_device_batch'] == batch and step['image_size'] == plan.image_size
    for key in ('images_per_sec', 'seconds_per_step', 'compile_seconds',
                'flops_per_device_step', 'tflops_per_device'):
      assert _positive(step[key]), (key, step)
    assert step['images_per_sec'] == pytest.approx(batch / step['seconds_per_step'], rel=1e-2)
    assert step['peak_tflops_per_device'] is None and step['mfu'] is None  # no CPU peak
  main = measurements[f'step_batch_{plan.main_batch}']
  vit = measurements[f'vit_s16_step_batch_{plan.main_batch}']
  assert vit['status'] == 'measured', vit
  assert vit['config'] == 'vit_s16_i1k' and vit['per_device_batch'] == plan.main_batch
  for key in ('images_per_sec', 'compile_seconds', 'flops_per_device_step', 'tflops_per_device'):
    assert _positive(vit[key]), (key, vit)
  for size in plan.image_sizes:
    at_size = measurements[f'image_size_{size}']
    assert at_size['status'] == 'measured' and at_size['image_size'] == size
    assert _positive(at_size['images_per_sec'])
  assert measurements[f'image_size_{plan.image_size}']['images_per_sec'] == \
      main['images_per_sec']
  for size in plan.image_sizes:  # data.image_size shapes the step: FLOPs go with the pixels
    assert measurements[f'image_size_{size}']['flops_per_device_step'] == pytest.approx(
        main['flops_per_device_step'] * (size / plan.image_size)**2, rel=0.15)

  loop = measurements['loop_over_bare']
  assert loop['status'] == 'measured', loop
  assert len(loop['bare_ms_per_step']) == len(loop['loop_ms_per_step']) == plan.loop_repeats
  assert all(_positive(v) for v in loop['bare_ms_per_step'] + loop['loop_ms_per_step'])
  assert _positive(loop['ratio'])
  accumulation = measurements['accumulation']
  assert accumulation['status'] == 'measured', accumulation
  assert accumulation['k'] == plan.accum_steps
  assert accumulation['ratio'] == pytest.approx(
      accumulation['one_batch_ms_per_step'] / accumulation['k_micro_batches_ms_per_step'],
      rel=1e-2)

  pipeline = measurements['input_pipeline']
  assert pipeline['status'] == 'not measured' and pipeline['images_per_sec'] is None
  assert measurements['sharding']['status'] == 'not measured'  # one device
  assert 'TensorFlow is not importable' in pipeline['reason']

  flags = measurements['xla_flags']
  assert flags['status'] == 'measured', flags
  assert flags['flags'] == list(device_check._CANDIDATE_XLA_FLAGS)
  assert _positive(flags['images_per_sec_with_flags'])
  assert flags['images_per_sec_default'] == main['images_per_sec']
  assert flags['with_over_default'] == pytest.approx(
      flags['images_per_sec_with_flags'] / main['images_per_sec'], rel=1e-3)


@pytest.mark.slow
def test_input_pipeline_where_tensorflow_is_installed():
  pytest.importorskip('tensorflow')
  report = _report(_check('--dry_run', '--only=input_pipeline', device_machine=False))
  pipeline = report['measurements']['input_pipeline']
  assert pipeline['status'] == 'measured', pipeline
  assert _positive(pipeline['images_per_sec'])
  assert pipeline['threads'] == len(os.sched_getaffinity(0))
  assert set(report['measurements']) == {'input_pipeline'}


@pytest.mark.slow
def test_a_part_that_dies_is_recorded_and_the_others_still_run():
  # XLA aborts on an unknown flag when the backend starts: the device part dies at once.
  report = _report(_check('--dry_run', '--only=step_batch_8,input_pipeline',
                          xla_flags='--xla_no_such_flag=1'))
  step = report['measurements']['step_batch_8']
  assert step['status'] == 'error'
  assert step['error'] == 'not run: the device process exited with code 1'
  problem = report['process_problems']['device']
  assert any('xla_no_such_flag' in line for line in problem['log_tail'])
  assert report['measurements']['input_pipeline']['status'] == 'not measured'


@pytest.mark.slow
def test_a_part_past_the_budget_is_stopped_and_recorded():
  # The device part never ends by itself: only the deadline can stop it, on any machine.
  start = time.perf_counter()
  report = _report(_check('--dry_run', '--only=step_batch_8', '--budget_s=1.5',
                          hang_part='device'))
  assert time.perf_counter() - start < 30
  assert report['process_problems']['device']['problem'] == device_check._OUT_OF_TIME
  step = report['measurements']['step_batch_8']
  assert step == {'status': 'skipped', 'reason': 'the time budget ran out first'}


def test_a_failing_measurement_is_recorded_and_a_late_one_skipped(tmp_path):
  results = device_check._Results(str(tmp_path / 'results.json'))
  plan = device_check._Plan(True)

  def fails():
    raise ValueError('no such layer\nsecond line')

  results.run('fails', fails, time.time() + 60, plan)
  results.run('late', lambda: {'x': 1}, time.time(), plan)
  results.run('works', lambda: {'x': 1}, time.time() + 60, plan)
  written = json.loads((tmp_path / 'results.json').read_text())
  assert written['fails']['status'] == 'error'
  assert written['fails']['error'] == 'ValueError: no such layer'
  assert written['late'] == {'status': 'skipped', 'reason': 'the time budget ran out first'}
  assert written['works']['status'] == 'measured' and written['works']['x'] == 1


@pytest.mark.slow
@pytest.mark.parametrize('args, message', [
    (['--budget_s=0'], '--budget_s must be positive'),
    (['--only=step_batch_8,nonsense'], '--only: no measurement nonsense'),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
  completed = subprocess.run([sys.executable, SCRIPT, '--dry_run', *args], capture_output=True,
                             text=True, cwd=REPO, timeout=60)
  assert completed.returncode == 2
  assert completed.stderr.startswith('device_check: error: ') and message in completed.stderr
  assert completed.stderr.count('\n') == 1 and completed.stdout == ''
