"""Batch-size study (b): Goyal et al.'s linear scaling rule with gradual warmup.

fmnist_study_linear.py (3 epochs, Nesterov, step decay at epochs 1, 2, 2.67, BN groups of 32)
plus Goyal's gradual warmup, as fmnist_goyal_4k.py does at 8 epochs:

  peak lr            linear scaling rule: 0.1 x B / 256 (0.4 / 1.6 / 6.4 at 1024 / 4096 / 16384)
  warmup             linear per step from 0.1 to the peak over 0.9375 epochs, 5/16 of training
                     (fmnist_goyal_4k.py's tuned 2.5 of 8 epochs): 55 / 14 / 3 steps at
                     1024 / 4096 / 16384. At 256 the warmup is flat (0.1 to 0.1): the baseline.

Its warmup must end before the first decay (epoch 1): at batch 8192 both fall on step 7, which
lbtrain refuses; the study sweeps 1024, 4096 and 16384.
"""

from configs import base
from configs import common


def get_config():
  config = base.get_config()
  # model, train, optimizer, schedule: fmnist_study_linear.py's (Goyal's recipe) at batch 4096
  common.goyal(config, 4096, weight_decay=5e-4, boundaries_epochs=common.STUDY_STEP_BOUNDARIES)
  # schedule: Goyal's gradual warmup from 0.1 over 5/16 of training
  common.goyal_warmup(config, warmup_epochs=common.STUDY_WARMUP_EPOCHS)
  # train, eval, checkpoint: the study's 3 epochs and cadence
  common.study_budget(config)
  return config
