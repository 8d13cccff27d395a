"""ResNet-50 v1.5 on ImageNet (ILSVRC 2012), 90 epochs: what every resnet50_*.py recipe shares.

Not a recipe by itself (its optimizer block is base.py's placeholder): the recipes override the
batch, optimizer, schedule and BN settings and cite their paper.

  ImageNet: 1,281,167 train / 50,000 validation images, 1000 classes, 224x224x3 after cropping.
  An epoch at global batch B is 1,281,167 / B steps (8192: 156.39; 32768: 39.10; 65536: 19.55).

Data: `--config.data.data_dir=DIR` must hold the user-prepared tfds `imagenet2012`
(`tfds build imagenet2012 --manual_dir=...`). lbtrain's ImageNet pipeline (lbtrain/data/imagenet.py)
trains with the Inception crop (8-100 % of the area, aspect 3/4-4/3) resized to 224 and a
horizontal flip, and evaluates on the central 87.5 % of the shorter side resized to 224 (the
classic resize-256/crop-224); each recipe notes where its paper's augmentation differs.
"""

from configs import base

# imagenet2012 'train' size, for the comments' arithmetic; lbtrain reads it from the data set.
NUM_TRAIN_EXAMPLES = 1_281_167


def get_config():
  config = base.get_config()
  config.model.name = 'resnet50'
  config.model.dtype = 'float32'
  config.model.zero_init_last_bn = True  # all recipes here do (Goyal, TF TPU/MLPerf, flax)
  config.model.bn_momentum = 0.9
  config.model.bn_epsilon = 1e-5
  config.data.dataset = 'imagenet2012'
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.train.num_epochs = 90.0
  config.train.label_smoothing = 0.0
  config.train.log_every_steps = 100
  config.eval.every_epochs = 1.0
  config.checkpoint.every_steps = 1000
  return config
