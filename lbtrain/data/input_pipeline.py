"""Host-local numpy batches in an order that neither the hardware nor a restart can change.

Training data is one endless stream of examples: the concatenation of per-epoch permutations of
the train split, each a pure function of (seed, epoch). Global step s consumes stream positions
[s*B, (s+1)*B) for global batch B, so batches span epoch boundaries, and process p of P takes
rows [p*B/P, (p+1)*B/P) of every global batch. Hence the global batch of a step is the same on
any number of processes, and resuming at step k needs nothing but k.

TensorFlow is imported only when a data set is first touched, so code that merely imports this
package (the model, the training step) runs without it.
"""

import dataclasses
import functools
import re
from typing import Callable, Iterator, Optional

from etils import epath
import ml_collections
import numpy as np

from lbtrain.data import fashion_mnist
from lbtrain.errors import UserError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to size the model and count steps, before any batch is read."""
  name: str
  num_train_examples: int
  num_eval_examples: int
  num_classes: int
  image_shape: tuple  # (H, W, C) of the batches the pipeline yields
  # Per-channel mean and std of pixels scaled to [0, 1]; the device normalises 'uint8' images
  # with them, 'float32' ones arrive normalised.
  mean: tuple[float, ...]
  std: tuple[float, ...]
  image_dtype: str  # of the 'image' batches the pipeline yields: 'float32' or 'uint8'


@dataclasses.dataclass(frozen=True)
class _Dataset:
  """A known data set: the only place its location, preparation and constants are spelled out."""
  # Returns the folder of the prepared tfds data set, or raises UserError saying how to make it.
  locate: Callable[[ml_collections.ConfigDict], str]
  mean: tuple[float, ...]  # per channel, of pixels scaled to [0, 1]
  std: tuple[float, ...]
  in_memory: bool  # whether the splits are small enough to decode once and gather by index
  image_shape: Optional[tuple[int, int, int]] = None  # None: as stored
  # Published split sizes and class count, so that a recipe can be described (steps, lr
  # milestones) on a machine that does not hold the data.
  published_splits: Optional[dict[str, int]] = None
  published_classes: Optional[int] = None


def _find_prepared(tfds_name: str, how_to_prepare: str,
                   data_config: ml_collections.ConfigDict) -> str:
  """Returns the newest prepared version of a user-built tfds data set in data_dir."""
  data_dir = epath.Path(data_config.data_dir).expanduser()
  fix = how_to_prepare.format(data_dir=data_dir)
  if not data_dir.is_dir():
    raise UserError(f'data_dir {data_dir} does not exist: {fix}.')
  versions = []
  if (data_dir / tfds_name).is_dir():
    versions = [path for path in (data_dir / tfds_name).iterdir()
                if re.fullmatch(r'\d+\.\d+\.\d+', path.name)
                and (path / 'dataset_info.json').exists()]
  if not versions:
    raise UserError(f'{tfds_name} is not prepared in data_dir {data_dir}: {fix}.')
  return str(max(versions, key=lambda path: tuple(map(int, path.name.split('.')))))


_DATASETS = {
    'fashion_mnist': _Dataset(
        locate=lambda data_config: fashion_mnist.prepare(data_config.source_dir,
                                                         data_config.data_dir),
        mean=(0.2860,),
        std=(0.3530,),
        in_memory=True,
        image_shape=(28, 28, 1),
        published_splits={'train': 60_000, 'test': 10_000},
        published_classes=10),
    'imagenet2012': _Dataset(
        locate=functools.partial(
            _find_prepared, 'imagenet2012',
            'run `tfds build imagenet2012 --data_dir={data_dir} --manual_dir=DIR` with DIR '
            'holding ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar, or set '
            '--config.data.data_dir= to where it is prepared'),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        in_memory=False,
        image_shape=(224, 224, 3),
        published_splits={'train': 1_281_167, 'validation': 50_000},
        published_classes=1000),
}


def published_dataset_info(data_config: ml_collections.ConfigDict) -> Optional[DatasetInfo]:
  """The data set's published sizes, or None when they are unknown for these splits."""
  dataset = _dataset(data_config.dataset)
  splits = dataset.published_splits or {}
  if data_config.train_split not in splits or data_config.eval_split not in splits:
    return None
  return DatasetInfo(name=data_config.dataset,
                     num_train_examples=splits[data_config.train_split],
                     num_eval_examples=splits[data_config.eval_split],
                     num_classes=dataset.published_classes,
                     image_shape=dataset.image_shape, mean=dataset.mean, std=dataset.std,
                     image_dtype='float32')


