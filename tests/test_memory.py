"""micro_batch_size='auto': candidates, the search, and the choice against real compiled steps."""

import pytest

from lbtrain import build
from lbtrain import memory
from lbtrain import parallel
from lbtrain import plan
from lbtrain.errors import UserError


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


def _step_bytes(config, mesh, micro):
  candidate = plan.plan(config, micro_batch_size=micro)
  return memory.step_bytes(build.build(candidate, mesh).compile_train_step(candidate, mesh))


@pytest.mark.slow
def test_auto_chooses_the_largest_micro_batch_that_fits(tiny_config, monkeypatch):
  tiny_config.train.micro_batch_size = 'auto'
  tiny_config.model.bn_group_size = 4
  draft = plan.plan(tiny_config)
  assert (draft.per_device_batch_size, draft.auto_micro_batch) == (32, True)
  mesh = parallel.create_mesh()
  eight, sixteen = (_step_bytes(tiny_config, mesh, micro) for micro in (8, 16))
  assert eight < sixteen  # activations grow with the micro-batch

  def limit(bytes_per_device):
    monkeypatch.setattr(memory, 'device_memory_limit',
                        lambda: memory.MemoryLimit(bytes_per_device, 'test'))

  limit(int((eight + sixteen) / 2 / tiny_config.train.memory_fraction))
  assert build.choose_micro_batch(tiny_config, mesh) == 8
  run = plan.plan(tiny_config, micro_batch_size=8)
  assert (run.micro_batch_size, run.accum_steps) == (8, 4)

  limit(10**12)
  assert build.choose_micro_batch(tiny_config, mesh) == 32

  limit(1000)
  with pytest.raises(UserError, match='even a micro-batch of 4 per device'):
    build.choose_micro_batch(tiny_config, mesh)
