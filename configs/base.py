"""Every config field lbtrain reads, with its default. Other configs start from this one.

A config never calls jax: numbers that depend on the hardware (per-device batch, steps) are
derived at run time and logged, so the same file means the same training everywhere.
Optional fields use `placeholder(type)` so that `--config.x=...` can still set them.

Every interval is a pair `<name>_epochs` / `<name>_steps` of which exactly one is set, the other
None (`lbtrain.durations`): to give one in the other unit, unset the first on the command line,
e.g. `--config.schedule.warmup_epochs=None --config.schedule.warmup_steps=500`.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict()
  # cnn | resnet20 | resnet18 | resnet34 | resnet50 | resnet101 | resnet152 | vit
  config.model.name = 'cnn'
  config.model.dtype = 'float32'  # compute dtype; 'bfloat16' keeps params, loss, BN stats in float32
  config.model.zero_init_last_bn = False  # gamma=0 on the last BN of each residual block (Goyal 2017)
  config.model.bn_momentum = 0.9  # running average: new = momentum * old + (1 - momentum) * batch
  config.model.bn_epsilon = 1e-5  # added to the batch variance before dividing by its root
  # BN statistics over fixed groups of this many consecutive examples of the global batch
  # ("ghost" / per-worker BN); None = the whole global batch.
  config.model.bn_group_size = config_dict.placeholder(int)
  # model.name='vit': the plain ViT of Beyer et al. 2022 (lbtrain/models/vit.py; no BatchNorm, so
  # the bn_* fields above do not apply and bn_group_size must stay None).
  config.model.vit = ml_collections.ConfigDict()
  config.model.vit.variant = 'S'  # Ti | S | B | L: widths 192/384/768/1024, depths 12/12/12/24
  config.model.vit.width = config_dict.placeholder(int)  # overrides the variant's (MLP 4x); None = its
  config.model.vit.depth = config_dict.placeholder(int)  # encoder blocks; None = the variant's
  config.model.vit.num_heads = config_dict.placeholder(int)  # attention heads; None = the variant's
  config.model.vit.patch_size = 16  # pixels per side of a patch (16 or 32 at 224 px; 4 or 7 at 28)
  config.model.vit.posemb = 'sincos2d'  # sincos2d (fixed 2-D sin-cos) | learn
  config.model.vit.pool = 'gap'  # gap (mean of the tokens) | tok (a class token)
  config.model.vit.pre_logits = True  # a tanh Dense layer of the model's width before the head

  config.data = ml_collections.ConfigDict()
  # fashion_mnist | imagenet2012 | synthetic (ImageNet-shaped batches made on the devices)
  config.data.dataset = 'fashion_mnist'
  config.data.data_dir = '~/tensorflow_datasets'  # tfds data_dir
  # Folder holding the four Fashion-MNIST idx files (Debian: apt-get install dataset-fashion-mnist);
  # read once to prepare the tfds data set in data_dir.
  config.data.source_dir = '/usr/share/datasets/fashion-mnist'
  config.data.train_split = 'train'  # tfds split to train on
  config.data.eval_split = 'test'  # tfds split evaluated, all of it (ImageNet's is 'validation')
  config.data.prefetch_batches = 2  # global batches placed on device ahead of the step
  # ImageNet (image_size also shapes synthetic batches). Train: Inception crop resized to
  # image_size. Eval: the central eval_crop_ratio of the shorter side resized to image_size,
  # i.e. 0.875 = resize the shorter side to 256 and crop the central 224.
  config.data.image_size = 224
  config.data.eval_crop_ratio = 0.875  # eval crop (see above); also the train crop's fallback
  config.data.eval_image_size = config_dict.placeholder(int)  # ImageNet eval size; None = image_size
  # ImageNet/synthetic progressive resizing (FFCV, fast.ai; lbtrain.resolution): train at
  # start_image_size until the ramp starts, at image_size from its end, in between the linear
  # ramp rounded to the nearest `multiple` px; per epoch if the ramp is in epochs, else per step.
  # One train step is compiled per distinct size.
  config.data.progressive_resizing = ml_collections.ConfigDict()
  # the train size up to the ramp; None = no ramp (image_size throughout)
  config.data.progressive_resizing.start_image_size = config_dict.placeholder(int)
  # start_image_size until here
  config.data.progressive_resizing.ramp_start_epochs = config_dict.placeholder(float)
  # the same in steps
  config.data.progressive_resizing.ramp_start_steps = config_dict.placeholder(int)
  # image_size from here on
  config.data.progressive_resizing.ramp_end_epochs = config_dict.placeholder(float)
  # the same in steps
  config.data.progressive_resizing.ramp_end_steps = config_dict.placeholder(int)
  # sizes inside the ramp are rounded to a multiple of this (FFCV: 32)
  config.data.progressive_resizing.multiple = 32
  # ImageNet training crops: RandAugment(N, M) after the crop and flip (lbtrain/data/randaugment.py,
  # big_vision's ops and magnitudes), drawn from (seed, step, row) like the crops. N = 0: off.
  config.data.randaugment_layers = 0  # N, ops applied in turn (big_vision vit_s16_i1k: 2)
  config.data.randaugment_magnitude = 10.0  # M, of 10 (big_vision vit_s16_i1k: 10)
  # ImageNet: threads decoding JPEGs (None = every core the process may use); the batches are
  # the same for any number.
  config.data.threads = config_dict.placeholder(int)

  config.train = ml_collections.ConfigDict()
  config.train.global_batch_size = 1024  # the hyperparameter: summed over all devices and hosts
  config.train.num_epochs = 10.0  # an epoch is num_train_examples / global_batch_size steps
  config.train.seed = 0  # parameter init and data order
  # Examples per device per forward/backward pass; the step accumulates
  # per_device_batch / micro_batch_size of them (inside one jitted step) into one update.
  # None = the whole per-device batch at once (no accumulation); 'auto' = the largest size
  # whose compiled step fits memory_fraction of a device's memory (logged with the figures).
  config.train.micro_batch_size = config_dict.placeholder(object)
  config.train.memory_fraction = 0.9  # share of a device's memory micro_batch_size='auto' may use
  config.train.batch_schedule = ml_collections.ConfigDict()
  # A batch that changes during training (Smith et al. 2017; lbtrain/batch_schedule.py): the
  # global batch from each boundary on, after global_batch_size up to the first. The examples
  # are the one-batch run's, in its order, cut into other batches. () = one batch throughout.
  config.train.batch_schedule.batch_sizes = ()
  # Where each of batch_sizes starts, in epochs (each segment's epochs at its own batch).
  config.train.batch_schedule.boundaries_epochs = ()
  config.train.batch_schedule.boundaries_steps = config_dict.placeholder(tuple)  # or in steps
  # 'scale': each segment's lr by optimizer.scaling at its batch; 'hold': the first batch's
  # schedule unscaled (Smith et al., where the batch increase replaces the lr decay).
  config.train.batch_schedule.lr = 'scale'
  config.train.adaptive_batch = ml_collections.ConfigDict()
  # A batch that follows the measured noise scale (McCandlish et al. 2018;
  # lbtrain/adaptive_batch.py): at each decision point the power of 2 in [min, max] nearest the
  # running B_simple in log, the lr by optimizer.scaling at it. Starts at global_batch_size;
  # needs noise_scale_every. Both None = off.
  config.train.adaptive_batch.min_batch_size = config_dict.placeholder(int)
  config.train.adaptive_batch.max_batch_size = config_dict.placeholder(int)  # the largest allowed
  config.train.adaptive_batch.every_epochs = config_dict.placeholder(float)  # between decisions
  config.train.adaptive_batch.every_steps = config_dict.placeholder(int)  # or in steps
  # The first decision (a warm-up for the noise-scale EMAs), in every's unit; None = one every.
  config.train.adaptive_batch.first_epochs = config_dict.placeholder(float)
  config.train.adaptive_batch.first_steps = config_dict.placeholder(int)  # or in steps
  # Aim at this multiple of B_simple: above 1, fewer steps for more examples (steps dearer).
  config.train.adaptive_batch.noise_scale_multiple = 1.0
  # End this attempt after this step (evaluated and saved there) without changing the schedule,
  # which still runs to num_epochs: a later run with a larger value, or None, goes on exactly.
  # A tuned sweep caps its trials with it. None = train to the end.
  config.train.stop_at_step = config_dict.placeholder(int)
  config.train.label_smoothing = 0.0  # label smoothing of the cross-entropy targets
  # Mixup / CutMix on the devices inside the step (lbtrain/mixing.py), one draw per global batch
  # from (seed, step), soft targets: the Beta(alpha, alpha) concentrations, 0 = off. With both
  # on, a mixed step uses CutMix or Mixup with probability 1/2 each.
  config.train.mixup_alpha = 0.0  # big_vision vit_s16_i1k: 0.2 (its mixup `p`)
  config.train.cutmix_alpha = 0.0  # Yun et al. 2019 and DeiT: 1.0
  config.train.mix_prob = 1.0  # share of steps mixed at all (big_vision: every step)
  config.train.log_every_steps = 50  # steps between metric records and progress-line updates
  config.train.log_every_epochs = config_dict.placeholder(float)  # the same interval in epochs
  # A NaN/Inf loss or gradient: 'stop' (name the step, keep the last good checkpoint) or 'skip'
  # (leave that update out, count it in train/skipped_steps, stop after too many in a row).
  config.train.on_nonfinite = 'stop'
  config.train.max_consecutive_nonfinite = 10  # 'skip': stop after this many in a row
  # XLA's persistent compilation cache, so a restarted run does not compile again:
  # None = DIR/compilation_cache inside the workdir, '' = off, or a shared folder.
  config.train.compilation_cache_dir = config_dict.placeholder(str)
  # Gradient noise scale B_simple (McCandlish et al. 2018), logged as train/noise_scale: fold
  # a new estimate into its EMAs every this many steps; None = off. Needs per-device gradients
  # (parallel.strategy='pmap') or micro-batches (micro_batch_size), which the step has anyway;
  # with BN, statistics per device (bn_group_size dividing the per-device batch; shared ones
  # bias it, warned).
  config.train.noise_scale_every = config_dict.placeholder(int)
  config.train.noise_scale_decay = 0.99  # EMA decay per update

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'sgd'  # sgd | nesterov | lars | lamb | adamw | adam
  config.optimizer.base_lr = 0.1  # lr at base_batch_size; scaled to global_batch_size by `scaling`
  config.optimizer.base_batch_size = 256  # the batch base_lr was tuned at
  config.optimizer.scaling = 'linear'  # linear | sqrt | none
  config.optimizer.momentum = 0.9  # sgd | nesterov | lars
  config.optimizer.nesterov = False  # sgd | lars: Nesterov momentum ('nesterov' = sgd with it)
  # L2 added to the gradient (sgd, nesterov, lars, lamb) or decoupled (adamw; adam takes none).
  config.optimizer.weight_decay = 0.0
  # Which parameters get weight decay / the LARS-LAMB trust ratio: comma-separated 'REGEX:on|off'
  # rules matched (re.search) against '/'-joined parameter paths such as 'stage1_block0/bn1/scale';
  # the first matching rule decides and a parameter no rule decides is an error. The default is the
  # large-batch recipes' (Goyal, Jia, MLPerf): kernels only, never biases or norm scales (BN gamma).
  # Patterns cannot contain commas; '.*:on' decays everything, as optax.lars does by default.
  config.optimizer.weight_decay_mask = '(^|/)bias$:off,(^|/)scale$:off,(^|/)kernel$:on'
  # The same rules for the trust ratio (lars, lamb).
  config.optimizer.trust_ratio_mask = '(^|/)bias$:off,(^|/)scale$:off,(^|/)kernel$:on'
  config.optimizer.trust_coefficient = 0.001  # LARS eta in eta * ||w|| / (||g|| + wd * ||w||)
  config.optimizer.b1 = 0.9  # lamb | adamw | adam: first-moment decay
  config.optimizer.b2 = 0.999  # lamb | adamw | adam: second-moment decay
  # Denominator epsilon; None = the optimizer's published default (lars 0, lamb 1e-6, adam(w) 1e-8).
  config.optimizer.eps = config_dict.placeholder(float)
  # adam | adamw | lamb: the first moment's dtype; None = the params' float32 (big_vision's ViT
  # recipes: 'bfloat16', half the memory of that state).
  config.optimizer.mu_dtype = config_dict.placeholder(str)
  # adamw: what the decoupled weight decay multiplies besides wd and w. 'lr': the lr (optax.adamw,
  # PyTorch); 'schedule': only the schedule's multiplier lr / peak lr, as big_vision applies its
  # `wd` (lbtrain/optim.py).
  config.optimizer.weight_decay_form = 'lr'
  # Clip the gradient to this global L2 norm before anything else; None = no clipping.
  config.optimizer.grad_clip_norm = config_dict.placeholder(float)

  config.schedule = ml_collections.ConfigDict()
  config.schedule.warmup_epochs = 0.0  # warmup length, fractions allowed; 0 = no warmup
  config.schedule.warmup_steps = config_dict.placeholder(int)  # the same in steps (unset the epochs)
  config.schedule.warmup = 'linear'  # linear (per step from warmup_init_lr to peak) | constant
  config.schedule.warmup_init_lr = 0.0  # lr at step 0, all warmup if constant (Goyal 0.1, MLPerf 0)
  config.schedule.decay = 'cosine'  # cosine | step | poly | constant
  config.schedule.end_lr = 0.0  # cosine and poly reach this lr at step total_steps (as MLPerf's)
  config.schedule.power = 2.0  # poly: (peak - end_lr) * (1 - t / T)**power + end_lr after warmup
  # step: multiply the lr by decay_factor at each boundary, counted from step 0 (Goyal: 30, 60, 80).
  config.schedule.boundaries_epochs = ()
  config.schedule.boundaries_steps = config_dict.placeholder(tuple)  # the same in steps
  config.schedule.decay_factor = 0.1  # step: the lr multiplier at each boundary

  config.parallel = ml_collections.ConfigDict()
  # jit: one program over the mesh of all devices, seeing the global batch (pjit semantics).
  # pmap: the same step as a per-device program that sees its own rows and averages gradients
  # with an explicit pmean. Both give the same training; a run may switch on resume.
  config.parallel.strategy = 'jit'
  # Where the train state lives (lbtrain.sharding), the same training in every mode:
  # replicated: every device holds the whole model, gradient and optimizer state.
  # update: optimizer state sharded over the devices, gradient reduce-scattered, each device
  #   updates its slice, parameters all-gathered (ZeRO-1; Xu et al. 2020, arXiv:2004.13336).
  # fsdp: parameters sharded too, gathered where the passes use them (ZeRO-3 / FSDP).
  # update and fsdp need strategy=jit.
  config.parallel.sharding = 'replicated'

  config.eval = ml_collections.ConfigDict()
  config.eval.every_epochs = 1.0  # and at the end; 0 = never (e.g. throughput runs)
  config.eval.every_steps = config_dict.placeholder(int)  # the same interval in steps; 0 = never
  # The first evaluation, later ones every eval.every_* after it (MLPerf: epoch 2, then every
  # 4); both None = the first at eval.every_*.
  config.eval.first_epochs = config_dict.placeholder(float)
  config.eval.first_steps = config_dict.placeholder(int)  # the same in steps
  # Stop at the first evaluation whose accuracy reaches this (saved; time to target recorded in
  # metrics.jsonl, as MLPerf states results); None = train the whole schedule.
  config.eval.target_accuracy = config_dict.placeholder(float)
  config.eval.global_batch_size = config_dict.placeholder(int)  # None = train global batch
  # Also evaluate this split of the training data at each evaluation, in eval mode like the eval
  # split (e.g. 'train[:10000]'; a fixed slice, so every evaluation sees the same examples):
  # train_eval/accuracy and train_eval/loss, the generalization gap beside eval/*. None = off.
  config.eval.train_accuracy_split = config_dict.placeholder(str)

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 1000  # checkpoint interval; also at the end and on SIGTERM/SIGINT
  config.checkpoint.every_epochs = config_dict.placeholder(float)  # the same interval in epochs
  config.checkpoint.keep = 3  # most recent checkpoints kept on disk
  config.checkpoint.keep_every_steps = config_dict.placeholder(int)  # also keep multiples of this

  return config
