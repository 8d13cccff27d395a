"""Batch-size study (c): LARS, fmnist_lars_4k.py's recipe on the study's 3-epoch budget.

  optimizer          LARS, momentum 0.9, eta 0.001, epsilon 0; weight decay 5e-4; weight decay
                     and trust ratio on kernels only
  peak lr            25 at every batch (scaling 'none'), fmnist_lars_4k.py's tuned value at
                     4096, as Ying et al. / MLPerf keep LARS's lr nearly flat across batches.
                     CHECKED at 16384 (2 tries, docs/batch_size_study.md): 25 reached 51.45 %,
                     square-root scaling's 50 only 25.23 % (eval loss 16 after a blow-up)
  warmup             linear from 0 over 0.9375 epochs, the study's shared 5/16 of training
  decay              polynomial, power 2, to 1e-4 at the last step
  BN                 groups of 64 examples; label smoothing 0.1 (as fmnist_lars_4k.py)
"""

from configs import fmnist_lars_4k
from configs import fmnist_study_linear


def get_config():
  config = fmnist_study_linear.study_budget(fmnist_lars_4k.get_config())
  config.optimizer.base_lr = 25.0
  config.optimizer.base_batch_size = 4096
  config.optimizer.scaling = 'none'
  config.schedule.warmup_epochs = fmnist_study_linear.WARMUP_EPOCHS
  return config
