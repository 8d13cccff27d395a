"""ViT-S/16 on ImageNet-1k, 90 epochs at batch 1024: Beyer, Zhai, Kolesnikov 2022, "Better plain
ViT baselines for ImageNet-1k" (arXiv 2205.01580), as big_vision's configs/vit_s16_i1k.py.

Published: 76.5 % top-1 on ImageNet validation after 90 epochs (6-7 h on a TPUv3-8; 300 epochs:
80.0 %). Value for value (big_vision field -> lbtrain field):

  batch_size 1024, num_epochs 90     train.global_batch_size 1024, train.num_epochs 90
                                     (train[:99%] = 1,268,355 images: 1238.63 steps/epoch, 111477
                                     steps)
  train_split train[:99%]; evals.minival train[99%:]
                                     data.train_split / data.eval_split (12,812 images); the
                                     published figure is on --config.data.eval_split=validation
  pp_train decode_jpeg_and_inception_crop(224)|flip_lr|randaug(2,10)
                                     lbtrain's Inception crop + flip, data.randaugment_layers 2,
                                     data.randaugment_magnitude 10 (big_vision's ops/magnitudes)
  pp_eval decode|resize_small(256)|central_crop(224)
                                     data.eval_crop_ratio 0.875 at data.image_size 224
  model vit S/16, pool_type gap, posemb sincos2d, rep_size True
                                     model.vit variant S, patch_size 16, pool gap, posemb
                                     sincos2d, pre_logits True (22,122,472 parameters)
  optax_name scale_by_adam, optax mu_dtype bfloat16
                                     optimizer adamw, b1 0.9, b2 0.999, eps 1e-8 (optax's
                                     defaults), optimizer.mu_dtype bfloat16
  lr 0.001                           optimizer.base_lr 0.001 at base_batch_size 1024
  wd 0.0001 (on '.*/kernel$')        optimizer.weight_decay 1e-4, weight_decay_form 'schedule'
                                     (w -= sched(t) * wd * w: times the schedule's multiplier,
                                     not the lr; lbtrain/optim.py), on kernels only
  schedule warmup_steps 10000, decay_type cosine
                                     schedule.warmup_steps 10000 (linear from 0), cosine to 0
  grad_clip_norm 1.0                 optimizer.grad_clip_norm 1.0
  mixup p=0.2                        train.mixup_alpha 0.2 (one Beta(0.2, 0.2) draw per global
                                     batch, every step, the larger weight on the own example)
  evals log_steps 2500; checkpoint_steps 1000; log_training_steps 50
                                     eval.every_steps 2500, checkpoint.every_steps 1000,
                                     train.log_every_steps 50
  model compute: bfloat16            model.dtype bfloat16 (float32 params, head and loss)

Departure: big_vision scales pixels to [-1, 1] (value_range(-1, 1)); lbtrain normalises with
ImageNet's per-channel mean and std, a per-channel affine map the patch embedding absorbs.
"""

from configs import base
from configs import common


def get_config():
  config = base.get_config()
  # data, model, train, augmentation, clipping, Adam's bfloat16 first moment, cosine, evaluation
  common.vit_s16_i1k(config)
  config.train.global_batch_size = 1024
  config.optimizer.name = 'adamw'
  config.optimizer.base_lr = 0.001
  config.optimizer.base_batch_size = 1024
  config.optimizer.scaling = 'linear'  # 1024 / 1024: the lr as given
  config.optimizer.weight_decay = 1e-4
  config.optimizer.weight_decay_form = 'schedule'
  config.schedule.warmup_epochs = None
  config.schedule.warmup_steps = 10_000
  return config
