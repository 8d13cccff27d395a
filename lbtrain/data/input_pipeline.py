"""Host-local numpy batches in an order that a restart cannot change.

Training data is one endless stream of examples: the concatenation of per-epoch permutations of
the train split, each a pure function of (seed, epoch). Global step s consumes stream positions
[s*B, (s+1)*B) for global batch B, so batches span epoch boundaries, and process p of P takes
rows [p*B/P, (p+1)*B/P) of every global batch. Hence resuming at step k needs nothing but k.
Under a batch schedule (`lbtrain.batch_schedule`) step s consumes [offset(s), offset(s) +
B(s)), offset(s) the examples of the steps before it: the same stream cut into other pieces,
and still a function of s alone.

Every host data set is read by index: decoded into memory when small (Fashion-MNIST,
`in_memory`), JPEGs from random-access ArrayRecord files when not (ImageNet, `imagenet`). So the
global batch of a step is the same on any number of processes, and a run may resume on another.
`synthetic` has no host pipeline: its batches are made on the devices (`synthetic`).

`train_inputs` / `eval_inputs` give the loop global `jax.Array` batches for any data set, one
interface: the host pipelines' rows go through `parallel.prefetch_to_mesh`, synthetic batches
are made in place. Both are generators; closing one stops its threads.

TensorFlow is imported only by the Fashion-MNIST pipeline (and tfds only when a data set is first
touched), so code that merely imports this package (the model, the training step, a synthetic
run) and ImageNet training run without it.
"""

import dataclasses
import re
from typing import Callable, Iterator, Optional

from etils import epath
import ml_collections
import numpy as np

from lbtrain.batch_schedule import BatchSchedule
from lbtrain.data import fashion_mnist
from lbtrain.errors import UserError
from lbtrain.resolution import Resolution


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
  # dtype of the yielded images: 'float32' (normalised on the host) or 'uint8' (a quarter of the
  # bytes to move and no normalisation on the host: the device does it).
  image_dtype: str
  # Whether the pipeline crops and resizes to any size: image_shape is then data.image_size's,
  # and a run may train and evaluate at other sizes (`lbtrain.resolution`).
  resizable: bool = False


@dataclasses.dataclass(frozen=True)
class _Dataset:
  """A known data set: the only place its location, preparation and constants are spelled out."""
  # Returns the folder of the prepared tfds data set, or raises UserError saying how to make it;
  # None for a data set made on the devices, which has no files.
  locate: Optional[Callable[[ml_collections.ConfigDict], str]]
  mean: tuple[float, ...]  # per channel, of pixels scaled to [0, 1]
  std: tuple[float, ...]
  image_dtype: str  # see DatasetInfo
  # 'in_memory': decoded once and gathered by index; 'imagenet': JPEGs read by index and
  # decoded in threads; 'device': batches made on the devices by the trainer.
  pipeline: str
  image_shape: Callable[[ml_collections.ConfigDict], tuple[int, int, int]]
  # Published split sizes and class count, so that a recipe can be described (steps, lr
  # milestones) on a machine that does not hold the data.
  published_splits: Optional[dict[str, int]] = None
  published_classes: Optional[int] = None


def find_prepared_dir(tfds_name: str, data_dir: str, build_command: str = '',
                      manual_files: tuple[str, ...] = ()) -> str:
  """Returns the newest prepared version of a user-built tfds data set in data_dir.

  Args:
    tfds_name: the data set's tfds name.
    data_dir: the tfds data_dir to look in.
    build_command: the command that prepares it, with {data_dir} and {manual_dir} to fill in.
    manual_files: the downloads it is built from. Finding them instead of the prepared data set
      means it was downloaded but never built, and the command then names their folder.
  """
  data_dir = epath.Path(data_dir).expanduser()
  fix = (f'run `{build_command.format(data_dir=data_dir, manual_dir="DIR")}` with DIR holding '
         f'{" and ".join(manual_files)}, or set --config.data.data_dir= to where it is prepared'
         if build_command else 'prepare it first')
  if not data_dir.is_dir():
    raise UserError(f'data_dir {data_dir} does not exist: {fix}.')
  versions = []
  if (data_dir / tfds_name).is_dir():
    versions = [path for path in (data_dir / tfds_name).iterdir()
                if re.fullmatch(r'\d+\.\d+\.\d+', path.name)
                and (path / 'dataset_info.json').exists()]
  if versions:
    return str(max(versions, key=lambda path: tuple(map(int, path.name.split('.')))))
  for manual_dir in (data_dir / 'downloads' / 'manual', data_dir):  # tfds's default, or data_dir
    found = [name for name in manual_files if (manual_dir / name).exists()]
    if found:
      missing = [name for name in manual_files if name not in found]
      raise UserError(
          f'{tfds_name} is not prepared in data_dir {data_dir} yet: {" and ".join(found)} '
          f'found in {manual_dir}; '
          + (f'add {" and ".join(missing)} there, then ' if missing else '')
          + f'run `{build_command.format(data_dir=data_dir, manual_dir=manual_dir)}` once '
          '(it takes hours).')
  raise UserError(f'{tfds_name} is not prepared in data_dir {data_dir}: {fix}.')


