"""Markdown tables for the README from ``ctnet rd --json`` outputs: per method its
Pareto-optimal points (bytes, ratio, decoded top-1), then the smallest point of each method at
equal accuracy (fp32 top-1 − 0.3 pt) with its bytes as a ratio of HEVC's.

    python scripts/rd_table.py RD.json [RD.json ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctnet import rd  # noqa: E402


def tables(doc: dict) -> str:
    points = doc["points"]
    ref = rd.reference_point(points)
    out = [f"**{doc['checkpoint']}** — {doc['images']} val images; fp32 {doc['fp32_bytes']:,} B"
           + (f", top-1 {ref['acc1']:.2f} %" if ref else ""), "",
           "| method | Pareto-optimal points: bytes (ratio) top-1 |", "|---|---|"]
    for codec in sorted({p["codec"] for p in points if p["method"] != "fp32"}):
        front = rd.frontier([p for p in points if p["codec"] == codec])
        cells = "; ".join(f"{p['label'].removeprefix(codec + ' ')}: {p['bytes']:,} ({p['ratio']:.1f}×) "
                          f"{p['acc1']:.2f} %" for p in front)
        out.append(f"| {codec} | {cells} |")
    best = rd.best_at_floor(points)
    if best.get("floor") is not None:
        out += ["", f"Smallest point of each method with top-1 ≥ {best['floor']:.2f} % (fp32 − {rd.TOLERANCE} pt):", "",
                "| method | point | bytes | ratio | top-1 | bytes vs HEVC | encode s | decode s |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in best["per_codec"]:
            vs = f"{r['vs_hevc']:.2f}" if r["vs_hevc"] is not None else "—"
            out.append(f"| {r['codec']} | {r['label']} | {r['bytes']:,} | {r['ratio']:.1f}× | {r['acc1']:.2f} % | {vs} "
                       f"| {r['encode_seconds']:.1f} | {r['decode_seconds']:.2f} |")
        if best["missing"]:
            out.append(f"\nNo point at that floor: {', '.join(best['missing'])}.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    for path in (argv if argv is not None else sys.argv[1:]):
        print(tables(json.loads(Path(path).read_text())) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
