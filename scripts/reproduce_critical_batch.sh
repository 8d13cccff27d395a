#!/usr/bin/env bash
# Reproduces docs/critical_batch.md: steps to result (Shallue et al. 2018) on Fashion-MNIST with
# the lr tuned at every batch, the critical batch fitted to them (McCandlish et al. 2018), LARS
# and LAMB tuned beyond it, and the advisor's prediction at the small batch; the combined table
# and plots land in docs/critical_batch/.
#
#   bash scripts/reproduce_critical_batch.sh [RUNS_DIR]      (default runs/critical_batch)
#
# Resumable: run it again after an interruption and finished trials are skipped. Env:
#   DATA_DIR   tfds data_dir holding (or to hold) Fashion-MNIST; default: the config's
#   XLA_FLAGS  default: 2 emulated CPU devices (no effect on a GPU)
#   OUT_DIR    default docs/critical_batch
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-runs/critical_batch}
out=${OUT_DIR:-docs/critical_batch}
export XLA_FLAGS=${XLA_FLAGS:---xla_force_host_platform_device_count=2}
python=${PYTHON:-.venv/bin/python}
data_dir=()
if [ -n "${DATA_DIR:-}" ]; then
  data_dir=(--config.data.data_dir="$DATA_DIR")
fi
config=configs/fmnist_critical_batch.py
target=0.9

lars=(--config.optimizer.name=lars --config.optimizer.scaling=none --config.optimizer.eps=0.0)
lamb=(--config.optimizer.name=lamb --config.optimizer.scaling=none
      --config.optimizer.weight_decay=0.01)

