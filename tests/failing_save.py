"""`python -m lbtrain.main` whose process 1 cannot write its part of any checkpoint from step 10
on, as when that host's disk fills up: the launcher runs it with `--module=failing_save`.

The fault is raised where orbax writes the arrays, in its background save thread, as a full
disk's ENOSPC would be; every other process and every earlier save is untouched.
"""

import errno
import sys

from orbax.checkpoint._src.serialization import serialization

from lbtrain import checkpoint
from lbtrain import main

FAILING_PROCESS = 1
FIRST_FAILING_STEP = 10

_step_being_saved = [0]
_save = checkpoint.Checkpointer.save
_write = serialization.async_serialize_from_host


def _save_noting_the_step(self, step, state):
  _step_being_saved[0] = step
  return _save(self, step, state)


async def _write_unless_full(*args, **kwargs):
  if _step_being_saved[0] >= FIRST_FAILING_STEP:
    raise OSError(errno.ENOSPC, 'No space left on device')
  return await _write(*args, **kwargs)


if f'--process_id={FAILING_PROCESS}' in sys.argv:
  checkpoint.Checkpointer.save = _save_noting_the_step
  serialization.async_serialize_from_host = _write_unless_full

if __name__ == '__main__':
  main.run()
