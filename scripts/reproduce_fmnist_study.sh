#!/usr/bin/env bash
# Reproduces docs/batch_size_study.md: Goyal et al. 2017's large-batch comparison at small scale,
# on Fashion-MNIST, as four batch-size sweeps of the same 3-epoch budget, then their combined
# table and plots in docs/batch_size_study/.
#
#   bash scripts/reproduce_fmnist_study.sh [RUNS_DIR]      (default runs/fmnist_study)
#
# Resumable: run it again after an interruption and finished runs are skipped. Env:
#   DATA_DIR   tfds data_dir holding (or to hold) Fashion-MNIST; default: the configs'
#   XLA_FLAGS  default: 2 emulated CPU devices, the fastest measured on a 2-core machine; it has
#              no effect on a GPU, where every run uses the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-runs/fmnist_study}
export XLA_FLAGS=${XLA_FLAGS:---xla_force_host_platform_device_count=2}
data_dir=()
if [ -n "${DATA_DIR:-}" ]; then
  data_dir=(--config.data.data_dir="$DATA_DIR")
fi

sweep() {  # CONFIG_NAME BATCHES SWEEP_NAME
  nice -n 5 .venv/bin/python -m lbtrain.sweep --config="configs/$1.py" --batch_sizes="$2" \
    --workdir="$runs/$3" --target_accuracy=0.85 "${data_dir[@]}"
}

start=$(date +%s)
# (a) and the baseline: the linear scaling rule without warmup; at 256 it is the baseline.
sweep fmnist_study_linear 256,1024,4096,16384 a_linear
# (b) linear scaling with gradual warmup; (c) LARS; (d) LAMB: the large batches only.
sweep fmnist_study_warmup 1024,4096,16384 b_warmup
sweep fmnist_study_lars 1024,4096,16384 c_lars
sweep fmnist_study_lamb 1024,4096,16384 d_lamb

.venv/bin/python -m lbtrain.sweep_report --out_dir=docs/batch_size_study \
  --sweep="(a) linear, no warmup=$runs/a_linear" --sweep="(b) linear + warmup=$runs/b_warmup" \
  --sweep="(c) LARS=$runs/c_lars" --sweep="(d) LAMB=$runs/d_lamb"
echo "study: $(( $(date +%s) - start )) s in all"
