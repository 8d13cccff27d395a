"""Exact resume and failure safety, shown with real processes: SIGKILL, SIGTERM, corruption."""

import json
import os
import shutil
import signal
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

import lbtrain_process
from lbtrain import checkpoint
from lbtrain.errors import UserError
from lbtrain.workdir import Workdir

pytestmark = pytest.mark.slow

TOTAL_STEPS = 24


def _args(workdir, data_dir, *extra):
  """What is checked is how runs continue one another, not what they learn: a small training
  split and a small eval split (lbtrain_process.small_splits)."""
  return lbtrain_process.quickstart_args(workdir, data_dir, TOTAL_STEPS,
                                         *lbtrain_process.small_splits(TOTAL_STEPS),
                                         '--config.eval.every_epochs=1.0', *extra)


def _params(workdir, step):
  path = os.path.join(Workdir(workdir).checkpoint_dir, str(step), 'default')
  return jax.tree.leaves(ocp.StandardCheckpointer().restore(path)['params'])


def _checkpoint_steps(workdir):
  return sorted(int(name) for name in os.listdir(os.path.join(workdir, 'checkpoints'))
                if name.isdigit())


@pytest.fixture(scope='module')
def uninterrupted(fmnist_data_dir, run_root):
  """The reference run, trained once per pytest run: xdist may give this module's tests to
  both workers, and the first to need it trains it while the other waits. Tests only read it
  (or copy it)."""
  workdir = os.path.join(run_root, 'resume_uninterrupted')
  with lbtrain_process.exclusive(f'{workdir}.lock'):
    if not os.path.exists(f'{workdir}.done'):
      shutil.rmtree(workdir, ignore_errors=True)  # an attempt that failed
      result = lbtrain_process.run(_args(workdir, fmnist_data_dir))
      assert result.returncode == 0, result.stderr[-3000:]
      with open(f'{workdir}.done', 'w', encoding='utf-8'):
        pass
  return workdir


def _start_and_signal(args, workdir, log, target, sig):
  """Starts `args`, sends `sig` once `target` is logged; returns (step reached, seconds to
  exit, exit code)."""
  process = lbtrain_process.start(args, log)
  try:
    reached = lbtrain_process.wait_for_step(process, workdir, target)
    sent = time.monotonic()
    process.send_signal(sig)
    code = process.wait(timeout=120)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  return reached, round(time.monotonic() - sent, 2), code


def test_killed_signalled_and_stopped_runs_end_bitwise_equal(uninterrupted, fmnist_data_dir,
                                                              tmp_path):
  """One workdir, the same command each time: SIGKILL at step 3; train.stop_at_step=7 ends an
  attempt there (evaluated and saved), and again at once has nothing to do; without the stop
  it goes on, SIGTERM at step 9, SIGKILL at step 15, and the last attempt ends bitwise equal to
  the uninterrupted run."""
  workdir = str(tmp_path / 'run')
  args = _args(workdir, fmnist_data_dir)
  report = [('SIGKILL', *_start_and_signal(args, workdir, tmp_path / 'log_3.txt', 3,
                                           signal.SIGKILL))]
  assert report[-1][-1] == -signal.SIGKILL

  # train.stop_at_step ends the attempt (evaluated and saved there) on the same schedule.
  stop = '--config.train.stop_at_step=7'
  stopped = lbtrain_process.run(_args(workdir, fmnist_data_dir, stop))
  assert stopped.returncode == 0, stopped.stderr[-3000:]
  assert _checkpoint_steps(workdir)[-1] == 7
  records = Workdir(workdir).metric_records()
  assert [r['step'] for r in records if 'eval/accuracy' in r] == [7]
  again = lbtrain_process.run(_args(workdir, fmnist_data_dir, stop))
  assert again.returncode == 0 and 'training already complete (7 steps of 24' in again.stderr

  for target, sig in ((9, signal.SIGTERM), (15, signal.SIGKILL)):
    log = tmp_path / f'log_{target}.txt'
    report.append((sig.name, *_start_and_signal(args, workdir, log, target, sig)))
    code = report[-1][-1]
    if sig == signal.SIGTERM:
      assert code == 0, log.read_text()[-3000:]
      # The stop is lifted by the same command without it.
      assert 'train.stop_at_step: 7 -> None' in log.read_text()
      # The step it stopped at was checkpointed and is the last one logged.
      assert _checkpoint_steps(workdir)[-1] == lbtrain_process.logged_steps(workdir)[-1]
    else:
      assert code == -signal.SIGKILL
  print('signals (signal, step reached, seconds to exit, exit code):', report)

  result = lbtrain_process.run(args)
  assert result.returncode == 0, result.stderr[-3000:]
  for expected, resumed in zip(_params(uninterrupted, TOTAL_STEPS),
                               _params(workdir, TOTAL_STEPS), strict=True):
    np.testing.assert_array_equal(expected, resumed)
  assert lbtrain_process.logged_steps(workdir) == list(range(1, TOTAL_STEPS + 1))


