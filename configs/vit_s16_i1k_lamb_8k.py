"""ViT-S/16 on ImageNet-1k at batch 8192 with LAMB: vit_s16_i1k.py's recipe (Beyer et al. 2022,
big_vision) with the optimizer of You et al. 2019, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes", and its learning-rate rule.

lr rule: square root (You et al. 2019 scale LAMB's lr by the square root of the batch; Malladi
et al. 2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", derive the same
rule for Adam): 0.001 x sqrt(8192 / 1024) = 0.002828 from big_vision's lr 0.001 at 1024.

Everything else is vit_s16_i1k.py's (data, ViT-S/16, RandAugment(2, 10), Mixup 0.2, 90 epochs,
cosine, clipping at 1.0, bfloat16 first moment), except, as our choices:

  optimizer     LAMB, b1 0.9, b2 0.999, eps 1e-6 (the paper's); trust ratio on kernels only
                (the BERT LAMB code excludes norm parameters and biases)
  weight decay  0.1, decoupled, inside the trust ratio (LAMB's form): the lr-relative decay of
                big_vision's at batch 1024 (its wd 1e-4 multiplies the schedule, not the lr:
                1e-4 / lr 0.001 = 0.1 in optax.adamw's terms)
  warmup        8 epochs (1239 steps), linear from 0: big_vision's 10,000 steps at 1024 are
                7.99 epochs, kept in epochs as Goyal et al. 2017 keep theirs
  evaluation    every 2 epochs (big_vision's 2,500 steps at 1024 are 2.02 epochs)
  result        not published; not measured here
"""

from configs import base
from configs import common


def get_config():
  config = base.get_config()
  common.vit_s16_i1k(config)
  config.train.global_batch_size = 8192
  config.optimizer.name = 'lamb'
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-6
  config.optimizer.base_lr = 0.001
  config.optimizer.base_batch_size = 1024
  config.optimizer.scaling = 'sqrt'
  config.optimizer.weight_decay = 0.1
  config.optimizer.trust_ratio_mask = common.KERNELS_ONLY
  config.schedule.warmup_epochs = 8.0
  config.eval.every_steps = None
  config.eval.every_epochs = 2.0
  return config
