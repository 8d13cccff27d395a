"""Evaluates a run's latest checkpoint on a split of its choosing: `python -m lbtrain.evaluate
--workdir=DIR --split=test [--data_dir=D]`.

For the number a study reports once at its end: trials compared and stopped on a validation
split, then the winners' checkpoints evaluated on the untouched test split. The run is
evaluated with the config it trained with (DIR/config.json, the resolved config), on `--split`
instead of its eval split. The run is not changed: the result is printed and appended to
DIR/evaluations.jsonl, never to metrics.jsonl, whose eval records decide the steps to a target.
Every example of the split counts exactly once, as in training.
"""

import json
import os

from absl import flags
import ml_collections

from lbtrain import cli
from lbtrain import distributed  # defines the multi-process flags
from lbtrain.errors import UserError
from lbtrain.workdir import RunLock
from lbtrain.workdir import Workdir

flags.DEFINE_string('workdir', None, 'The run folder whose latest checkpoint is evaluated.')
flags.DEFINE_string('split', None, 'The tfds split to evaluate, e.g. test or train[:5000].')
flags.DEFINE_string('data_dir', None, 'Where the data set lives now, if not where the run '
                    'read it (data.data_dir).')
flags.adopt_module_key_flags(distributed)
FLAGS = flags.FLAGS

EVALUATIONS = 'evaluations.jsonl'


def _tuples(value):
  """JSON lists back to the tuples the config held (e.g. schedule.boundaries_epochs)."""
  if isinstance(value, dict):
    return {key: _tuples(item) for key, item in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(item) for item in value)
  return value


def run_config(workdir: Workdir, split: str, data_dir: str | None) -> ml_collections.ConfigDict:
  """The config the run trained with, evaluating `split`."""
  if not os.path.exists(workdir.config_file):
    raise UserError(f'{workdir.config_file} does not exist: --workdir must be a folder lbtrain '
                    'trained in.')
  with open(workdir.config_file, encoding='utf-8') as f:
    config = ml_collections.ConfigDict(_tuples(json.load(f)))
  config.data.eval_split = split
  config.eval.train_accuracy_split = None  # the one split asked for
  if 'sharding' not in config.parallel:  # written before parallel.sharding existed
    config.parallel.sharding = 'replicated'
  if data_dir:
    config.data.data_dir = data_dir
  return config


def evaluate_checkpoint(workdir_path: str, split: str, data_dir: str | None = None) -> dict:
  """The latest checkpoint's loss and accuracy over `split`, with its step."""
  import jax  # pylint: disable=g-import-not-at-top
  from lbtrain import build  # pylint: disable=g-import-not-at-top
  from lbtrain import checkpoint  # pylint: disable=g-import-not-at-top
  from lbtrain import parallel  # pylint: disable=g-import-not-at-top
  from lbtrain import plan  # pylint: disable=g-import-not-at-top
  from lbtrain import train  # pylint: disable=g-import-not-at-top

  workdir = Workdir(workdir_path)
  config = run_config(workdir, split, data_dir)
  if not workdir.checkpoint_steps():
    raise UserError(f'workdir {workdir_path!r} holds no complete checkpoint to evaluate.')
  RunLock(workdir).check_free()  # a live run may be saving or cleaning up checkpoints
  mesh = parallel.create_mesh()
  run = plan.plan(config)
  compiled = build.build(run, mesh)
  checkpoints = checkpoint.Checkpointer(workdir.checkpoint_dir, config.checkpoint.keep,
                                        config.checkpoint.keep_every_steps)
  try:
    state, step = checkpoints.restore_latest(compiled.abstract_state)
  finally:
    checkpoints.close()
  results = train.evaluate(run, compiled.eval_step, state, mesh)
  record = {'step': step, 'split': split, **results}
  if jax.process_index() == 0:
    with open(os.path.join(workdir.path, EVALUATIONS), 'a', encoding='utf-8') as f:
      f.write(json.dumps(record) + '\n')
  return record


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  if not FLAGS.workdir or not FLAGS.split:
    cli.fail('--workdir and --split are required: the run whose latest checkpoint is '
             'evaluated, and the split, e.g. --split=test.')
  try:
    distributed.initialize()
  except UserError as error:
    cli.fail(str(error))

  def evaluate_and_print():
    record = evaluate_checkpoint(FLAGS.workdir, FLAGS.split, FLAGS.data_dir)
    print(f'evaluate: step {record["step"]} of {FLAGS.workdir} on {record["split"]}: loss '
          f'{record["eval/loss"]:.4f}, accuracy {record["eval/accuracy"]:.4f} over '
          f'{record["eval/num_examples"]} examples', flush=True)

  cli.report_errors(evaluate_and_print)


def run() -> None:
  cli.run(main)


if __name__ == '__main__':
  run()
