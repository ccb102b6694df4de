"""What moves a format-v2 bundle's bytes, measured on one source in one run — the figures
behind the layout choices in ``ctnet/codec/plan.py``, ``ctnet/codec/manifest.py`` and
docs/codec.md:

* row/column order: natural, or by non-zero-count class with 2/4/8/16 classes (total bytes);
* frame size 64/128/256 (weight stream bytes);
* container depth: 10-bit frames (the default for an 8-bit grid) against 8-bit frames with
  escapes (weight stream bytes, escapes);
* x265 knobs on the v2 frames: presets, CTU 32, intra-only;
* whether BN could order a layer's rows for free: Spearman correlation, per spatial layer,
  between each output channel's non-zero levels and its BN running variance.

    .venv/bin/python bench/layout_study.py [BUNDLE_OR_CKPT]   # default: tests/assets/v1/lam5e-7-best
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctnet import api, export  # noqa: E402
from ctnet.codec import bundle as B  # noqa: E402
from ctnet.codec import manifest as M  # noqa: E402
from ctnet.codec import plan as PL  # noqa: E402
from ctnet.codec import registry as R  # noqa: E402
from ctnet.codec.manifest import EncodeSettings  # noqa: E402


def stream_bytes(enc) -> int:
    return len(enc.files.get(B.weights_file(enc.manifest["settings"]["codec"]), b""))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    source = argv[0] if argv else str(REPO / "tests" / "assets" / "v1" / "lam5e-7-best")
    loaded = api.load_any(source)
    model, meta = loaded.model, loaded.meta
    base = EncodeSettings()
    print(f"source {source}")

    print("\norder (frame 256): total bytes (weight stream)")
    for classes in (0, 2, 4, 8, 16):
        PL.ORDER_CLASSES = max(classes, 2)
        enc = B.encode_model(model, meta, replace(base, order="count" if classes else "natural"))
        print(f"  {'natural' if not classes else f'{classes} classes':<11}{enc.total_bytes:>10,} ({stream_bytes(enc):,})")
    PL.ORDER_CLASSES = 8

    print("\nframe size: weight stream bytes (natural order / count classes)")
    for frame in PL.FRAME_SIZES:
        nat = B.encode_model(model, meta, replace(base, frame=frame, order="natural"))
        cnt = B.encode_model(model, meta, replace(base, frame=frame))
        print(f"  {frame:>4}: {stream_bytes(nat):>10,} / {stream_bytes(cnt):>10,}")

    print("\ncontainer depth for the 8-bit grid: total bytes (weight stream, tables), escapes")
    real = M.container_bits
    for bits in (10, 8):
        M.container_bits = lambda codec, depth, bits=bits: bits if R.CODECS[codec].family == "video" else real(codec, depth)
        enc = B.encode_model(model, meta, base)
        print(f"  {bits}-bit frames: {enc.total_bytes:>10,} ({stream_bytes(enc):,}, {len(enc.files[B.TABLES]):,}), "
              f"{enc.manifest['coding']['escapes']:,} escapes")
    M.container_bits = real

    print("\nx265 on the v2 frames: weight stream bytes, encode seconds")
    params = R.X265.params
    for preset, extra in (("fast", ""), ("medium", ""), ("slow", ""), ("medium", "ctu=32"),
                          ("medium", "keyint=1:bframes=0")):
        R.X265.params = lambda self, s, extra=extra: params(self, s) + (":" + extra if extra else "")
        enc = B.encode_model(model, meta, replace(base, preset=preset))
        print(f"  {preset:<7}{extra or '(SPEC settings)':<22}{stream_bytes(enc):>10,}  {enc.seconds:.2f} s")
    R.X265.params = params

    print("\nBN running variance vs output channels' non-zero levels (Spearman), spatial layers")
    lay = B.layout(model, meta, base)
    bns = export.bn_layers(model)
    for g in lay.grids:
        module = g.name.rsplit(".", 1)[0]
        bn = "bn1" if module == "conv1" else module.replace("conv", "bn")
        if len(g.shape) != 4 or bn not in bns:
            continue
        counts = (PL.to_planes(g.levels) != 0).sum(axis=(0, 2))
        var = bns[bn].running_var.detach().numpy()
        rank = lambda x: np.argsort(np.argsort(x)).astype(float)  # noqa: E731
        print(f"  {g.name:<34}{np.corrcoef(rank(counts), rank(var))[0, 1]:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
