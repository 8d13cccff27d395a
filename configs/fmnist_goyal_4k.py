"""Fashion-MNIST counterpart of resnet50_8k.py: Goyal et al. 2017's recipe at global batch 4096.

TUNING_NOTE
"""

from configs import fmnist_256


def get_config():
  config = fmnist_256.get_config()
  config.model.bn_group_size = 32
  config.train.global_batch_size = 4096
  config.train.log_every_steps = 5
  config.optimizer.name = 'nesterov'
  config.optimizer.base_lr = 0.1
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'linear'
  config.schedule.warmup = 'linear'
  config.schedule.warmup_epochs = 1.0
  config.schedule.warmup_init_lr = 0.1
  config.schedule.decay = 'step'
  config.schedule.boundaries_epochs = fmnist_256.STEP_BOUNDARIES
  config.schedule.decay_factor = 0.1
  return config
