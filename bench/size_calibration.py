"""How well does training's size estimate (``ctnet.export.estimate_bytes``) predict real
format-v2 bundles? For each source (checkpoint or bundle) and bit depth: the estimate with
the current constants, the real lossless bundle (default settings), the error; then the
constants refitted by least squares on every layer of every source given, and the error
they would leave.

    .venv/bin/python bench/size_calibration.py SOURCE [SOURCE ...] [--bits 8 10 12]

The model: per stored tensor, bytes ≈ a·H0/8 + b·N + c, with H0 the zeroth-order entropy
(bits, summed over grid tiles) of its levels and N its non-zero levels; plus the tables and
manifest (``export.METADATA_*``) and BN.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctnet import api, export  # noqa: E402
from ctnet.codec.bundle import encode_model  # noqa: E402
from ctnet.codec.manifest import EncodeSettings  # noqa: E402
from ctnet.layers import configure_export_training  # noqa: E402


@torch.no_grad()
def measure(path: str, bits_list) -> dict:
    loaded = api.load_any(path)
    model, meta = loaded.model, loaded.meta
    configure_export_training(model, pixel_bit_depth=0)
    out = {}
    for bits in bits_list:
        enc = encode_model(model, meta, EncodeSettings(bit_depth=bits))
        rows = [(x["entropy_bits"] / 8, x["nonzero"], 1.0, x["bytes"]) for x in enc.layers if x["kind"] == "weight"]
        weights = sum(r[3] for r in rows)
        est = export.estimate_bytes(model, bits) if bits in export.SIZE_CALIBRATION else None  # not yet calibrated
        out[bits] = {"estimate": est, "real": enc.total_bytes, "rows": rows, "other": enc.total_bytes - weights}
        print(f"  {path} {bits}-bit: estimate {f'{est:,}' if est else '-'}  real {enc.total_bytes:,}  "
              + (f"error {100 * (est / enc.total_bytes - 1):+.1f} %" if est else ""), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sources", nargs="+")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 10, 12])
    args = p.parse_args(argv)
    results = {s: measure(s, args.bits) for s in args.sources}
    print("\nrefit (per tensor: bytes ≈ a·H0/8 + b·N + c), per bit depth:")
    for bits in args.bits:
        rows = np.array([row for r in results.values() for row in r[bits]["rows"]], dtype=np.float64)
        coef, *_ = np.linalg.lstsq(rows[:, :3], rows[:, 3], rcond=None)
        print(f"  {bits}: ({coef[0]:.4f}, {coef[1]:.4f}, {coef[2]:.1f})   current {export.SIZE_CALIBRATION.get(bits)}")
        errs = []
        for name, r in results.items():
            est = sum(coef[0] * h + coef[1] * n + coef[2] for h, n, _, _ in r[bits]["rows"]) + r[bits]["other"]
            errs.append(100 * (est / r[bits]["real"] - 1))
        print(f"     error with it (tables, BN and manifest as measured): {min(errs):+.1f} … {max(errs):+.1f} %")
    print("\nerror of the current estimate:")
    for bits in (b for b in args.bits if b in export.SIZE_CALIBRATION):
        errs = [100 * (r[bits]["estimate"] / r[bits]["real"] - 1) for r in results.values()]
        print(f"  {bits}-bit: {min(errs):+.1f} … {max(errs):+.1f} %  (tables+manifest+BN real: "
              f"{min(r[bits]['other'] for r in results.values()):,} … {max(r[bits]['other'] for r in results.values()):,} B)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
