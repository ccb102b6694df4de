#!/usr/bin/env bash
# The CPU runs behind the README's "same baseline" table: CTNet-18 fine-tuned from the shared
# 89.53 % ResNet-18 on 2 cores, bf16 autocast + channels-last (--amp), 8-bit export-aware
# unless the extra flags give another grid (--pixel-bit-depth 6: the run is then named
# cpu18-lam…-b6, so it never resumes or replaces the 8-bit run of the same λ; --export-dither A
# adds -dA: cpu18-lam…-b6-d0.5, encoded with `ctnet encode --bit-depth 6 --dither 0.5`), distilled from
# that same model (it decoded better: README) and named cpu18-lam…-distill; DISTILL= runs
# without a teacher (the runs cpu18-lam{1e-7,5e-7,1.5e-6}).
#   scripts/train_cpu_sweep.sh RUNS LAMBDA [extra ctnet-train flags…]
# One run per call (each takes about an hour); rerun the same call to resume an interrupted one.
set -euo pipefail
RUNS=${1:?usage: train_cpu_sweep.sh RUNS LAMBDA [flags…]}
LAM=${2:?usage: train_cpu_sweep.sh RUNS LAMBDA [flags…]}
shift 2
DATA=${DATA:-../shared/data/imagenette2-128}
BASE=${BASE:-../shared/models/resnet18-imagenette128-scratch.pt}
DISTILL=${DISTILL-$BASE}  # the teacher; set empty for none
EPOCHS=${EPOCHS:-20}
BITS=8
DITHER=0
prev=""
for arg in "$@"; do  # the grid and dither the extra flags ask for (the last one wins, as in argparse)
  [[ "$prev" == "--pixel-bit-depth" ]] && BITS=$arg
  [[ "$arg" == --pixel-bit-depth=* ]] && BITS=${arg#*=}
  [[ "$prev" == "--export-dither" ]] && DITHER=$arg
  [[ "$arg" == --export-dither=* ]] && DITHER=${arg#*=}
  prev=$arg
done
SUFFIX=""
[[ "$BITS" != 8 ]] && SUFFIX="-b$BITS"
[[ ! "$DITHER" =~ ^[0.]*$ ]] && SUFFIX="$SUFFIX-d$DITHER"  # any non-zero amplitude (0, 0.0 … are off)
[[ -n "$DISTILL" ]] && SUFFIX="$SUFFIX-distill"
NAME=${NAME:-cpu18-lam$LAM$SUFFIX}
PY=${PYTHON:-.venv/bin/python}
OUTDIR="$RUNS/$NAME"
RESUME=()
TEACHER=()
[[ -n "$DISTILL" ]] && TEACHER=(--distill-from "$DISTILL")
[[ -f "$OUTDIR/checkpoints/last.safetensors" ]] && RESUME=(--resume "$OUTDIR/checkpoints/last.safetensors")
exec $PY -m ctnet train "$DATA" --output-dir "$OUTDIR" --arch resnet18 --init-from "$BASE" \
  --optimizer adamw --lr 1e-3 --weight-decay 0.01 --batch-size 256 --label-smoothing 0.1 \
  --epochs "$EPOCHS" --rate-grid export --lambda-rate "$LAM" --lambda-alpha 0.5 --no-train-noise \
  --dct-dropout 0 --pixel-bit-depth "$BITS" --rate-warmup-epochs 5 --cache-dataset --device cpu --amp \
  --seed 0 "${TEACHER[@]}" "${RESUME[@]}" "$@"
