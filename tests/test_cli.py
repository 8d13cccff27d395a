"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

import os
import subprocess
import sys

import pytest

import lbtrain_process


def _assert_usage_error(result, *fragments):
  assert result.returncode == 2, result.stderr
  error_lines = [l for l in result.stderr.splitlines() if l.startswith('lbtrain: error:')]
  assert len(error_lines) == 1, result.stderr
  assert 'Traceback' not in result.stderr
  for fragment in fragments:
    assert fragment in error_lines[0], error_lines[0]


_BAD_INPUTS = [  # (overrides, fragments of the error line)
    (['--config.train.global_batch_size=1001'], ['not divisible by the 8 devices', '1000']),
    (['--config.model.name=resnet9000'], ['resnet9000', 'resnet50']),
    (['--config.optimizer.name=adagrad'], ['adagrad']),
    (['--config.data.dataset=mnist_typo'], ['mnist_typo']),
    (['--config.train.no_such_field=1'], ['no_such_field']),
    (['--config.train.global_batch_size=big'], ['global_batch_size']),
    (['--config.data.source_dir=/nonexistent/fmnist', '--config.data.data_dir={tmp}/fresh'],
     ['/nonexistent/fmnist', 'dataset-fashion-mnist']),
    (['--config=configs/does_not_exist.py'], ['does_not_exist.py']),
    (['--config.train.num_epochs=0'], ['num_epochs must be positive']),
    (['--config.parallel.strategy=pjit'], ["parallel.strategy='pjit'", 'jit, pmap']),
    (['--config.train.micro_batch_size=half'], ["micro_batch_size='half'", "'auto'"]),
    (['--config.train.noise_scale_every=10'], ['noise_scale_every', 'parallel.strategy=pmap']),
    (['--config.data.eval_split=validation'], ["no split 'validation'", 'eval_split']),
    (['--config.data.data_dir=/proc/lbtrain_data'],
     ['data.data_dir /proc/lbtrain_data cannot be written', '--config.data.data_dir=']),
    (['--config.data.dataset=imagenet2012', '--config.data.data_dir={tmp}'],
     ['imagenet2012 is not prepared', 'tfds build imagenet2012']),
]


@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, fmnist_data_dir):
  """Each case is its own lbtrain process (a few run at once); every case that fails is
  reported."""
  arg_lists, workdirs = [], []
  for index, (overrides, _) in enumerate(_BAD_INPUTS):
    folder = tmp_path / f'case{index}'
    folder.mkdir()
    workdirs.append(folder / 'run')
    arg_lists.append(['--config=configs/quickstart.py', f'--workdir={workdirs[-1]}',
                      f'--config.data.data_dir={fmnist_data_dir}',
                      *[o.format(tmp=folder) for o in overrides]])
  failures = []
  for (overrides, fragments), workdir, result in zip(
      _BAD_INPUTS, workdirs, lbtrain_process.run_all(arg_lists), strict=True):
    try:
      _assert_usage_error(result, *fragments)
      assert not workdir.exists(), f'{workdir} was created'
    except AssertionError as error:
      failures.append(f'{overrides}: {error}')
  assert not failures, '\n\n'.join(failures)


@pytest.mark.slow
def test_a_workdir_inside_a_file_is_refused(tmp_path, fmnist_data_dir):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  result = lbtrain_process.run(['--config=configs/quickstart.py',
                                f'--workdir={blocker}/run',
                                f'--config.data.data_dir={fmnist_data_dir}'])
  _assert_usage_error(result, 'is not a folder')
  assert blocker.read_text() == 'not a folder'


@pytest.mark.slow
def test_overrides_reach_the_recipe(tmp_path, fmnist_data_dir):
  result = lbtrain_process.run(['--config=configs/quickstart.py', '--describe',
                                f'--config.data.data_dir={fmnist_data_dir}',
                                '--config.train.global_batch_size=512',
                                '--config.optimizer.base_lr=0.2'])
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert '512' in out and '64' in out  # global and per-device (8 devices) batch
  assert '0.4' in out  # 0.2 x 512 / 256, linear scaling


@pytest.mark.slow
def test_a_config_file_that_raises_is_one_line(tmp_path):
  config_file = tmp_path / 'broken.py'
  config_file.write_text('def get_config():\n  raise ValueError("boom in get_config")\n')
  workdir = tmp_path / 'run'
  result = lbtrain_process.run([f'--config={config_file}', f'--workdir={workdir}'])
  _assert_usage_error(result, 'broken.py', 'ValueError: boom in get_config')
  assert not workdir.exists()


@pytest.mark.slow
def test_describe_a_recipe_without_its_data(tmp_path):
  """Goyal et al. 2017 at 8k, checked against the paper on a machine without ImageNet."""
  result = lbtrain_process.run(['--config=configs/resnet50_8k.py', '--describe',
                                f'--config.data.data_dir={tmp_path}'])
  assert result.returncode == 0, result.stderr[-2000:]
  out = result.stdout
  assert '0.1 x 8192 / 256 = 3.2 (linear)' in out
  assert '156.3925 steps/epoch' in out and '14075 steps' in out
  for step in ('782', '4692', '9384', '12511'):  # warmup end; epochs 30, 60, 80
    assert f'\n{step:>10}' in out
  assert 'published split sizes' in result.stderr
  assert '25,557,032 parameters' in out


