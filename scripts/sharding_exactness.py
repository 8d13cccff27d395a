"""How far apart `parallel.sharding`'s three layouts train: N steps of Fashion-MNIST recipes on
real data in each layout on 8 (emulated) devices, against 'replicated' on the same 8.

The layouts differ from 'replicated' only in summation order (the gradient's reduction, the
sharded norms), so the first steps agree to float32 round-off; a training run then amplifies
any round-off at its own rate. The last row of each recipe measures that rate with a change the
project already calls the same training: 'replicated' on 4 of the devices. Printed per run: the
largest relative difference of the loss over the first 10 steps and over all steps, the first
step where it passes 1e-4, and the largest difference of the final parameters relative to the
largest magnitude of their leaf (the worst leaf).

  python scripts/sharding_exactness.py --steps=100 --global_batch=1024
"""

import argparse
import importlib
import os
import sys

if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_force_host_platform_device_count=8').strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
from jax.sharding import Mesh  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from lbtrain import build  # pylint: disable=g-import-not-at-top
from lbtrain import data  # pylint: disable=g-import-not-at-top
from lbtrain import parallel  # pylint: disable=g-import-not-at-top
from lbtrain import plan  # pylint: disable=g-import-not-at-top
from lbtrain import sharding  # pylint: disable=g-import-not-at-top


def train(config, mode: str, num_steps: int, num_devices: int | None = None):
  """(per-step losses, final params) of `num_steps` steps in `mode` on the first
  `num_devices` devices (None: all)."""
  config.parallel.sharding = mode
  run = plan.plan(config)
  mesh = (parallel.create_mesh() if num_devices is None else
          Mesh(np.array(jax.devices()[:num_devices]), (parallel.DATA_AXIS,)))
  compiled = build.build(run, mesh)
  state = compiled.init(jax.random.key(config.train.seed))
  batches = data.train_inputs(config.data, run.dataset, mesh,
                              global_batch_size=config.train.global_batch_size,
                              seed=config.train.seed, start_step=0, num_steps=num_steps,
                              sizes=run.resolution)
  losses = []
  try:
    for batch in batches:
      state, metrics = compiled.train_step(state, batch)
      losses.append(float(metrics['train/loss']))  # waits: parallel.one_program_at_a_time
  finally:
    batches.close()
  return np.array(losses), jax.device_get(state.params)


def relative(a, b) -> float:
  """The largest difference relative to the largest magnitude of `b`."""
  return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--configs', default='fmnist_lars_4k,fmnist_lamb_4k,fmnist_nesterov_4k')
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--global_batch', type=int, default=1024)
  parser.add_argument('--data_dir', default=None)
  args = parser.parse_args()
  print(f'{args.steps} steps at global batch {args.global_batch} on {jax.device_count()} '
        f'{jax.devices()[0].platform} devices, jax {jax.__version__}')
  print('| recipe | run | max rel. loss diff, steps 1-10 | all steps | first step > 1e-4 | '
        'max rel. param diff (worst leaf) | final loss |')
  print('|---|---|---|---|---|---|---|')
  for name in args.configs.split(','):
    config = importlib.import_module(f'configs.{name}').get_config()
    config.train.global_batch_size = args.global_batch
    config.train.num_epochs = args.steps * args.global_batch / 60000
    if args.data_dir:
      config.data.data_dir = args.data_dir
    reference_losses, reference = train(config, 'replicated', args.steps)
    runs = [(f'{mode}, 8 devices', mode, None) for mode in sharding.MODES[1:]]
    runs.append(('replicated, 4 devices', 'replicated', 4))
    for label, mode, devices in runs:
      losses, params = train(config, mode, args.steps, devices)
      loss_diff = np.abs(losses - reference_losses) / reference_losses
      over = np.nonzero(loss_diff > 1e-4)[0]
      pairs = list(zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True))
      print(f'| {name} | {label} | {np.max(loss_diff[:10]):.1e} | {np.max(loss_diff):.1e} | '
            f'{over[0] + 1 if over.size else "-"} | '
            f'{max(relative(a, b) for a, b in pairs):.1e} | {losses[-1]:.4f} |', flush=True)


if __name__ == '__main__':
  main()
