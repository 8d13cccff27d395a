"""Fashion-MNIST counterpart of resnet50_64k_lars.py: MLPerf-style LARS at global batch 8192.

TUNING_NOTE
"""

from configs import fmnist_256
from configs import fmnist_lars_4k


def get_config():
  config = fmnist_lars_4k.get_config()
  config.train.global_batch_size = 8192
  config.train.log_every_steps = 5
  config.optimizer.momentum = 0.95
  config.optimizer.base_lr = 10.0
  config.optimizer.base_batch_size = 8192
  config.optimizer.scaling = 'none'
  # MLPerf v0.7 JAX warms up for 33 of 92 epochs; the same share of 8 epochs.
  config.schedule.warmup_epochs = fmnist_256.EPOCHS * 33 / 92
  return config
