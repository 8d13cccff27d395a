"""The critical-batch study's workload (docs/critical_batch.md): Shallue et al. 2018's Fashion
MNIST setup as closely as a 2-core machine allows, for `lbtrain.sweep --tune`.

Shallue et al. 2018 ("Measuring the Effects of Data Parallelism on Neural Network Training"),
Fashion MNIST: a simple CNN, 55,000 training images with 5,000 held out for validation, target
validation error 0.10, SGD with Nesterov momentum with the metaparameters tuned at each batch,
steps to result = the first step at which any trial reaches the target.

  data               train[:55000] to train on, train[55000:] (5,000 images) to validate on;
                     the test split is not read
  model              `cnn` (2 conv + 1 dense layer, 207k parameters; BN over the global batch)
  optimizer          Nesterov momentum 0.9, weight decay 5e-4 on kernels only
  lr                 base_lr scaled linearly from batch 256, so that one tuned base_lr range is
                     centred where the linear rule puts each batch; the sweep tunes base_lr
  schedule           constant lr, no warmup: with a run stopped at the target, a decay or a
                     warmup tied to the budget would make the steps to result depend on the
                     budget; Shallue et al. tune the schedule's parameters, which would multiply
                     the trials beyond this machine's budget
  budget             12 epochs per trial (the cap for a trial that never reaches the target)
  evaluation         every 0.05 epoch (2,750 examples; at least every step), so steps to result
                     are exact to ~4 % of the examples a small batch needs, and to one step at
                     large batches
"""

from configs import base


def get_config():
  config = base.get_config()
  # data: Shallue et al.'s split of the 60,000 training images
  config.data.train_split = 'train[:55000]'
  config.data.eval_split = 'train[55000:]'
  # train (model: base.py's `cnn`)
  config.train.global_batch_size = 256
  config.train.num_epochs = 12.0
  config.train.log_every_steps = 10
  # optimizer: Nesterov, base_lr at batch 256 scaled linearly (the sweep tunes base_lr)
  config.optimizer.name = 'nesterov'
  config.optimizer.momentum = 0.9
  config.optimizer.base_lr = 0.1
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'linear'
  config.optimizer.weight_decay = 5e-4
  # schedule: constant lr, no warmup
  config.schedule.warmup_epochs = 0.0
  config.schedule.decay = 'constant'
  # eval: the 5,000 held-out images every 0.05 epoch
  config.eval.every_epochs = 0.05
  config.eval.global_batch_size = 1000
  # checkpoint
  config.checkpoint.every_steps = 500
  return config
