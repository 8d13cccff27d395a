"""RandAugment (Cubuk et al. 2020) on uint8 crops, with big_vision's operations and magnitudes.

big_vision's `randaug(2, 10)` is `pp/autoaugment.py`'s `distort_image_with_randaugment`, forked
from the TPU EfficientNet code: each of N layers picks one of 16 operations uniformly and always
applies it at magnitude M of _MAX_LEVEL = 10 (the per-op probability it draws is unused there);
geometric ops fill with grey 128. Magnitude -> argument, as there:

  Rotate      M/10 * 30 degrees, random sign       ShearX/Y    M/10 * 0.3, random sign
  TranslateX/Y M/10 * 100 px, random sign          Cutout      a square of side 2 * M/10 * 40 px
  Posterize   keep int(M/10 * 4) bits              Solarize    invert pixels >= int(M/10 * 256)
  SolarizeAdd +int(M/10 * 110) to pixels < 128     Color, Contrast, Brightness, Sharpness:
  AutoContrast, Equalize, Invert: no argument        blend factor M/10 * 1.8 + 0.1
(at M = 10 Solarize's threshold is 256, so it leaves the image as it is, as there). The pixel
lengths are big_vision's at 224 px; at other sizes (progressive resizing, tests) they scale with
the image. One departure: Contrast blends with the mean grey level, as PIL's ImageEnhance (which
that code says it is "equivalent of") does; the TF code's mean is the pixel count / 256, a bug.

Every random choice comes from `uniforms` [NUM_DRAWS per layer], drawn by the caller from
(seed, step, row) like the crop's, so a row's augmentation is the same on any number of
processes and threads. numpy and OpenCV (which release the GIL) in the decoding threads.
"""

import math

import cv2
import numpy as np

OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'Color',
       'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY',
       'Cutout', 'SolarizeAdd')
MAX_LEVEL = 10.0
REPLACE = 128  # the grey geometric ops and Cutout fill with
REFERENCE_SIZE = 224  # the image side big_vision's pixel lengths are for
# Per layer: which op, its sign, and Cutout's centre (row, column).
DRAWS_PER_LAYER = 4

_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13  # PIL's SMOOTH
_VALUES = np.arange(256, dtype=np.float32)


def num_draws(num_layers: int) -> int:
  return num_layers * DRAWS_PER_LAYER


# Every point op is a 256-entry table applied by cv2.LUT, and blends with an image are
# cv2.addWeighted: OpenCV releases the GIL, where numpy's elementwise float arithmetic on a
# 224 x 224 image held it for milliseconds (scripts/benchmark_input.py measures the cost).

def _lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
  """table: [256] for every channel or [256, 3] per channel, any numeric dtype in 0-255."""
  table = np.asarray(table).astype(np.uint8)
  return cv2.LUT(image, table.reshape(256, 1, -1) if table.ndim == 2 else table)


def _blend_lut(degenerate: np.ndarray | float, factor: float) -> np.ndarray:
  """PIL's ImageEnhance as a table: degenerate + factor (x - degenerate), clipped, truncated
  to uint8 as the TF code's blend."""
  return np.clip(degenerate + factor * (_VALUES - degenerate), 0, 255)


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
  """The same with an image as the degenerate (rounded by OpenCV, not truncated)."""
  return cv2.addWeighted(image, factor, degenerate, 1.0 - factor, 0.0)


def _grey(image: np.ndarray) -> np.ndarray:
  return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # ITU-R 601-2 luma, as PIL and TF


def _autocontrast(image: np.ndarray) -> np.ndarray:
  lo, hi = np.array([cv2.minMaxLoc(channel)[:2] for channel in cv2.split(image)],
                    np.float32).T
  scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1), 1.0)
  offset = np.where(hi > lo, -lo * scale, 0.0)
  return _lut(image, np.clip(_VALUES[:, None] * scale + offset, 0, 255))


