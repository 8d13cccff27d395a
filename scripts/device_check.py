"""One device check: lbtrain's ResNet-50 throughput and overheads on one accelerator, as one JSON.

Measured on synthetic data made on the device (`data.dataset='synthetic'`), bfloat16, the
resnet50_8k recipe's optimizer and BatchNorm groups, with scripts/benchmark.py's code:

  step_batch_128/256  ResNet-50 v1.5 at 224 px: images/sec, compile seconds, TFLOP/s per device
                      from the compiled step's cost analysis, and MFU against the datasheet peak
  vit_s16_step_batch_256  the same for ViT-S/16 at 224 px in the vit_s16_i1k recipe (Beyer et
                      al. 2022, big_vision: bfloat16, Adam with a bfloat16 first moment, Mixup
                      in the step), 256 per device
  image_size_160/192/224  images/sec at those `data.image_size` values, batch 256 per device
                      (224 is step_batch_256)
  loop_over_bare      seconds per step of a bare jit loop / lbtrain's loop (train_and_evaluate)
  accumulation        one batch's seconds per step / k micro-batches' (k = 2), same global batch
  input_pipeline      lbtrain's ImageNet pipeline over synthetic JPEGs on every host core
                      (null, with the reason, where TensorFlow is not installed)
  xla_flags           step_batch_256's images/sec with XLA flags a public guide recommends and
                      the check does not apply (_CANDIDATE_XLA_FLAGS), against without them
  sharding            parallel.sharding's layouts with ResNet-50 + LARS (resnet50_32k_lars) at
                      step_batch_256's size: MiB per device from XLA's memory analysis and seconds
                      per step relative to 'replicated' (scripts/sharding_memory.py); "not
                      measured" on one device, where every layout is the same program

Every measurement is an object with "status": "measured" (and its figures), "error" (and the
error's first line), "not measured" (and the reason) or "skipped" (the time budget ran out
first). Each part runs in its own process under one deadline (--budget_s), so a crash, an
out-of-memory error or a hang in one costs only the measurements still open in that part.

The machine needs jax with its accelerator plugin, flax, optax, orbax and absl; ml-collections
and tensorboardX, which lbtrain needs too, are pure-Python wheels that scripts/setup.sh puts in
.device_wheels/ (ignored by git) at the versions in requirements.txt. Each wheel there is put
on sys.path after site-packages, so an installed copy wins. On the device machine (the `run`
tool, from the repository root; --output keeps a copy of the JSON under $OUT):

  run(command="python3 scripts/device_check.py --output=$OUT/device_check.json",
      carry=[".device_wheels"], timeout_s=540)

On CPU with a tiny model, to keep the check working (tests/test_device_check.py runs it):

  python scripts/device_check.py --dry_run
"""

import argparse
import datetime
import gc
import glob
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

_SCRIPTS = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_SCRIPTS)
WHEEL_DIR = os.path.join(_REPO, '.device_wheels')

# XLA flags that a public GPU guide recommends for one device's code, not applied by default:
# measurement xla_flags compares the step with them against without. The guides' other flags
# (latency-hiding scheduler, async collectives, NCCL and CUDA_DEVICE_MAX_CONNECTIONS
# settings) overlap or tune communication between devices, which one GPU does not have.
_CANDIDATE_XLA_FLAGS = (
    # JAX's "GPU performance tips" lists it as a code-generation flag that "can improve
    # performance" (docs.jax.dev/en/latest/gpu_performance_tips.html), while JAX-Toolbox lists
    # --xla_gpu_enable_triton_gemm=false, cuBLAS instead of Triton (NVIDIA/JAX-Toolbox,
    # rosetta/docs/GPU_performance.md): no public reason either way for ResNet-50, whose one
    # GEMM is the head; its convolutions are cuDNN calls.
    '--xla_gpu_triton_gemm_any=true',
)

