"""Fashion-MNIST small-batch baseline: the counterpart of resnet50_256.py (Goyal et al. 2017).

The reference that every large-batch Fashion-MNIST config here is compared with, all trained for
the same 8 epochs of the 60,000 training images with the `cnn` model (207,098 parameters); the
measured results and commands are in docs/fmnist_recipes.md. Goyal's baseline, scaled down:

  global batch       256, 8 epochs x 234.375 steps/epoch = 1875 steps
  optimizer          SGD with Nesterov momentum 0.9, lr 0.1 (0.1 x 256 / 256), no warmup
  decay              x0.1 at 1/3, 2/3 and 8/9 of training (Goyal's epochs 30/60/80 of 90):
                     epochs 2.67, 5.33, 7.11 = steps 625, 1250, 1667
  weight decay       5e-4 (the small CNN over 8 epochs, as configs/quickstart.py; ImageNet's is
                     1e-4), not on BN gamma/beta, on the head bias (Goyal's mask)
  BN                 statistics over groups of 32 examples (Goyal's per-worker BN)
  measured           91.99 % eval accuracy (10,000 test images)
"""

from configs import base
from configs import resnet50_8k

# Shared by every Fashion-MNIST recipe, so they all train for the same number of epochs.
EPOCHS = 8.0
# Goyal's 30/60/80 of 90 epochs, as fractions of the run.
STEP_BOUNDARIES = tuple(EPOCHS * e / 90 for e in (30, 60, 80))


def get_config():
  config = base.get_config()
  config.model.name = 'cnn'
  config.model.bn_group_size = 32  # Goyal: BN per worker over n = 32 examples
  config.data.dataset = 'fashion_mnist'
  config.train.global_batch_size = 256
  config.train.num_epochs = EPOCHS
  config.train.log_every_steps = 50
  config.optimizer.name = 'nesterov'
  config.optimizer.base_lr = 0.1
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'linear'
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  # Goyal's: no weight decay on BN gamma/beta only (the head bias is decayed).
  config.optimizer.weight_decay_mask = resnet50_8k.GOYAL_WEIGHT_DECAY_MASK
  config.schedule.warmup_epochs = 0.0
  config.schedule.decay = 'step'
  config.schedule.boundaries_epochs = STEP_BOUNDARIES
  config.schedule.decay_factor = 0.1
  config.eval.every_epochs = 1.0
  config.checkpoint.every_steps = 1000
  return config
