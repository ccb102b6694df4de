#!/usr/bin/env bash
# One call on the lent GPU machine (tool `device`): train everything of scripts/train_demo.sh,
# then pack the results into ≤ 15 MiB parts under $OUT (parts beyond the fourth stay in
# /tmp/parts for a follow-up call: `cp /tmp/parts/part0[4-7] $OUT/`).
# Before the call, here: cp -r ../shared/data/imagenette2-128 .data/ ; carry [".data"].
set -u
LIMIT=${LIMIT:-420}
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi -L
${PYTHON:-python3} -c "import torch, torchvision, PIL.features as f; print(torch.__version__, torchvision.__version__, 'webp', f.check('webp'))"
mkdir -p /tmp/runs /tmp/pack /tmp/parts
start=$(date +%s)
timeout "$LIMIT" bash scripts/train_demo.sh .data/imagenette2-128 /tmp/runs
pkill -f "ctnet train" && sleep 3  # past the limit: stop; checkpoints are written atomically
echo "training wall $(( $(date +%s) - start )) s"
for f in /tmp/runs/*.log; do echo "== $f"; grep "^epoch" "$f" | tail -2; grep -i "error" "$f" | tail -2; done
${PYTHON:-python3} scripts/pack_results.py /tmp/runs /tmp/pack --max-per-run 6
rm -f /tmp/pack/resnet50-plain/*.st.xz  # 41 MB even in fp16: its log is enough
cp /tmp/runs/*.log /tmp/pack/
# logs and CTNet runs first, the fp16 baseline last, so the first parts hold what matters most
tar -C /tmp/pack -cf /tmp/pack.tar $(cd /tmp/pack && ls | grep -v plain) $(cd /tmp/pack && ls | grep plain)
split -b 15M -d /tmp/pack.tar /tmp/parts/part
ls -la /tmp/parts
cp /tmp/parts/part0[0-3] "$OUT"/ 2>/dev/null
echo "total wall $(( $(date +%s) - start )) s"
