"""What every lbtrain command does with its flags and with bad input.

One path for all of them (`lbtrain.main`, `lbtrain.sweep`, `lbtrain.sweep_report`): bad input
is one line on stderr and exit code 2, before anything is written; a run that had to stop
(non-finite values) is one line and exit code 1; a command that finished exits without the
interpreter's teardown (`exit_finished`).
"""

import atexit
import os
import re
import sys
import threading
import types
from typing import Callable

from absl import app
from absl import flags
from absl import logging

from lbtrain.errors import RunFailed
from lbtrain.errors import TrainingStopped
from lbtrain.errors import UserError

USAGE_ERROR = 2
TRAINING_STOPPED = 1

# `--config.a.b=None`: ml_collections parses an override with the field's type, so it cannot
# unset a number; these are taken out before parsing and applied after. A string field given
# 'none' (optimizer.scaling) keeps that string.
_UNSET = re.compile(r'--config\.([\w.]+)=(None|none)')


def one_line(message: str) -> str:
  """ml_collections' multi-line messages (some embed a traceback) as one readable line."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if any(line.startswith('Traceback') for line in lines):
    return f'{lines[0]} {lines[-1]}'  # what failed, and the exception that said why
  return ' '.join(lines)


def fail(message: str) -> None:
  sys.stderr.write(f'lbtrain: error: {one_line(message)}\n')
  sys.exit(USAGE_ERROR)


_unset_fields: list[tuple[str, str]] = []  # (dotted field, 'None' or 'none' as typed)
_command_line: list[str] = []


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with every way a config can fail to load reported as one line."""
  _command_line[:] = sys.argv
  kept = []
  for arg in argv:
    match = _UNSET.fullmatch(arg)
    if match:
      _unset_fields.append((match.group(1), match.group(2)))
    else:
      kept.append(arg)
  # ml_collections finds the `--config.*` overrides in sys.argv itself.
  sys.argv[:] = [arg for arg in sys.argv if not _UNSET.fullmatch(arg)]
  try:
    return flags.FLAGS(kept)
  except flags.Error as error:
    fail(str(error))
  except Exception as error:  # pylint: disable=broad-except
    # A bad override value: ml_collections raises plain errors.
    fail(f'could not load the config: {type(error).__name__}: {error}')


def command_line() -> list[str]:
  """sys.argv as typed (parsing takes the `--config.a.b=None` arguments out of it)."""
  return list(_command_line)


def load_config(flag_name: str = 'config'):
  """The config of a `config_flags.DEFINE_config_file` flag, with `--config.x=None` applied;
  a file that could not be read, or a missing flag, is one line."""
  if not flags.FLAGS[flag_name].present:
    fail(f'--{flag_name} is required, e.g. --{flag_name}=configs/quickstart.py.')
  try:
    config = flags.FLAGS[flag_name].value
    config.keys()  # a file that could not be read is only reported when first used
  except OSError as error:
    fail(str(error))
  for path, typed in _unset_fields:
    *blocks, field = path.split('.')
    block = config
    try:
      for name in blocks:
        block = block[name]
      block[field]  # pylint: disable=pointless-statement
    except (KeyError, AttributeError, TypeError):
      fail(f'--config.{path}={typed}: the config has no field {path}.')
    block[field] = 'none' if typed == 'none' and block.get_type(field) is str else None
  return config


# One `--config.*` (or `--noconfig.*`) argument; without '=' its value may be the next argument.
_OVERRIDE = re.compile(r'-{1,2}(no)?config\.([^=]+)(=.*)?')


def config_overrides() -> list[str]:
  """The `--config.*` arguments exactly as typed, so that a command that starts lbtrain runs
  (the sweep, the advisor) gives each run what the user wrote."""
  forwarded, value_follows = [], False
  for arg in command_line()[1:]:
    if value_follows:
      forwarded.append(arg)
      value_follows = False
      continue
    match = _OVERRIDE.fullmatch(arg)
    if match:
      forwarded.append(arg)
      negated, name, value = match.groups()
      value_follows = not negated and value is None and not flags.FLAGS[f'config.{name}'].boolean
  return forwarded


def last_line(output: str, prefix: str) -> str | None:
  """The text after `prefix` on the last line of a run's output that starts with it (lbtrain's
  'lbtrain: error:' and 'lbtrain: stopped:' lines)."""
  lines = [line.strip() for line in output.splitlines() if line.startswith(prefix)]
  return lines[-1][len(prefix):].strip() if lines else None


def config_file(flag_name: str = 'config') -> str:
  return flags.FLAGS[flag_name].config_filename


def no_arguments(argv: list[str], example: str = '--config.train.seed=1') -> None:
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; flags look like {example}.')


def report_errors(body: Callable[[], None]) -> None:
  """Runs `body`, turning a UserError into one line and exit 2, TrainingStopped and RunFailed
  into one line and exit 1; anything else is a bug and keeps its traceback."""
  try:
    body()
  except UserError as error:
    fail(str(error))
  except TrainingStopped as error:
    sys.stderr.write(f'lbtrain: stopped: {error}\n')
    sys.exit(TRAINING_STOPPED)
  except RunFailed as error:
    sys.stderr.write(f'lbtrain: failed: {error}\n')
    sys.exit(TRAINING_STOPPED)


