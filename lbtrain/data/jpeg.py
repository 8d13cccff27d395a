"""JPEG crops for ImageNet: the Inception crop box, and decoding a box at the scale it needs.

A box much larger than the output does not need its full-resolution pixels: libjpeg-turbo
decodes at 1/2, 1/4 or 1/8 scale in the DCT domain, skipping most of the inverse DCT, upsampling
and colour conversion. `crop` decodes at the smallest of those scales at which the box still
covers the output size on both sides, so the final resize never enlarges what full resolution
would have shrunk. (libjpeg-turbo's other M/8 scales decoded these images slower than full scale:
scripts/benchmark_input.py.) Most ImageNet boxes are under twice 224 px, so at 224 the gain is
small; it grows at the smaller sizes of progressive resizing.

Everything here is numpy, simplejpeg (libjpeg-turbo) and OpenCV, which release the GIL while they
decode and resize: decoding threads run in parallel (`lbtrain.data.imagenet`).
"""

import math

import cv2
import numpy as np
import simplejpeg

# The Inception crop (Szegedy et al. 2015, "random-resized crop"): a box of 8 %-100 % of the
# image area with width/height in [3/4, 4/3], as the TF and MLPerf references draw it
# (tf.image.sample_distorted_bounding_box): an aspect ratio uniform in the range, then a height
# uniform between the smallest and the largest the area range and the image allow; MAX_ATTEMPTS
# draws, then the central square. Bounding the height by the image first is what lets very tall
# or wide images get a box (a draw of the area first, as torchvision's, mostly falls back there).
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
MAX_ATTEMPTS = 10

# The stated tolerances, as PSNR against the full-resolution tf path (decode all, cut the box,
# bilinear resize) on ImageNet-sized photo-like JPEGs (tests/test_imagenet_data.py,
# scripts/benchmark_input.py; docs/imagenet.md gives the measured figures): the eval crop, at
# full scale, differs only by the resize's rounding; a train crop decoded at a reduced scale is
# the box low-pass filtered by the DCT where the reference subsamples it with aliasing.
EVAL_MIN_PSNR_DB = 50.0
REDUCED_MEAN_PSNR_DB = 30.0  # the mean over train crops decoded at a reduced scale

# OpenCV runs its own thread pool inside every resize; the decoding threads are the parallelism.
cv2.setNumThreads(1)


def shape(jpeg: bytes) -> tuple[int, int]:
  """(height, width) from the JPEG's header, without decoding it."""
  try:
    height, width, _, _ = simplejpeg.decode_jpeg_header(jpeg)
  except ValueError:  # not a JPEG simplejpeg reads: see _decode_other
    height, width = _decode_other(jpeg).shape[:2]
  return height, width


def _decode_other(encoded: bytes) -> np.ndarray:
  """RGB pixels of an image simplejpeg refuses (CMYK JPEGs, a PNG named .JPEG: ImageNet has a
  few, which tfds's own build re-encodes, but other builds may not), through OpenCV."""
  image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f'cannot decode an image of {len(encoded)} bytes starting {encoded[:8]!r}')
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# The uniforms in [0, 1) one training example's crop and flip take, drawn ahead (so that a
# whole global batch's can be drawn at once from one seed): an aspect and a height per attempt,
# then the box's top and left, then the flip.
NUM_DRAWS = 2 * MAX_ATTEMPTS + 3


def inception_box(height: int, width: int, uniforms: np.ndarray, *,
                  fallback_ratio: float) -> tuple[int, int, int, int]:
  """(top, left, box height, box width) of the Inception crop that `uniforms` [NUM_DRAWS] pick.

  fallback_ratio: when no draw fits in MAX_ATTEMPTS (tiny images), the box is the central square
  of this fraction of the shorter side (data.eval_crop_ratio).
  """
  min_area, max_area = (fraction * height * width for fraction in AREA_RANGE)
  low_aspect, high_aspect = ASPECT_RATIO_RANGE
  for attempt in range(MAX_ATTEMPTS):
    aspect = low_aspect + (high_aspect - low_aspect) * uniforms[attempt]  # width / height
    high = min(height, round(math.sqrt(max_area / aspect)), math.floor((width + 0.5) / aspect))
    low = min(high, round(math.sqrt(min_area / aspect)))
    box_height = min(high, low + int(uniforms[MAX_ATTEMPTS + attempt] * (high - low + 1)))
    box_width = round(box_height * aspect)
    if box_width * box_height < min_area:  # the rounding fell short: one row more
      box_height += 1
      box_width = round(box_height * aspect)
    if (min_area <= box_width * box_height <= max_area and 0 < box_height <= height
        and 0 < box_width <= width):
      top = int(uniforms[-3] * (height - box_height + 1))
      left = int(uniforms[-2] * (width - box_width + 1))
      return top, left, box_height, box_width
  return center_box(height, width, fallback_ratio)


