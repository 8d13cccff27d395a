"""The one exception type that means "the user asked for something we cannot do".

`main.py` turns it into a single line on stderr and exit code 2; everything else is a bug and
keeps its traceback. Raise it before anything is written to the workdir.
"""


class UserError(Exception):
  """Bad config, data or workdir: the message says what is wrong and how to fix it."""


class TrainingStopped(Exception):
  """Training cannot go on (non-finite values): the message names the step and the last good
  checkpoint. `main.py` reports it as one line and exit code 1."""