def get_dataset_info(data_config: ml_collections.ConfigDict) -> DatasetInfo:
  """Reads the data set's metadata, preparing Fashion-MNIST in data_dir on first use."""
  dataset = _dataset(data_config.dataset)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  info = tfds.builder_from_directory(dataset.locate(data_config)).info
  sizes = {}
  for field in ('train_split', 'eval_split'):
    split = data_config[field]
    try:
      sizes[field] = info.splits[split].num_examples
    except ValueError as e:
      reason = ' '.join(str(e).split())
      raise UserError(f'{data_config.dataset} has no split {split!r}: {reason} '
                      f'(set --config.data.{field}=).') from None
  return DatasetInfo(
      name=data_config.dataset,
      num_train_examples=sizes['train_split'],
      num_eval_examples=sizes['eval_split'],
      num_classes=info.features['label'].num_classes,
      image_shape=dataset.image_shape or tuple(info.features['image'].shape),
      mean=dataset.mean, std=dataset.std, image_dtype='float32')


def train_batches(data_config: ml_collections.ConfigDict, info: DatasetInfo, *,
                  global_batch_size: int, seed: int, start_step: int, num_steps: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """This process's slices of the global batches of steps [start_step, start_step + num_steps).

  Each batch is {'image': float32 [b, H, W, C] normalised per channel, 'label': int32 [b]} with
  b = global_batch_size // process_count; see the module docstring for the order.
  """
  from lbtrain.data import in_memory  # pylint: disable=g-import-not-at-top
  dataset, images, labels = _load_in_memory(data_config, info, data_config.train_split)
  return in_memory.train_batches(
      images, labels, mean=dataset.mean, std=dataset.std, global_batch_size=global_batch_size,
      seed=seed, start_step=start_step, num_steps=num_steps, process_index=process_index,
      process_count=process_count)


def eval_batches(data_config: ml_collections.ConfigDict, info: DatasetInfo, *,
                 global_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """This process's slices of ceil(N_eval / global_batch_size) global batches, in split order.

  Every eval example appears exactly once over all processes; the last global batch is padded,
  and 'mask' (bool [b]) is True for real examples, so metrics must be weighted by it.
  """
  from lbtrain.data import in_memory  # pylint: disable=g-import-not-at-top
  dataset, images, labels = _load_in_memory(data_config, info, data_config.eval_split)
  return in_memory.eval_batches(
      images, labels, mean=dataset.mean, std=dataset.std, global_batch_size=global_batch_size,
      process_index=process_index, process_count=process_count)


def _dataset(name: str) -> _Dataset:
  if name not in _DATASETS:
    raise UserError(f'unknown dataset {name!r}: set --config.data.dataset= to one of '
                    f'{", ".join(_DATASETS)}.')
  return _DATASETS[name]


def _load_in_memory(data_config: ml_collections.ConfigDict, info: DatasetInfo,
                    split: str) -> tuple[_Dataset, np.ndarray, np.ndarray]:
  """Returns the data set's entry and the split's (images, labels), decoded into memory once."""
  from lbtrain.data import in_memory  # pylint: disable=g-import-not-at-top
  dataset = _dataset(info.name)
  if not dataset.in_memory:
    raise UserError(f'{info.name} input pipeline not implemented yet.')
  return (dataset, *in_memory.load_split(dataset.locate(data_config), split))
