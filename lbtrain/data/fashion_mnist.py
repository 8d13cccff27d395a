"""Fashion-MNIST from its four standard idx files, stored once as a tfds data set.

There is no network here, so tfds's own `fashion_mnist` builder (which downloads) cannot be
used; the files come from Debian's `dataset-fashion-mnist` package or any folder holding them.
"""

import gzip
import importlib.resources
import os
import shutil
import sys
import tempfile

from absl import logging
import numpy as np

from lbtrain.errors import UserError

# Not 'fashion_mnist': a folder of that name in data_dir belongs to tfds's registered builder,
# whose examples are stored shuffled and whose version numbers are its own.
TFDS_NAME = 'lbtrain_fashion_mnist'
VERSION = '1.0.0'
NUM_CLASSES = 10

_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
_HOW_TO_FIX = ('apt-get install -y dataset-fashion-mnist, or set --config.data.source_dir= to a '
               'folder holding the four Fashion-MNIST idx files ('
               + ', '.join(name for files in _FILES.values() for name in files) + ')')


def prepare(source_dir: str, data_dir: str) -> str:
  """Returns the prepared data set's folder in data_dir, building it from source_dir if absent.

  The data set is written into a temporary folder beside its destination and renamed into place,
  so a killed preparation never leaves a folder that looks prepared, and processes preparing at
  the same time each finish with the one copy that won the rename.

  Args:
    source_dir: folder holding the four idx files.
    data_dir: tfds data_dir; created if missing.
  """
  data_dir = os.path.expanduser(data_dir)
  destination = os.path.join(data_dir, TFDS_NAME, VERSION)
  if _is_prepared(destination):
    return destination
  splits = _read_splits(os.path.expanduser(source_dir))
  logging.info('Preparing Fashion-MNIST from %s into %s (once).', source_dir, destination)
  try:
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f'.{VERSION}.incomplete-',
                               dir=os.path.dirname(destination))
  except OSError as error:
    raise UserError(f'data.data_dir {data_dir} cannot be written ({error.strerror}: '
                    f'{error.filename}), and Fashion-MNIST is prepared there on first use: set '
                    '--config.data.data_dir= to a folder you can write to.') from None
  try:
    built = _store_as_tfds(splits, scratch)
    try:
      os.rename(built, destination)
    except OSError:
      if not _is_prepared(destination):
        raise
      logging.info('Another process prepared %s first; using its copy.', destination)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return destination


def _is_prepared(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, 'dataset_info.json'))


def _read_splits(source_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Returns {split: (images uint8 [N, 28, 28, 1], labels uint8 [N])} in file order."""
  if not os.path.isdir(source_dir):
    raise UserError(f'Fashion-MNIST source folder {source_dir} does not exist: {_HOW_TO_FIX}.')
  for files in _FILES.values():
    for name in files:
      path = os.path.join(source_dir, name)
      if not os.path.isfile(path):
        raise UserError(f'Fashion-MNIST file {path} is missing: {_HOW_TO_FIX}.')
  splits = {}
  for split, (images_file, labels_file) in _FILES.items():
    images = _read_idx(os.path.join(source_dir, images_file))
    labels = _read_idx(os.path.join(source_dir, labels_file))
    splits[split] = (images[..., np.newaxis], labels)
  return splits


def _read_idx(path: str) -> np.ndarray:
  """Parses an idx file of unsigned bytes (the MNIST format: 4-byte magic, big-endian dims)."""
  with gzip.open(path, 'rb') as f:
    data = f.read()
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _store_as_tfds(splits: dict[str, tuple[np.ndarray, np.ndarray]], data_dir: str) -> str:
  """Writes the splits as a tfds data set under data_dir and returns its version folder."""
  # tfds 4.9.10 imports the `importlib_resources` backport while preparing but declares it only
  # for Python < 3.9 (tensorflow/datasets#11212); the standard library module serves.
  try:
    import importlib_resources  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    sys.modules['importlib_resources'] = importlib.resources
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def examples(images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image, 'label': label}

  builder = tfds.dataset_builders.store_as_tfds_dataset(
      name=TFDS_NAME,
      version=VERSION,
      features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(shape=(28, 28, 1)),
          'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
      }),
      split_datasets={split: examples(*arrays) for split, arrays in splits.items()},
      data_dir=data_dir,
      description='Fashion-MNIST (Xiao et al. 2017) from the standard idx files, in file order.',
      homepage='https://github.com/zalandoresearch/fashion-mnist',
      # File order, so example i of a split is record i of its idx file.
      disable_shuffling=True,
  )
  return os.fspath(builder.data_dir)