def _find_imagenet(data_config: ml_collections.ConfigDict) -> str:
  """The prepared imagenet2012's folder, once it is known to hold random-access records."""
  dataset_dir = find_prepared_dir(
      'imagenet2012', data_config.data_dir,
      'tfds build imagenet2012 --data_dir={data_dir} --manual_dir={manual_dir} '
      '--file_format=array_record', _IMAGENET_MANUAL_FILES)
  from lbtrain.data import to_array_record  # pylint: disable=g-import-not-at-top
  to_array_record.require_converted(dataset_dir, data_config.data_dir)
  return dataset_dir


def _imagenet_shape(data_config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(image_size, image_size, 3), once the ImageNet fields are checked: before anything runs."""
  for valid, problem in (
      (data_config.image_size >= 1, f'data.image_size={data_config.image_size} must be positive'),
      (data_config.eval_image_size is None or data_config.eval_image_size >= 1,
       f'data.eval_image_size={data_config.eval_image_size} must be positive, or None for '
       'data.image_size'),
      (0 < data_config.eval_crop_ratio <= 1,
       f'data.eval_crop_ratio={data_config.eval_crop_ratio} must be in (0, 1] (0.875: resize '
       'the shorter side to 256 and crop 224)'),
      (data_config.threads is None or data_config.threads >= 1,
       f'data.threads={data_config.threads} must be positive, or None for every core'),
  ):
    if not valid:
      raise UserError(f'{problem}.')
  return (data_config.image_size, data_config.image_size, 3)


_IMAGENET_MANUAL_FILES = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
_IMAGENET_SPLITS = {'train': 1_281_167, 'validation': 50_000}
_IMAGENET_LIKE = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), image_dtype='uint8',
                      image_shape=_imagenet_shape, published_splits=_IMAGENET_SPLITS,
                      published_classes=1000)

_DATASETS = {
    'fashion_mnist': _Dataset(
        locate=lambda data_config: fashion_mnist.prepare(data_config.source_dir,
                                                         data_config.data_dir),
        mean=(0.2860,),
        std=(0.3530,),
        image_dtype='float32',
        pipeline='in_memory',
        image_shape=lambda unused_data_config: (28, 28, 1),
        published_splits={'train': 60_000, 'test': 10_000},
        published_classes=10),
    'imagenet2012': _Dataset(locate=_find_imagenet, pipeline='imagenet', **_IMAGENET_LIKE),
    # ImageNet-shaped batches made on the devices, to measure the step without any input
    # pipeline; ImageNet's sizes, so that epochs and schedules mean what they mean there.
    'synthetic': _Dataset(locate=None, pipeline='device', **_IMAGENET_LIKE),
}


_PERCENT_SLICE = re.compile(r'^(\w+)\[(-?\d+)?%?:(-?\d+)?%?\]$')


def published_split_size(splits: dict[str, int], split: str) -> Optional[int]:
  """The size of a published split or of a percent slice of one ('train[:99%]', big_vision's
  minival 'train[99%:]'), with tfds's default rounding of a percent boundary, to the closest
  example; None when unknown."""
  if split in splits:
    return splits[split]
  match = _PERCENT_SLICE.match(split)
  if not match or match.group(1) not in splits or '%' not in split:
    return None
  total = splits[match.group(1)]
  start, stop = (None if bound is None else int(round(int(bound) * total / 100.0))
                 for bound in match.group(2, 3))
  return len(range(total)[slice(start, stop)])


def published_dataset_info(data_config: ml_collections.ConfigDict) -> Optional[DatasetInfo]:
  """The data set's published sizes, or None when they are unknown for these splits."""
  dataset = _dataset(data_config.dataset)
  splits = dataset.published_splits or {}
  if dataset.locate is None:
    return _synthetic_info(data_config, dataset)
  train, evaluated = (published_split_size(splits, data_config[field])
                      for field in ('train_split', 'eval_split'))
  if train is None or evaluated is None:
    return None
  return _info(data_config, dataset, train, evaluated, dataset.published_classes)


def get_dataset_info(data_config: ml_collections.ConfigDict) -> DatasetInfo:
  """Reads the data set's metadata, preparing Fashion-MNIST in data_dir on first use."""
  dataset = _dataset(data_config.dataset)
  if dataset.locate is None:
    return _synthetic_info(data_config, dataset)
  location = dataset.locate(data_config)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  info = tfds.builder_from_directory(location).info
  sizes = {}
  for field in ('train_split', 'eval_split'):
    split = data_config[field]
    try:
      sizes[field] = info.splits[split].num_examples
    except ValueError as e:
      reason = ' '.join(str(e).split())
      raise UserError(f'{data_config.dataset} has no split {split!r}: {reason} '
                      f'(set --config.data.{field}=).') from None
  return _info(data_config, dataset, sizes['train_split'], sizes['eval_split'],
               info.features['label'].num_classes)


def _pieces(global_batch_size: int, batches: Optional[BatchSchedule], start_step: int,
            num_steps: int) -> list[tuple[int, int, int, int]]:
  """(first step, steps, global batch, stream position of the first step) of each run of steps
  at one batch within [start_step, start_step + num_steps)."""
  if batches is None:
    return [(start_step, num_steps, global_batch_size, start_step * global_batch_size)]
  stop, pieces = start_step + num_steps, []
  for first, end, batch in batches.segments():
    low, high = max(first, start_step), min(end, stop)
    if high > low:
      pieces.append((low, high - low, batch, batches.examples_before(low)))
  return pieces


def _chained(make: Callable[..., Iterator], pieces: list[tuple[int, int, int, int]]) -> Iterator:
  """One iterator over the pieces' batches; a piece's pipeline starts when it is reached."""
  if len(pieces) == 1:
    return make(*pieces[0])

  def chain():
    for piece in pieces:
      yield from make(*piece)
  return chain()


def train_batches(data_config: ml_collections.ConfigDict, info: DatasetInfo, *,
                  global_batch_size: int, seed: int, start_step: int, num_steps: int,
                  process_index: int = 0, process_count: int = 1,
                  sizes: Optional[Resolution] = None,
                  batches: Optional[BatchSchedule] = None) -> Iterator[dict[str, np.ndarray]]:
  """This process's slices of the global batches of steps [start_step, start_step + num_steps).

  Each batch is {'image': [b, H, W, C] of info.image_dtype, 'label': int32 [b]} with
  b = (the step's global batch) // process_count; see the module docstring for the order.
  `sizes`: the image size of each step (resizable data sets; None: info.image_shape's).
  `batches`: the global batch of each step (None: global_batch_size at every step).
  """
  dataset = _with_host_pipeline(info)
  if dataset.pipeline == 'imagenet':
    from lbtrain.data import imagenet  # pylint: disable=g-import-not-at-top
    return _chained(lambda first, steps, batch, position: imagenet.train_batches(
        dataset.locate(data_config), data_config, global_batch_size=batch, seed=seed,
        start_step=first, num_steps=steps, first_position=position,
        process_index=process_index, process_count=process_count, sizes=sizes),
                    _pieces(global_batch_size, batches, start_step, num_steps))
  from lbtrain.data import in_memory  # pylint: disable=g-import-not-at-top
  images, labels = in_memory.load_split(dataset.locate(data_config), data_config.train_split)
  return _chained(lambda first, steps, batch, position: in_memory.train_batches(
      images, labels, mean=dataset.mean, std=dataset.std, global_batch_size=batch, seed=seed,
      start_step=first, num_steps=steps, first_position=position, process_index=process_index,
      process_count=process_count), _pieces(global_batch_size, batches, start_step, num_steps))


def eval_batches(data_config: ml_collections.ConfigDict, info: DatasetInfo, *,
                 global_batch_size: int, process_index: int = 0, process_count: int = 1,
                 image_size: Optional[int] = None) -> Iterator[dict[str, np.ndarray]]:
  """This process's slices of ceil(N_eval / global_batch_size) global batches.

  Every eval example appears exactly once over all processes and every process yields the same
  number of batches; padding rows have 'mask' (bool [b]) False, so metrics must be weighted by
  it. 'image' is of info.image_dtype; `image_size`: its side (resizable data sets; None:
  info.image_shape's).
  """
  dataset = _with_host_pipeline(info)
  if dataset.pipeline == 'imagenet':
    from lbtrain.data import imagenet  # pylint: disable=g-import-not-at-top
    return imagenet.eval_batches(
        dataset.locate(data_config), data_config, global_batch_size=global_batch_size,
        process_index=process_index, process_count=process_count, image_size=image_size)
  from lbtrain.data import in_memory  # pylint: disable=g-import-not-at-top
  images, labels = in_memory.load_split(dataset.locate(data_config), data_config.eval_split)
  return in_memory.eval_batches(
      images, labels, mean=dataset.mean, std=dataset.std, global_batch_size=global_batch_size,
      process_index=process_index, process_count=process_count)


def train_inputs(data_config: ml_collections.ConfigDict, info: DatasetInfo, mesh, *,
                 global_batch_size: int, seed: int, start_step: int, num_steps: int,
                 sizes: Optional[Resolution] = None,
                 batches: Optional[BatchSchedule] = None) -> Iterator[dict]:
  """Global batches of steps [start_step, start_step + num_steps), on the devices ahead of the
  step that needs them; `sizes` and `batches` as in train_batches."""
  import jax  # pylint: disable=g-import-not-at-top
  from lbtrain import parallel  # pylint: disable=g-import-not-at-top
  if _dataset(info.name).pipeline == 'device':
    from lbtrain.data import synthetic  # pylint: disable=g-import-not-at-top
    return _chained(lambda first, steps, batch, unused_position: synthetic.train_batches(
        info, mesh, global_batch_size=batch, seed=seed, start_step=first, num_steps=steps,
        sizes=sizes), _pieces(global_batch_size, batches, start_step, num_steps))
  return parallel.prefetch_to_mesh(
      train_batches(data_config, info, global_batch_size=global_batch_size, seed=seed,
                    start_step=start_step, num_steps=num_steps,
                    process_index=jax.process_index(), process_count=jax.process_count(),
                    sizes=sizes, batches=batches),
      mesh, data_config.prefetch_batches)


def eval_inputs(data_config: ml_collections.ConfigDict, info: DatasetInfo, mesh, *,
                global_batch_size: int, image_size: Optional[int] = None) -> Iterator[dict]:
  """The eval split once as global batches on the devices, the last one padded and masked;
  `image_size` as in eval_batches."""
  import jax  # pylint: disable=g-import-not-at-top
  from lbtrain import parallel  # pylint: disable=g-import-not-at-top
  if _dataset(info.name).pipeline == 'device':
    from lbtrain.data import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.eval_batches(info, mesh, global_batch_size=global_batch_size,
                                  image_size=image_size)
  return parallel.prefetch_to_mesh(
      eval_batches(data_config, info, global_batch_size=global_batch_size,
                   process_index=jax.process_index(), process_count=jax.process_count(),
                   image_size=image_size),
      mesh, data_config.prefetch_batches)


def rows_per_process(global_batch_size: int, process_index: int, process_count: int) -> int:
  """b = B / P: each process's rows of every global batch (see the module docstring)."""
  if global_batch_size % process_count:
    raise UserError(f'global batch size {global_batch_size} is not divisible by the '
                    f'{process_count} processes; choose a multiple of {process_count}.')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, {process_count}).')
  return global_batch_size // process_count


