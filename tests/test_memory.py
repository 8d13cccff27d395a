"""micro_batch_size='auto': candidates, the search, and the choice against real compiled steps."""

import dataclasses

import jax
import pytest

from lbtrain import checkpoint
from lbtrain import memory
from lbtrain import parallel
from lbtrain import train


@pytest.mark.parametrize('per_device, group, expected', [
    (32, 4, [4, 8, 16, 32]),
    (32, None, [32]),  # BN over the whole batch: only the un-accumulated step computes it
    (24, 8, [8, 24]),
    (12, 5, [12]),
])
def test_candidates_keep_bn_groups_whole(per_device, group, expected):
  assert memory.candidates(per_device, group) == expected


@pytest.mark.parametrize('budget, expected', [(450, 4), (1600, 16), (100, 1), (99, None)])
def test_the_search_finds_the_largest_size_within_budget(budget, expected):
  sizes = [1, 2, 4, 8, 16]
  chosen, measured = memory.largest_fitting(sizes, lambda size: 100 * size, budget)
  assert chosen == expected
  assert len(measured) <= 3  # binary search: log2(5) + 1 compiles at most
  assert all(measured[size] == 100 * size for size in measured)


def _step_bytes(run, mesh, abstract_state, micro):
  candidate = dataclasses.replace(run, micro_batch_size=micro,
                                  accum_steps=run.per_device_batch_size // micro)
  _, train_step, _, _ = train.build_steps(candidate, mesh)
  return memory.step_bytes(train_step.lower(
      abstract_state, train._abstract_batch(candidate, mesh)).compile())


def test_auto_chooses_the_largest_micro_batch_that_fits(tiny_config, monkeypatch):
  tiny_config.train.micro_batch_size = 'auto'
  tiny_config.model.bn_group_size = 4
  run = train.plan(tiny_config)
  assert (run.per_device_batch_size, run.auto_micro_batch) == (32, True)
  mesh = parallel.create_mesh()
  init, _, _, shardings = train.build_steps(run, mesh)
  abstract_state = checkpoint.abstract_like(jax.eval_shape(init, jax.random.key(0)), shardings)
  eight, sixteen = (_step_bytes(run, mesh, abstract_state, micro) for micro in (8, 16))
  assert eight < sixteen  # activations grow with the micro-batch

  def limit(bytes_per_device):
    monkeypatch.setattr(memory, 'device_memory_limit',
                        lambda: memory.MemoryLimit(bytes_per_device, 'test'))

  limit(int((eight + sixteen) / 2 / tiny_config.train.memory_fraction))
  chosen = train._choose_micro_batch(run, mesh, abstract_state)
  assert (chosen.micro_batch_size, chosen.accum_steps) == (8, 4)

  limit(10**12)
  chosen = train._choose_micro_batch(run, mesh, abstract_state)
  assert (chosen.micro_batch_size, chosen.accum_steps) == (32, 1)

  limit(1000)
  with pytest.raises(train.UserError, match='even a micro-batch of 4 per device'):
    train._choose_micro_batch(run, mesh, abstract_state)
