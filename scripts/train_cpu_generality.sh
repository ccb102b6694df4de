#!/usr/bin/env bash
# The CPU runs behind the README's "beyond ResNets" result (issue 20), on 2 cores with bf16
# autocast + channels-last (--amp). One stage per call; each uses both cores, so run them one
# after another, in this order. Rerunning a stage resumes its interrupted training.
#   scripts/train_cpu_generality.sh RUNS baseline     # (a) plain MobileNetV2 from scratch on DATA
#   scripts/train_cpu_generality.sh RUNS ctnet [LAM]  # (b) CTNet-MobileNetV2 from (a), 8-bit export-aware,
#                                                     #     then its best and smallest bundles, decoded on DATA's val
#   scripts/train_cpu_generality.sh RUNS nncodec      # (c) `ctnet rd` on (a): NNCodec (importable from
#                                                     #     PYTHONPATH=$NNCODEC, docs/codec-v1-figures.md), INT8/INT4
#                                                     #     + zstd and the plain weights as a bundle, same baseline
#   scripts/train_cpu_generality.sh RUNS relabelled   # (d) a 4-class relabelled ImageNette (fish, dog, horn,
#                                                     #     parachute): plain ResNet-18, CTNet-18 from it, bundle,
#                                                     #     decode, ONNX export evaluated in onnxruntime
# Each writes its JSON beside its run: RUNS/<run>/bundles/<role>.{encode,decode}.json, RUNS/mobilenet_v2-plain.rd.json
# (table: python scripts/rd_table.py RUNS/mobilenet_v2-plain.rd.json), RUNS/relabelled-ctnet18-lam5e-7/best.onnx.eval.json.
# EXTRA (environment) is appended to every `ctnet train`, EVAL to every evaluation of a decoded model
# (default: the full val split); AMP="" drops --amp on a CPU without native bfloat16. A smoke test
# (tests/test_generality_script.py runs every stage so):
#   AMP= EXTRA="--limit-train 16 --limit-val 8 --epochs 1 --image-size 32" EVAL="--limit 8" \
#     scripts/train_cpu_generality.sh /tmp/g baseline
set -euo pipefail
USAGE="usage: train_cpu_generality.sh RUNS baseline|ctnet [LAMBDA]|nncodec|relabelled"
RUNS=${1:?$USAGE}
STAGE=${2:?$USAGE}
DATA=${DATA:-../shared/data/imagenette2-128}
RELABELLED=${RELABELLED:-.data/imagenette4-relabelled}  # made from DATA by scripts/relabel_dataset.py (ignored)
PY=${PYTHON:-.venv/bin/python}
EXTRA=${EXTRA:-}
EVAL=${EVAL:-}
AMP=${AMP---amp}
COMMON=(--cache-dataset --device cpu --seed 0)
[[ -n "$AMP" ]] && COMMON+=("$AMP")
BASE="$RUNS/mobilenet_v2-plain/checkpoints/best.safetensors"
mkdir -p "$RUNS"

train() {  # output dir, ctnet train flags…: resumes an interrupted run of the same stage
  local out=$1; shift
  local resume=()
  [[ -f "$out/checkpoints/last.safetensors" ]] && resume=(--resume "$out/checkpoints/last.safetensors")
  # shellcheck disable=SC2086  # EXTRA is a list of flags
  $PY -m ctnet train "$@" --output-dir "$out" "${COMMON[@]}" "${resume[@]}" $EXTRA
}

bundle() {  # checkpoint, bundle dir, data: encode at the defaults, decode and evaluate
  mkdir -p "$(dirname "$2")"
  $PY -m ctnet encode "$1" --out "$2" --force --json > "$2.encode.json"
  # shellcheck disable=SC2086
  $PY -m ctnet decode "$2" --data "$3" --json $EVAL | tee "$2.decode.json"
}

case "$STAGE" in
  baseline)  # SGD, label smoothing, 3-epoch warm-up then cosine
    train "$RUNS/mobilenet_v2-plain" "$DATA" --arch mobilenet_v2 --plain --optimizer sgd --lr 0.2 \
      --weight-decay 1e-4 --label-smoothing 0.1 --batch-size 128 --warmup-epochs 3 \
      --epochs "${BASE_EPOCHS:-32}" --checkpoint-every 4
    ;;
  ctnet)  # as scripts/train_cpu_sweep.sh does for ResNet-18: AdamW, rate on the export grid, STE 8-bit
    LAM=${3:-5e-7}
    out="$RUNS/ctnet-mobilenet_v2-lam$LAM"
    train "$out" "$DATA" --arch mobilenet_v2 --init-from "$BASE" \
      --optimizer adamw --lr 1e-3 --weight-decay 0.01 --batch-size 128 --label-smoothing 0.1 \
      --epochs "${CT_EPOCHS:-20}" --rate-grid export --lambda-rate "$LAM" --lambda-alpha 0.5 --no-train-noise \
      --dct-dropout 0 --pixel-bit-depth 8 --rate-warmup-epochs 5 --checkpoint-every 4
    for role in best smallest; do bundle "$out/checkpoints/$role.safetensors" "$out/bundles/$role" "$DATA"; done
    ;;
  nncodec)  # the baseline's post-training coders, as the README's ResNet-18 row (fewer codecs: 2 cores)
    # shellcheck disable=SC2086
    $PY -m ctnet rd "$BASE" --data "$DATA" --codecs hevc xz --bits 8 --crfs 0 \
      --nncodec-qps -38 -32 -30 -29 -28 -27 -26 --int-bits 8 4 --json $EVAL > "$RUNS/mobilenet_v2-plain.rd.json"
    $PY scripts/rd_table.py "$RUNS/mobilenet_v2-plain.rd.json"
    ;;
  relabelled)  # another dataset: other class names, fewer classes; the class count comes from its folders
    [[ -d "$RELABELLED" ]] || $PY scripts/relabel_dataset.py "$DATA" "$RELABELLED"
    train "$RUNS/relabelled-resnet18-plain" "$RELABELLED" --arch resnet18 --plain --optimizer sgd --lr 0.2 \
      --weight-decay 5e-4 --label-smoothing 0.1 --batch-size 128 --warmup-epochs 2 --epochs "${REL_BASE_EPOCHS:-12}"
    out="$RUNS/relabelled-ctnet18-lam5e-7"
    train "$out" "$RELABELLED" --arch resnet18 \
      --init-from "$RUNS/relabelled-resnet18-plain/checkpoints/best.safetensors" --optimizer adamw --lr 1e-3 \
      --weight-decay 0.01 --batch-size 128 --label-smoothing 0.1 --epochs "${REL_CT_EPOCHS:-6}" --rate-grid export \
      --lambda-rate 5e-7 --lambda-alpha 0.5 --no-train-noise --dct-dropout 0 --pixel-bit-depth 8 --rate-warmup-epochs 2
    bundle "$out/checkpoints/best.safetensors" "$out/bundles/best" "$RELABELLED"
    $PY -m ctnet decode "$out/bundles/best" --out "$out/best.onnx" --force --data "$RELABELLED" --limit 8 > /dev/null
    # shellcheck disable=SC2086
    $PY -m ctnet eval "$out/best.onnx" --data "$RELABELLED" --json $EVAL | tee "$out/best.onnx.eval.json"
    ;;
  *) echo "unknown stage $STAGE (baseline, ctnet, nncodec, relabelled)" >&2; exit 2 ;;
esac
