"""End to end: the real loop on real Fashion-MNIST over 8 emulated devices."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from lbtrain.workdir import Workdir
from lbtrain import train

REQUIRED_TRAIN = ('train/loss', 'train/accuracy', 'train/lr', 'train/grad_norm',
                  'train/examples_per_sec', 'train/examples_per_sec_per_device')
REQUIRED_EVAL = ('eval/loss', 'eval/accuracy', 'eval/num_examples')


def _records(workdir):
  with open(Workdir(workdir).metrics_file, encoding='utf-8') as f:
    return [json.loads(line) for line in f]


def _final_params(workdir, step):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = os.path.join(Workdir(workdir).checkpoint_dir, str(step), 'default')
  return ocp.StandardCheckpointer().restore(path)['params']


@pytest.mark.slow
def test_train_writes_metrics_checkpoints_and_loss_falls(tiny_config, tmp_path):
  workdir = str(tmp_path / 'run')
  final = train.train_and_evaluate(tiny_config, workdir)

  assert jax.device_count() == 8
  records = _records(workdir)
  train_records = [r for r in records if 'train/loss' in r]
  eval_records = [r for r in records if 'eval/loss' in r]
  assert [r['step'] for r in train_records] == [4, 8, 12]
  assert [r['step'] for r in eval_records] == [6, 12]
  for record in train_records:
    assert all(np.isfinite(record[name]) for name in REQUIRED_TRAIN)
  assert train_records[-1]['train/loss'] < train_records[0]['train/loss']
  for record in eval_records:  # tiny_config's eval split, test[:2500], each image once
    assert record['eval/num_examples'] == 2500
  assert final['eval/num_examples'] == 2500
  assert final['eval/accuracy'] > 0.3  # ten classes: chance is 0.1

  with open(os.path.join(workdir, 'config.json'), encoding='utf-8') as f:
    assert json.load(f)['train']['global_batch_size'] == 256
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  steps = sorted(int(p) for p in os.listdir(os.path.join(Workdir(workdir).checkpoint_dir))
                 if p.isdigit())
  assert steps == [6, 12]


@pytest.mark.slow
def test_rerun_resumes_from_the_latest_checkpoint_and_matches(tiny_config, tmp_path):
  """Losing the work after step 6 and re-running reaches the same parameters bitwise."""
  tiny_config.eval.every_epochs = 1.0  # eval only at the end: this test is about training
  uninterrupted = str(tmp_path / 'uninterrupted')
  train.train_and_evaluate(tiny_config, uninterrupted)

  interrupted = str(tmp_path / 'interrupted')
  train.train_and_evaluate(tiny_config, interrupted)
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(os.path.join(Workdir(interrupted).checkpoint_dir, '12'))
  train.train_and_evaluate(tiny_config, interrupted)

  expected = jax.tree.leaves(_final_params(uninterrupted, 12))
  resumed = jax.tree.leaves(_final_params(interrupted, 12))
  assert len(expected) == len(resumed)
  for a, b in zip(expected, resumed):
    np.testing.assert_array_equal(a, b)
  # Records written after step 6 by the lost work are replaced, not duplicated.
  assert [r['step'] for r in _records(interrupted) if 'train/loss' in r] == [4, 8, 12]


@pytest.mark.slow
def test_a_vit_with_mixup_and_cutmix_trains_and_resumes_exactly(tiny_config, tmp_path):
  """No BatchNorm (empty batch statistics in the checkpoint), mixing drawn from (seed, step),
  big_vision's Adam: a resumed run still reaches the uninterrupted run's parameters bitwise."""
  tiny_config.model.name = 'vit'
  tiny_config.model.vit.update(width=32, depth=2, num_heads=2, patch_size=7)
  tiny_config.train.update(mixup_alpha=0.2, cutmix_alpha=1.0)
  tiny_config.optimizer.update(name='adamw', base_lr=1e-3, weight_decay=1e-4,
                               weight_decay_form='schedule', mu_dtype='bfloat16',
                               grad_clip_norm=1.0)
  tiny_config.eval.every_epochs = 1.0  # eval only at the end
  uninterrupted, interrupted = str(tmp_path / 'uninterrupted'), str(tmp_path / 'interrupted')
  final = train.train_and_evaluate(tiny_config, uninterrupted)
  train_records = [r for r in _records(uninterrupted) if 'train/loss' in r]
  assert train_records[-1]['train/loss'] < train_records[0]['train/loss']
  assert final['eval/accuracy'] > 0.2  # ten classes: chance is 0.1

  train.train_and_evaluate(tiny_config, interrupted)
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(os.path.join(Workdir(interrupted).checkpoint_dir, '12'))
  train.train_and_evaluate(tiny_config, interrupted)
  for a, b in zip(jax.tree.leaves(_final_params(uninterrupted, 12)),
                  jax.tree.leaves(_final_params(interrupted, 12))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_noise_scale_and_time_split_reach_the_metrics(tiny_config, tmp_path):
  tiny_config.parallel.strategy = 'pmap'
  tiny_config.train.noise_scale_every = 2
  tiny_config.train.noise_scale_decay = 0.5
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config, workdir)
  train_records = [r for r in _records(workdir) if 'train/loss' in r]
  noise_scales = [r['train/noise_scale'] for r in train_records]
  # B_simple in examples: positive, finite, and moving as the EMAs take new estimates.
  assert all(np.isfinite(n) and n > 0 for n in noise_scales), noise_scales
  assert len(set(noise_scales)) == len(noise_scales)
  # At the last log, only the eval and save of step 6 came before; the run's last record
  # adds those of step 12.
  at_last_log, whole_run = train_records[-1], _records(workdir)[-1]
  assert whole_run['step'] == 12 and 'train/loss' not in whole_run
  for record in (at_last_log, whole_run):
    assert 0 < record['time/eval_seconds'] < record['time/loop_seconds']
    assert 0 < record['time/checkpoint_seconds'] < record['time/loop_seconds']
  assert whole_run['time/eval_seconds'] > at_last_log['time/eval_seconds']
  assert whole_run['time/checkpoint_seconds'] > at_last_log['time/checkpoint_seconds']


@pytest.mark.slow
def test_synthetic_data_trains_without_host_input(tmp_path):
  from configs import base  # pylint: disable=g-import-not-at-top
  config = base.get_config()
  config.data.dataset = 'synthetic'
  config.data.image_size = 16
  config.model.name = 'cnn'
  config.train.global_batch_size = 64
  config.train.num_epochs = 6 * 64 / 1_281_167  # ImageNet's size: 6 steps
  config.train.log_every_steps = 3
  config.schedule.decay = 'constant'
  config.eval.every_epochs = 0  # 50,000 synthetic eval images are not the point here
  workdir = str(tmp_path / 'run')
  assert train.train_and_evaluate(config, workdir) == {}
  records = _records(workdir)
  assert all('eval/loss' not in r for r in records)
  records = [r for r in records if 'train/loss' in r]
  assert [r['step'] for r in records] == [3, 6]
  # One fixed batch: the loss must fall as the model fits it.
  assert records[-1]['train/loss'] < records[0]['train/loss']


def test_synthetic_eval_batches_count_the_split_once():
  from lbtrain import data, parallel  # pylint: disable=g-import-not-at-top
  from lbtrain.data import synthetic  # pylint: disable=g-import-not-at-top
  from configs import base  # pylint: disable=g-import-not-at-top
  data_config = base.get_config().data
  data_config.update(dataset='synthetic', image_size=8)
  info = data.get_dataset_info(data_config)
  batches = list(synthetic.eval_batches(info, parallel.create_mesh(), global_batch_size=4096))
  assert len(batches) == 13  # ceil(50,000 / 4,096)
  assert sum(int(b['mask'].sum()) for b in batches) == info.num_eval_examples == 50_000
  assert batches[0]['image'].dtype == np.uint8 and batches[0]['image'].shape == (4096, 8, 8, 3)


def _evals(records):
  return [(r['step'], r['eval/accuracy']) for r in records if 'eval/accuracy' in r]


@pytest.mark.slow
def test_a_run_stops_at_the_first_evaluation_that_reaches_the_target_and_resumes(
    tiny_config, tmp_path):
  tiny_config.eval.every_epochs = None
  tiny_config.eval.every_steps = 3
  full = str(tmp_path / 'full')
  train.train_and_evaluate(tiny_config, full)
  evals = _evals(_records(full))
  assert [step for step, _ in evals] == [3, 6, 9, 12]
  # A target first reached after the first evaluation: the stop is at that evaluation.
  stop = next(i for i in range(1, len(evals)) if evals[i][1] > max(a for _, a in evals[:i]))
  stop_step, target = evals[stop]
  tiny_config.eval.target_accuracy = target
  workdir = str(tmp_path / 'target')
  final = train.train_and_evaluate(tiny_config, workdir)
  records = _records(workdir)
  assert final['eval/accuracy'] == target and _evals(records) == evals[:stop + 1]
  assert Workdir(workdir).checkpoint_steps()[-1] == stop_step
  assert max(r['step'] for r in records) == stop_step  # no step trained after it
  reached = [r for r in records if 'time/to_target_seconds' in r]
  assert len(reached) == 1 and reached[0]['step'] == stop_step
  assert reached[0]['eval/target_accuracy'] == target and reached[0]['time/to_target_seconds'] > 0
  # The same command again has nothing to do; a higher target trains on from the checkpoint.
  train.train_and_evaluate(tiny_config, workdir)
  assert _records(workdir) == records
  tiny_config.eval.target_accuracy = 1.0
  train.train_and_evaluate(tiny_config, workdir)
  assert _evals(_records(workdir)) == evals  # the resumed run matches the uninterrupted one
  elapsed = [r['time/elapsed_seconds'] for r in _records(workdir) if 'time/elapsed_seconds' in r]
  assert elapsed == sorted(elapsed)  # the clock carries over the resume


def test_evaluation_starts_at_eval_first(tiny_config):
  from lbtrain import describe, plan  # pylint: disable=g-import-not-at-top
  tiny_config.eval.every_epochs = None
  tiny_config.eval.every_steps = 4
  tiny_config.eval.first_steps = 2
  run = plan.plan(tiny_config)
  assert [s for s in range(1, 13) if run.evaluates_at(s)] == [2, 6, 10, 12]
  assert 'at step 2, then every 4 steps and at the end' in describe.describe(run)


def _tensorboard_scalars(workdir):
  """{(step, tag): [values]} of every TensorBoard event file in `workdir`."""
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  scalars = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    with open(path, 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):  # TFRecords: length, its crc, the event, the event's crc
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault((event.step, value.tag), []).append(np.float32(value.simple_value))
  return scalars


def _per_step_metrics(config, num_steps):
  """Each step's metrics from the run's own compiled step, driven bare and fetched after every
  step: what the loop's records must summarise, however late it fetches them."""
  from lbtrain import build, data, parallel, plan  # pylint: disable=g-import-not-at-top
  run = plan.plan(config)
  mesh = parallel.create_mesh()
  compiled = build.build(run, mesh)
  step = compiled.compile_train_step(run, mesh)
  state = compiled.init(jax.random.key(config.train.seed))
  batches = data.train_inputs(config.data, run.dataset, mesh,
                              global_batch_size=config.train.global_batch_size,
                              seed=config.train.seed, start_step=0, num_steps=num_steps)
  values = []
  try:
    for batch in batches:
      state, metrics = step(state, batch)
      values.append(jax.device_get(metrics))
  finally:
    batches.close()
  return values, run.schedule_info.steps_per_epoch


