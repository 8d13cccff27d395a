"""Mixup and CutMix inside the step: soft labels that sum to one, images mixed with the labels'
weights, one draw per (seed, step), and the same global result from per-device rows (pmap)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lbtrain import mixing

BATCH, SIZE, CLASSES = 16, 8, 5


def _batch():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
  labels = rng.integers(0, CLASSES, BATCH)
  return jnp.asarray(images), jax.nn.one_hot(labels, CLASSES)


def _mix(step, **fields):
  images, targets = _batch()
  return mixing.mix(images, targets, jnp.int32(step), mixing.MixSettings(**fields))


@pytest.mark.parametrize('fields', [{'mixup_alpha': 0.2}, {'cutmix_alpha': 1.0},
                                    {'mixup_alpha': 0.2, 'cutmix_alpha': 1.0}])
def test_targets_sum_to_one_and_weigh_the_images_as_they_are_mixed(fields):
  images, targets = _batch()
  previous = np.roll(np.asarray(images), 1, axis=0)
  for step in range(6):
    mixed, soft = map(np.asarray, _mix(step, **fields))
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    # Each row's weight on its own label, recovered from the soft targets.
    own = np.array([soft[i, np.argmax(targets[i])] for i in range(BATCH)])
    lam = own[np.argmax(targets, 1) != np.argmax(np.roll(targets, 1, axis=0), 1)][0]
    from_own = np.isclose(mixed, images) & ~np.isclose(images, previous)
    from_previous = np.isclose(mixed, previous) & ~np.isclose(images, previous)
    if from_own.sum() + from_previous.sum() > 0.99 * (~np.isclose(images, previous)).sum():
      # CutMix: each pixel is its own or its predecessor's; the label weight is the share.
      np.testing.assert_allclose(from_own.sum() / (from_own.sum() + from_previous.sum()), lam,
                                 atol=1e-6)
    else:  # Mixup: one convex combination, the larger weight on the example's own image
      np.testing.assert_allclose(mixed, lam * images + (1 - lam) * previous, rtol=1e-5,
                                 atol=1e-5)
      assert lam >= 0.5


def test_a_pure_function_of_seed_and_step():
  first = _mix(3, mixup_alpha=0.2)[1]
  np.testing.assert_array_equal(first, _mix(3, mixup_alpha=0.2)[1])
  assert not np.allclose(first, _mix(4, mixup_alpha=0.2)[1])
  assert not np.allclose(first, _mix(3, mixup_alpha=0.2, seed=1)[1])


def test_prob_zero_and_no_alpha_leave_the_batch_alone():
  images, targets = _batch()
  for fields in ({'mixup_alpha': 0.2, 'prob': 0.0}, {'cutmix_alpha': 1.0, 'prob': 0.0}):
    mixed, soft = _mix(0, **fields)
    np.testing.assert_array_equal(mixed, images)
    np.testing.assert_array_equal(soft, targets)
  assert not mixing.MixSettings().on and mixing.MixSettings(mixup_alpha=0.2).on


@pytest.mark.parametrize('fields', [{'mixup_alpha': 0.2}, {'cutmix_alpha': 1.0}])
def test_per_device_rows_mix_like_the_global_batch(fields):
  """Under pmap each device holds 2 rows; its first row's partner is on the previous device."""
  images, targets = _batch()
  settings = mixing.MixSettings(**fields)
  expected = mixing.mix(images, targets, jnp.int32(5), settings)
  devices = jax.local_device_count()
  per_device = functools.partial(mixing.mix, settings=settings, axis_name='d')
  mixed, soft = jax.pmap(per_device, axis_name='d', in_axes=(0, 0, None))(
      images.reshape(devices, -1, *images.shape[1:]),
      targets.reshape(devices, -1, CLASSES), jnp.int32(5))
  np.testing.assert_allclose(mixed.reshape(images.shape), expected[0], rtol=1e-6)
  np.testing.assert_allclose(soft.reshape(targets.shape), expected[1], rtol=1e-6)