# What the check does apply, and why; reported in the JSON with the figures.
_SETTINGS = {
    'dtype bfloat16': 'JAX GPU performance tips: on A100 and later, compute in bfloat16 '
                      '(docs.jax.dev/en/latest/gpu_performance_tips.html)',
    'layout NHWC': "flax's convolutions take NHWC, the layout cuDNN's tensor-core convolutions "
                   'use; nothing to set',
    'XLA flags': 'none beyond XLA_FLAGS from the environment: the public lists (JAX GPU '
                 'performance tips, JAX-Toolbox GPU performance) are about collectives or '
                 "GEMMs, and XLA's defaults already put fusions, cuBLAS, cuDNN and custom "
                 'calls into CUDA graphs (xla_gpu_enable_command_buffer in '
                 'xla/debug_options_flags.cc)',
    'XLA_PYTHON_CLIENT_MEM_FRACTION': "jax's default (0.75 of the device's memory): a "
                                      'memory setting, not a speed one; the parts run one '
                                      'process at a time, so none shares the device',
    'persistent compilation cache': 'a temporary one per run, so a program that two '
                                    'measurements compile alike is compiled once',
}


class _Plan:
  """What each measurement runs: ResNet-50 on the device, or a tiny model on CPU (--dry_run)."""

  def __init__(self, dry_run: bool):
    self.dry_run = dry_run
    if dry_run:
      self.model, self.image_size, self.image_sizes = 'cnn', 32, (24, 32)
      # BN groups of 8 (the recipe's are 32), so that batches this small divide into them.
      self.batches, self.accum_per_device, self.bn_group_size = (8, 16), 16, 8
      self.steps, self.loop_steps, self.repeats, self.loop_repeats = 2, 4, 1, 1
      self.min_start_s = 1.0
      self.input = {'num_images': 16, 'batch_size': 8, 'num_batches': 2, 'image_size': 32}
      self.vit = {'width': 32, 'depth': 1, 'num_heads': 2, 'patch_size': 8}  # tiny, on CPU
    else:
      self.model, self.image_size, self.image_sizes = 'resnet50', 224, (160, 192, 224)
      # resnet50_8k's BN groups of 32, given explicitly so that accumulation's k = 1 is the
      # same program as step_batch_256 (compiled once, through the cache).
      self.batches, self.accum_per_device, self.bn_group_size = (128, 256), 256, 32
      self.steps, self.loop_steps, self.repeats, self.loop_repeats = 20, 20, 2, 3
      self.min_start_s = 45.0
      self.input = {'num_images': 512, 'batch_size': 128, 'num_batches': 20, 'image_size': 224}
      self.vit = {}  # vit_s16_i1k's ViT-S/16
    self.config, self.dtype, self.accum_steps = 'resnet50_8k', 'bfloat16', 2
    self.vit_config = 'vit_s16_i1k'

  @property
  def main_batch(self) -> int:
    return self.batches[-1]

  def parts(self) -> dict[str, list[str]]:
    """Each process's measurements, in the order they run."""
    return {
        'device': ([f'step_batch_{b}' for b in self.batches]
                   + [f'vit_s16_step_batch_{self.main_batch}']
                   + [f'image_size_{s}' for s in self.image_sizes]
                   + ['loop_over_bare', 'accumulation', 'sharding']),
        'input': ['input_pipeline'],
        'xla_flags': ['xla_flags'],
    }


def _use_carried_wheels() -> list[str]:
  """Puts each wheel in .device_wheels/ on sys.path, after site-packages."""
  wheels = sorted(glob.glob(os.path.join(WHEEL_DIR, '*.whl')))
  sys.path.extend(w for w in wheels if w not in sys.path)
  return wheels


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0][:500] if text else ""}'.rstrip(': ')


