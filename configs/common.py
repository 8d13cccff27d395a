"""What several recipes share: mask rules, the papers' recipe shapes and the Fashion-MNIST budgets.

Not a config (no get_config): each recipe in configs/ starts from `base.get_config()` and calls
these functions, which set fields of that config in place, then sets its own fields. The numbers a
paper's table gives stay in the recipe, as arguments; what is the same in every use of a recipe
shape (the optimizer, its constants, the schedule's form) is written once here.
"""

# --- Weight-decay / trust-ratio mask rules (optimizer.weight_decay_mask, .trust_ratio_mask) ---

# Conv and head kernels only; never BN gamma/beta, never a bias (Ying 2018, MLPerf, Jia 2018,
# the BERT LAMB code). The same rules as base.py's default masks.
KERNELS_ONLY = '(^|/)bias$:off,(^|/)scale$:off,(^|/)kernel$:on'
# Goyal et al. 2017: BN gamma/beta (every BN module's name contains 'bn': stem_bn, bn1..bn3,
# proj_bn) are not decayed; everything else (conv kernels, head kernel, head bias) is, as in the
# paper.
GOYAL_WEIGHT_DECAY_MASK = 'bn[0-9]*/(scale|bias)$:off,(^|/)kernel$:on,^head/bias$:on'
# FFCV (train_imagenet.py): no weight decay on parameters whose torchvision name contains 'bn':
# the stem's bn1 and each block's bn1-bn3, but not the projection shortcut's BN (torchvision's
# `downsample.1`, lbtrain's proj_bn), which is decayed with every kernel and the fc bias.
FFCV_WEIGHT_DECAY_MASK = '(^stem_bn|/bn[0-9])/(scale|bias)$:off,.*:on'


# --- Data sets and budgets ---

def goyal_boundaries(num_epochs):
  """Goyal's x0.1 decays at epochs 30/60/80 of 90, as the same fractions of num_epochs."""
  return tuple(num_epochs * e / 90 for e in (30, 60, 80))


# Shared by every Fashion-MNIST recipe, so they all train for the same number of epochs.
FMNIST_EPOCHS = 8.0
FMNIST_STEP_BOUNDARIES = goyal_boundaries(FMNIST_EPOCHS)

# The batch-size study (docs/batch_size_study.md): 3 epochs, so that it runs in well under an hour
# on 2 CPU cores.
STUDY_EPOCHS = 3.0
STUDY_STEP_BOUNDARIES = goyal_boundaries(STUDY_EPOCHS)
# Every large-batch recipe of the study warms up over the same 5/16 of training: the share
# tuned for fmnist_goyal_4k.py (2.5 of its 8 epochs), 0.9375 epochs here.
STUDY_WARMUP_EPOCHS = STUDY_EPOCHS * 2.5 / 8


def resnet50_imagenet(config):
  """ResNet-50 v1.5 on ImageNet for 90 epochs: what every resnet50_*.py recipe shares."""
  config.data.dataset = 'imagenet2012'
  config.data.eval_split = 'validation'
  config.model.name = 'resnet50'
  config.model.zero_init_last_bn = True  # all recipes here do (Goyal, TF TPU/MLPerf, flax)
  config.train.num_epochs = 90.0
  config.train.log_every_steps = 100


def fmnist_budget(config):
  """The fmnist_* recipes' budget: 8 epochs of base.py's data and model (Fashion-MNIST, `cnn`).

  Also Goyal's step-decay boundaries at that budget, which the recipes with another decay carry
  unused (as they always have), so that every fmnist_* config holds the same boundaries.
  """
  config.train.num_epochs = FMNIST_EPOCHS
  config.schedule.boundaries_epochs = FMNIST_STEP_BOUNDARIES


def study_budget(config):
  """The batch-size study's epochs, evaluation and logging cadence, shared by its four configs."""
  config.train.num_epochs = STUDY_EPOCHS
  config.train.log_every_steps = 10
  config.eval.every_epochs = 0.5
  config.eval.global_batch_size = 2000  # 10,000 test images in 5 batches, whatever the train batch
  config.checkpoint.every_steps = 100