def _equalize_table(channel: np.ndarray) -> np.ndarray:
  """PIL's ImageOps.equalize of one channel (the TF code's port of it), as a table."""
  histogram = cv2.calcHist([channel], [0], None, [256], [0, 256]).ravel().astype(np.int64)
  nonzero = histogram[histogram > 0]
  step = (nonzero.sum() - nonzero[-1]) // 255
  if step == 0:
    return np.arange(256)
  lut = (np.cumsum(histogram) + step // 2) // step
  return np.clip(np.concatenate([[0], lut[:-1]]), 0, 255)


def _equalize(image: np.ndarray) -> np.ndarray:
  channels = cv2.split(image)
  return _lut(image, np.stack([_equalize_table(c) for c in channels], axis=-1))


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """Output pixel (x, y) takes input pixel matrix @ (x, y, 1), nearest, grey outside (tfa's
  `transform`, which the TF code calls, interpolates nearest by default)."""
  height, width = image.shape[:2]
  return cv2.warpAffine(image, matrix.astype(np.float32), (width, height),
                        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=(REPLACE,) * 3)


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
  height, width = image.shape[:2]
  matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
  return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_NEAREST,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=(REPLACE,) * 3)


def _sharpness(image: np.ndarray, factor: float) -> np.ndarray:
  smooth = cv2.filter2D(image, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
  smooth[0, :], smooth[-1, :], smooth[:, 0], smooth[:, -1] = (
      image[0, :], image[-1, :], image[:, 0], image[:, -1])  # PIL keeps the border
  return _blend(smooth, image, factor)


def _cutout(image: np.ndarray, half: int, row_draw: float, col_draw: float) -> np.ndarray:
  height, width = image.shape[:2]
  row, col = int(row_draw * height), int(col_draw * width)
  out = image.copy()
  out[max(0, row - half):row + half, max(0, col - half):col + half] = REPLACE
  return out


def apply_op(image: np.ndarray, op: str, magnitude: float, sign: float, row_draw: float = 0.5,
             col_draw: float = 0.5) -> np.ndarray:
  """`op` at `magnitude` (0-10) on uint8 [H, W, 3]; sign +-1 for the ops with a direction."""
  level = magnitude / MAX_LEVEL
  pixels = image.shape[0] / REFERENCE_SIZE  # big_vision's lengths are at 224 px
  enhance = level * 1.8 + 0.1
  if op == 'AutoContrast':
    return _autocontrast(image)
  if op == 'Equalize':
    return _equalize(image)
  if op == 'Invert':
    return 255 - image
  if op == 'Rotate':
    return _rotate(image, sign * level * 30)
  if op == 'Posterize':
    shift = 8 - int(level * 4)
    return _lut(image, (np.arange(256) >> shift) << shift)
  if op == 'Solarize':
    threshold = int(level * 256)
    return _lut(image, np.where(_VALUES < threshold, _VALUES, 255 - _VALUES))
  if op == 'SolarizeAdd':
    return _lut(image, np.where(_VALUES < 128, np.clip(_VALUES + int(level * 110), 0, 255),
                                _VALUES))
  if op == 'Color':
    return _blend(cv2.cvtColor(_grey(image), cv2.COLOR_GRAY2RGB), image, enhance)
  if op == 'Contrast':
    return _lut(image, _blend_lut(round(float(_grey(image).mean())), enhance))
  if op == 'Brightness':
    return _lut(image, _blend_lut(0.0, enhance))
  if op == 'Sharpness':
    return _sharpness(image, enhance)
  if op == 'ShearX':
    return _warp(image, np.array([[1, sign * level * 0.3, 0], [0, 1, 0]]))
  if op == 'ShearY':
    return _warp(image, np.array([[1, 0, 0], [sign * level * 0.3, 1, 0]]))
  if op == 'TranslateX':
    return _warp(image, np.array([[1, 0, sign * level * 100 * pixels], [0, 1, 0]]))
  if op == 'TranslateY':
    return _warp(image, np.array([[1, 0, 0], [0, 1, sign * level * 100 * pixels]]))
  if op == 'Cutout':
    return _cutout(image, int(math.floor(level * 40 * pixels)), row_draw, col_draw)
  raise ValueError(f'unknown RandAugment op {op!r}')


def randaugment(image: np.ndarray, uniforms: np.ndarray, num_layers: int,
                magnitude: float) -> np.ndarray:
  """num_layers ops of OPS, each chosen and parametrised by DRAWS_PER_LAYER of `uniforms`
  (floats in [0, 1)), applied in turn to uint8 [H, W, 3]; `image` is not modified."""
  for layer in range(num_layers):
    op_draw, sign_draw, row_draw, col_draw = uniforms[layer * DRAWS_PER_LAYER:
                                                      (layer + 1) * DRAWS_PER_LAYER]
    op = OPS[min(int(op_draw * len(OPS)), len(OPS) - 1)]
    image = apply_op(image, op, magnitude, 1.0 if sign_draw < 0.5 else -1.0, row_draw, col_draw)
  return image