class _QuietLibraries:
  """Drops INFO records of orbax and tfds, which log every step of every save, jax's probe
  for TPUs on a machine that has none, and the tracebacks of orbax's failed background saves
  (logged by orbax, or by asyncio for a save task abandoned when the run stopped), which
  `checkpoint.SaveFailed` reports as one line."""

  def filter(self, record) -> bool:
    if record.exc_info and ('/orbax/' in record.pathname or _raised_in_orbax(record.exc_info)):
      return False
    if record.levelno > logging.converter.ABSL_TO_STANDARD[logging.INFO]:
      return True
    if "Unable to initialize backend 'tpu'" in record.getMessage():
      return False
    return not any(part in record.pathname for part in ('/orbax/', '/tensorflow_datasets/'))


def _raised_in_orbax(exc_info) -> bool:
  traceback = exc_info[2] if isinstance(exc_info, tuple) else None
  while traceback is not None:
    if '/orbax/' in traceback.tb_frame.f_code.co_filename:
      return True
    traceback = traceback.tb_next
  return False


def _background_os_error(args) -> None:
  """A library's writer thread that meets a full disk or a lost folder: one line, not a
  traceback; the run reports the failure itself when it next writes (see `metrics`)."""
  if issubclass(args.exc_type, OSError):
    logging.warning('background thread %s stopped: %s', args.thread.name if args.thread else '?',
                    args.exc_value)
  else:
    threading.__excepthook__(args)


def _late_event_loop_callback(exc_type, exc_value) -> bool:
  """tensorstore's late callbacks into the event loop of an orbax save that failed (reported
  as one line by `checkpoint.SaveFailed`): it prints them with PyErr_Print or as unraisable."""
  return exc_type is RuntimeError and str(exc_value) == 'Event loop is closed'


def _excepthook(exc_type, exc_value, exc_traceback) -> None:
  if not _late_event_loop_callback(exc_type, exc_value):
    sys.__excepthook__(exc_type, exc_value, exc_traceback)


def _unraisablehook(unraisable) -> None:
  if not _late_event_loop_callback(unraisable.exc_type, unraisable.exc_value):
    sys.__unraisablehook__(unraisable)


def _help_from(command: types.ModuleType) -> None:
  """absl's --help prints the docstring of __main__ and the flags it defined. A command started
  through another module (`python -m lbtrain.sweep`, whose code is lbtrain.studies.sweep; a
  console script) shows the command's own."""
  started = sys.modules['__main__']
  if started is command:
    return
  started.__doc__ = command.__doc__
  for flag in flags.FLAGS.get_key_flags_for_module(command):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run(main: Callable[[list[str]], None], verbosity: int = logging.INFO,
        command: types.ModuleType | None = None) -> None:
  """absl's app.run with lbtrain's flag parsing and log filter; `command`: the module --help
  describes (default: main's)."""
  _help_from(command or sys.modules[main.__module__])
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # tensorflow's start-up chatter
  logging.set_verbosity(verbosity)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  threading.excepthook = _background_os_error
  sys.excepthook = _excepthook
  sys.unraisablehook = _unraisablehook
  try:
    app.run(main, flags_parser=parse_flags)
  except SystemExit as done:
    if not done.code:
      exit_finished()
    raise


def exit_finished() -> None:
  """Ends a command that finished: the exit handlers run (jax.distributed's shutdown barrier,
  the log handlers), then the process exits without the interpreter's teardown of jax's and
  TensorFlow's modules: it does nothing a finished command needs (its files are closed, its
  checkpoints written) and costs CPU seconds at every exit, which a sweep of short runs pays
  once per run. Where a thread other than a daemon is still alive, it returns instead: the
  normal exit waits for that thread."""
  main_thread = threading.main_thread()
  if any(thread is not main_thread and not thread.daemon and thread.is_alive()
         for thread in threading.enumerate()):
    return
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  flush_output()
  os._exit(0)  # pylint: disable=protected-access


def flush_output() -> None:
  """Flushes stdout, stderr and absl's log, for a process about to end without Python's exit."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (AttributeError, OSError, ValueError):
      pass
  try:
    logging.flush()
  except Exception:  # pylint: disable=broad-except
    pass


def run_flag_command(body: Callable[[], None], define_flags: Callable[[], None],
                     example: str) -> None:
  """Runs a command whose input is its flags alone, defined only now, as it runs: its module is
  imported by others (the trainer, other commands) that have flags of their own. A positional
  argument is bad input (`example` shows a flag); `body`'s errors end as `report_errors` says."""
  define_flags()

  def main(argv: list[str]) -> None:
    no_arguments(argv, example)
    report_errors(body)

  run(main, command=sys.modules[body.__module__])
