"""Batch-size study (d): LAMB, fmnist_lamb_4k.py's recipe on the study's 3-epoch budget.

  optimizer          LAMB, b1 0.9, b2 0.999, eps 1e-6; decoupled weight decay 0.01 inside the
                     trust ratio; weight decay and trust ratio on kernels only
  peak lr            square-root scaling from fmnist_lamb_4k.py's tuned 0.0125 at batch 256:
                     0.0125 x sqrt(B / 256) = 0.025 / 0.05 / 0.1 at 1024 / 4096 / 16384.
                     CHECKED at 16384 (2 tries, docs/batch_size_study.md): 0.1 reached
                     73.02 %, 0.2 reached 67.28 %
  warmup             linear from 0 over 0.9375 epochs, the study's shared 5/16 of training
  decay              polynomial, power 2, to 0 at the last step
  BN                 groups of 64 examples; label smoothing 0.1 (as fmnist_lamb_4k.py)
"""

from configs import fmnist_lamb_4k
from configs import fmnist_study_linear


def get_config():
  config = fmnist_study_linear.study_budget(fmnist_lamb_4k.get_config())
  config.schedule.warmup_epochs = fmnist_study_linear.WARMUP_EPOCHS
  return config
