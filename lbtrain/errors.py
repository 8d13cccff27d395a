"""The exceptions that end a run with one line instead of a traceback.

`cli.report_errors` turns each into a single line on stderr and an exit code; everything else
is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Bad config, data or workdir: the message says what is wrong and how to fix it. Raised
  before anything is written to the workdir; exit code 2."""


class TrainingStopped(Exception):
  """Training diverged (non-finite values): the message names the step and the last good
  checkpoint; exit code 1, `lbtrain: stopped:` (the sweep records such a run as diverged)."""


class RunFailed(Exception):
  """The machine let the run down (a full disk, a folder gone, out of memory): the message says
  what failed, where the run resumes, and what to fix first; exit code 1, `lbtrain: failed:`."""


RESUME_ADVICE = ('Free space (or restore access to the folder), then run the same command to '
                 'resume.')
