"""LARS at batch 32k: You et al. 2017's optimizer, Ying et al. 2018's TPU-pod reference recipe.

Optimizer: You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks" (LARS).
Per layer l, local_lr = eta x ||w|| / (||g|| + wd x ||w||) with trust coefficient eta = 0.001;
v = m v + global_lr x local_lr x (g + wd w); w = w - v (lbtrain's 'lars' is exactly this; optax.lars
divides by ||g + wd w|| instead). You et al.'s own ResNet-50 runs (100 epochs, wd 5e-4, warmup
5 to 12 epochs, poly power 2) reached 75.2 / 74.4 / 72.5 % top-1 at 8K / 16K / 32K.

Recipe: Ying, Chen, Kumar, Wang, Cheng 2018, "Image Classification at Supercomputer Scale": the
TPU-pod reference configuration at batch 32768, which this config sets:

  global batch       32768 (39.10 steps/epoch)
  epochs             ~90: 90 epochs = 3519 steps
  optimizer          LARS, momentum 0.9, eta 0.001, LARS epsilon 0
  weight decay       1e-4; weight decay and the trust ratio skip BN gamma/beta and all biases
                     (conv and head kernels only: base.py's default masks)
  peak lr            34, given directly for 32K (25 up to 16K, 41 above 32K): scaling 'none'
  warmup             12 epochs (469 steps), linear from 0
  decay              polynomial, power 2, from step 469 to the end (step 3519); the end lr is
                     not given by the paper: 1e-4, as the MLPerf reference and TF's
                     polynomial_decay default
  BN                 distributed BN over groups of replicas; the group size is not in our notes
                     (unconfirmed): 64 examples, MLPerf v0.7 JAX's "BN span" (see
                     resnet50_64k_lars.py); momentum 0.9; gamma = 0 on each block's last BN
                     (the TF TPU ResNet's init_zero)
  label smoothing    0.1;  dtype bfloat16 (float32 params, BN statistics and loss)
  result             76.3 % top-1 in 2.2 minutes on a 1024-chip TPUv3 pod

The MLPerf v0.6/v0.7 reference (mlcommons/training, image_classification lars_util.py) picks
different defaults for a batch of 32768 or more: peak lr 31.2, 25 warmup epochs, end lr 1e-4,
power 2 (10 / 5 below 16K, 25 / 5 below 32K); its poly decay spans train_steps - warmup_steps + 1
steps, so it reaches end_lr one step later than lbtrain's. MLPerf v0.7's JAX submission at 32K
used lr 29, 18 warmup epochs, momentum 0.929.

Data augmentation: lbtrain's Inception crop + flip, the MLPerf reference's (see
configs/resnet50_imagenet.py).
"""

from configs import base
from configs import common

BATCH = 32768


def get_config():
  config = base.get_config()
  # data, model, train: ResNet-50 on ImageNet, 90 epochs, bfloat16, BN groups of 64,
  # label smoothing 0.1 (Ying 2018's setup, shared with the other 32k/64k recipes)
  common.resnet50_large_batch(config, BATCH)
  # optimizer, schedule: LARS, eta 0.001, epsilon 0, kernels-only masks, lr given directly,
  # linear warmup from 0, poly power 2 to 1e-4
  common.lars(config, lr=34.0, momentum=0.9, weight_decay=1e-4, warmup_epochs=12.0)
  return config
