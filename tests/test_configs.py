"""The published recipe configs against numbers worked out by hand from the papers (RECIPES.md).

No training: every config must load without jax, build its schedule, and that schedule must hit
the paper's lr at the paper's steps. Expected values are written out here (with the arithmetic in
a comment), never computed by calling lbtrain a second time. The ResNet-50 recipes' weight-decay
and trust-ratio masks are checked on the shapes of the real model (jax.eval_shape, no init).
"""

import importlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from lbtrain import models
from lbtrain import optim
from lbtrain import schedules

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, 'configs')
# configs/common.py holds the recipes' shared pieces (no get_config): not a config.
CONFIGS = sorted(name[:-3] for name in os.listdir(CONFIG_DIR)
                 if name.endswith('.py') and name not in ('__init__.py', 'common.py'))

IMAGENET = 1_281_167  # imagenet2012 train split
FMNIST = 60_000  # Fashion-MNIST train split
RESNET50_PARAMS = 25_557_032
# ResNet-50 BN channels: stem 64; stage1 3 x (64+64+256) + proj 256 = 1408; stage2 4 x (128+128+512)
# + 512 = 3584; stage3 6 x (256+256+1024) + 1024 = 10240; stage4 3 x (512+512+2048) + 2048 = 11264;
# 26,560 channels x (scale, bias) = 53,120 parameters in 53 BN modules = 106 tensors.
RESNET50_BN_PARAMS = 53_120
RESNET50_HEAD_BIAS = 1_000


def _load(name):
  return importlib.import_module(f'configs.{name}').get_config()


IMAGENET_99 = 1_268_355  # train[:99%]: round(0.99 x 1,281,167), tfds's rounding
MINIVAL = 12_812  # train[99%:]: the remaining 1,281,167 - 1,268,355


def _num_train_examples(config):
  if config.data.train_split == 'train[:99%]':
    return IMAGENET_99
  return {'imagenet2012': IMAGENET, 'fashion_mnist': FMNIST}[config.data.dataset]


def test_every_config_is_listed_here():
  """A new config must come with its hand-computed recipe below (or be marked as a base)."""
  assert set(CONFIGS) == set(RECIPES) | NOT_RECIPES


@pytest.mark.parametrize('name', CONFIGS)
def test_config_loads_and_builds_its_schedule(name):
  config = _load(name)
  config.lock()
  _, info = schedules.create_schedule(config, _num_train_examples(config))
  assert info.total_steps > 0


