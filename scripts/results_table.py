"""Print the README's results table from measured files: each run's ``results.json`` (written
by build_demo.py: real bundle bytes, bits per non-zero level and decoded top-1/top-5 on the
full val split; ``previous`` holds the format-v1 bundle's bytes and decoded top-1 when the
bundle was re-encoded) and its ``config.json``. Non-zero levels are counted in the decoded
bundle (0 is an exact level of the export grid).

    python scripts/results_table.py assets/demo/runs runs/extra/runs
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctnet import api  # noqa: E402
from ctnet.export import video_tensors  # noqa: E402


def config_text(cfg: dict) -> str:
    grid = "export grid" if cfg.get("rate_grid") == "export" else f"q={cfg.get('qstep')}"
    extras = [] if cfg.get("train_noise") is False else ["noise"]
    if cfg.get("dct_dropout"):
        extras.append(f"dropout {cfg['dct_dropout']}")
    if cfg.get("export_dither"):
        extras.append(f"dither {cfg['export_dither']:g}")
    return f"λ={cfg['lambda_rate']:g}, {grid}, α={cfg['lambda_alpha']:g}, STE {cfg['pixel_bit_depth']}-bit" + \
        (", " + ", ".join(extras) if extras else "")


def main(argv=None) -> int:
    roots = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    print("| run | config | epoch | top-1 before export | decoded top-1 / top-5 | total bytes | ratio | bits / non-zero "
          "| non-zero levels | v1 bytes (ratio), decoded top-1 with raw BN |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for root in roots:
        for run in sorted(p for p in root.iterdir() if (p / "results.json").exists()):
            cfg = json.loads((run / "config.json").read_text())
            arch = "CTNet-50" if cfg["arch"] == "resnet50" else "CTNet-18"
            results = json.loads((run / "results.json").read_text())
            for role, r in sorted(results.items(), key=lambda kv: -kv[1]["ratio"]):
                model = api.decode(run / r["bundle"]).model
                nonzero = sum(int((t != 0).sum()) for t in video_tensors(model).values())
                d = r["decoded"]
                prev = r.get("previous")
                was = (f"{prev['total_bytes']:,} ({prev['ratio']:.1f}×), {prev['decoded']['acc1']:.2f} %"
                       if prev else "")
                bpn = f"{r['bits_per_nonzero']:.2f}" if r.get("bits_per_nonzero") else ""
                print(f"| {arch} `{run.name}` {role} | {config_text(cfg)} | {r['epoch']}/{cfg['epochs']} | "
                      f"{r['acc1_before_export']:.2f} % | {d['acc1']:.2f} % / {d['acc5']:.2f} % | "
                      f"{r['total_bytes']:,} | {r['ratio']:.1f}× | {bpn} | {nonzero:,} | {was} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