def test_a_batch_schedule_killed_mid_segment_resumes_bitwise(fmnist_data_dir, tmp_path):
  """Batch 256 for 6 steps, then 512 for the rest of the epoch (9 steps): killed after step
  10, the run resumes from its last checkpoint (8, or 12 if it got that far), inside the second
  segment, and ends bitwise equal to the same schedule uninterrupted; its records carry each
  step's batch."""
  schedule = ['--config.train.batch_schedule.batch_sizes=(512,)',
              '--config.train.batch_schedule.boundaries_steps=(6,)']
  reference, workdir = str(tmp_path / 'reference'), str(tmp_path / 'run')
  result = lbtrain_process.run(_args(reference, fmnist_data_dir, *schedule))
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'train step compiled for 28 px images at global batch 512' in result.stderr
  args = _args(workdir, fmnist_data_dir, *schedule)
  reached, _, code = _start_and_signal(args, workdir, tmp_path / 'log.txt', 10, signal.SIGKILL)
  assert code == -signal.SIGKILL
  latest = _checkpoint_steps(workdir)[-1]
  assert 6 < latest < 15, (reached, latest)
  result = lbtrain_process.run(args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'resumed from the checkpoint at step {latest}' in result.stderr
  for expected, resumed in zip(_params(reference, 15), _params(workdir, 15), strict=True):
    np.testing.assert_array_equal(expected, resumed)
  records = [r for r in Workdir(workdir).metric_records() if 'train/loss' in r]
  assert [(r['step'], r['train/global_batch_size']) for r in records] == [
      (step, 256 if step <= 6 else 512) for step in range(1, 16)]
  assert records[-1]['train/epoch'] == 1.0  # 6 x 256 + 9 x 512 = the 6,144 examples


def test_an_adaptive_batch_killed_after_a_decision_resumes_bitwise(fmnist_data_dir, tmp_path):
  """Batch 256 until the first decision (step 3), then the allowed batch (512 or 1024) nearest
  the measured B_simple, decided again every 3 steps: killed after step 9, the run resumes
  from its last checkpoint (8, or 12 if it got that far), makes the decisions after it again
  from the restored noise-scale EMAs, and ends bitwise equal to the run uninterrupted, with
  the same decisions, batches and examples."""
  adaptive = ['--config.parallel.strategy=pmap', '--config.model.bn_group_size=32',
              '--config.train.noise_scale_every=1',
              '--config.train.adaptive_batch.min_batch_size=512',
              '--config.train.adaptive_batch.max_batch_size=1024',
              '--config.train.adaptive_batch.every_steps=3']
  reference, workdir = str(tmp_path / 'reference'), str(tmp_path / 'run')
  result = lbtrain_process.run(_args(reference, fmnist_data_dir, *adaptive))
  assert result.returncode == 0, result.stderr[-3000:]
  expected = Workdir(reference).metric_records()
  decisions = [(r['step'], r['train/batch_decision']) for r in expected
               if 'train/batch_decision' in r]
  assert decisions[0] in ((3, 512), (3, 1024)) and len(decisions) >= 3, decisions
  end = expected[-1]['step']
  args = _args(workdir, fmnist_data_dir, *adaptive)
  reached, _, code = _start_and_signal(args, workdir, tmp_path / 'log.txt', 9, signal.SIGKILL)
  assert code == -signal.SIGKILL
  latest = _checkpoint_steps(workdir)[-1]
  assert 3 < latest < end, (reached, latest)
  result = lbtrain_process.run(args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'resumed from the checkpoint at step {latest}' in result.stderr
  for want, got in zip(_params(reference, end), _params(workdir, end), strict=True):
    np.testing.assert_array_equal(want, got)
  records = Workdir(workdir).metric_records()
  assert [(r['step'], r['train/batch_decision']) for r in records
          if 'train/batch_decision' in r] == decisions
  batches = [(r['step'], r['train/global_batch_size']) for r in records if 'train/loss' in r]
  assert batches == [(r['step'], r['train/global_batch_size']) for r in expected
                     if 'train/loss' in r]
  assert batches[:3] == [(1, 256), (2, 256), (3, 256)] and batches[3][1] == decisions[0][1]
  # One epoch of the 6,144 examples, each segment rounded to whole steps.
  examples = sum(batch for _, batch in batches)
  assert abs(examples - lbtrain_process.SMALL_TRAIN_EXAMPLES) <= max(b for _, b in batches) / 2
  last = [r for r in records if 'train/loss' in r][-1]
  assert last['train/epoch'] == pytest.approx(examples / lbtrain_process.SMALL_TRAIN_EXAMPLES)
  print('adaptive batch: decisions (step, batch)', decisions, 'resumed from', latest)


def _copy(workdir, tmp_path):
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  return copy


def test_a_resume_on_4_devices_past_an_interrupted_save_with_a_new_log_interval(
    uninterrupted, fmnist_data_dir, tmp_path):
  """Three things a resumed run may meet at once: a checkpoint written on 8 devices, read on 4
  (and trained on to nearly the same parameters: the sums run in another order); orbax's
  half-written folder of a save that was killed, skipped and named; a changed log interval,
  allowed and logged."""
  workdir = _copy(uninterrupted, tmp_path)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', str(TOTAL_STEPS)))
  # What a process killed mid-save leaves: orbax's temporary folder, half written.
  partial = os.path.join(workdir, 'checkpoints', f'{TOTAL_STEPS}.orbax-checkpoint-tmp-1234')
  shutil.copytree(os.path.join(workdir, 'checkpoints', str(TOTAL_STEPS - 4)), partial)
  result = lbtrain_process.run(_args(workdir, fmnist_data_dir,
                                     '--config.train.log_every_steps=2'), devices=4)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'skipping incomplete checkpoint {os.path.basename(partial)}' in result.stderr
  assert f'resumed from the checkpoint at step {TOTAL_STEPS - 4}' in result.stderr
  assert 'resuming with a changed field: train.log_every_steps: 1 -> 2' in result.stderr
  assert _checkpoint_steps(workdir)[-1] == TOTAL_STEPS
  assert lbtrain_process.logged_steps(workdir) == list(range(1, TOTAL_STEPS - 3)) + [22, 24]
  for expected, resumed in zip(_params(uninterrupted, TOTAL_STEPS),
                               _params(workdir, TOTAL_STEPS), strict=True):
    np.testing.assert_allclose(expected, resumed, rtol=1e-4, atol=1e-5)


def test_a_checkpoint_moves_between_layouts_and_device_counts(uninterrupted, fmnist_data_dir,
                                                              tmp_path):
  """parallel.sharding: the uninterrupted run's replicated checkpoint resumes under 'update' on
  8 devices; that one's under 'replicated' on 4; that one's under 'update' on 8 again. Each
  resume says how its checkpoint was laid out and how it is now, and the last ends near the
  uninterrupted run (4 devices sum in another order)."""
  workdir = _copy(uninterrupted, tmp_path)
  for step in (TOTAL_STEPS - 4, TOTAL_STEPS):
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step)))
  saved_as, previous, start = "'replicated' on 8 devices", 'replicated', TOTAL_STEPS - 8
  for devices, mode, stop in ((8, 'update', TOTAL_STEPS - 4), (4, 'replicated', TOTAL_STEPS - 2),
                              (8, 'update', TOTAL_STEPS)):
    result = lbtrain_process.run(_args(workdir, fmnist_data_dir,
                                       f'--config.parallel.sharding={mode}',
                                       f'--config.train.stop_at_step={stop}'), devices=devices)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f'resumed from the checkpoint at step {start} (saved as {saved_as}; now {mode!r} '
            f'on {devices} devices)') in result.stderr, result.stderr[-3000:]
    assert (f'resuming with a changed field: parallel.sharding: {previous!r} -> {mode!r}'
            in result.stderr)
    saved_as, previous, start = f'{mode!r} on {devices} devices', mode, stop
  assert _checkpoint_steps(workdir)[-1] == TOTAL_STEPS
  for expected, resumed in zip(_params(uninterrupted, TOTAL_STEPS),
                               _params(workdir, TOTAL_STEPS), strict=True):
    np.testing.assert_allclose(expected, resumed, rtol=1e-4, atol=1e-5)