def _assert_summarises(record, values, first, last, steps_per_epoch):
  """`record` is the summary of steps first..last (1-based, inclusive) of `values`."""
  steps = values[first - 1:last]
  expected = {name: float(np.mean(np.array([v[name] for v in steps])))
              for name in ('train/loss', 'train/accuracy', 'train/grad_norm')}
  expected['train/lr'] = float(steps[-1]['train/lr'])
  expected['train/epoch'] = last / steps_per_epoch
  assert record['step'] == last
  np.testing.assert_equal({name: record[name] for name in expected}, expected,  # NaN == NaN
                          err_msg=f'steps {first}..{last}')
  assert record['train/steps_per_sec'] > 0 and record['train/input_wait_fraction'] >= 0


@pytest.mark.slow
def test_records_summarise_their_own_steps_and_precede_checkpoints_and_evals(
    tiny_config, tmp_path, monkeypatch):
  """Each train record holds exactly the steps since the previous one, although the loop reads
  them a log late; a record is in the file before the checkpoint and the eval at its step, and
  a stop or the end writes them all, so a resume loses none."""
  from lbtrain import checkpoint, preemption  # pylint: disable=g-import-not-at-top
  tiny_config.train.log_every_steps = 5  # 12 steps: evals and checkpoints at 6 and 12
  workdir = str(tmp_path / 'run')
  values, steps_per_epoch = _per_step_metrics(tiny_config, 12)

  on_disk_at_save = {}
  save = checkpoint.Checkpointer.save

  def recording_save(self, step, state):
    on_disk_at_save[step] = [(r['step'], 'train/loss' in r, 'eval/loss' in r)
                             for r in Workdir(workdir).metric_records()]
    return save(self, step, state)

  monkeypatch.setattr(checkpoint.Checkpointer, 'save', recording_save)
  monkeypatch.setattr(preemption.StopSignal, 'should_stop', lambda self, step: step == 9)
  train.train_and_evaluate(tiny_config, workdir)
  stopped = _records(workdir)
  monkeypatch.undo()
  monkeypatch.setattr(checkpoint.Checkpointer, 'save', recording_save)
  train.train_and_evaluate(tiny_config, workdir)  # resumes at the stop's checkpoint, step 9

  train_records = [r for r in _records(workdir) if 'train/loss' in r]
  intervals = [(1, 5), (6, 9), (10, 10), (11, 12)]  # the stop at 9 ends one, as a log does
  assert [r['step'] for r in train_records] == [last for _, last in intervals]
  for record, (first, last) in zip(train_records, intervals):
    _assert_summarises(record, values, first, last, steps_per_epoch)
  # (step, train record?, eval record?) in file order: step order, train before eval.
  kinds = [(r['step'], 'train/loss' in r, 'eval/loss' in r) for r in _records(workdir)]
  assert kinds == [(5, True, False), (6, False, True), (9, True, False), (9, False, False),
                   (10, True, False), (12, True, False), (12, False, True), (12, False, False)]
  assert on_disk_at_save == {6: kinds[:2], 9: kinds[:3], 12: kinds[:7]}
  events = _tensorboard_scalars(workdir)
  for record in _records(workdir):
    for name, value in record.items():
      if name != 'step':
        assert np.float32(value) in events[(record['step'], name)], (record['step'], name)
  # The intervals' training seconds partition the loop's time outside evaluation.
  whole = stopped[-1]
  seconds = sum((last - first + 1) / r['train/steps_per_sec']
                for r, (first, last) in zip([r for r in stopped if 'train/loss' in r],
                                            intervals[:2]))
  assert seconds < whole['time/loop_seconds'] - whole['time/eval_seconds']


