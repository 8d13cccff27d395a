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

from configs import fmnist_256

EPOCHS = 3.0
STEP_BOUNDARIES = tuple(EPOCHS * e / 90 for e in (30, 60, 80))
# Every large-batch recipe of the study warms up over the same 5/16 of training: the share
# tuned for fmnist_goyal_4k.py (2.5 of its 8 epochs), 0.9375 epochs here.
WARMUP_EPOCHS = EPOCHS * 2.5 / 8


def study_budget(config):
  """The study's epochs, evaluation and logging cadence, shared by its four configs."""
  config.train.num_epochs = EPOCHS
  config.train.log_every_steps = 10
  config.eval.every_epochs = 0.5
  config.eval.global_batch_size = 2000  # 10,000 test images in 5 batches, whatever the train batch
  config.checkpoint.every_steps = 100
  return config


def get_config():
  config = study_budget(fmnist_256.get_config())
  config.schedule.warmup_epochs = 0.0
  config.schedule.boundaries_epochs = STEP_BOUNDARIES
  return config