def prepared_dir(data_config: ml_collections.ConfigDict) -> str:
  """The folder of the prepared tfds data set, found as the trainer finds it (UserError saying
  how to prepare it when it is not)."""
  return _dataset(data_config.dataset).locate(data_config)


def _dataset(name: str) -> _Dataset:
  if name not in _DATASETS:
    raise UserError(f'unknown dataset {name!r}: set --config.data.dataset= to one of '
                    f'{", ".join(_DATASETS)}.')
  return _DATASETS[name]


def _info(data_config: ml_collections.ConfigDict, dataset: _Dataset, num_train_examples: int,
          num_eval_examples: int, num_classes: int) -> DatasetInfo:
  return DatasetInfo(name=data_config.dataset, num_train_examples=num_train_examples,
                     num_eval_examples=num_eval_examples, num_classes=num_classes,
                     image_shape=dataset.image_shape(data_config), mean=dataset.mean,
                     std=dataset.std, image_dtype=dataset.image_dtype,
                     resizable=dataset.pipeline in ('imagenet', 'device'))


def _synthetic_info(data_config: ml_collections.ConfigDict, dataset: _Dataset) -> DatasetInfo:
  # No files, so no split names to look up: the sizes of the data set it stands in for.
  return _info(data_config, dataset, dataset.published_splits['train'],
               dataset.published_splits['validation'], dataset.published_classes)


def _with_host_pipeline(info: DatasetInfo) -> _Dataset:
  dataset = _dataset(info.name)
  if dataset.pipeline == 'device':
    raise ValueError(f'dataset {info.name!r} has no host input pipeline: its batches are made on '
                     'the devices (data.train_inputs / eval_inputs).')
  return dataset