@pytest.mark.slow
@pytest.mark.parametrize('policy', ['stop', 'skip'])
def test_a_nonfinite_step_found_a_log_late_is_named_and_never_checkpointed(
    policy, tiny_config, tmp_path):
  from lbtrain.errors import TrainingStopped  # pylint: disable=g-import-not-at-top
  tiny_config.optimizer.base_lr = 300.0  # diverges within the 12 steps, after checkpoint 6
  tiny_config.train.on_nonfinite = policy
  tiny_config.train.max_consecutive_nonfinite = 3
  tiny_config.eval.every_epochs = 0
  values, steps_per_epoch = _per_step_metrics(tiny_config, 12)
  flags = [int(v['train/nonfinite']) for v in values]
  streak, streaks = 0, []
  for flag in flags:
    streak = (streak + 1) * flag
    streaks.append(streak)
  stop = 1 + (flags.index(1) if policy == 'stop' else streaks.index(3))
  assert 6 < stop <= 12, flags  # what this test is about: found after a save, at a later log

  workdir = str(tmp_path / 'run')
  with pytest.raises(TrainingStopped, match=f'at step {stop}|up to step {stop}') as stopped:
    train.train_and_evaluate(tiny_config, workdir)
  assert 'the last good checkpoint is step 6' in str(stopped.value)
  intervals = [(first, min(first + 3, 12)) for first in range(1, stop + 1, 4)]
  train_records = [r for r in _records(workdir) if 'train/loss' in r]
  assert [r['step'] for r in train_records] == [last for _, last in intervals]
  for record, (first, last) in zip(train_records, intervals):
    _assert_summarises(record, values, first, last, steps_per_epoch)
    if policy == 'skip':
      assert record['train/skipped_steps'] == sum(flags[:last])
  assert Workdir(workdir).checkpoint_steps() == [6]
