"""Fashion-MNIST counterpart of resnet50_32k_nesterov.py: Nesterov momentum at global batch 4096.

TUNING_NOTE
"""

from configs import fmnist_256
from configs import fmnist_lars_4k


def get_config():
  config = fmnist_256.get_config()
  config.model.bn_group_size = 64
  config.train.global_batch_size = 4096
  config.train.label_smoothing = 0.1
  config.train.log_every_steps = 5
  config.optimizer.name = 'nesterov'
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.weight_decay_mask = fmnist_lars_4k.KERNELS_ONLY
  config.optimizer.base_lr = 0.1
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'linear'
  config.schedule.warmup = 'linear'
  config.schedule.warmup_epochs = 2.0
  config.schedule.warmup_init_lr = 0.0
  config.schedule.decay = 'poly'
  config.schedule.power = 2.0
  config.schedule.end_lr = 1e-4
  return config