evaluate_winners() {  # SWEEP_DIR: each batch's winning trial on the test split
  for dir in $("$python" -c 'import json, sys
for batch in json.load(open(sys.argv[1]))["batches"]:
  if batch["best_workdir"]:
    print(batch["best_workdir"])' "$1/summary.json"); do
    "$python" -m lbtrain.evaluate --workdir="$dir" --split=test \
      ${DATA_DIR:+--data_dir="$DATA_DIR"}
  done
}

# 5. The adaptive batch (train.adaptive_batch) against fixed batches on the same model, one run
#    each, stopped at the target: BN over groups of 64 (bn_group_size; global BN biases the
#    per-device noise estimate, docs/critical_batch.md), pmap on the 2 devices (the noise
#    scale's small batches are the devices' rows), base lr 0.1 linear from 256 (the tuned
#    value at 32 and 128) unless said. Run alone with a second argument: `... RUNS_DIR adaptive`.
adaptive_runs() {
  local common=(--config=$config --config.eval.target_accuracy=$target
                --config.parallel.strategy=pmap --config.model.bn_group_size=64
                --config.train.noise_scale_every=1 "${data_dir[@]}")
  # Evaluated every 5 steps, as measured (about the fixed 512 run's 0.05 epoch): when these
  # runs were made, eval.every_epochs counted steps of the first batch (it now counts examples).
  local adaptive=(--config.train.global_batch_size=128
                  --config.train.adaptive_batch.min_batch_size=128
                  --config.train.adaptive_batch.max_batch_size=8192
                  --config.train.adaptive_batch.every_epochs=0.05
                  --config.eval.every_epochs=None --config.eval.every_steps=5)
  # The batch nearest 1, 2 or 4 x B_simple (noise_scale_multiple:seed).
  for run in 1:0 1:1 2:0 2:1 4:0; do
    "$python" -m lbtrain.main "${common[@]}" "${adaptive[@]}" --config.train.seed=${run##*:} \
      --config.train.adaptive_batch.noise_scale_multiple=${run%%:*} \
      --workdir="$runs/adaptive/multiple${run%%:*}_seed${run##*:}"
  done
  # The same with BN over the global batch (the study's model): the noise estimate goes negative.
  "$python" -m lbtrain.main "${common[@]}" "${adaptive[@]}" --config.model.bn_group_size=None \
    --workdir="$runs/adaptive/global_bn"
  for batch_lr in 128:0.1 512:0.1 512:0.05 2048:0.0125; do
    "$python" -m lbtrain.main "${common[@]}" --config.train.global_batch_size=${batch_lr%%:*} \
      --config.optimizer.base_lr=${batch_lr##*:} --workdir="$runs/adaptive/fixed_${batch_lr/:/_lr}"
  done
  for batch in 128 512; do
    "$python" -m lbtrain.main "${common[@]}" --config.train.global_batch_size=$batch \
      --config.train.seed=1 --workdir="$runs/adaptive/fixed_${batch}_lr0.1_seed1"
  done
}

adaptive_summary() {  # each run's steps and examples to the target, and its batches
  for dir in "$runs"/adaptive/*/; do
    "$python" -c 'import json, sys
records = [json.loads(line) for line in open(sys.argv[1] + "metrics.jsonl")]
train = [r for r in records if "train/epoch" in r]
reached = [r["step"] for r in records if "eval/target_accuracy" in r]
batches = [(0, train[0]["train/global_batch_size"])]
for r in records:
  if r.get("train/batch_decision", batches[-1][1]) != batches[-1][1]:
    batches.append((r["step"], r["train/batch_decision"]))
print(sys.argv[1], "steps to target:", reached[0] if reached else None, "examples:",
      round(train[-1]["train/epoch"] * 55000), "batches (from step, batch):", batches)' "$dir"
  done
}

start=$(date +%s)
if [ "${2:-}" = adaptive ]; then
  adaptive_runs
  adaptive_summary | tee "$out/adaptive.txt"
  exit 0
fi
# 1. Nesterov, base lr (scaled linearly from batch 256) tuned over 6 values a factor 2 apart, at
#    batches 32 ... 2048 in powers of 4.
"$python" -m lbtrain.sweep --config=$config --batch_sizes=32,128,512,2048 \
  --tune=optimizer.base_lr=log:0.0125:0.4:6 --target_accuracy=$target \
  --workdir="$runs/nesterov" "${data_dir[@]}"
echo "critical batch: Nesterov sweep done after $(( $(date +%s) - start )) s"
# 1b. At 2048 the best base lr was the range's lowest: the next value below it, pooled with (1)
#     in the report (a sweep of its own keeps (1)'s trial numbers).
"$python" -m lbtrain.sweep --config=$config --batch_sizes=2048 --target_accuracy=$target \
  --tune=optimizer.base_lr=0.00625 --workdir="$runs/nesterov_lower" "${data_dir[@]}"
# 1c. 8192 on its own grid, centred lower: at 2048 the best base lr was already the lowest of (1)'s
#     range, and (1)'s base lr 0.05 (lr 1.6) ran all 12 epochs at 8192 without reaching the target.
"$python" -m lbtrain.sweep --config=$config --batch_sizes=8192 --target_accuracy=$target \
  --tune=optimizer.base_lr=0.00625,0.0125,0.025 --workdir="$runs/nesterov_8192" "${data_dir[@]}"
# 1d. At 8192 the best was again the lowest of its grid: the next value below it.
"$python" -m lbtrain.sweep --config=$config --batch_sizes=8192 --target_accuracy=$target \
  --tune=optimizer.base_lr=0.003125 --workdir="$runs/nesterov_8192_lower" "${data_dir[@]}"
# 2. LARS and LAMB at 2048, lr given directly (no scaling) and tuned over 3 values a factor 2
#    apart; the same constant schedule, so that only the optimizer differs from (1).
"$python" -m lbtrain.sweep --config=$config --batch_sizes=2048 --target_accuracy=$target \
  "${lars[@]}" --tune=optimizer.base_lr=log:2.5:10:3 --workdir="$runs/lars" "${data_dir[@]}"
"$python" -m lbtrain.sweep --config=$config --batch_sizes=2048 --target_accuracy=$target \
  "${lamb[@]}" --tune=optimizer.base_lr=log:0.00625:0.025:3 --workdir="$runs/lamb" "${data_dir[@]}"
echo "critical batch: LARS and LAMB done after $(( $(date +%s) - start )) s"
# 3. The advisor: the noise scale measured at batch 1024 (with BN statistics per device, as the
#    advisor now sets them), throughput at the sweep's batches.
"$python" -m lbtrain.advise --config=$config --target_accuracy=$target \
  --config.train.global_batch_size=1024 --batch_sizes=32,128,512,2048,8192 \
  --workdir="$runs/advice" "${data_dir[@]}"

"$python" -m lbtrain.sweep_report --out_dir="$out" \
  --sweep="Nesterov=$runs/nesterov,$runs/nesterov_lower,$runs/nesterov_8192,$runs/nesterov_8192_lower" \
  --sweep="LARS=$runs/lars" --sweep="LAMB=$runs/lamb"
# 4. The test split, once, at the end: each batch's winning trial (chosen on the validation
#    split) evaluated on the 10,000 test images.
{
  evaluate_winners "$runs/nesterov"
  evaluate_winners "$runs/nesterov_lower"
  evaluate_winners "$runs/nesterov_8192"
  evaluate_winners "$runs/nesterov_8192_lower"
  evaluate_winners "$runs/lars"
  evaluate_winners "$runs/lamb"
} | tee "$out/test_accuracy.txt"
cp "$runs/nesterov/summary.json" "$out/nesterov_summary.json"
cp "$runs/nesterov/summary.md" "$out/nesterov_summary.md"
cp "$runs/advice/advice.md" "$runs/advice/advice.json" "$out/"
adaptive_runs
adaptive_summary | tee "$out/adaptive.txt"
echo "critical batch: $(( $(date +%s) - start )) s in all"