@pytest.mark.slow
def test_configs_do_not_import_jax():
  """Each config, imported alone in a fresh interpreter, pulls in no jax (nor flax/optax)."""
  script = (
      'import importlib, sys\n'
      'heavy = ("jax", "jaxlib", "flax", "optax", "tensorflow")\n'
      'for name in sys.argv[1:]:\n'
      '  importlib.import_module("configs." + name).get_config()\n'
      '  loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)\n'
      '  if loaded:\n'
      '    print(name, loaded[:3])\n'
      '    sys.exit(1)\n')
  for name in CONFIGS:  # one interpreter per config, so each is judged on its own imports
    result = subprocess.run([sys.executable, '-c', script, name], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, (name, result.stdout, result.stderr)


# name -> the recipe worked out by hand: steps per epoch, total steps, peak lr, warmup steps, and
# (step, lr) points on the schedule (milestones, plus points inside warmup and decay).
RECIPES = {
    # Goyal et al. 2017 at 256: 1281167 / 256 = 5004.5586 steps/epoch; 90 epochs = 450410.27 ->
    # 450410; 0.1 x 256/256 = 0.1, no warmup; x0.1 at 30/60/80 epochs = 150136.76 -> 150137,
    # 300273.52 -> 300274, 400364.69 -> 400365.
    'resnet50_256': dict(
        steps_per_epoch=5004.55859375, total_steps=450410, peak_lr=0.1, warmup_steps=0,
        points=[(0, 0.1), (150136, 0.1), (150137, 0.01), (300273, 0.01), (300274, 0.001),
                (400364, 0.001), (400365, 0.0001), (450410, 0.0001)]),
    # Goyal et al. 2017 at 8k: 156.39 steps/epoch; 90 epochs = 14075.32 -> 14075; peak 0.1 x 32 =
    # 3.2; warmup 5 epochs = 781.96 -> 782 steps from 0.1, so step 391 is 0.1 + 3.1 / 2 = 1.65;
    # x0.1 at 4692.20 -> 4692, 9384.42 -> 9384, 12511.36 -> 12511.
    'resnet50_8k': dict(
        steps_per_epoch=156.3924560546875, total_steps=14075, peak_lr=3.2, warmup_steps=782,
        points=[(0, 0.1), (391, 1.65), (782, 3.2), (4691, 3.2), (4692, 0.32), (9384, 0.032),
                (12510, 0.032), (12511, 0.0032), (14075, 0.0032)]),
    # Ying et al. 2018 at 32k: 39.098 steps/epoch; 90 epochs = 3518.83 -> 3519; peak 34 as given;
    # warmup 12 epochs = 469.18 -> 469 from 0 (step 200: 34 x 200/469 = 14.498934); poly power 2
    # over 3519 - 469 = 3050 steps to 1e-4: halfway (step 1994) (34 - 1e-4) / 4 + 1e-4 = 8.500075.
    'resnet50_32k_lars': dict(
        steps_per_epoch=39.09811401367188, total_steps=3519, peak_lr=34.0, warmup_steps=469,
        points=[(0, 0.0), (200, 14.498934), (469, 34.0), (1994, 8.500075), (3519, 1e-4)]),
    # MLPerf v0.7 JAX at 64k: 19.549 steps/epoch; 92 epochs = 1798.51 -> 1799; peak 23.081;
    # warmup 33 epochs = 645.12 -> 645 from 0 (step 129 = 645/5: 4.6162); poly power 2 over
    # 1799 - 645 = 1154 steps: halfway (step 1222) (23.081 - 1e-4) / 4 + 1e-4 = 5.770325.
    'resnet50_64k_lars': dict(
        steps_per_epoch=19.549057006835938, total_steps=1799, peak_lr=23.081, warmup_steps=645,
        points=[(0, 0.0), (129, 4.6162), (645, 23.081), (1222, 5.770325), (1799, 1e-4)]),
    # MLPerf NVIDIA at 3,200: 1281167 / 3200 = 400.3647 steps/epoch; 37 epochs = 14813.49 ->
    # 14813; peak 11.0; warmup 2 epochs = 800.73 -> 801 from 0 (step 267 = 801/3: 11/3 =
    # 3.666667); poly power 2 over 14813 - 801 = 14012 steps: halfway (step 7807)
    # (11 - 1e-4) / 4 + 1e-4 = 2.750075.
    'resnet50_mlperf_3k': dict(
        steps_per_epoch=400.3646875, total_steps=14813, peak_lr=11.0, warmup_steps=801,
        points=[(0, 0.0), (267, 3.666667), (801, 11.0), (7807, 2.750075), (14813, 1e-4)]),
    # FFCV 40 epochs at 4,096: 1281167 / 4096 = 312.7849 steps/epoch; 40 epochs = 12511.4 ->
    # 12511; peak 1.7; warmup 2 epochs = 625.57 -> 626 from 1.7e-4 (step 313: 1.7e-4 + (1.7 -
    # 1.7e-4) / 2 = 0.850085); poly power 1 over 12511 - 626 = 11885 steps to 0: at step
    # 626 + 2377 = 3003 (1/5 of the decay) 1.7 x 0.8 = 1.36.
    'resnet50_ffcv_4k': dict(
        steps_per_epoch=312.784912109375, total_steps=12511, peak_lr=1.7, warmup_steps=626,
        points=[(0, 1.7e-4), (313, 0.850085), (626, 1.7), (3003, 1.36), (12511, 0.0)]),
    # LAMB at 32k: 0.005 x sqrt(32768/2048) = 0.005 x 4 = 0.02; warmup 5 epochs = 195.49 -> 195;
    # poly power 2 over 3519 - 195 = 3324 steps to 0: halfway (step 1857) 0.02 / 4 = 0.005.
    'resnet50_32k_lamb': dict(
        steps_per_epoch=39.09811401367188, total_steps=3519, peak_lr=0.02, warmup_steps=195,
        points=[(0, 0.0), (39, 0.004), (195, 0.02), (1857, 0.005), (3519, 0.0)]),
    # Nesterov at 32k: 0.1 x 32768/256 = 12.8; warmup 18 epochs = 703.77 -> 704 from 0 (step 352:
    # 6.4); poly power 2 over 3519 - 704 = 2815 steps to 1e-4; at step 704 + 563 = 1267 (1/5 of
    # the decay): (12.8 - 1e-4) x 0.8^2 + 1e-4 = 8.192036.
    'resnet50_32k_nesterov': dict(
        steps_per_epoch=39.09811401367188, total_steps=3519, peak_lr=12.8, warmup_steps=704,
        points=[(0, 0.0), (352, 6.4), (704, 12.8), (1267, 8.192036), (3519, 1e-4)]),
    # big_vision ViT-S/16: 1268355 / 1024 = 1238.6279 steps/epoch; 90 epochs = 111476.51 ->
    # 111477; lr 0.001 (1024 / 1024); warmup 10,000 steps from 0 (step 5000: 0.0005); cosine to 0
    # over 101477 steps: at step 10000 + 50738 = 60738, 0.0005 (1 + cos(pi 50738 / 101477)) =
    # 0.00050000774.
    'vit_s16_i1k': dict(
        steps_per_epoch=1238.6279296875, total_steps=111477, peak_lr=0.001, warmup_steps=10000,
        points=[(0, 0.0), (5000, 0.0005), (10000, 0.001), (60738, 0.00050000774),
                (111477, 0.0)]),
    # LAMB 8k: 1268355 / 8192 = 154.8285 steps/epoch; 90 epochs = 13934.56 -> 13935; 0.001 x
    # sqrt(8192 / 1024) = 0.0028284271; warmup 8 epochs = 1238.63 -> 1239 steps; cosine over
    # 12696 steps: halfway (step 7587) 0.0028284271 / 2 = 0.0014142136.
    'vit_s16_i1k_lamb_8k': dict(
        steps_per_epoch=154.8284912109375, total_steps=13935, peak_lr=0.0028284271247461905,
        warmup_steps=1239,
        points=[(0, 0.0), (1239, 0.0028284271), (7587, 0.0014142136), (13935, 0.0)]),
    # The small ViT on Fashion-MNIST: 234.375 steps/epoch, 15 epochs = 3515.625 -> 3516; 0.002 x
    # sqrt(256 / 256); warmup 1 epoch = 234.375 -> 234 (step 117: 0.001); cosine over 3282
    # steps: halfway (step 1875) 0.001.
    'fmnist_vit': dict(
        steps_per_epoch=234.375, total_steps=3516, peak_lr=0.002, warmup_steps=234,
        points=[(0, 0.0), (117, 0.001), (234, 0.002), (1875, 0.001), (3516, 0.0)]),
    # Fashion-MNIST, 60000 images, 8 epochs. Batch 256: 234.375 steps/epoch, 1875 steps; x0.1 at
    # 8 x 30/90 = 2.67 epochs = 625 steps, 5.33 = 1250, 7.11 = 1666.67 -> 1667.
    'fmnist_256': dict(
        steps_per_epoch=234.375, total_steps=1875, peak_lr=0.1, warmup_steps=0,
        points=[(0, 0.1), (624, 0.1), (625, 0.01), (1249, 0.01), (1250, 0.001), (1666, 0.001),
                (1667, 0.0001), (1875, 0.0001)]),
    # Batch 4096: 14.6484375 steps/epoch, 117.19 -> 117 steps. Goyal: 0.1 x 16 = 1.6; warmup 2.5
    # epochs = 36.62 -> 37 steps from 0.1 (step 10: 0.1 + 1.5 x 10/37 = 0.5054054); x0.1 at
    # 39.06 -> 39, 78.13 -> 78, 104.17 -> 104.
    'fmnist_goyal_4k': dict(
        steps_per_epoch=14.6484375, total_steps=117, peak_lr=1.6, warmup_steps=37,
        points=[(0, 0.1), (10, 0.5054054), (37, 1.6), (38, 1.6), (39, 0.16), (78, 0.016),
                (104, 0.0016), (117, 0.0016)]),
    # LARS 4096: peak 25; warmup 1 epoch = 14.65 -> 15 steps (step 6: 10); poly power 2 over
    # 117 - 15 = 102 steps to 1e-4: halfway (step 66) (25 - 1e-4) / 4 + 1e-4 = 6.250075.
    'fmnist_lars_4k': dict(
        steps_per_epoch=14.6484375, total_steps=117, peak_lr=25.0, warmup_steps=15,
        points=[(0, 0.0), (6, 10.0), (15, 25.0), (66, 6.250075), (117, 1e-4)]),
    # LAMB 4096: 0.0125 x sqrt(16) = 0.05; warmup 15 steps (step 3: 0.01); poly to 0 over 102
    # steps: halfway (step 66) 0.0125.
    'fmnist_lamb_4k': dict(
        steps_per_epoch=14.6484375, total_steps=117, peak_lr=0.05, warmup_steps=15,
        points=[(0, 0.0), (3, 0.01), (15, 0.05), (66, 0.0125), (117, 0.0)]),
    # Nesterov 4096: 0.05 x 16 = 0.8; warmup 2 epochs = 29.30 -> 29 steps (step 10: 8/29 =
    # 0.2758621); poly over 88 steps to 1e-4: halfway (step 73) (0.8 - 1e-4) / 4 + 1e-4 = 0.200075.
    'fmnist_nesterov_4k': dict(
        steps_per_epoch=14.6484375, total_steps=117, peak_lr=0.8, warmup_steps=29,
        points=[(0, 0.0), (10, 0.2758621), (29, 0.8), (73, 0.200075), (117, 1e-4)]),
    # LARS 8192: 7.32421875 steps/epoch, 58.59 -> 59 steps; peak 10; warmup 8 x 33/92 = 2.870
    # epochs = 21.02 -> 21 steps (step 7: 10/3); poly over 38 steps: halfway (step 40)
    # (10 - 1e-4) / 4 + 1e-4 = 2.500075.
    'fmnist_lars_8k': dict(
        steps_per_epoch=7.32421875, total_steps=59, peak_lr=10.0, warmup_steps=21,
        points=[(0, 0.0), (7, 3.3333333), (21, 10.0), (40, 2.500075), (59, 1e-4)]),
    # The batch-size study's sweeps (docs/batch_size_study.md): 3 epochs, at the config's own
    # batch (the sweep overrides it); Goyal's x0.1 at 1/3, 2/3 and 8/9 of the budget.
    'fmnist_study_linear': dict(
        steps_per_epoch=234.375, total_steps=703, peak_lr=0.1, warmup_steps=0,
        points=[(0, 0.1), (233, 0.1), (234, 0.01), (469, 0.001), (625, 0.0001),
                (703, 0.0001)]),
    'fmnist_study_warmup': dict(
        steps_per_epoch=14.6484375, total_steps=44, peak_lr=1.6, warmup_steps=14,
        points=[(0, 0.1), (7, 0.85), (14, 1.6), (15, 0.16), (29, 0.016), (39, 0.0016),
                (44, 0.0016)]),
    'fmnist_study_lars': dict(
        steps_per_epoch=14.6484375, total_steps=44, peak_lr=25.0, warmup_steps=14,
        points=[(0, 0.0), (7, 12.5), (14, 25.0), (29, 6.250075), (44, 1e-4)]),
    'fmnist_study_lamb': dict(
        steps_per_epoch=14.6484375, total_steps=44, peak_lr=0.05, warmup_steps=14,
        points=[(0, 0.0), (7, 0.025), (14, 0.05), (29, 0.0125), (44, 0.0)]),
}
NOT_RECIPES = {'base', 'quickstart', 'resnet50_imagenet', 'fmnist_critical_batch',
               'fmnist_vit_critical_batch'}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_schedule_matches_the_hand_computed_recipe(name):
  config = _load(name)
  expected = RECIPES[name]
  schedule, info = schedules.create_schedule(config, _num_train_examples(config))
  assert info.steps_per_epoch == pytest.approx(expected['steps_per_epoch'], rel=1e-9)
  assert info.total_steps == expected['total_steps']
  assert info.peak_lr == pytest.approx(expected['peak_lr'], rel=1e-9)
  assert info.warmup_steps == expected['warmup_steps']
  for step, lr in expected['points']:
    assert float(schedule(step)) == pytest.approx(lr, rel=2e-6, abs=1e-9), (name, step)


# The papers' non-schedule values, field by field.
PAPER_FIELDS = {
    'resnet50_256': {
        'model.name': 'resnet50', 'model.bn_group_size': 32, 'model.bn_momentum': 0.9,
        'model.zero_init_last_bn': True, 'model.dtype': 'float32',
        'train.global_batch_size': 256, 'train.num_epochs': 90.0, 'train.label_smoothing': 0.0,
        'optimizer.name': 'nesterov', 'optimizer.momentum': 0.9,
        'optimizer.weight_decay': 1e-4, 'data.eval_split': 'validation'},
    'resnet50_8k': {
        'model.name': 'resnet50', 'model.bn_group_size': 32, 'model.bn_momentum': 0.9,
        'model.zero_init_last_bn': True, 'model.dtype': 'float32',
        'train.global_batch_size': 8192, 'train.num_epochs': 90.0, 'train.label_smoothing': 0.0,
        'optimizer.name': 'nesterov', 'optimizer.momentum': 0.9, 'optimizer.weight_decay': 1e-4,
        'schedule.warmup_init_lr': 0.1, 'schedule.decay': 'step', 'data.eval_split': 'validation'},
    'resnet50_32k_lars': {
        'model.name': 'resnet50', 'model.bn_group_size': 64, 'model.zero_init_last_bn': True,
        'model.dtype': 'bfloat16', 'train.global_batch_size': 32768,
        'train.label_smoothing': 0.1, 'optimizer.name': 'lars', 'optimizer.momentum': 0.9,
        'optimizer.weight_decay': 1e-4, 'optimizer.trust_coefficient': 0.001,
        'optimizer.eps': 0.0, 'optimizer.scaling': 'none', 'schedule.decay': 'poly',
        'schedule.power': 2.0, 'schedule.end_lr': 1e-4},
    'resnet50_64k_lars': {
        'model.name': 'resnet50', 'model.bn_group_size': 64, 'model.zero_init_last_bn': True,
        'model.dtype': 'bfloat16', 'train.global_batch_size': 65536, 'train.num_epochs': 92.0,
        'train.label_smoothing': 0.1, 'optimizer.name': 'lars', 'optimizer.momentum': 0.95372,
        'optimizer.weight_decay': 1e-4, 'optimizer.trust_coefficient': 0.001,
        'optimizer.eps': 0.0, 'optimizer.scaling': 'none', 'schedule.decay': 'poly',
        'schedule.power': 2.0, 'schedule.end_lr': 1e-4, 'eval.every_epochs': 4.0},
    'resnet50_mlperf_3k': {
        'model.name': 'resnet50', 'model.bn_group_size': 400, 'model.zero_init_last_bn': True,
        'model.dtype': 'bfloat16', 'train.global_batch_size': 3200, 'train.num_epochs': 37.0,
        'train.label_smoothing': 0.1, 'optimizer.name': 'lars', 'optimizer.momentum': 0.9,
        'optimizer.weight_decay': 5e-5, 'optimizer.trust_coefficient': 0.001,
        'optimizer.eps': 0.0, 'optimizer.scaling': 'none', 'schedule.decay': 'poly',
        'schedule.power': 2.0, 'schedule.end_lr': 1e-4, 'eval.first_epochs': 2.0,
        'eval.every_epochs': 4.0, 'eval.target_accuracy': 0.759},
    'resnet50_ffcv_4k': {
        'model.name': 'resnet50', 'model.bn_group_size': 512, 'model.zero_init_last_bn': False,
        'model.dtype': 'bfloat16', 'train.global_batch_size': 4096, 'train.num_epochs': 40.0,
        'train.label_smoothing': 0.1, 'optimizer.name': 'sgd', 'optimizer.momentum': 0.9,
        'optimizer.nesterov': False, 'optimizer.weight_decay': 1e-4, 'optimizer.scaling': 'none',
        'schedule.warmup_init_lr': 1.7e-4, 'schedule.decay': 'poly', 'schedule.power': 1.0,
        'schedule.end_lr': 0.0, 'data.image_size': 192, 'data.eval_image_size': 256,
        'data.eval_crop_ratio': 0.875, 'eval.every_epochs': 1.0},
    'resnet50_32k_lamb': {
        'model.name': 'resnet50', 'train.global_batch_size': 32768, 'optimizer.name': 'lamb',
        'optimizer.b1': 0.9, 'optimizer.b2': 0.999, 'optimizer.eps': 1e-6,
        'optimizer.scaling': 'sqrt'},
    'resnet50_32k_nesterov': {
        'model.name': 'resnet50', 'train.global_batch_size': 32768, 'optimizer.name': 'nesterov',
        'optimizer.scaling': 'linear'},
    # big_vision configs/vit_s16_i1k.py, field by field.
    'vit_s16_i1k': {
        'data.dataset': 'imagenet2012', 'data.train_split': 'train[:99%]',
        'data.eval_split': 'train[99%:]', 'data.image_size': 224, 'data.eval_crop_ratio': 0.875,
        'data.randaugment_layers': 2, 'data.randaugment_magnitude': 10.0,
        'model.name': 'vit', 'model.dtype': 'bfloat16', 'train.global_batch_size': 1024,
        'train.num_epochs': 90.0, 'train.mixup_alpha': 0.2, 'train.cutmix_alpha': 0.0,
        'train.mix_prob': 1.0, 'train.label_smoothing': 0.0, 'train.log_every_steps': 50,
        'optimizer.name': 'adamw', 'optimizer.b1': 0.9, 'optimizer.b2': 0.999,
        'optimizer.eps': None, 'optimizer.mu_dtype': 'bfloat16', 'optimizer.base_lr': 0.001,
        'optimizer.weight_decay': 1e-4, 'optimizer.weight_decay_form': 'schedule',
        'optimizer.grad_clip_norm': 1.0, 'schedule.decay': 'cosine', 'schedule.end_lr': 0.0,
        'eval.every_steps': 2500, 'checkpoint.every_steps': 1000},
    'vit_s16_i1k_lamb_8k': {
        'model.name': 'vit', 'train.global_batch_size': 8192, 'optimizer.name': 'lamb',
        'optimizer.eps': 1e-6, 'optimizer.scaling': 'sqrt', 'optimizer.base_batch_size': 1024,
        'data.randaugment_layers': 2, 'train.mixup_alpha': 0.2},
}


def test_vit_s16_i1k_model_is_big_vision_s():
  vit = _load('vit_s16_i1k').model.vit
  assert (vit.variant, vit.patch_size, vit.pool, vit.posemb, vit.pre_logits) == (
      'S', 16, 'gap', 'sincos2d', True)
  assert (vit.width, vit.depth, vit.num_heads) == (None, None, None)


def test_describe_of_vit_s16_i1k_shows_every_value_of_the_recipe():
  """The plan (no data here: the published sizes of the slices) shows big_vision's values."""
  from lbtrain import describe  # pylint: disable=g-import-not-at-top
  from lbtrain import plan  # pylint: disable=g-import-not-at-top
  config = _load('vit_s16_i1k')
  config.data.data_dir = os.path.join(REPO, 'no_data_here')
  described = describe.describe(plan.plan(config, describe_only=True))
  for fragment in [
      'global batch      1024 (1268355 examples, 1238.6279 steps/epoch)',
      'training          111477 steps (90 epochs)',
      'peak lr           0.001 x 1024 / 1024 = 0.001 (linear)',
      'warmup            linear from 0 over 10000 steps (8.07 epochs)',
      'decay             cosine to 0',
      'imagenet2012: 1,268,355 train (train[:99%]) / 12,812 eval (train[99%:]) examples, '
      '1000 classes',
      '224 px train, 224 px eval (resize the shorter side to 256, central crop 224)',
      'vit S/16: pool gap, posemb sincos2d, tanh pre-logits, zero-init head (22,122,472 '
      'parameters), dtype bfloat16',
      'BN statistics     none (no BatchNorm)',
      'mixing            mixup alpha 0.2 on every step, one draw per global batch',
      'RandAugment       N 2, M 10',
      'eval              every 2500 steps and at the end',
      'checkpoint        every 1000 steps',
      'optimizer         adamw: b1 0.9, b2 0.999, eps 1e-08 (default), mu_dtype bfloat16, '
      'weight_decay_form schedule, weight_decay 0.0001, gradient clipped to norm 1',
      # Kernels only (big_vision's '.*/kernel$'): 75 kernels of 22,060,032 parameters.
      'weight decay      on 75 tensors (22,060,032 parameters), off 125 tensors',
  ]:
    assert fragment in described, fragment


def test_ffcv_resolution_ramp_is_the_yaml_files():
  ramp = _load('resnet50_ffcv_4k').data.progressive_resizing
  assert (ramp.start_image_size, ramp.ramp_start_epochs, ramp.ramp_end_epochs, ramp.multiple) == (
      160, 29.0, 34.0, 32)


@pytest.mark.parametrize('name', sorted(PAPER_FIELDS))
def test_paper_values(name):
  config = _load(name)
  for field, value in PAPER_FIELDS[name].items():
    section, key = field.split('.')
    assert config[section][key] == value, (name, field)


@pytest.fixture(scope='module')
def resnet50_params():
  config = _load('resnet50_8k')
  model = models.create_model(config.model, 1000)
  params = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3), jnp.float32),
                         train=False))['params']
  assert sum(x.size for x in jax.tree.leaves(params)) == RESNET50_PARAMS
  return params