def _assert_refused(result, *fragments):
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith('lbtrain: error:')]
  assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]


def _snapshot(workdir):
  """Every file's size, but the lock's (it only says who opened the workdir last) and the
  compilation cache's (the step is compiled, and cached, before the checkpoint is read)."""
  skip = Workdir(workdir)
  return {os.path.join(root, name): os.path.getsize(os.path.join(root, name))
          for root, _, names in os.walk(workdir) for name in names
          if os.path.join(root, name) != skip.lock_file
          and not root.startswith(skip.compilation_cache_dir)}


_REFUSED_CHANGES = [
    ({'optimizer.base_lr': 0.2}, ['optimizer.base_lr', '0.1', '0.2']),
    ({'model.name': 'resnet20'}, ['model.name', 'resnet20']),
    ({'train.global_batch_size': 512, 'train.seed': 3}, ['train.global_batch_size', 'train.seed']),
]


@pytest.mark.parametrize('changes, fragments', _REFUSED_CHANGES)
def test_resuming_with_a_different_recipe_is_refused(uninterrupted, changes, fragments):
  """Each change alone, checked as every resume checks it (`Workdir.open`); what the command
  line then does is the next test's."""
  with open(Workdir(uninterrupted).config_file, encoding='utf-8') as f:
    config = ml_collections.ConfigDict(json.load(f))
  for field, value in changes.items():
    section, name = field.split('.')
    config[section][name] = value
  with pytest.raises(UserError, match='different training config') as error:
    Workdir(uninterrupted).resume_changes(config)
  for fragment in fragments:
    assert fragment in str(error.value), error.value


