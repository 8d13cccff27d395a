"""RandAugment on uint8 crops: big_vision's operations and magnitudes, and draws that decide
everything (so a row's augmentation is a pure function of (seed, step, row))."""

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

from lbtrain.data import randaugment


def _image(size=32):
  rng = np.random.default_rng(0)
  return rng.integers(30, 220, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize('op', randaugment.OPS)
def test_every_op_keeps_shape_and_dtype_and_leaves_its_input(op):
  image = _image()
  before = image.copy()
  out = randaugment.apply_op(image, op, 10, 1.0)
  assert out.shape == image.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(image, before)


def test_magnitudes_are_big_vision_s():
  image = _image()
  np.testing.assert_array_equal(randaugment.apply_op(image, 'Invert', 10, 1), 255 - image)
  # Posterize at M=10 keeps int(10/10 * 4) = 4 bits.
  np.testing.assert_array_equal(randaugment.apply_op(image, 'Posterize', 10, 1), image & 0xF0)
  # Solarize's threshold int(10/10 * 256) = 256 leaves every uint8 pixel as it is.
  np.testing.assert_array_equal(randaugment.apply_op(image, 'Solarize', 10, 1), image)
  assert (randaugment.apply_op(image, 'Solarize', 5, 1) == np.where(image < 128, image,
                                                                     255 - image)).all()
  # SolarizeAdd adds int(110) to pixels under 128.
  added = randaugment.apply_op(image, 'SolarizeAdd', 10, 1)
  np.testing.assert_array_equal(added, np.where(image < 128, np.minimum(image + 110, 255), image))
  # Brightness blends with black at factor 10/10 * 1.8 + 0.1 = 1.9.
  np.testing.assert_array_equal(randaugment.apply_op(image, 'Brightness', 10, 1),
                                np.clip(image * np.float32(1.9), 0, 255).astype(np.uint8))


def test_geometric_ops_move_pixels_and_fill_with_grey():
  image = np.zeros((224, 224, 3), np.uint8)
  image[:, :, 0] = np.arange(224)[None, :]  # red = column
  # TranslateX at M=10: 100 px at 224, one way or the other by the sign.
  right = randaugment.apply_op(image, 'TranslateX', 10, 1.0)
  np.testing.assert_array_equal(right[:, :124, 0], image[:, 100:, 0])
  assert (right[:, 124:] == randaugment.REPLACE).all()
  left = randaugment.apply_op(image, 'TranslateX', 10, -1.0)
  np.testing.assert_array_equal(left[:, 100:, 0], image[:, :124, 0])
  # Cutout: a grey square of side 2 * 40 px around the drawn centre.
  cut = randaugment.apply_op(image + 1, 'Cutout', 10, 1.0, 0.5, 0.5)
  assert (cut == randaugment.REPLACE).all(axis=-1).sum() == 80 * 80
  # Rotate by 30 degrees leaves the centre pixel and greys the corners.
  turned = randaugment.apply_op(image, 'Rotate', 10, 1.0)
  assert (turned[0, 0] == randaugment.REPLACE).all()


def test_the_draws_decide_everything():
  image = _image()
  rng = np.random.default_rng(1)
  draws = rng.random(randaugment.num_draws(2))
  first = randaugment.randaugment(image, draws, 2, 10)
  np.testing.assert_array_equal(first, randaugment.randaugment(image, draws, 2, 10))
  outputs = {randaugment.randaugment(image, rng.random(8), 2, 10).tobytes() for _ in range(20)}
  assert len(outputs) > 10
  # The op draw picks uniformly among the 16: op i owns [i / 16, (i + 1) / 16).
  for i, op in enumerate(randaugment.OPS):
    chosen = randaugment.randaugment(image, np.array([(i + 0.5) / 16, 0.2, 0.5, 0.5]), 1, 10)
    np.testing.assert_array_equal(chosen, randaugment.apply_op(image, op, 10, 1.0))


@pytest.mark.parametrize('op,pil', [
    ('AutoContrast', lambda im: PIL.ImageOps.autocontrast(im)),
    ('Equalize', lambda im: PIL.ImageOps.equalize(im)),
    ('Invert', lambda im: PIL.ImageOps.invert(im)),
    ('Posterize', lambda im: PIL.ImageOps.posterize(im, 4)),  # int(10/10 * 4) bits
    ('Solarize', lambda im: PIL.ImageOps.solarize(im, 128)),  # M = 5: int(5/10 * 256)
])
def test_point_ops_are_pil_s(op, pil):
  """The paper's operations are PIL's; the table-driven versions here give the same pixels."""
  image = _image(48)
  magnitude = 5 if op == 'Solarize' else 10
  expected = np.asarray(pil(PIL.Image.fromarray(image)))
  np.testing.assert_array_equal(randaugment.apply_op(image, op, magnitude, 1.0), expected)