# name -> (weight decay: off parameters, off tensors; trust ratio: same, or None if not applied)
RESNET50_MASKS = {
    # Goyal: only BN gamma/beta escape weight decay; the head bias is decayed (the paper's words).
    'resnet50_256': ((RESNET50_BN_PARAMS, 106), None),
    'resnet50_8k': ((RESNET50_BN_PARAMS, 106), None),
    # MLPerf / Ying / LAMB: every BN scale and bias and the head bias escape both.
    'resnet50_32k_lars': ((RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107),
                          (RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107)),
    'resnet50_64k_lars': ((RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107),
                          (RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107)),
    'resnet50_32k_lamb': ((RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107),
                          (RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107)),
    'resnet50_mlperf_3k': ((RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107),
                           (RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107)),
    'resnet50_32k_nesterov': ((RESNET50_BN_PARAMS + RESNET50_HEAD_BIAS, 107), None),
}


def _is_bn(name):
  return any(part.endswith('bn') or part[:-1].endswith('bn') for part in name.split('/')[:-1])


@pytest.mark.parametrize('name', sorted(RESNET50_MASKS))
def test_resnet50_masks(name, resnet50_params):
  config = _load(name)
  masks = optim.describe_masks(config.optimizer, resnet50_params)
  for kind, expected in zip(('weight_decay', 'trust_ratio'), RESNET50_MASKS[name]):
    summary = masks[kind]
    if expected is None:
      assert summary is None, (name, kind)
      continue
    off_params, off_tensors = expected
    assert summary['off_params'] == off_params, (name, kind)
    assert len(summary['off']) == off_tensors, (name, kind)
    assert summary['on_params'] == RESNET50_PARAMS - off_params, (name, kind)
    # What is off: every BN scale and bias, plus the head bias where expected; nothing else.
    assert all(_is_bn(n) or n == 'head/bias' for n in summary['off']), (name, kind)
    assert ('head/bias' in summary['off']) == (off_params > RESNET50_BN_PARAMS), (name, kind)
    assert all(n.endswith('/kernel') or n == 'head/bias' for n in summary['on']), (name, kind)


