#!/usr/bin/env bash
# One call on the lent GPU machine (tool `device`): train everything of scripts/train_demo.sh,
# then pack the results into ≤ 15 MiB parts under $OUT (parts beyond the fourth stay in
# $WORK/parts, default /tmp/parts, for a follow-up call: `cp /tmp/parts/part0[4-7] $OUT/`).
# Before the call, here: cp -r ../shared/data/imagenette2-128 .data/ ; carry [".data"].
# Env: LIMIT (training seconds), DATA, PARTS, WORK, and train_demo.sh's (CT18_LAMBDAS, STAGES, B18, …).
set -u
LIMIT=${LIMIT:-420}
DATA=${DATA:-.data/imagenette2-128}
PARTS=${PARTS:-4}  # how many 15 MiB parts to copy to $OUT
W=${WORK:-/tmp}  # runs, pack and parts go under it
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi -L
${PYTHON:-python3} -c "import torch, torchvision, PIL.features as f; print(torch.__version__, torchvision.__version__, 'webp', f.check('webp'))"
mkdir -p $W/runs $W/pack $W/parts
start=$(date +%s)
# timeout runs in its own process group and signals all of it at the limit; the group kill
# after it catches any straggler of this script's runs, and nothing else (checkpoints are
# written atomically)
timeout "$LIMIT" bash scripts/train_demo.sh "$DATA" $W/runs &
group=$!
wait $group
kill -TERM -- -$group 2>/dev/null && sleep 3
echo "training wall $(( $(date +%s) - start )) s"
for f in $W/runs/*.log; do echo "== $f"; grep "^epoch" "$f" | tail -2; grep -i "error" "$f" | tail -2; done
${PYTHON:-python3} scripts/pack_results.py $W/runs $W/pack --max-per-run 6
rm -f $W/pack/resnet50-plain/*.st.xz  # 41 MB even in fp16: its log is enough
cp $W/runs/*.log $W/pack/
# logs and CTNet runs first, the fp16 baseline last, so the first parts hold what matters most
tar -C $W/pack -cf $W/pack.tar $(cd $W/pack && ls | grep -v plain) $(cd $W/pack && ls | grep plain)
split -b 15M -d $W/pack.tar $W/parts/part
ls -la $W/parts
for i in $(seq 0 $((PARTS - 1))); do cp "$W/parts/part$(printf %02d "$i")" "$OUT"/ 2>/dev/null; done
echo "total wall $(( $(date +%s) - start )) s"
