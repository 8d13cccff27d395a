"""Fashion-MNIST counterpart of resnet50_64k_lars.py: MLPerf-style LARS at global batch 8192.

MLPerf v0.7 JAX's recipe shape (warmup over 33 of the 92 epochs, i.e. 36 % of training, then
polynomial decay) on fmnist_lars_4k.py's setup, at twice its batch and the same 8 epochs:

  global batch       8192, 8 epochs x 7.324 steps/epoch = 59 steps
  optimizer          LARS, eta 0.001, LARS epsilon 0; weight decay 5e-4, kernels only
  momentum           0.9: TUNED. MLPerf's 0.95372 (tried as 0.95) averages over ~20 steps, a
                     third of this run: 86.17 % with 0.95 against 88.43 % with 0.9 (lr 10)
  peak lr            10, given directly: TUNED over 25 / 10 with momentum 0.95
                     (85.14 / 86.17 %)
  warmup             8 x 33/92 = 2.87 epochs (21 steps), linear from 0 (MLPerf's share)
  decay              polynomial, power 2, to 1e-4 at step 59
  BN                 groups of 64 examples; label smoothing 0.1; float32
  measured           88.43 % eval accuracy; fmnist_256.py 91.99 %, fmnist_lars_4k.py 91.04 %
"""

from configs import base
from configs import common


def get_config():
  config = base.get_config()
  # data, model, train: Fashion-MNIST, `cnn`, 8 epochs, BN groups of 64, label smoothing 0.1
  common.fmnist_large_batch(config, 8192)
  # optimizer, schedule: LARS as fmnist_lars_4k.py; momentum and lr TUNED. MLPerf v0.7 JAX warms
  # up for 33 of 92 epochs; the same share of 8 epochs.
  common.lars(config, lr=10.0, momentum=0.9, weight_decay=5e-4,
              warmup_epochs=common.FMNIST_EPOCHS * 33 / 92)
  return config
