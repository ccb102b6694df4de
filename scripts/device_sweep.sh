#!/usr/bin/env bash
# One call on a lent GPU machine (torch ≥ 2.11, no PyAV, no network): the training-speed
# bench (issue 13), then CTNet-18's export-aware λ sweep from a ResNet-18 baseline, packed.
#   here, first:  cp -r ../shared/data/imagenette2-128 .data/     (git-ignored, 46 MB)
#   device run:   OUT=$OUT bash scripts/device_sweep.sh           carry: [".data"]
# The shared 89.5 % baseline does not travel, so a plain ResNet-18 is trained there first with
# scripts/train_demo.sh's exact recipe (~60 s on an H200); B18=PATH (a checkpoint on that
# machine) skips it. Results in $OUT (≤ 8 files, each ≤ 15 MiB): train_step.txt (the bench),
# sweep.txt (this script's log) and part00… (scripts/pack_results.py's runs: logs + Pareto
# checkpoints; `cat part* | tar -x`, then scripts/unpack_results.py).
# Env: LAMBDAS (default "2e-7 3e-7 5e-7 1e-6"), LIMIT (seconds for all training, default 420),
#   CT18_EPOCHS (40), BASE_EPOCHS (80), B18, BENCH_ARGS (default "--batch 256 --repeats 5"),
#   DEVICE (cuda; "cpu" with EXTRA="--device cpu --limit-train … --image-size 32" smoke-tests
#   it), DATA, WORK, PARTS (≤ 6), PYTHON, EXTRA (appended to every training command).
set -u
OUT=${OUT:?set OUT to the folder that comes back}
DEVICE=${DEVICE:-cuda}
PARTS=${PARTS:-6}
BENCH_ARGS=${BENCH_ARGS:-"--batch 256 --repeats 5"}
export CT18_LAMBDAS=${LAMBDAS:-"2e-7 3e-7 5e-7 1e-6"} STAGES="" PARTS
export PYTHONPATH=. PYTHONUNBUFFERED=1
{
  start=$(date +%s)
  echo "== bench/train_step.py --device $DEVICE $BENCH_ARGS"
  ${PYTHON:-python3} bench/train_step.py --device "$DEVICE" $BENCH_ARGS 2>&1 | tee "$OUT/train_step.txt"
  echo "bench wall $(( $(date +%s) - start )) s"
  echo "== λ sweep: $CT18_LAMBDAS (baseline: ${B18:-trained here})"
  bash scripts/device_run.sh
} 2>&1 | tee "$OUT/sweep.txt"
