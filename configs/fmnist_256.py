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
from configs import common


def get_config():
  config = base.get_config()
  # data, model, train: Fashion-MNIST, `cnn`, 8 epochs
  common.fmnist_budget(config)
  # model, train, optimizer, schedule: Goyal's recipe at batch 256 (BN groups of 32, Nesterov
  # 0.9, lr 0.1, weight decay off BN gamma/beta only: the head bias is decayed), step decay at
  # Goyal's 30/60/80 of 90 epochs; no warmup
  common.goyal(config, 256, weight_decay=5e-4, boundaries_epochs=common.FMNIST_STEP_BOUNDARIES)
  return config
