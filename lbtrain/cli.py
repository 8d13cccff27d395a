"""What every lbtrain command does with bad input: one line on stderr, exit code 2.

Shared by `lbtrain.main` and `lbtrain.sweep`, so a typo reads the same in both.
"""

import sys

from absl import flags

USAGE_ERROR = 2


def one_line(message: str) -> str:
  """ml_collections' multi-line messages (some embed a traceback) as one readable line."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if any(line.startswith('Traceback') for line in lines):
    return f'{lines[0]} {lines[-1]}'  # what failed, and the exception that said why
  return ' '.join(lines)


def fail(message: str) -> None:
  sys.stderr.write(f'lbtrain: error: {one_line(message)}\n')
  sys.exit(USAGE_ERROR)


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with every way a config can fail to load reported as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    fail(str(error))
  except Exception as error:  # pylint: disable=broad-except
    # A bad override value: ml_collections raises plain errors.
    fail(f'could not load the config: {type(error).__name__}: {error}')
