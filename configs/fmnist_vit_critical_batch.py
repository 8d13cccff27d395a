"""The critical-batch study's workload (fmnist_critical_batch.py) with fmnist_vit.py's ViT and Adam
in place of the CNN and Nesterov: a ViT's steps to result per batch (docs/critical_batch.md).

  data, split, budget  as fmnist_critical_batch.py (55,000 to train, 5,000 to validate, 12 epochs)
  model                fmnist_vit.py's plain ViT (7 px patches, width 64, 4 blocks, 4 heads)
  optimizer            Adam as big_vision (bfloat16 first moment, decoupled weight decay 1e-4 on
                       kernels, clip 1.0); base_lr at batch 256 scaled by the square-root rule
                       (Malladi et al. 2022), so a best base_lr flat across batches confirms that
                       rule and one growing as sqrt(B) the linear rule
  schedule             constant lr, no warmup, for the reason fmnist_critical_batch.py gives
  evaluation           every 0.1 epoch (5,500 examples; at least every step)
"""

from configs import fmnist_critical_batch
from configs import fmnist_vit


def get_config():
  config = fmnist_critical_batch.get_config()
  vit = fmnist_vit.get_config()
  config.model = vit.model
  config.optimizer = vit.optimizer
  config.optimizer.weight_decay = 1e-4  # as measured (fmnist_vit.py's value then)
  config.optimizer.base_lr = 0.002
  config.optimizer.base_batch_size = 256
  config.optimizer.scaling = 'sqrt'
  config.eval.every_epochs = 0.1
  return config
