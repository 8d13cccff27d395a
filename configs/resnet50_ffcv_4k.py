"""FFCV's ResNet-50, 40 epochs on 8 A100s: SGD at 4,096 with progressive resizing 160 -> 192 px.

From `libffcv/ffcv-imagenet`, `rn50_configs/rn50_40_epochs.yaml` read with its `train_imagenet.py`
(the script's defaults fill what the file leaves out). Its values, all set here:

  global batch       4096 = `batch_size: 512` per GPU x `world_size: 8` (DDP averages the
                     GPUs' gradients; the script does not rescale the lr)
  optimizer          SGD, momentum 0.9 (not Nesterov), weight decay 1e-4 as L2 on the gradient
  weight decay mask  every parameter whose torchvision name lacks 'bn' (`bn_wd: 0`): conv and fc
                     kernels, the fc bias, and the projection shortcut's BN (torchvision's
                     `downsample.1`, which the script's name test misses); off for every other BN
  peak lr            1.7, given directly: scaling 'none'
  schedule           'cyclic': np.interp over epochs [0, 2, 40] -> [1.7e-4, 1.7, 0], per
                     iteration: linear warmup from 1.7e-4 over 2 epochs (`lr_peak_epoch`
                     default), then linear (poly power 1) decay to 0 at epoch 40
  label smoothing    0.1;  dtype bfloat16 here (FFCV: fp16 autocast with a loss scaler)
  resolution         160 px until epoch 29, 192 px from epoch 34, in between np.interp rounded
                     to a multiple of 32 (so 192 from epoch 32; `get_resolution`); eval at
                     256 px, the central 224/256 of the shorter side (`CenterCropRGBImageDecoder`)
  BN                 torch BatchNorm per GPU: statistics over the GPU's 512 examples; momentum
                     0.9 in lbtrain's convention (torch's 0.1), eps 1e-5; no zero-init
                     (torchvision's resnet50 default)
  eval               every epoch (the script's `log_level` default 1) and at the end
  result             77.2 % top-1 in 35.6 min on 8 x A100 (the repository's README table)

Not expressible in lbtrain: BlurPool (`use_blurpool: 1`, a blur before each strided conv) and
test-time flip averaging (`lr_tta`), both worth a few tenths of a point; FFCV's data loader and
its data stored at <= 500 px. The epoch is 312 steps in FFCV (drop_last), 312.78 here (batches
span epoch boundaries), so its lr and size change a fraction of a step apart.
"""

from configs import base
from configs import common

BATCH = 4096


def get_config():
  config = base.get_config()
  # data, model: ResNet-50 v1.5 (torchvision's) on ImageNet
  common.resnet50_imagenet(config)
  config.model.zero_init_last_bn = False
  config.model.dtype = 'bfloat16'
  config.model.bn_group_size = 512  # per GPU
  config.train.num_epochs = 40.0
  config.train.global_batch_size = BATCH
  config.train.label_smoothing = 0.1
  # optimizer: SGD momentum 0.9, wd 1e-4 on all but the BN modules named 'bn'
  config.optimizer.name = 'sgd'
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.optimizer.weight_decay_mask = common.FFCV_WEIGHT_DECAY_MASK
  config.optimizer.base_lr = 1.7
  config.optimizer.base_batch_size = BATCH
  config.optimizer.scaling = 'none'
  # schedule: 'cyclic' = linear warmup from 1e-4 x lr over 2 epochs, then linear to 0
  config.schedule.warmup = 'linear'
  config.schedule.warmup_epochs = 2.0
  config.schedule.warmup_init_lr = 1.7e-4
  config.schedule.decay = 'poly'
  config.schedule.power = 1.0
  config.schedule.end_lr = 0.0
  # resolution: 160 -> 192 px over epochs 29-34 in multiples of 32, eval at 256 px
  config.data.image_size = 192
  config.data.eval_image_size = 256
  config.data.progressive_resizing.start_image_size = 160
  config.data.progressive_resizing.ramp_start_epochs = 29.0
  config.data.progressive_resizing.ramp_end_epochs = 34.0
  config.data.progressive_resizing.multiple = 32
  config.eval.every_epochs = 1.0
  return config
