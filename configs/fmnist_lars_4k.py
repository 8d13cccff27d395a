"""Fashion-MNIST counterpart of resnet50_32k_lars.py: LARS at global batch 4096.

TUNING_NOTE
"""

from configs import fmnist_256

KERNELS_ONLY = '(^|/)bias$:off,(^|/)scale$:off,(^|/)kernel$:on'


def get_config():
  config = fmnist_256.get_config()
  config.model.bn_group_size = 64
  config.train.global_batch_size = 4096
  config.train.label_smoothing = 0.1
  config.train.log_every_steps = 5
  config.optimizer.name = 'lars'
  config.optimizer.momentum = 0.9
  config.optimizer.trust_coefficient = 0.001
  config.optimizer.eps = 0.0
  config.optimizer.weight_decay = 5e-4
  config.optimizer.weight_decay_mask = KERNELS_ONLY
  config.optimizer.trust_ratio_mask = KERNELS_ONLY
  config.optimizer.base_lr = 25.0
  config.optimizer.base_batch_size = 4096
  config.optimizer.scaling = 'none'
  config.schedule.warmup = 'linear'
  config.schedule.warmup_epochs = 1.0
  config.schedule.warmup_init_lr = 0.0
  config.schedule.decay = 'poly'
  config.schedule.power = 2.0
  config.schedule.end_lr = 1e-4
  return config
