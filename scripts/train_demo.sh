#!/usr/bin/env bash
# The exact commands behind the README's results table and the app's embedded demo.
# Runs on any CUDA machine with torch ≥ 2.11 (no PyAV needed):
#   scripts/train_demo.sh DATA RUNS
# DATA is the ImageNette root (e.g. ../shared/data/imagenette2-128), RUNS the output folder.
# EXTRA (environment) is appended to every command, e.g. EXTRA="--limit-train 64 --device cpu"
# for a smoke test; the *_EPOCHS variables shorten the schedule. B18 (a ResNet-18 checkpoint)
# skips training the ResNet-18 baseline and starts CTNet-18 from it.
set -euo pipefail
DATA=${1:?usage: train_demo.sh DATA RUNS}
RUNS=${2:?usage: train_demo.sh DATA RUNS}
BASE_EPOCHS=${BASE_EPOCHS:-80}
CT18_EPOCHS=${CT18_EPOCHS:-40}
CT50_EPOCHS=${CT50_EPOCHS:-30}
CT18_LAMBDAS=${CT18_LAMBDAS:-"1e-7 2e-7 4e-7 1e-6 1e-5"}  # the export-grid λ sweep
STAGES=${STAGES-"paper r50"}  # optional parts: the paper-proxy run, ResNet-50 + CTNet-50
EXTRA=${EXTRA:-}
PY=${PYTHON:-python3}
mkdir -p "$RUNS"
COMMON="--cache-dataset --amp --image-size 128 --seed 0 --checkpoint-every 10 $EXTRA"
BASELINE="--plain --optimizer sgd --lr 0.4 --weight-decay 5e-4 --label-smoothing 0.1 --batch-size 256"
# CTNet fine-tuning: AdamW as in the paper, export-aware at 8 bit, rate warm-up 5 epochs
CTNET="--optimizer adamw --lr 1e-3 --weight-decay 0.01 --batch-size 256 --label-smoothing 0.1 --pixel-bit-depth 8 --rate-warmup-epochs 5"

run() {  # name, args...: one training run, its log beside its output
  local name=$1; shift
  $PY -m ctnet train "$DATA" --output-dir "$RUNS/$name" "$@" $COMMON > "$RUNS/$name.log" 2>&1 \
    && echo "done $name" || { echo "FAILED $name"; tail -5 "$RUNS/$name.log"; }
}

# 1. plain baselines from scratch (rate off), in parallel
B18=${B18:-}
R18=
if [[ -z "$B18" ]]; then
  run resnet18-plain --arch resnet18 $BASELINE --epochs "$BASE_EPOCHS" --warmup-epochs $((BASE_EPOCHS / 5)) &
  R18=$!
fi
R50=
if [[ " $STAGES " == *" r50 "* ]]; then
  run resnet50-plain --arch resnet50 $BASELINE --epochs "$BASE_EPOCHS" --warmup-epochs $((BASE_EPOCHS / 5)) &
  R50=$!
fi
if [[ -n "$R18" ]]; then wait $R18; fi
B18=${B18:-"$RUNS/resnet18-plain/checkpoints/best.safetensors"}

# 2. CTNet-18 from the baseline: λ sweep with the rate measured on the export grid, and the
#    paper's fixed-q proxy (q = 0.1, noise, DCT dropout) for comparison
for lam in $CT18_LAMBDAS; do
  run "ctnet18-export-lam$lam" --arch resnet18 --init-from "$B18" $CTNET --epochs "$CT18_EPOCHS" \
      --rate-grid export --lambda-rate "$lam" --lambda-alpha 0.5 --no-train-noise --dct-dropout 0 &
done
if [[ " $STAGES " == *" paper "* ]]; then
  run ctnet18-paper-lam1e-5 --arch resnet18 --init-from "$B18" $CTNET --epochs "$CT18_EPOCHS" \
      --rate-grid qstep --qstep 0.1 --lambda-rate 1e-5 --lambda-alpha 0.5 --dct-dropout 0.05 &
fi
[[ -z "$R50" ]] && { wait; exit 0; }
wait $R50
B50="$RUNS/resnet50-plain/checkpoints/best.safetensors"

# 3. CTNet-50 (all 1×1 convs channel-DCT, B = 16) from its baseline
run ctnet50-export-lam1e-6 --arch resnet50 --init-from "$B50" $CTNET --epochs "$CT50_EPOCHS" \
    --rate-grid export --lambda-rate 1e-6 --lambda-alpha 0.5 --no-train-noise --dct-dropout 0 &
wait
