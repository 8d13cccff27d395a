"""A small plain ViT on Fashion-MNIST: vit_s16_i1k.py's model and optimizer at 28 px, sized for
a 2-core CPU (docs/vit.md has its measured accuracy and time).

  model      ViT (Beyer et al. 2022's plain ViT: GAP, fixed 2-D sin-cos posemb, pre-logits,
             zero-init head), patches of 7 px (16 tokens), width 64, 4 blocks, 4 heads
  optimizer  Adam as big_vision (b1 0.9, b2 0.999, bfloat16 first moment, decoupled weight decay
             times the schedule's multiplier, kernels only), lr 0.002 at batch 256,
             square-root scaling (Malladi et al. 2022) to other batches, clip 1.0; weight decay
             1e-3, 10x vit_s16_i1k.py's: without augmentation this model overfits, and at 1e-4
             15 epochs reached 0.8883 against 0.8972 at 1e-3 (measured, docs/vit.md)
  schedule   1 epoch linear warmup from 0, cosine to 0, 15 epochs
  no augmentation: Fashion-MNIST trains on its 28 x 28 images as stored (no RandAugment on
             this pipeline); Mixup is off, it slows a short run down.
"""

from configs import base


def get_config():
  config = base.get_config()
  # data: base.py's Fashion-MNIST
  config.model.name = 'vit'
  config.model.vit.update(variant='Ti', width=64, depth=4, num_heads=4, patch_size=7,
                          pool='gap', posemb='sincos2d', pre_logits=True)
  config.train.global_batch_size = 256
  config.train.num_epochs = 15.0
  config.train.log_every_steps = 50
  config.optimizer.name = 'adamw'
  config.optimizer.base_lr = 0.002
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'sqrt'
  config.optimizer.mu_dtype = 'bfloat16'
  config.optimizer.weight_decay = 1e-3
  config.optimizer.weight_decay_form = 'schedule'
  config.optimizer.grad_clip_norm = 1.0
  config.schedule.warmup_epochs = 1.0
  config.schedule.decay = 'cosine'
  config.eval.every_epochs = 2.0
  config.checkpoint.every_steps = 1000
  return config