# --- Recipe shapes ---

def goyal(config, global_batch_size, *, weight_decay, boundaries_epochs):
  """Goyal et al. 2017's recipe at kn = global_batch_size, k workers of n = 32 examples each.

  SGD with Nesterov momentum 0.9, the linear scaling rule from lr 0.1 at batch 256, weight decay
  off BN gamma/beta only, x0.1 step decay at boundaries_epochs. No warmup: see goyal_warmup.
  """
  config.model.bn_group_size = 32  # BN per worker over its n = 32 examples
  config.train.global_batch_size = global_batch_size
  config.optimizer.name = 'nesterov'
  config.optimizer.momentum = 0.9
  config.optimizer.base_lr = 0.1
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'linear'
  config.optimizer.weight_decay = weight_decay
  config.optimizer.weight_decay_mask = GOYAL_WEIGHT_DECAY_MASK
  config.schedule.decay = 'step'
  config.schedule.boundaries_epochs = boundaries_epochs
  config.schedule.decay_factor = 0.1


def goyal_warmup(config, warmup_epochs):
  """Goyal's gradual warmup: linear per step from the small-batch lr 0.1 (= base_lr) to the peak."""
  config.schedule.warmup = 'linear'
  config.schedule.warmup_epochs = warmup_epochs
  config.schedule.warmup_init_lr = 0.1


def _large_batch(config, global_batch_size):
  """Ying et al. 2018's (and MLPerf's) large-batch setup besides the optimizer and the dtype.

  BN statistics over groups of 64 examples (MLPerf v0.7 JAX's "BN span") and label smoothing 0.1,
  shared by the LARS, LAMB and Nesterov large-batch recipes so that they differ in the optimizer.
  """
  config.model.bn_group_size = 64
  config.train.global_batch_size = global_batch_size
  config.train.label_smoothing = 0.1


def resnet50_large_batch(config, global_batch_size):
  """ResNet-50 on ImageNet (resnet50_imagenet) in Ying 2018's TPU-pod setup, whatever the optimizer.

  bfloat16 compute (float32 params, BN statistics and loss), BN groups of 64, label smoothing 0.1.
  """
  resnet50_imagenet(config)
  _large_batch(config, global_batch_size)
  config.model.dtype = 'bfloat16'


def fmnist_large_batch(config, global_batch_size):
  """The Fashion-MNIST counterpart of resnet50_large_batch, on fmnist_budget's 8 epochs.

  BN groups of 64, label smoothing 0.1, float32 (bfloat16 only slows a CPU down), logging every
  5 steps (a run is ~60-120 steps).
  """
  fmnist_budget(config)
  _large_batch(config, global_batch_size)
  config.train.log_every_steps = 5


def _poly_schedule(config, warmup_epochs, end_lr):
  """Linear warmup from 0 over warmup_epochs, then polynomial decay, power 2, to end_lr."""
  config.schedule.warmup = 'linear'
  config.schedule.warmup_epochs = warmup_epochs
  config.schedule.warmup_init_lr = 0.0
  config.schedule.decay = 'poly'
  config.schedule.power = 2.0
  config.schedule.end_lr = end_lr


def lars(config, *, lr, momentum, weight_decay, warmup_epochs):
  """LARS (You et al. 2017) as Ying et al. 2018 and MLPerf run it, at the config's global batch.

  Trust coefficient eta 0.001, LARS epsilon 0; weight decay and trust ratio on kernels only; the
  peak lr given directly for this batch (scaling 'none'); linear warmup from 0, then polynomial
  decay, power 2, to 1e-4 (the MLPerf reference's end lr).
  """
  config.optimizer.name = 'lars'
  config.optimizer.momentum = momentum
  config.optimizer.trust_coefficient = 0.001
  config.optimizer.eps = 0.0
  config.optimizer.weight_decay = weight_decay
  config.optimizer.weight_decay_mask = KERNELS_ONLY
  config.optimizer.trust_ratio_mask = KERNELS_ONLY
  config.optimizer.base_lr = lr
  config.optimizer.base_batch_size = config.train.global_batch_size
  config.optimizer.scaling = 'none'
  _poly_schedule(config, warmup_epochs, end_lr=1e-4)