class _Results:
  """The part's measurements, rewritten to a JSON file after each change so the parent finds
  what finished even when this process dies."""

  def __init__(self, path: str):
    self.path = path
    self.values: dict[str, Any] = {}

  def set(self, name: str, value: dict[str, Any]) -> None:
    self.values[name] = value
    with open(self.path + '.tmp', 'w', encoding='utf-8') as f:
      json.dump(self.values, f)
    os.replace(self.path + '.tmp', self.path)

  def run(self, name: str, measure: Callable[[], dict[str, Any]], deadline: float,
          plan: _Plan) -> None:
    if time.time() > deadline - plan.min_start_s:
      self.set(name, {'status': 'skipped', 'reason': 'the time budget ran out first'})
      return
    self.set(name, {'status': 'running'})
    start = time.time()
    try:
      value = {'status': 'measured', **measure()}
    except Exception as error:  # pylint: disable=broad-except
      traceback.print_exc()
      value = {'status': 'error', 'error': _first_line(error)}
    value['seconds'] = round(time.time() - start, 1)
    self.set(name, value)
    gc.collect()


def _environment() -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  versions = {}
  for package in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy'):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  modules = {}
  for name in ('ml_collections', 'tensorboardX', 'yaml', 'etils'):
    try:
      modules[name] = getattr(__import__(name), '__file__', None)
    except ImportError as error:
      modules[name] = f'not importable: {_first_line(error)}'
  return {'backend': jax.default_backend(), 'device_kind': device.device_kind,
          'device_count': jax.device_count(), 'process_count': jax.process_count(),
          'host_cores': len(os.sched_getaffinity(0)), 'python': sys.version.split()[0],
          'versions': versions, 'modules': modules,
          'XLA_FLAGS': os.environ.get('XLA_FLAGS', '')}


def _benchmark_args(plan: _Plan, benchmark, **overrides) -> argparse.Namespace:
  args = benchmark.parse_args([
      'step', f'--config={plan.config}', f'--model={plan.model}', f'--dtype={plan.dtype}',
      f'--image_size={plan.image_size}', f'--steps={plan.steps}',
      f'--repeats={plan.repeats}', f'--accum_steps={plan.accum_steps}',
      f'--bn_group_size={plan.bn_group_size}'])
  return argparse.Namespace(**{**vars(args), **overrides})


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
  return {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}


