"""Telling the other processes of a run why this one stops, when they cannot see it.

A checkpoint save that fails on one process leaves the others waiting for it (orbax's barriers);
the failing process publishes its one-line reason here, and the others, polling for it, stop
with the same line (`checkpoint.Checkpointer`). The store is jax's coordination service, which
process 0 runs: when process 0 itself is gone, nothing can be read, and the others stop as on
any lost process (`distributed`).
"""

_FAILURE_KEY = 'lbtrain/failure'


def publish(message: str) -> None:
  """Leaves `message` (why this process stops) where the other processes can read it: the
  coordination service's key-value store, which process 0 runs. Best effort, and a no-op
  outside a multi-process run."""
  client = _client()
  if client is not None:
    try:
      client.key_value_set(_FAILURE_KEY, message)
    except Exception:  # pylint: disable=broad-except
      pass  # the service is gone too: each process's own line still says what it knows


def published() -> str | None:
  """What a process that failed published (`publish`), or None; never waits."""
  client = _client()
  if client is None:
    return None
  try:
    return client.key_value_try_get(_FAILURE_KEY)
  except Exception:  # pylint: disable=broad-except
    return None  # not there (NOT_FOUND), or the service is gone


def _client():
  # jax keeps its client of the coordination service private; orbax reads it the same way.
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  return jax_distributed.global_state.client