def lamb(config, *, base_lr, base_batch_size, weight_decay, warmup_epochs):
  """LAMB (You et al. 2019) with the paper's b1 0.9, b2 0.999, eps 1e-6.

  Decoupled weight decay inside the trust ratio; weight decay and trust ratio on kernels only;
  square-root scaling from base_lr at base_batch_size; linear warmup from 0, then polynomial
  decay, power 2, to 0.
  """
  config.optimizer.name = 'lamb'
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-6
  config.optimizer.weight_decay = weight_decay
  config.optimizer.weight_decay_mask = KERNELS_ONLY
  config.optimizer.trust_ratio_mask = KERNELS_ONLY
  config.optimizer.base_lr = base_lr
  config.optimizer.base_batch_size = base_batch_size
  config.optimizer.scaling = 'sqrt'
  _poly_schedule(config, warmup_epochs, end_lr=0.0)


def nesterov_on_lars_schedule(config, *, base_lr, weight_decay, warmup_epochs):
  """Nado et al. 2021's comparison: SGD with Nesterov momentum 0.9 in place of LARS.

  Weight decay as L2 on the gradient, kernels only; Goyal's linear scaling rule from base_lr at
  batch 256; the LARS recipes' schedule: linear warmup from 0, polynomial decay, power 2, to 1e-4.
  """
  config.optimizer.name = 'nesterov'
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = weight_decay
  config.optimizer.weight_decay_mask = KERNELS_ONLY
  config.optimizer.base_lr = base_lr
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'linear'
  _poly_schedule(config, warmup_epochs, end_lr=1e-4)


def vit_s16_i1k(config):
  """big_vision's configs/vit_s16_i1k.py (Beyer, Zhai, Kolesnikov 2022), value for value, at the
  config's own batch: ViT-S/16 (GAP, fixed 2-D sin-cos posemb, tanh pre-logits), bfloat16
  compute; 90 epochs on train[:99%], evaluated on minival train[99%:] (resize 256, central crop
  224) every 2,500 steps; inception crop, flip, RandAugment(2, 10), Mixup (Beta(0.2, 0.2), every
  step); gradient clipping at global norm 1.0, checkpoint every 1,000 steps, log every 50."""
  config.data.dataset = 'imagenet2012'
  config.data.train_split = 'train[:99%]'
  config.data.eval_split = 'train[99%:]'
  config.data.image_size = 224
  config.data.eval_crop_ratio = 0.875  # resize_small(256) | central_crop(224)
  config.data.randaugment_layers = 2
  config.data.randaugment_magnitude = 10.0
  config.model.name = 'vit'
  config.model.dtype = 'bfloat16'
  config.model.vit.update(variant='S', patch_size=16, posemb='sincos2d', pool='gap',
                          pre_logits=True)
  config.train.num_epochs = 90.0
  config.train.log_every_steps = 50
  config.train.mixup_alpha = 0.2  # big_vision mixup p=0.2: the Beta/Dirichlet concentration
  config.train.cutmix_alpha = 0.0
  config.train.mix_prob = 1.0
  config.train.label_smoothing = 0.0
  config.optimizer.grad_clip_norm = 1.0
  config.optimizer.mu_dtype = 'bfloat16'
  config.optimizer.weight_decay_mask = KERNELS_ONLY  # big_vision's default wd_mults '.*/kernel$'
  config.schedule.warmup = 'linear'
  config.schedule.warmup_init_lr = 0.0
  config.schedule.decay = 'cosine'
  config.schedule.end_lr = 0.0
  config.eval.every_epochs = None
  config.eval.every_steps = 2500
  config.checkpoint.every_steps = 1000
