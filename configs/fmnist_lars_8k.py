"""Fashion-MNIST counterpart of resnet50_64k_lars.py: MLPerf-style LARS at global batch 8192.

The 64k recipe's shape (LARS on kernels only, momentum 0.95, warmup for 33/92 of training,
poly decay) at 8192 = 13.7 % of the 60,000 images per step: 8 epochs are only 59 steps.
  peak lr            25, given directly (scaling 'none'), as fmnist_lars_4k.py; not tuned here
  measured           85.14 % eval accuracy (one run, README's table); fmnist_256.py 91.99 %
At this batch the epoch budget, not the optimizer, is the limit: few steps remain after warmup.
"""

from configs import fmnist_256
from configs import fmnist_lars_4k


def get_config():
  config = fmnist_lars_4k.get_config()
  config.train.global_batch_size = 8192
  config.train.log_every_steps = 5
  config.optimizer.momentum = 0.95
  config.optimizer.base_lr = 25.0
  config.optimizer.base_batch_size = 8192
  config.optimizer.scaling = 'none'
  # MLPerf v0.7 JAX warms up for 33 of 92 epochs; the same share of 8 epochs.
  config.schedule.warmup_epochs = fmnist_256.EPOCHS * 33 / 92
  return config
