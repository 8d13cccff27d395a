"""Command line: `python -m lbtrain.main --config=configs/X.py [--workdir=DIR] [--config.a.b=v]`.

Parses flags and hands over to `train.train_and_evaluate`. Without --workdir a run lives in
runs/<config name>, so the same command resumes it. Bad input (a config that does not load, an
override of a field that does not exist, a wrong type, anything the trainer rejects as a
UserError) ends with one line on stderr and exit code 2, before the workdir is touched.
"""

from absl import flags
from absl import logging
from ml_collections import config_flags

from lbtrain import cli
from lbtrain import distributed  # defines the multi-process flags
from lbtrain import workdir as workdir_lib
from lbtrain.errors import RunFailed
from lbtrain.errors import UserError

config_flags.DEFINE_config_file(
    'config', None, 'Training config file: a Python file with get_config().', lock_config=True)
flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics and the resolved config '
                    '(default: runs/<config file name>).')
flags.DEFINE_bool('describe', False,
                  'Print the recipe (batches, steps, lr schedule, optimizer, masks) and exit '
                  'without training.')
flags.adopt_module_key_flags(distributed)  # --help lists the multi-process flags too
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  config = cli.load_config()
  try:
    settings = distributed.initialize()  # before any other jax call: joins the others
  except UserError as error:
    cli.fail(str(error))
  # Imported here so `--help` and flag errors stay fast and need no jax.
  from lbtrain import describe  # pylint: disable=g-import-not-at-top
  from lbtrain import plan  # pylint: disable=g-import-not-at-top
  from lbtrain import train  # pylint: disable=g-import-not-at-top

  def describe_or_train():
    if FLAGS.describe:
      print(describe.describe(plan.plan(config, describe_only=True)))
      return
    workdir = FLAGS.workdir
    if workdir is None:
      workdir = workdir_lib.default_path(cli.config_file())
      logging.info('no --workdir: the run lives in %s (the same command resumes it)', workdir)
    try:
      train.train_and_evaluate(config, workdir)
    except RunFailed as error:
      if settings is None:
        raise
      # orbax's threads may wait forever for a save another process failed, and jax's exit
      # barrier for processes that are gone: stop now (the others stop on their own).
      distributed.fail_at_once(f'lbtrain: failed: {error}')

  cli.report_errors(describe_or_train)


def run() -> None:
  cli.run(main)


if __name__ == '__main__':
  run()