def _device_part(plan: _Plan, results: _Results, deadline: float, only: set[str]) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if plan.dry_run:
    # The dry run proves the code paths, not the speed: XLA:CPU compiles several times faster.
    jax.config.update('jax_disable_most_optimizations', True)
  with tempfile.TemporaryDirectory() as cache:
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    results.set('environment', _environment())
    import benchmark  # pylint: disable=g-import-not-at-top
    steps: dict[int, dict[str, Any]] = {}

    def step(per_device: int, image_size: int) -> dict[str, Any]:
      measured = _rounded(benchmark.measure_step(
          _benchmark_args(plan, benchmark, image_size=image_size), per_device, plan.dtype))
      if image_size == plan.image_size:
        steps[per_device] = measured
      return {'image_size': image_size, **measured}

    def vit_step() -> dict[str, Any]:
      """No BatchNorm, so no groups and no accumulation: the recipe's own step."""
      args = _benchmark_args(plan, benchmark, config=plan.vit_config, model='vit',
                             bn_group_size=None, vit=plan.vit)
      return {'config': plan.vit_config, 'image_size': plan.image_size,
              **_rounded(benchmark.measure_step(args, plan.main_batch, plan.dtype))}

    def image_size(size: int) -> dict[str, Any]:
      if size == plan.image_size and plan.main_batch in steps:
        return {'image_size': size, **steps[plan.main_batch],
                'note': f'the same measurement as step_batch_{plan.main_batch}'}
      return step(plan.main_batch, size)

    def loop_over_bare() -> dict[str, Any]:
      args = _benchmark_args(plan, benchmark, steps=plan.loop_steps,
                             log_every_steps=plan.loop_steps // 2, repeats=plan.loop_repeats)
      measured = benchmark.measure_overhead(args, plan.main_batch)
      return {'per_device_batch': plan.main_batch, 'image_size': plan.image_size,
              'ratio': round(measured['ratio'], 4),
              'bare_ms_per_step': [round(1e3 * s, 2) for s in measured['bare_seconds_per_step']],
              'loop_ms_per_step': [round(1e3 * s, 2) for s in measured['loop_seconds_per_step']]}

    def accumulation() -> dict[str, Any]:
      seconds = benchmark.measure_accumulation(_benchmark_args(plan, benchmark),
                                               plan.accum_per_device)
      one, k = seconds[1], seconds[plan.accum_steps]
      return {'per_device_batch': plan.accum_per_device, 'k': plan.accum_steps,
              'micro_batch_per_device': plan.accum_per_device // plan.accum_steps,
              'one_batch_ms_per_step': round(1e3 * one, 2),
              'k_micro_batches_ms_per_step': round(1e3 * k, 2), 'ratio': round(one / k, 4)}

    def sharding() -> dict[str, Any]:
      if jax.device_count() < 2:
        return {'status': 'not measured',
                'reason': f'{jax.device_count()} device: parallel.sharding splits the state '
                          'over several devices; on one, every layout is the same program'}
      import sharding_memory  # pylint: disable=g-import-not-at-top
      args = sharding_memory.parse_args([
          '--config=resnet50_32k_lars', f'--model={plan.model}',
          f'--image_size={plan.image_size}', f'--per_device_batch={plan.main_batch}',
          f'--time_batch={plan.main_batch}', f'--time_image_size={plan.image_size}',
          f'--steps={plan.steps}', f'--repeats={plan.repeats}'])
      mib = {mode: _rounded(sharding_memory.compiled_memory(args, mode, plan.main_batch))
             for mode in ('replicated', 'update', 'fsdp')}
      seconds = sharding_memory.step_seconds(args)
      return {'per_device_batch': plan.main_batch, 'image_size': plan.image_size,
              'mib_per_device': mib,
              'ms_per_step': {mode: round(1e3 * s, 2) for mode, s in seconds.items()},
              'relative_to_replicated': {mode: round(s / seconds['replicated'], 4)
                                         for mode, s in seconds.items()}}

    measures = {f'step_batch_{b}': (lambda b=b: step(b, plan.image_size)) for b in plan.batches}
    measures[f'vit_s16_step_batch_{plan.main_batch}'] = vit_step
    measures.update({f'image_size_{s}': (lambda s=s: image_size(s)) for s in plan.image_sizes})
    measures.update(loop_over_bare=loop_over_bare, accumulation=accumulation, sharding=sharding)
    for name in plan.parts()['device']:
      if name in only:
        results.run(name, measures[name], deadline, plan)


def _input_part(plan: _Plan, results: _Results, deadline: float, only: set[str]) -> None:
  if 'input_pipeline' not in only:
    return
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    results.set('input_pipeline', {
        'status': 'not measured', 'images_per_sec': None,
        'reason': 'the ImageNet benchmark writes its JPEGs with TensorFlow and TensorFlow '
                  f'is not importable here ({_first_line(error)})'})
    return

  def measure() -> dict[str, Any]:
    import benchmark_input  # pylint: disable=g-import-not-at-top
    from lbtrain import data  # pylint: disable=g-import-not-at-top
    settings = plan.input
    with tempfile.TemporaryDirectory() as scratch:
      kilobytes = benchmark_input.write_synthetic_imagenet(scratch, settings['num_images'])
      data_config = benchmark_input.imagenet_data_config(scratch, settings['image_size'])
      info = data.get_dataset_info(data_config)
      cores = len(os.sched_getaffinity(0))
      rate = benchmark_input.images_per_second(
          data_config, info, threads=cores, batch_size=settings['batch_size'],
          num_batches=settings['num_batches'])
    return {'images_per_sec': round(rate, 1), 'threads': cores,
            'jpeg_kilobytes_mean': round(kilobytes, 1), 'tensorflow': tensorflow.__version__,
            **settings}

  results.run('input_pipeline', measure, deadline, plan)


def _xla_flags_part(plan: _Plan, results: _Results, deadline: float, only: set[str]) -> None:
  if 'xla_flags' not in only:
    return
  import jax  # pylint: disable=g-import-not-at-top
  if plan.dry_run:
    jax.config.update('jax_disable_most_optimizations', True)
  results.set('environment', _environment())
  import benchmark  # pylint: disable=g-import-not-at-top

  def measure() -> dict[str, Any]:
    measured = benchmark.measure_step(_benchmark_args(plan, benchmark), plan.main_batch,
                                      plan.dtype)
    return {'flags': list(_CANDIDATE_XLA_FLAGS), 'per_device_batch': plan.main_batch,
            'image_size': plan.image_size,
            'images_per_sec_with_flags': round(measured['images_per_sec'], 2)}

  results.run('xla_flags', measure, deadline, plan)


_PARTS = {'device': _device_part, 'input': _input_part, 'xla_flags': _xla_flags_part}
_OUT_OF_TIME = 'did not finish within the time budget (--budget_s)'


def _part_environment(plan: _Plan, part: str) -> dict[str, str]:
  env = dict(os.environ)
  if plan.dry_run:
    env['JAX_PLATFORMS'] = 'cpu'
  if part == 'input':
    env['CUDA_VISIBLE_DEVICES'] = ''  # TensorFlow must not take the accelerator
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if part == 'xla_flags':
    env['XLA_FLAGS'] = ' '.join([env.get('XLA_FLAGS', ''), *_CANDIDATE_XLA_FLAGS]).strip()
  return env


def _run_part(plan: _Plan, part: str, deadline: float, only: set[str], scratch: str,
              argv: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """Runs one part in a child process until it ends or the deadline. Returns what it recorded,
  with every measurement it left open marked as an error or skipped, and what went wrong with
  the process (None if nothing did)."""
  names = [n for n in plan.parts()[part] if n in only]
  if not names:
    return {}, None
  if time.time() > deadline - plan.min_start_s:
    return {n: {'status': 'skipped', 'reason': 'the time budget ran out first'}
            for n in names}, None
  results_path = os.path.join(scratch, f'{part}.json')
  log_path = os.path.join(scratch, f'{part}.log')
  command = [sys.executable, os.path.abspath(__file__), *argv, f'--part={part}',
             f'--results={results_path}', f'--deadline={deadline}']
  problem = None
  with open(log_path, 'w', encoding='utf-8') as log:
    try:
      returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  env=_part_environment(plan, part),
                                  timeout=deadline - time.time()).returncode
      if returncode:
        problem = f'the {part} process exited with code {returncode}'
    except subprocess.TimeoutExpired:
      problem = _OUT_OF_TIME
  recorded = {}
  if os.path.exists(results_path):
    with open(results_path, encoding='utf-8') as f:
      recorded = json.load(f)
  for name in names:
    entry = recorded.get(name)
    if entry is None and (problem is None or problem == _OUT_OF_TIME):
      recorded[name] = {'status': 'skipped', 'reason': 'the time budget ran out first'}
    elif entry is None:
      recorded[name] = {'status': 'error', 'error': f'not run: {problem}'}
    elif entry['status'] == 'running':
      recorded[name] = {'status': 'error', 'error': problem}
  if problem is None:
    return recorded, None
  with open(log_path, encoding='utf-8', errors='replace') as f:
    return recorded, {'problem': problem, 'log_tail': [line.rstrip() for line in f][-8:]}


def _commit() -> str | None:
  """The checkout's commit, where git and the repository's history are there."""
  try:
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=_REPO, text=True,
                          capture_output=True, check=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def _compare_xla_flags(plan: _Plan, measurements: dict[str, Any]) -> None:
  """Puts the figure without the candidate flags (step_batch_<main batch>) beside the one
  with them."""
  flags = measurements.get('xla_flags')
  default = measurements.get(f'step_batch_{plan.main_batch}', {})
  if flags and flags.get('status') == 'measured':
    if default.get('status') == 'measured':
      flags['images_per_sec_default'] = default['images_per_sec']
      flags['with_over_default'] = round(
          flags['images_per_sec_with_flags'] / default['images_per_sec'], 4)
    else:
      flags['images_per_sec_default'] = None
      flags['with_over_default'] = None


class _Parser(argparse.ArgumentParser):
  """Bad input: one line, exit 2."""

  def error(self, message):
    self.exit(2, f'device_check: error: {message}\n')


def _parse_args(argv: list[str]) -> argparse.Namespace:
  parser = _Parser(description=__doc__.split('\n')[0])
  parser.add_argument('--dry_run', action='store_true',
                      help='CPU, tiny model, few steps: proves the check runs, measures nothing')
  parser.add_argument('--budget_s', type=float, default=None,
                      help='deadline for the whole check (default 450, dry run 240)')
  parser.add_argument('--only', default=None,
                      help='comma-separated measurement names to run (default: all)')
  parser.add_argument('--output', default=None, help='also write the JSON to this file')
  parser.add_argument('--part', choices=sorted(_PARTS), help=argparse.SUPPRESS)
  parser.add_argument('--results', help=argparse.SUPPRESS)
  parser.add_argument('--deadline', type=float, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.budget_s is None:
    args.budget_s = 240.0 if args.dry_run else 450.0
  if args.budget_s <= 0:
    parser.error(f'--budget_s must be positive, not {args.budget_s:g}')
  names = [n for names in _Plan(args.dry_run).parts().values() for n in names]
  args.only = set(names) if args.only is None else set(args.only.split(','))
  unknown = sorted(args.only - set(names))
  if unknown:
    parser.error(f'--only: no measurement {", ".join(unknown)}; there are {", ".join(names)}')
  return args


def main(argv: list[str]) -> None:
  args = _parse_args(argv)
  wheels = _use_carried_wheels()
  plan = _Plan(args.dry_run)
  if args.part:  # a child: one part, into --results
    sys.path.insert(0, _REPO)
    _PARTS[args.part](plan, _Results(args.results), args.deadline, args.only)
    return
  start = time.time()
  deadline = start + args.budget_s
  child_argv = ['--dry_run'] * plan.dry_run + [f'--only={",".join(sorted(args.only))}']
  measurements: dict[str, Any] = {}
  problems: dict[str, Any] = {}
  environment = None
  with tempfile.TemporaryDirectory() as scratch:
    for part in plan.parts():
      recorded, problem = _run_part(plan, part, deadline, args.only, scratch, child_argv)
      environment = environment or recorded.get('environment')
      recorded.pop('environment', None)
      measurements.update(recorded)
      if problem:
        problems[part] = problem
  _compare_xla_flags(plan, measurements)
  report = {
      'check': 'lbtrain device check' + (' (dry run: CPU, tiny model)' if plan.dry_run else ''),
      'date_utc': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
      'command': ' '.join(['python3', 'scripts/device_check.py', *argv]),
      'commit': _commit(),
      'model': plan.model, 'config': plan.config, 'dtype': plan.dtype,
      'budget_s': args.budget_s, 'elapsed_s': round(time.time() - start, 1),
      'environment': environment, 'wheels': [os.path.basename(w) for w in wheels],
      'settings': _SETTINGS,
      'measurements': measurements,
      'process_problems': problems,
  }
  text = json.dumps(report, indent=1)
  print(text)
  if args.output:
    with open(args.output, 'w', encoding='utf-8') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  main(sys.argv[1:])
