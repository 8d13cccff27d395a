"""ResNet-50 v1.5 on ImageNet (ILSVRC 2012), 90 epochs: what every resnet50_*.py recipe shares.

Not a recipe by itself (its optimizer block is base.py's placeholder): the recipes set the same
fields (configs/common.py's resnet50_imagenet) and add the batch, optimizer, schedule and BN
settings, citing their paper.

  ImageNet: 1,281,167 train / 50,000 validation images, 1000 classes, 224x224x3 after cropping.
  An epoch at global batch B is 1,281,167 / B steps (8192: 156.39; 32768: 39.10; 65536: 19.55).

Data: `--config.data.data_dir=DIR` must hold the user-prepared tfds `imagenet2012`
(`tfds build imagenet2012 --manual_dir=...`). lbtrain's ImageNet pipeline (lbtrain/data/imagenet.py)
trains with the Inception crop (8-100 % of the area, aspect 3/4-4/3) resized to 224 and a
horizontal flip, and evaluates on the central 87.5 % of the shorter side resized to 224 (the
classic resize-256/crop-224); each recipe notes where its paper's augmentation differs.
"""

from configs import base
from configs import common


def get_config():
  config = base.get_config()
  # data, model, train: ImageNet, ResNet-50 (gamma = 0 on each block's last BN), 90 epochs
  common.resnet50_imagenet(config)
  return config