def train_crop(encoded: bytes, uniforms: np.ndarray, size: int, *, fallback_ratio: float,
               out: np.ndarray | None = None) -> np.ndarray:
  """The Inception crop of a JPEG that `uniforms` [NUM_DRAWS] pick, resized to size x size and
  mirrored left-right if their last is below 1/2; into `out` (uint8 [size, size, 3]) if given."""
  height, width = shape(encoded)
  box = inception_box(height, width, uniforms, fallback_ratio=fallback_ratio)
  image = crop(encoded, box, size, full_shape=(height, width), out=out)
  if uniforms[-1] < 0.5:
    cv2.flip(image, 1, dst=image)  # in place: OpenCV's copy is ~20x numpy's of a reversed view
  return image


def eval_crop(encoded: bytes, size: int, *, crop_ratio: float,
              out: np.ndarray | None = None) -> np.ndarray:
  """The central square of crop_ratio x the shorter side at full scale, resized to size x size:
  "resize the shorter side to size / crop_ratio, take the central size x size" in one resize."""
  height, width = shape(encoded)
  return crop(encoded, center_box(height, width, crop_ratio), size, full_shape=(height, width),
              reduce=False, out=out)


def center_box(height: int, width: int, ratio: float) -> tuple[int, int, int, int]:
  """The central square of ratio x the shorter side: the eval crop (0.875: 224 of 256)."""
  side = max(1, round(ratio * min(height, width)))
  return (height - side + 1) // 2, (width - side + 1) // 2, side, side


def crop(jpeg: bytes, box: tuple[int, int, int, int], size: int, *,
         full_shape: tuple[int, int] | None = None, reduce: bool = True,
         out: np.ndarray | None = None) -> np.ndarray:
  """The box of the JPEG resized to uint8 [size, size, 3], decoded at the scale it needs.

  reduce=False decodes at full scale (the eval crop: its pixels stay those of the published
  recipe, and eval is a small part of the input work). out: uint8 [size, size, 3] to write to.

  Bilinear without antialiasing, as the TF/MLPerf references (a box is mostly enlarged or
  shrunk by less than 2 once decoded at its scale).
  """
  height, width = full_shape or shape(jpeg)
  top, left, box_height, box_width = box
  reduction = 1  # the box may shrink to `size`, no further
  while reduce and reduction < 8 and min(box_height, box_width) >= 2 * reduction * size:
    reduction *= 2
  # The integer fast DCT and smooth chroma upsampling are tf.io.decode_jpeg's defaults: at full
  # scale the pixels are bitwise those of the tf path that lbtrain used before.
  try:
    image = simplejpeg.decode_jpeg(jpeg, colorspace='RGB', fastdct=True, fastupsample=False,
                                   min_height=math.ceil(height / reduction),
                                   min_width=math.ceil(width / reduction))
  except ValueError:
    image = _decode_other(jpeg)
  scale_y, scale_x = image.shape[0] / height, image.shape[1] / width
  y0, x0 = round(top * scale_y), round(left * scale_x)
  y1 = max(y0 + 1, min(image.shape[0], round((top + box_height) * scale_y)))
  x1 = max(x0 + 1, min(image.shape[1], round((left + box_width) * scale_x)))
  resized = cv2.resize(image[y0:y1, x0:x1], (size, size), dst=out,
                       interpolation=cv2.INTER_LINEAR)
  return resized if out is None else out
