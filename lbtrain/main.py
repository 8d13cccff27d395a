"""Command line: `python -m lbtrain.main --config=configs/X.py --workdir=DIR [--config.a.b=v]`.

Parses flags and hands over to `train.train_and_evaluate`. Bad input (a config that does not
load, an override of a field that does not exist, a wrong type, anything the trainer rejects
as a UserError) ends with one line on stderr and exit code 2, before the workdir is touched.
"""

import os
import sys

# Before tensorflow (in the data pipeline) loads: keep its C++ start-up chatter out of the log.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lbtrain import cli
from lbtrain import distributed  # defines the multi-process flags
from lbtrain.errors import TrainingStopped
from lbtrain.errors import UserError

TRAINING_STOPPED = 1

config_flags.DEFINE_config_file(
    'config', None, 'Training config file: a Python file with get_config().', lock_config=True)
flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics and the resolved config.')
flags.DEFINE_bool('describe', False,
                  'Print the recipe (batches, steps, lr schedule, masks) and exit without training.')
flags.adopt_module_key_flags(distributed)  # --help lists the multi-process flags too
FLAGS = flags.FLAGS


def _loaded_config():
  """FLAGS.config; a file that could not be read is only reported when first accessed."""
  try:
    config = FLAGS.config
    config.keys()
    return config
  except OSError as error:
    cli.fail(str(error))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --config.train.seed=1.')
  if not FLAGS['config'].present:
    cli.fail('--config is required, e.g. --config=configs/quickstart.py.')
  config = _loaded_config()
  try:
    distributed.initialize()  # before any other jax call: joins the run's other processes
  except UserError as error:
    cli.fail(str(error))
  # Imported here so `--help` and flag errors stay fast and need no jax.
  from lbtrain import train  # pylint: disable=g-import-not-at-top
  try:
    if FLAGS.describe:
      print(train.describe(train.plan(config, describe_only=True)))
      return
    train.train_and_evaluate(config, os.path.expanduser(FLAGS.workdir or ''))
  except UserError as error:
    cli.fail(str(error))
  except TrainingStopped as error:
    sys.stderr.write(f'lbtrain: stopped: {error}\n')
    sys.exit(TRAINING_STOPPED)


class _QuietLibraries:
  """Drops INFO records of orbax and tfds, which log every step of every save."""

  def filter(self, record) -> bool:
    noisy = ('/orbax/', '/tensorflow_datasets/')
    return record.levelno > logging.converter.ABSL_TO_STANDARD[logging.INFO] or not any(
        part in record.pathname for part in noisy)


def run() -> None:
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
