"""Batch-size study (a), and its baseline: Goyal et al.'s linear scaling rule without warmup.

fmnist_256.py's recipe (Goyal's, scaled down) for the four sweeps of docs/batch_size_study.md,
shortened from 8 to 3 epochs so that the whole study runs in well under an hour on 2 CPU cores.
At batch 256 this is the small-batch baseline; `lbtrain.sweep` runs it at larger batches with
the linear rule and no warmup, the "no warmup" row of Goyal's Table 1:

  global batch       256 here (the sweep sets each B): 60000 / B steps/epoch, 3 epochs
                     (703 / 176 / 44 / 11 steps at 256 / 1024 / 4096 / 16384)
  optimizer          SGD with Nesterov momentum 0.9; weight decay 5e-4, off BN gamma/beta
  peak lr            linear scaling rule: 0.1 x B / 256 (0.1 / 0.4 / 1.6 / 6.4), from step 0
  decay              x0.1 at 1/3, 2/3 and 8/9 of training (Goyal's epochs 30/60/80 of 90):
                     epochs 1, 2, 2.67 (at 256: steps 234, 469, 625)
  BN                 groups of 32 examples (Goyal's per-worker BN)
  eval               every half epoch, so that steps-to-target is read 6 times per run

Nothing was tuned for the study: every value is fmnist_256.py's except the epochs.
"""

from configs import base
from configs import common


def get_config():
  config = base.get_config()
  # model, train, optimizer, schedule: Goyal's recipe at batch 256 (as fmnist_256.py), step
  # decay at 1/3, 2/3 and 8/9 of the study's 3 epochs; no warmup
  common.goyal(config, 256, weight_decay=5e-4, boundaries_epochs=common.STUDY_STEP_BOUNDARIES)
  # train, eval, checkpoint: the study's 3 epochs and cadence
  common.study_budget(config)
  return config
