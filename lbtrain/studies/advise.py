"""How large a batch, without a full sweep: `python -m lbtrain.advise --config=configs/X.py
--target_accuracy=A --workdir=DIR [--batch_sizes=...] [--config.a.b=value ...]`.

Two measurements, each a resumable `lbtrain.main` run in DIR (its output in its train.log):
  1. DIR/measure: the config at its own batch B0 (--config.train.global_batch_size sets it)
     until its first evaluation at the target,
     measuring the gradient noise scale B_simple every step (McCandlish et al. 2018); so the steps
     to the target S(B0) and B_simple at that point.
  2. DIR/throughput/batch_<B>: a short run at each candidate batch (--batch_sizes, or by default
     B0 and the powers of 2 from B_crit / 8 to 8 B_crit; no evaluation), whose training
     steps per second (median over its records after the first: the input pipeline included,
     compile excluded) is the hardware's side of the answer.
Then the model: B_crit ~ B_simple, S(B) = S_min (1 + B_crit / B) through the measured S(B0), the
examples E(B) = S(B) B, the time T(B) = S(B) / steps per second(B), and the training efficiency
E_min / E(B) = 1 / (1 + B / B_crit) (1 = perfect scaling). It prints a table of the candidates,
with the peak lr and warmup each gets from the config's rules, and two recommendations: the
batch fastest to the target in wall-clock, and the largest batch that keeps --efficiency of
perfect scaling. It is a prediction from a model, and says so with its assumptions; a tuned
`lbtrain.sweep` measures what it predicts.

The same command again reuses the finished runs; DIR/advice.{json,md} hold the result.
"""

import json
import math
import os
import subprocess
import sys
from typing import Sequence

from absl import flags
from absl import logging
from ml_collections import config_flags

from lbtrain import cli
from lbtrain import models
from lbtrain.errors import UserError
from lbtrain.studies import child_run
from lbtrain.studies import prediction
from lbtrain.studies import results
from lbtrain.workdir import Workdir

config_flags.DEFINE_config_file(
    'config', None, 'Training config file: a Python file with get_config().', lock_config=True)
flags.DEFINE_string('workdir', None, 'Folder for the advisor\'s runs and advice.{json,md}.')
flags.DEFINE_float('target_accuracy', None, 'The eval accuracy the batch should reach soonest.')
flags.DEFINE_list('batch_sizes', None, 'Candidate global batches; default: the config\'s batch '
                  'and the powers of 2 from B_crit / 8 to 8 B_crit (B_crit as measured).')
flags.DEFINE_float('eval_every_epochs', 0.1, 'Evaluation interval of the measurement run: its '
                   'steps to the target are exact to this.')
flags.DEFINE_float('efficiency', 0.8, 'The share of perfect scaling the "efficient" '
                   'recommendation keeps: E_min / E(B) at least this.')
FLAGS = flags.FLAGS

# Throughput runs: records of about this many examples each, four of them; the first is dropped
# (the first steps after compile run slower).
_EXAMPLES_PER_RECORD = 4096
_RECORDS = 4


def _batches() -> list[int] | None:
  """The candidates given with --batch_sizes; None: the defaults, once B_crit is measured."""
  if FLAGS.batch_sizes is None:
    return None
  try:
    batches = sorted({int(value) for value in FLAGS.batch_sizes})
  except ValueError:
    batches = []
  if not batches or batches[0] <= 0:
    cli.fail(f'--batch_sizes={",".join(FLAGS.batch_sizes)}: give positive whole numbers, e.g. '
             '--batch_sizes=256,1024,4096.')
  return batches


def _num_train_examples(config) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_platforms', 'cpu')  # the runs need the accelerator, not the advisor
  from lbtrain import data  # pylint: disable=g-import-not-at-top
  return data.get_dataset_info(config.data).num_train_examples


def _recipes(config, batches: Sequence[int],
             num_train_examples: int) -> dict[int, tuple[float, int]]:
  """batch -> (peak lr, warmup steps) from the config's rules; UserError for a batch that
  makes no valid recipe."""
  from lbtrain import plan  # pylint: disable=g-import-not-at-top
  recipes = {}
  for batch in sorted({config.train.global_batch_size, *batches}):
    run_config = config.copy_and_resolve_references()
    run_config.train.global_batch_size = batch
    try:
      info = plan.recipe(run_config, num_train_examples).schedule_info
    except UserError as error:
      raise UserError(f'batch {batch}: {error}') from None
    recipes[batch] = (info.peak_lr, info.warmup_steps)
  return recipes


def _device_count() -> int:
  """The devices a run will see, asked of a fresh process (this one stays off the accelerator)."""
  output = subprocess.run([sys.executable, '-c', 'import jax; print(jax.device_count())'],
                          capture_output=True, text=True, check=True).stdout
  return int(output.split()[-1])


def _noise_scale_settings(config, devices: int) -> list[str]:
  """Overrides that let the measurement run see small-batch gradients: per-device gradients
  under pmap, with BN statistics per device (shared ones couple the devices' gradients and bias
  B_simple: `plan._warn_shared_statistics`); on one device, two micro-batches, whose BN
  statistics are then per micro-batch. Either way a BN model measures with ghost batches of
  that size, which changes its training a little; nothing else does."""
  settings = ['--config.train.noise_scale_every=1']
  if config.train.micro_batch_size is not None:
    return settings
  if config.parallel.strategy == 'pmap' or devices > 1:
    if config.parallel.strategy != 'pmap':  # pmap holds the whole state per device
      settings += ['--config.parallel.strategy=pmap', '--config.parallel.sharding=replicated']
    small = config.train.global_batch_size // devices
    what = 'per-device batches'
  else:
    small = config.train.global_batch_size // 2
    what = 'two micro-batches'
    settings.append(f'--config.train.micro_batch_size={small}')
  group = config.model.bn_group_size
  if models.uses_batch_norm(config.model) and (group is None or small % group):
    logging.warning('B_simple from %s of %d, with BN statistics per %d examples '
                    '(model.bn_group_size=%s in the config)', what, small, small, group)
    settings.append(f'--config.model.bn_group_size={small}')
  return settings