def test_ffcv_mask_decays_all_but_the_bn_modules_torchvision_names_bn(resnet50_params):
  """FFCV decays every parameter whose torchvision name lacks 'bn'. ResNet-50's projection BNs
  (torchvision's downsample.1) have 256 + 512 + 1024 + 2048 = 3840 channels: 7,680 parameters in
  8 tensors decayed with the kernels and the fc bias; the other 45,440 BN parameters (98
  tensors) are not."""
  summary = optim.describe_masks(_load('resnet50_ffcv_4k').optimizer,
                                 resnet50_params)['weight_decay']
  assert (summary['off_params'], len(summary['off'])) == (RESNET50_BN_PARAMS - 7680, 98)
  assert all(_is_bn(name) and 'proj_bn' not in name for name in summary['off'])
  assert 'head/bias' in summary['on']
  assert sum('proj_bn' in name for name in summary['on']) == 8


def test_goyal_256_and_8k_differ_only_in_batch_and_warmup():
  small, large = _load('resnet50_256').to_dict(), _load('resnet50_8k').to_dict()
  large['train']['global_batch_size'] = 256
  large['schedule']['warmup_epochs'] = 0.0
  assert small == large


def test_32k_recipes_share_everything_but_the_optimizer_and_schedule():
  lars = _load('resnet50_32k_lars').to_dict()
  for name in ('resnet50_32k_lamb', 'resnet50_32k_nesterov'):
    other = _load(name).to_dict()
    for section in ('model', 'data', 'train', 'eval', 'checkpoint'):
      assert other[section] == lars[section], (name, section)


