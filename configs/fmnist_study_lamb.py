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

from configs import base
from configs import common


def get_config():
  config = base.get_config()
  # data, model, train: as fmnist_lamb_4k.py (BN groups of 64, label smoothing 0.1)
  common.fmnist_large_batch(config, 4096)
  # train, eval, checkpoint: the study's 3 epochs and cadence
  common.study_budget(config)
  # optimizer, schedule: fmnist_lamb_4k.py's LAMB, sqrt scaling from 0.0125 at 256; the study's
  # warmup
  common.lamb(config, base_lr=0.0125, base_batch_size=256, weight_decay=0.01,
              warmup_epochs=common.STUDY_WARMUP_EPOCHS)
  return config
