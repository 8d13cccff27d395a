"""Fashion-MNIST counterpart of resnet50_32k_lamb.py: LAMB at global batch 4096.

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
  config.optimizer.name = 'lamb'
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-6
  config.optimizer.weight_decay = 0.01
  config.optimizer.weight_decay_mask = fmnist_lars_4k.KERNELS_ONLY
  config.optimizer.trust_ratio_mask = fmnist_lars_4k.KERNELS_ONLY
  config.optimizer.base_lr = 0.0125
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'sqrt'
  config.schedule.warmup = 'linear'
  config.schedule.warmup_epochs = 1.0
  config.schedule.warmup_init_lr = 0.0
  config.schedule.decay = 'poly'
  config.schedule.power = 2.0
  config.schedule.end_lr = 0.0
  return config
