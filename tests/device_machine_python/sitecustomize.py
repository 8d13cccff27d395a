"""Makes this Python look like the device machine's: tests/test_device_check.py puts this folder
on PYTHONPATH, so Python imports it at start-up, in the check's child processes too.

The device machine has jax, flax, optax, orbax-checkpoint, absl-py, chex and numpy, with what
they depend on, and nothing else. Here every other top-level module in site-packages fails to
import (tensorflow, tensorflow_datasets, tensorboardX, ml_collections, matplotlib, pytest, ...)
unless it is found outside site-packages too, as ml_collections and tensorboardX are in the
wheels that scripts/device_check.py puts on sys.path.
"""

import importlib.machinery
import importlib.metadata
import os
import re
import sys
import time

_DEVICE_MACHINE_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'absl-py',
                            'chex', 'numpy')


def _canonical(name: str) -> str:
  return re.sub(r'[-_.]+', '-', name).lower()


def _installed_with(roots) -> set[str]:
  """Top-level module names of `roots` and of everything they require, extras left out."""
  modules, seen, todo = set(), set(), [_canonical(r) for r in roots]
  while todo:
    name = todo.pop()
    if name in seen:
      continue
    seen.add(name)
    try:
      dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
      continue
    top_level = dist.read_text('top_level.txt')
    if top_level:
      modules.update(line.strip() for line in top_level.splitlines() if line.strip())
    for path in dist.files or []:
      first = path.parts[0]
      if not first.endswith(('.dist-info', '.data')) and first != '..':
        modules.add(first[:-3] if first.endswith('.py') else first)
    for requirement in dist.requires or []:
      if 'extra ==' not in requirement:
        todo.append(_canonical(re.match(r'[A-Za-z0-9_.-]+', requirement).group()))
  return modules


def _is_site_packages(entry: str) -> bool:
  return 'site-packages' in entry or 'dist-packages' in entry


class _DeviceMachinePathFinder(importlib.machinery.PathFinder):
  """sys.path's finder, except that a top-level module outside the device machine's packages
  is looked for outside site-packages only (so find_spec says None where it is not there)."""

  allowed = _installed_with(_DEVICE_MACHINE_PACKAGES)

  @classmethod
  def find_spec(cls, fullname, path=None, target=None):
    if path is None and fullname not in cls.allowed:
      path = [entry for entry in sys.path if not _is_site_packages(entry)]
    return importlib.machinery.PathFinder.find_spec(fullname, path, target)


sys.meta_path[:] = [_DeviceMachinePathFinder if finder is importlib.machinery.PathFinder
                    else finder for finder in sys.meta_path]


# A part that runs until it is killed, where a test asks for one (DEVICE_CHECK_HANG_PART=device
# hangs the child started with --part=device): the check's deadline, not the machine's speed,
# is then what ends it.
if os.environ.get('DEVICE_CHECK_HANG_PART') and (
    f'--part={os.environ["DEVICE_CHECK_HANG_PART"]}' in sys.argv):
  while True:
    time.sleep(3600)
