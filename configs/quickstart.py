"""Fashion-MNIST at global batch 1024: the small real-data run the README starts with.

SGD with Nesterov momentum, the linear scaling rule from base lr 0.1 at batch 256 (Goyal et
al. 2017) -> peak lr 0.4, one epoch of linear warmup, cosine decay, weight decay off BN and
biases. Reaches about 0.90 eval accuracy on the 10,000 test images (see README for the
measured figure and time).
"""

from configs import base


def get_config():
  config = base.get_config()
  # train (data and model: base.py's Fashion-MNIST and `cnn`)
  config.train.global_batch_size = 1024
  config.train.num_epochs = 4.0
  config.train.log_every_steps = 20
  # optimizer: Nesterov, linear scaling from lr 0.1 at batch 256 -> 0.4
  config.optimizer.name = 'nesterov'
  config.optimizer.base_lr = 0.1
  config.optimizer.base_batch_size = 256
  config.optimizer.weight_decay = 5e-4
  # schedule: one epoch of linear warmup, cosine decay
  config.schedule.warmup_epochs = 1.0
  config.schedule.decay = 'cosine'
  # checkpoint
  config.checkpoint.every_steps = 200
  return config