def test_a_refused_resume_is_one_line_exit_2_and_writes_nothing(uninterrupted, fmnist_data_dir,
                                                                 tmp_path):
  """The command line with every change above at once: one error line naming them all."""
  workdir = _copy(uninterrupted, tmp_path)
  before = _snapshot(workdir)
  overrides = [f'--config.{field}={value}'
               for changes, _ in _REFUSED_CHANGES for field, value in changes.items()]
  _assert_refused(lbtrain_process.run(_args(workdir, fmnist_data_dir, *overrides)),
                  *[fragment for _, fragments in _REFUSED_CHANGES for fragment in fragments])
  assert _snapshot(workdir) == before


@pytest.mark.parametrize('dataset', ['fashion_mnist', 'imagenet2012'])
def test_a_workdir_with_the_retired_tfrecord_fields(dataset, tmp_path):
  """Runs written before the ArrayRecord pipeline saved four data fields lbtrain no longer has:
  they resume, unless on ImageNet, whose order changed."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from lbtrain.errors import UserError  # pylint: disable=g-import-not-at-top
  config = base.get_config()
  config.data.dataset = dataset
  workdir = Workdir(str(tmp_path / 'run'))
  workdir.write_config(config)
  with open(workdir.config_file, encoding='utf-8') as f:
    saved = json.load(f)
  saved['data'].update(shuffle_buffer=10_000, autotune=False, deterministic=True, cache=False)
  with open(workdir.config_file, 'w', encoding='utf-8') as f:
    json.dump(saved, f)
  if dataset == 'imagenet2012':
    with pytest.raises(UserError, match='TFRecord ImageNet pipeline.*use a new workdir'):
      workdir.resume_changes(config)
  else:
    assert 'data.shuffle_buffer: 10000 -> None' in workdir.resume_changes(config)
    config.train.seed = 5  # a real change is still refused
    with pytest.raises(UserError, match='train.seed'):
      workdir.resume_changes(config)


def _damage(checkpoint, how):
  """What a checkpoint meets after it was written: a data file cut short (a crash of the
  storage server), a file gone (a half-synced disk), metadata overwritten (bit rot)."""
  data = os.path.join(checkpoint, 'default', 'ocdbt.process_0', 'd')
  biggest = max((os.path.join(data, name) for name in os.listdir(data)), key=os.path.getsize)
  if how == 'truncated':
    with open(biggest, 'r+b') as f:
      f.truncate(100)
  elif how == 'missing':
    os.remove(biggest)
  else:
    with open(os.path.join(checkpoint, 'default', '_METADATA'), 'w', encoding='utf-8') as f:
      f.write('{"tree_metadata": {"params": ')


def test_a_damaged_checkpoint_is_set_aside_and_the_run_ends_bitwise_equal(
    uninterrupted, fmnist_data_dir, tmp_path):
  """A run stopped at step 20 whose checkpoint there was then damaged, in three ways (three
  runs at once): each moves it aside in one line and resumes from step 16, which repeats steps
  17..20 exactly, and ends bitwise equal to the uninterrupted run."""
  damages = ['truncated', 'missing', 'metadata']
  workdirs = []
  for how in damages:
    workdir = _copy(uninterrupted, tmp_path / how)
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(TOTAL_STEPS)))
    _damage(os.path.join(workdir, 'checkpoints', str(TOTAL_STEPS - 4)), how)
    workdirs.append(workdir)
  results = lbtrain_process.run_all([_args(workdir, fmnist_data_dir) for workdir in workdirs])
  for how, workdir, result in zip(damages, workdirs, results):
    assert result.returncode == 0, (how, result.stderr[-3000:])
    damaged = os.path.join(workdir, 'checkpoints', str(TOTAL_STEPS - 4))
    lines = [line for line in result.stderr.splitlines() if 'is damaged' in line]
    assert len(lines) == 1 and f'checkpoint {damaged} is damaged (' in lines[0], (how, lines)
    assert f'resuming from step {TOTAL_STEPS - 8}' in lines[0]
    assert 'pybind11' not in result.stderr and 'Traceback' not in result.stderr
    assert f'resumed from the checkpoint at step {TOTAL_STEPS - 8}' in result.stderr
    aside = [name for name in os.listdir(os.path.join(workdir, 'checkpoints'))
             if name.startswith(f'damaged-{TOTAL_STEPS - 4}-')]
    assert len(aside) == 1 and aside[0] in lines[0]  # renamed, not deleted
    assert _checkpoint_steps(workdir)[-1] == TOTAL_STEPS
    for expected, resumed in zip(_params(uninterrupted, TOTAL_STEPS),
                                 _params(workdir, TOTAL_STEPS), strict=True):
      np.testing.assert_array_equal(expected, resumed)
    assert lbtrain_process.logged_steps(workdir) == list(range(1, TOTAL_STEPS + 1))


def test_a_checkpoint_of_another_model_is_refused_not_set_aside(uninterrupted, tmp_path):
  """Arrays of another shape (the model's code changed): every checkpoint of the workdir is
  like it, so none is moved and the error names the array."""
  directory = Workdir(_copy(uninterrupted, tmp_path)).checkpoint_dir
  metadata = ocp.StandardCheckpointer().metadata(os.path.join(directory, str(TOTAL_STEPS),
                                                              'default'))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        getattr(metadata, 'item_metadata', metadata))
  target['params']['fc']['kernel'] = jax.ShapeDtypeStruct((7, 7), np.float32, sharding=device)
  before = sorted(os.listdir(directory))
  checkpoints = checkpoint.Checkpointer(directory, keep=3)
  try:
    with pytest.raises(UserError, match=r"holds another model's arrays \(params\.fc\.kernel: "
                       r"\(\d+, \d+\) float32 saved, \(7, 7\) float32 in this model\)"):
      checkpoints.restore_latest(target, set_damaged_aside=True)
  finally:
    checkpoints.close()
  assert sorted(os.listdir(directory)) == before


def test_nonfinite_policies_stop_without_saving_nan_or_skip_then_give_up(
    fmnist_data_dir, tmp_path):
  """The two non-finite policies, each a run of its own (both at once): 'stop' names the step
  and saves no NaN; 'skip' drops non-finite updates, counts them, and gives up after a few."""
  diverging, skipping = str(tmp_path / 'nan'), str(tmp_path / 'skip')
  stop, skip = lbtrain_process.run_all([
      _args(diverging, fmnist_data_dir, '--config.optimizer.base_lr=1e30'),
      _args(skipping, fmnist_data_dir, '--config.optimizer.base_lr=1e30',
            '--config.train.on_nonfinite=skip', '--config.train.max_consecutive_nonfinite=3')])

  assert stop.returncode == 1, stop.stderr[-3000:]
  stopped = [l for l in stop.stderr.splitlines() if l.startswith('lbtrain: stopped:')]
  assert len(stopped) == 1 and 'non-finite train/' in stopped[0] and 'at step' in stopped[0]
  for step in (_checkpoint_steps(diverging) if os.path.isdir(
      os.path.join(diverging, 'checkpoints')) else []):
    assert all(np.isfinite(leaf).all() for leaf in _params(diverging, step))

  assert skip.returncode == 1, skip.stderr[-3000:]
  assert '3 consecutive non-finite steps' in skip.stderr
  with open(os.path.join(skipping, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  assert records[-1]['train/skipped_steps'] >= 3