# The cnn: BN bn1 (16), bn2 (32), fc_bn (128) channels x (scale, bias) = 352 parameters in 6
# tensors; head bias 10. Of 207,098 parameters.
FMNIST_MASKS = {
    'fmnist_256': ((352, 6), None),  # Goyal's mask: the head bias is decayed
    'fmnist_goyal_4k': ((352, 6), None),
    'fmnist_lars_4k': ((362, 7), (362, 7)),
    'fmnist_lamb_4k': ((362, 7), (362, 7)),
    'fmnist_nesterov_4k': ((362, 7), None),
    'fmnist_lars_8k': ((362, 7), (362, 7)),
}


@pytest.mark.parametrize('name', sorted(FMNIST_MASKS))
def test_fmnist_configs_share_the_budget_and_mask_as_their_imagenet_recipe(name):
  config = _load(name)
  assert (config.model.name, config.data.dataset, config.train.num_epochs) == (
      'cnn', 'fashion_mnist', 8.0)
  model = models.create_model(config.model, 10)
  params = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1), jnp.float32),
                         train=False))['params']
  assert sum(x.size for x in jax.tree.leaves(params)) == 207_098
  masks = optim.describe_masks(config.optimizer, params)
  for kind, expected in zip(('weight_decay', 'trust_ratio'), FMNIST_MASKS[name]):
    if expected is None:
      assert masks[kind] is None, (name, kind)
    else:
      assert (masks[kind]['off_params'], len(masks[kind]['off'])) == expected, (name, kind)


