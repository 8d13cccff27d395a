"""The workdir's record of a run: can it be used, what config made it, may this config resume it.

A workdir belongs to one training run. Resuming it with a config that trains differently would
silently splice two experiments into one set of checkpoints and metrics, so that is refused;
fields that only change how a run is observed or laid out on the hardware may change.
"""

import json
import os

import ml_collections

from lbtrain.errors import UserError

CONFIG_FILE = 'config.json'

# Fields a resumed run may change: they do not change the trained parameters (logging, eval,
# checkpoint cadence, where data lives, how the batch is laid out on devices).
MAY_CHANGE_ON_RESUME = (
    'train.log_every_steps',
    'train.micro_batch_size',
    'train.on_nonfinite',
    'train.max_consecutive_nonfinite',
    'train.compilation_cache_dir',
    'eval.',
    'checkpoint.',
    'data.data_dir',
    'data.source_dir',
    'data.prefetch_batches',
    'parallel.',
)


def check_usable(workdir: str) -> None:
  """Fails before any file is written when the workdir cannot be used."""
  if not workdir:
    raise UserError('--workdir is required: the folder for checkpoints and metrics.')
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UserError(f'workdir {workdir!r}: {existing!r} exists and is not a folder; '
                    'choose another path.')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UserError(f'workdir {workdir!r} is not writable ({existing!r}); choose a folder you '
                    'can write to.')


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')
  os.replace(path + '.tmp', path)


def _flatten(tree, prefix='') -> dict:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = value
  return flat


def resume_changes(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Compares `config` with the one that wrote the workdir's checkpoints.

  Returns the allowed changes as 'field: old -> new' lines (for the log) and raises UserError
  naming every field whose change would alter the training itself.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f'workdir {workdir!r} holds checkpoints but no {CONFIG_FILE}, so they '
                    'cannot be checked against this config; use a new workdir.')
  with open(path, encoding='utf-8') as f:
    saved = _flatten(json.load(f))
  current = _flatten(json.loads(config.to_json_best_effort()))
  changed = sorted(name for name in saved.keys() | current.keys()
                   if saved.get(name) != current.get(name))
  refused = [name for name in changed if not name.startswith(MAY_CHANGE_ON_RESUME)]
  if refused:
    details = ', '.join(f'{name} ({saved.get(name)!r} -> {current.get(name)!r})'
                        for name in refused)
    raise UserError(f'workdir {workdir!r} holds checkpoints of a run with a different training '
                    f'config: {details}. Use a new workdir, or the original values to resume.')
  return [f'{name}: {saved.get(name)!r} -> {current.get(name)!r}' for name in changed]
