"""Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour": the baseline.

The small-batch reference of the paper: ResNet-50, ImageNet, 90 epochs, 8 GPUs x 32 = batch 256,
with every other setting of the 8k recipe (configs/resnet50_8k.py, which documents them):

  global batch       256 (k = 8 workers x n = 32)
  optimizer          SGD with Nesterov momentum 0.9, weight decay 1e-4 (not on BN gamma/beta)
  peak lr            0.1 x 256 / 256 = 0.1 (the reference point of the linear scaling rule)
  warmup             none: Goyal's gradual warmup starts at 0.1, which is already the peak lr at
                     this batch
  decay              x0.1 at epochs 30, 60, 80 of 90 (5004.56 steps/epoch: steps 150137,
                     300274, 400365 of 450410)
  BN                 per worker over 32 examples, momentum 0.9; gamma = 0 on each block's last BN
  label smoothing    none;  dtype float32
  result             23.60 +- 0.12 % top-1 error (median of the last 5 epochs over 5 runs;
                     76.40 % top-1); 23.84 with gamma = 1 instead of 0.

The small-batch counterpart on Fashion-MNIST is configs/fmnist_256.py.
"""

from configs import base
from configs import common


def get_config():
  config = base.get_config()
  # data, model, train: ResNet-50 on ImageNet, 90 epochs
  common.resnet50_imagenet(config)
  # model, train, optimizer, schedule: resnet50_8k.py's (Goyal's recipe) at kn = 256
  common.goyal(config, 256, weight_decay=1e-4, boundaries_epochs=(30, 60, 80))
  # Goyal's warmup starts at 0.1, already the peak lr at this batch: no warmup steps.
  common.goyal_warmup(config, warmup_epochs=0.0)
  return config
