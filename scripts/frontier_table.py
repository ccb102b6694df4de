"""Print the README's one-baseline table: CTNet runs fine-tuned from one checkpoint beside the
post-training coders of that checkpoint, every point decoded on the same val split, sorted by ratio.

    python scripts/frontier_table.py --rd docs/rd/resnet18-89.53-fullval.json \
        assets/demo/runs/cpu18-lam1e-7 assets/demo/runs/cpu18-lam5e-7 ...

CTNet rows come from each run's ``results.json`` (written by scripts/build_demo.py: real bundle
bytes, decoded top-1/top-5 on the full val split) and ``config.json``; the other rows from the
``ctnet rd --json`` output of the starting checkpoint. Only runs whose ``--init-from`` is that
checkpoint (same sha256) are accepted, so the table cannot mix baselines. For each CTNet point the
last column is the NNCodec point nearest to it in ratio (on a log scale) and the top-1 difference.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctnet.api import source_hash  # noqa: E402  (the hash `ctnet rd` records as source_sha256)


def run_label(cfg: dict) -> str:
    parts = [f"λ = {cfg['lambda_rate']:g}"]
    if cfg.get("pixel_bit_depth", 8) != 8:  # the grid it was trained for (and its bundles store)
        parts.append(f"{cfg['pixel_bit_depth']}-bit grid")
    if cfg.get("export_dither"):  # trained for (and encoded with) subtractive dither
        parts.append(f"dither {cfg['export_dither']:g}")
    if cfg.get("distill_from"):
        parts.append(f"distilled (T = {cfg.get('distill_temperature'):g}, w = {cfg.get('distill_weight'):g})")
    if cfg.get("group_rate"):
        parts.append(f"group term {cfg['group_rate']:g}")
    return ", ".join(parts)


def ctnet_name(cfg: dict) -> str:
    arch = cfg.get("arch", "resnet18")
    return "CTNet-18" if arch == "resnet18" else f"CTNet-{arch}"


def ctnet_rows(run: Path, source_sha: str) -> list[dict]:
    cfg = json.loads((run / "config.json").read_text())
    init = cfg.get("init_from")
    if not init:
        raise SystemExit(f"{run}: not fine-tuned from a checkpoint (no init_from in config.json)")
    init_path = Path(init) if Path(init).is_absolute() else REPO / init
    if not init_path.is_file():
        raise SystemExit(f"{run}: its --init-from {init} is not here, so its baseline cannot be confirmed")
    if source_hash(init_path) != source_sha:
        raise SystemExit(f"{run}: fine-tuned from {init}, not from the rd sweep's checkpoint")
    rows = []
    for role, r in json.loads((run / "results.json").read_text()).items():
        rows.append({"method": f"{ctnet_name(cfg)} {run_label(cfg)} `{run.name}` {role} (epoch {r['epoch']}/{cfg['epochs']})",
                     "bytes": r["total_bytes"], "ratio": r["ratio"], "acc1": r["decoded"]["acc1"],
                     "images": r["decoded"]["images"], "ctnet": True})
    return rows


def rd_rows(rd: dict) -> list[dict]:
    rows = []
    for p in rd["points"]:
        if p.get("acc1") is None:
            continue
        rows.append({"method": p["label"], "bytes": p["bytes"], "ratio": p["ratio"], "acc1": p["acc1"],
                     "images": p["images"], "ctnet": False, "nncodec": p.get("method") == "nncodec"})
    return rows


def table(rows: list[dict], base_acc: float | None) -> str:
    nnc = [r for r in rows if r.get("nncodec")]
    out = ["| method | bytes | ratio | decoded top-1 | vs baseline | NNCodec nearest in ratio |",
           "|---|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: r["ratio"]):
        delta = f"{r['acc1'] - base_acc:+.2f} pt" if base_acc is not None else ""
        peer = ""
        if r["ctnet"] and nnc:
            n = min(nnc, key=lambda n: abs(math.log(n["ratio"] / r["ratio"])))
            peer = f"{n['acc1']:.2f} % at {n['ratio']:.1f}× ({r['acc1'] - n['acc1']:+.2f} pt)"
        name = f"**{r['method']}**" if r["ctnet"] else r["method"]
        out.append(f"| {name} | {r['bytes']:,} | {r['ratio']:.1f}× | {r['acc1']:.2f} % | {delta} | {peer} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run folders with results.json (scripts/build_demo.py)")
    ap.add_argument("--rd", type=Path, required=True, help="`ctnet rd --json` output of the starting checkpoint")
    args = ap.parse_args(argv)
    rd = json.loads(args.rd.read_text())
    rows = rd_rows(rd)
    for run in args.runs:
        rows += ctnet_rows(run, rd["source_sha256"])
    images = {r["images"] for r in rows}
    if len(images) != 1:
        raise SystemExit(f"points measured on different numbers of images: {sorted(images)}")
    base = next((p["acc1"] for p in rd["points"] if p.get("method") == "fp32"), None)
    print(table(rows, base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