def _run(workdir: Workdir, command: list[str], name: str) -> list[dict]:
  """Trains (or resumes) one run; its metric records. A failure ends the advisor with the run's
  own error line and exit code; SIGTERM or Ctrl-C go to the run, which saves a checkpoint, and
  the advisor then stops (exit 0: the same command goes on)."""
  with child_run.forwarding_signals() as children:
    finished = children.run(command, workdir.sweep_log)
  if children.signal_name and finished.code == 0:
    print(f'advise: stopped on {children.signal_name} during the {name}; run the same command '
          'to resume', flush=True)
    sys.exit(0)
  if finished.code != 0:
    sys.stderr.write(f'lbtrain: error: the {name} failed (exit code {finished.code}): '
                     f'{finished.reason()} Its log: {workdir.sweep_log}\n')
    sys.exit(finished.exit_status)
  return workdir.metric_records()


def _throughput_overrides(batch: int) -> list[str]:
  log_every = max(2, math.ceil(_EXAMPLES_PER_RECORD / batch))
  return [f'--config.train.global_batch_size={batch}',
          f'--config.train.stop_at_step={_RECORDS * log_every}',
          f'--config.train.log_every_steps={log_every}', '--config.train.log_every_epochs=None',
          '--config.eval.every_epochs=0', '--config.eval.every_steps=None',
          '--config.eval.target_accuracy=None', '--config.train.noise_scale_every=None',
          '--config.checkpoint.every_epochs=None', '--config.checkpoint.every_steps=1000000']


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  config = cli.load_config()
  if not FLAGS.workdir:
    cli.fail('--workdir is required: the advisor\'s folder, e.g. --workdir=runs/advice.')
  target = FLAGS.target_accuracy
  if target is None or not 0 < target <= 1:
    cli.fail(f'--target_accuracy={target}: give the eval accuracy to reach, in (0, 1], e.g. 0.88.')
  if not 0 < FLAGS.efficiency < 1:
    cli.fail(f'--efficiency={FLAGS.efficiency}: give a share of perfect scaling in (0, 1), e.g. '
             '0.8.')
  for field in ('eval.target_accuracy', 'train.stop_at_step'):
    if field in config_flags.get_override_values(FLAGS['config']):
      cli.fail(f'the advisor sets {field} for its runs; drop --config.{field}.')
  if not FLAGS.eval_every_epochs > 0:
    cli.fail(f'--eval_every_epochs={FLAGS.eval_every_epochs}: give a positive interval, e.g. '
             '0.1.')
  batches = _batches()
  try:
    num_train_examples = _num_train_examples(config)
    _recipes(config, batches or [], num_train_examples)  # every bad batch before any run
  except UserError as error:
    cli.fail(str(error))
  folder = os.path.abspath(os.path.expanduser(FLAGS.workdir))
  base = [sys.executable, '-m', 'lbtrain.main', f'--config={cli.config_file()}',
          *cli.config_overrides()]

  measure = Workdir(os.path.join(folder, 'measure'))
  batch0 = config.train.global_batch_size
  print(f'advise: measuring steps to {target:g} and the noise scale at batch {batch0}; log '
        f'{measure.sweep_log}', flush=True)
  devices = _device_count()
  records = _run(measure, base + [f'--config.eval.target_accuracy={target!r}',
                                  f'--config.eval.every_epochs={FLAGS.eval_every_epochs!r}',
                                  '--config.eval.every_steps=None',
                                  *_noise_scale_settings(config, devices),
                                  f'--workdir={measure.path}'],
                 f'measurement run at batch {batch0}')
  try:
    measurement = prediction.measurement_from_records(records, batch0, target)
  except UserError as error:
    cli.fail(str(error))
  if measurement is None:
    best = max((a for _, a in results.eval_points(records)), default=0.0)
    cli.fail(f'the config did not reach eval accuracy {target:g} at batch {batch0} (best '
             f'{best:.4f}, log {measure.sweep_log}); lower --target_accuracy or train longer '
             '(--config.train.num_epochs).')

  if batches is None:
    batches = prediction.default_batches(measurement.noise_scale, batch0, devices)
  try:
    recipes = _recipes(config, batches, num_train_examples)
  except UserError as error:
    cli.fail(str(error))
  throughput = {}
  for batch in batches:
    run = Workdir(os.path.join(folder, 'throughput', f'batch_{batch:05d}'))
    print(f'advise: timing batch {batch}; log {run.sweep_log}', flush=True)
    records = _run(run, base + _throughput_overrides(batch) + [f'--workdir={run.path}'],
                   f'throughput run at batch {batch}')
    throughput[batch] = prediction.throughput_from_records(records)

  advice = prediction.advise(measurement, throughput, recipes, num_train_examples,
                             FLAGS.efficiency)
  text = prediction.report(advice, target)
  with open(os.path.join(folder, 'advice.json'), 'w', encoding='utf-8') as f:
    json.dump(dict(advice.as_dict(), target_accuracy=target,
                   command=['python', '-m', 'lbtrain.advise', *cli.command_line()[1:]]), f,
              indent=1)
  with open(os.path.join(folder, 'advice.md'), 'w', encoding='utf-8') as f:
    f.write(text)
  print(text, end='', flush=True)


def run() -> None:
  cli.run(main, verbosity=logging.WARNING)


if __name__ == '__main__':
  run()