@pytest.mark.slow
def test_without_a_workdir_the_run_lives_in_runs_and_the_same_command_resumes(
    tmp_path, fmnist_data_dir):
  """From another folder, with the config given by its absolute path (as after pip install)."""
  args = [f'--config={lbtrain_process.ROOT}/configs/quickstart.py',
          f'--config.data.data_dir={fmnist_data_dir}', '--config.train.global_batch_size=256',
          *lbtrain_process.small_splits(2, warmup_steps=0, eval_split=None),
          '--config.eval.every_epochs=0']
  first = lbtrain_process.run(args, cwd=tmp_path, probe_backends=True)
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'the run lives in runs/quickstart' in first.stderr
  assert "Unable to initialize backend 'tpu'" not in first.stderr
  assert (tmp_path / 'runs' / 'quickstart' / 'checkpoints' / '2').is_dir()
  again = lbtrain_process.run(args, cwd=tmp_path)
  assert again.returncode == 0 and 'training already complete' in again.stderr


@pytest.mark.slow
def test_a_field_can_be_unset_from_the_command_line(fmnist_data_dir):
  """--config.x=None, so that an interval can move to the other unit."""
  describe = ['--config=configs/quickstart.py', '--describe']
  data = f'--config.data.data_dir={fmnist_data_dir}'
  result, both, unknown, scaling = lbtrain_process.run_all([
      [*describe, data, '--config.schedule.warmup_epochs=None', '--config.schedule.warmup_steps=7'],
      [*describe, '--config.schedule.warmup_steps=7'],
      [*describe, '--config.schedule.warmup_weeks=None'],
      # 'none' is a value of some string fields (optimizer.scaling), not a request to unset them.
      [*describe, data, '--config.optimizer.scaling=none', '--config.optimizer.base_lr=0.3'],
  ])
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'linear from 0 over 7 steps' in result.stdout
  _assert_usage_error(both, 'schedule.warmup_epochs=1.0 and schedule.warmup_steps=7 are both set',
                      '--config.schedule.warmup_epochs=None')
  _assert_usage_error(unknown, 'no field schedule.warmup_weeks')
  assert scaling.returncode == 0, scaling.stderr[-2000:]
  assert 'peak lr           0.3 = base_lr, whatever the batch (none)' in scaling.stdout


def _record_with_exception_from(filename):
  """A log record like asyncio's "Task exception was never retrieved", for an exception
  raised in code that lives in `filename`."""
  import logging  # pylint: disable=g-import-not-at-top
  namespace = {}
  exec(compile('def save():\n  raise ValueError("RESOURCE_EXHAUSTED: disk full")\n', filename,
               'exec'), namespace)
  try:
    namespace['save']()
  except ValueError as error:
    exc_info = (type(error), error, error.__traceback__)
  return logging.LogRecord('asyncio', logging.ERROR, '/usr/lib/python3.11/asyncio/base_events.py',
                           1771, 'Task exception was never retrieved', (), exc_info)


def test_the_log_filter_drops_tracebacks_of_abandoned_orbax_saves_only():
  from lbtrain import cli  # pylint: disable=g-import-not-at-top
  quiet = cli._QuietLibraries()  # pylint: disable=protected-access
  assert not quiet.filter(_record_with_exception_from('/venv/orbax/checkpoint/serialization.py'))
  assert quiet.filter(_record_with_exception_from('/work/lbtrain/train.py'))


_EXIT_PROGRAM = '''
import atexit, sys, threading
from lbtrain import cli
atexit.register(lambda: print('exit handler ran', flush=True))
if sys.argv[1] == 'thread':  # a thread that is no daemon, still working
  release = threading.Event()
  threading.Thread(target=release.wait).start()
cli.exit_finished()
print('returned: the normal exit follows', flush=True)
if sys.argv[1] == 'thread':
  release.set()
'''


@pytest.mark.slow
@pytest.mark.parametrize('threads', ['main_only', 'thread'])
def test_a_finished_process_runs_its_exit_handlers_and_exits_0(threads):
  """How a command that finished ends (cli.exit_finished): without the interpreter's teardown,
  but the exit handlers (jax.distributed's shutdown barrier among them) still run, and a live
  thread that is no daemon is waited for."""
  result = subprocess.run([sys.executable, '-c', _EXIT_PROGRAM, threads],
                          cwd=lbtrain_process.ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=lbtrain_process.ROOT))
  assert result.returncode == 0, result.stderr
  expected = ['exit handler ran'] if threads == 'main_only' else [
      'returned: the normal exit follows', 'exit handler ran']
  assert result.stdout.splitlines() == expected