def test_the_critical_batch_study_is_shallues_fashion_mnist_workload():
  """Shallue et al. 2018: 55,000 training images, 5,000 held out, Nesterov; a constant lr."""
  config = _load('fmnist_critical_batch')
  assert (config.data.train_split, config.data.eval_split) == ('train[:55000]', 'train[55000:]')
  assert (config.optimizer.name, config.optimizer.momentum) == ('nesterov', 0.9)
  _, info = schedules.create_schedule(config, 55_000)
  # 55,000 / 256 = 214.84375 steps/epoch x 12 epochs = 2578.125 -> 2578 steps at lr 0.1.
  assert (info.steps_per_epoch, info.total_steps, info.warmup_steps) == (214.84375, 2578, 0)
  assert [point.lr for point in info.milestones] == [0.1, 0.1]


def test_the_vit_critical_batch_study_changes_only_the_model_and_optimizer():
  """The ViT's steps to result are comparable with the CNN's: same data, budget and evaluation
  grain, constant lr; fmnist_vit.py's model and Adam, the lr scaled by the square-root rule."""
  cnn, vit = _load('fmnist_critical_batch'), _load('fmnist_vit_critical_batch')
  for field in ('data', 'schedule', 'train'):
    assert vit[field].to_dict() == cnn[field].to_dict(), field
  assert vit.model.to_dict() == _load('fmnist_vit').model.to_dict()
  assert (vit.optimizer.name, vit.optimizer.scaling, vit.optimizer.base_batch_size) == (
      'adamw', 'sqrt', 256)
  assert vit.optimizer.weight_decay == 1e-4  # as the study measured it
  assert vit.eval.every_epochs == 0.1
