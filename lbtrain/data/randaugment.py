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

_GREY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2 luma, as PIL and TF
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13  # PIL's SMOOTH


def num_draws(num_layers: int) -> int:
  return num_layers * DRAWS_PER_LAYER


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
  """degenerate + factor (image - degenerate), clipped: PIL's ImageEnhance."""
  out = degenerate.astype(np.float32) + factor * (image.astype(np.float32) - degenerate)
  return np.clip(out, 0, 255).astype(np.uint8)


def _grey(image: np.ndarray) -> np.ndarray:
  return np.clip(np.round(image.astype(np.float32) @ _GREY), 0, 255).astype(np.uint8)


def _autocontrast(image: np.ndarray) -> np.ndarray:
  lo = image.min(axis=(0, 1)).astype(np.float32)
  hi = image.max(axis=(0, 1)).astype(np.float32)
  scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1), 1.0)
  offset = np.where(hi > lo, -lo * scale, 0.0)
  return np.clip(image * scale + offset, 0, 255).astype(np.uint8)


def _equalize_channel(channel: np.ndarray) -> np.ndarray:
  """PIL's ImageOps.equalize of one channel (the TF code's port of it)."""
  histogram = np.bincount(channel.ravel(), minlength=256)
  nonzero = histogram[histogram > 0]
  step = (nonzero.sum() - nonzero[-1]) // 255
  if step == 0:
    return channel
  lut = (np.cumsum(histogram) + step // 2) // step
  lut = np.clip(np.concatenate([[0], lut[:-1]]), 0, 255).astype(np.uint8)
  return lut[channel]


def _equalize(image: np.ndarray) -> np.ndarray:
  return np.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


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
    return (image >> shift) << shift
  if op == 'Solarize':
    threshold = int(level * 256)
    return np.where(image < threshold, image, 255 - image).astype(np.uint8)
  if op == 'SolarizeAdd':
    added = np.clip(image.astype(np.int32) + int(level * 110), 0, 255).astype(np.uint8)
    return np.where(image < 128, added, image)
  if op == 'Color':
    return _blend(np.repeat(_grey(image)[..., None], 3, axis=-1), image, enhance)
  if op == 'Contrast':
    return _blend(np.full_like(image, round(float(_grey(image).mean()))), image, enhance)
  if op == 'Brightness':
    return _blend(np.zeros_like(image), image, enhance)
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
