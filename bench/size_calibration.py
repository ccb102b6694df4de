"""How well does training's size estimate (``ctnet.export.estimate_bytes``) predict real
bundles? For each checkpoint and bit depth 8/10/12: the estimate with the current
constants, the real lossless bundle (raw BN, default preset), the error; then the
constants ``SIZE_CALIBRATION`` refitted by least squares on every layer of every
checkpoint given, and the error they would leave.

    .venv/bin/python bench/size_calibration.py CKPT [CKPT ...] [--preset medium] [--convert]

``--convert`` also measures each plain checkpoint converted to CTNet-18 (its weights'
DCT coefficients), which is what an untrained-for-rate CTNet stores.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctnet import export  # noqa: E402
from ctnet.checkpoint import load_model  # noqa: E402
from ctnet.codec.bundle import MANIFEST, EncodeSettings, encode_model  # noqa: E402
from ctnet.models import replace_with_dct_convs  # noqa: E402
from ctnet.quant import entropy_bits  # noqa: E402

BITS = (8, 10, 12)


def _label(path: Path) -> str:
    """run/checkpoint for a run's checkpoint, the file name otherwise."""
    return f"{path.parent.parent.name}/{path.stem}" if path.parent.name == "checkpoints" else path.name


def models(paths: list[str], convert: bool):
    for path in paths:
        model, meta = load_model(path)
        name = _label(Path(path))
        yield name, model, meta
        if convert and not meta["model"].get("ctnet", True):
            ct = replace_with_dct_convs(model, block_size=16).eval()
            yield name + " as CTNet-18", ct, {**meta, "model": {**meta["model"], "ctnet": True, "dct_block_size": 16}}


@torch.no_grad()
def measure(name, model, meta, preset: str):
    """Per bit depth: estimate, real bytes and per-layer regression rows."""
    out = {}
    for bits in BITS:
        enc = encode_model(model, meta, EncodeSettings(bit_depth=bits, crf=0, preset=preset))
        layers = {layer["name"]: layer for layer in enc.layers if layer["frames"]}
        stream_bytes = sum(len(enc.files[s["file"]]) for s in enc.streams)
        frame_bytes = sum(layer["bytes"] for layer in layers.values())
        frames = sum(layer["frames"] for layer in layers.values())
        overhead_per_frame = (stream_bytes - frame_bytes) / frames  # container, headers
        rows = []
        for tname, t in export.video_tensors(model).items():
            h0, off_zero = entropy_bits(t, bits)
            layer = layers[tname]
            rows.append((h0 / 8, h0 / 8 * (1 - off_zero / t.numel()), layer["frames"],
                         layer["bytes"] + overhead_per_frame * layer["frames"]))
        out[bits] = {"estimate": export.estimate_bytes(model, bits), "real": enc.total_bytes, "rows": rows,
                     "manifest": len(enc.files[MANIFEST]), "bn": len(enc.files.get("bn.safetensors", b"")),
                     "manifest_est": export.MANIFEST_BYTES_FIXED + export.MANIFEST_BYTES_PER_FRAME * frames,
                     "bn_est": export.bn_raw_bytes(model), "frames": frames, "video": stream_bytes}
        print(f"  {name} {bits}-bit: estimate {out[bits]['estimate']:,}  real {enc.total_bytes:,}  "
              f"error {100 * (out[bits]['estimate'] / enc.total_bytes - 1):+.1f} %", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--preset", default="medium")
    p.add_argument("--convert", action="store_true")
    args = p.parse_args(argv)
    results = {name: measure(name, m, meta, args.preset) for name, m, meta in models(args.checkpoints, args.convert)}

    print("\n| checkpoint | bits | estimate | real | error | manifest real/est | BN real/est |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, per_bits in results.items():
        for bits, r in per_bits.items():
            print(f"| {name} | {bits} | {r['estimate']:,} | {r['real']:,} | {100 * (r['estimate'] / r['real'] - 1):+.1f} % "
                  f"| {r['manifest']:,} / {r['manifest_est']:,} | {r['bn']:,} / {r['bn_est']:,} |")

    print("\nrefit of SIZE_CALIBRATION (video bytes ≈ a·H0/8 + b·H0/8·(1−f) + c·frames), per bit depth:")
    fitted = {}
    for bits in BITS:
        rows = np.array([row for r in results.values() for row in r[bits]["rows"]], dtype=np.float64)
        x, y = rows[:, :3], rows[:, 3]
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        fitted[bits] = tuple(round(float(v), 3) for v in coef)
        print(f"  {bits}: a={coef[0]:.3f} b={coef[1]:.3f} c={coef[2]:.1f}   (current {export.SIZE_CALIBRATION[bits]})")
    per_frame = [(r[b]["manifest"] - export.MANIFEST_BYTES_FIXED) / r[b]["frames"] for r in results.values() for b in BITS]
    print(f"  manifest bytes per frame beyond the fixed {export.MANIFEST_BYTES_FIXED}: "
          f"{min(per_frame):.1f}..{max(per_frame):.1f} (current {export.MANIFEST_BYTES_PER_FRAME})")
    print("\nerror with the refitted video constants (manifest and BN as measured):")
    for name, per_bits in results.items():
        for bits, r in per_bits.items():
            a, b, c = fitted[bits]
            video = sum(a * h + b * hz + c * n for h, hz, n, _ in r["rows"])
            est = video + r["manifest"] + r["bn"]
            print(f"  {name} {bits}-bit: {100 * (est / r['real'] - 1):+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
