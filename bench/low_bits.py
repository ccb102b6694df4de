"""Grids below 8 bits on trained weights, measured in one run (docs/bit-depth.md):

* ``--container``: the HEVC weight stream of each grid (4–8 bits) coded in 8- and in 10-bit
  frames — which container depth is smaller;
* ``--dither``: subtractive dither (``--dither AMP``) re-quantising the weights post hoc to
  4–6-bit grids: bundle bytes and decoded top-1 against the same grid without dither;
* ``--per-layer``: per-layer grids chosen by measured sensitivity (``ctnet encode --bit-depth
  auto``) at several loss budgets against every uniform grid: bundle bytes and decoded top-1
  (the sensitivity profile comes from the cache ``ctnet encode --bit-depth auto`` fills, or
  is measured on ``--train-data``'s train split).

Decoded top-1 is measured on ``--limit`` class-balanced images of ``--data``'s val split.

    .venv/bin/python bench/low_bits.py SOURCE --data ../shared/data/imagenette2-128 --limit 1000 \\
        [--container] [--dither] [--per-layer] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctnet import api, bitalloc  # noqa: E402
from ctnet.codec import bundle as B  # noqa: E402
from ctnet.codec import manifest as M  # noqa: E402
from ctnet.codec import registry as R  # noqa: E402
from ctnet.codec.manifest import EncodeSettings  # noqa: E402
from ctnet.data import load_split  # noqa: E402
from ctnet.evaluate import evaluate  # noqa: E402
from ctnet.layers import configure_export_training  # noqa: E402

DITHER_BITS = (4, 5, 6)
DITHER_AMPS = (0.0, 0.5, 1.0, 2.0)
UNIFORM_BITS = (4, 5, 6, 7, 8)
BUDGETS = (0.005, 0.01, 0.02, 0.04, 0.08)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("--data", required=True, help="ImageNette root: decoded top-1 on its val split")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--train-data", default=None, help="ImageNette root whose train split measures sensitivity "
                                                     "(default: --data)")
    p.add_argument("--container", action="store_true")
    p.add_argument("--dither", action="store_true")
    p.add_argument("--per-layer", action="store_true")
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    p.add_argument("--json", default=None, help="write every measured row here")
    args = p.parse_args(argv)
    loaded = api.load_any(args.source)
    model, meta = loaded.model, loaded.meta
    configure_export_training(model, pixel_bit_depth=0)
    val = load_split(args.data, "val", num_classes=loaded.spec.num_classes, size=loaded.image_size,
                     limit=args.limit, cache=True)
    out: dict = {"source": args.source, "data": str(args.data), "limit": args.limit, "images": len(val),
                 "load_average": round(os.getloadavg()[0], 2), "rows": {}}

    def point(settings: EncodeSettings) -> dict:
        t0 = time.perf_counter()
        enc = B.encode_model(model, meta, settings)
        acc = evaluate(enc.model, val, workers=0)
        row = {"bits": settings.bit_depth, "dither": settings.dither, "bytes": enc.total_bytes,
               "ratio": enc.ratio, "acc1": acc["acc1"], "bits_per_nonzero": enc.bits_per_nonzero,
               "nonzero": enc.nonzero, "seconds": round(time.perf_counter() - t0, 1)}
        if settings.layer_bits:
            row["layer_bits"] = dict(settings.layer_bits)
        return row

    def show(label: str, r: dict) -> None:
        print(f"  {label:<28}{r['bytes']:>11,} B {r['ratio']:>7.1f}x  top-1 {r['acc1']:6.2f} %  "
              f"{r['bits_per_nonzero']:.2f} bits/nz  ({r['seconds']} s)", flush=True)

    if args.container:
        print("HEVC weight stream by container depth (total bytes)")
        rows = out["rows"]["container"] = []
        real = M.container_bits
        for bits in UNIFORM_BITS:
            for depth in (8, 10):
                M.container_bits = lambda codec, d, depth=depth: depth if R.CODECS[codec].family == "video" \
                    else real(codec, d)
                enc = B.encode_model(model, meta, EncodeSettings(bit_depth=bits))
                rows.append({"bits": bits, "container": depth, "bytes": enc.total_bytes,
                             "weights_bytes": enc.weights_bytes, "escapes": enc.manifest["coding"]["escapes"]})
                print(f"  {bits}-bit grid in {depth}-bit frames: {enc.total_bytes:,} B ({enc.weights_bytes:,} weight "
                      f"stream, {enc.manifest['coding']['escapes']:,} escapes)", flush=True)
        M.container_bits = real

    if args.dither:
        print(f"subtractive dither, post hoc (top-1 on {len(val)} val images)")
        rows = out["rows"]["dither"] = []
        for bits in DITHER_BITS:
            for amp in DITHER_AMPS:
                r = point(EncodeSettings(bit_depth=bits, dither=amp))
                rows.append(r)
                show(f"{bits}-bit, dither {amp:g}", r)

    if args.per_layer:
        print(f"per-layer grids (auto) against uniform grids (top-1 on {len(val)} val images)")
        rows = out["rows"]["per_layer"] = []
        prof = bitalloc.profile_for(args.source, model, meta, args.train_data or args.data,
                                    log=lambda m: print(m, flush=True))
        out["profile"] = {"images": prof.images, "data": prof.data, "base_loss": prof.base_loss}
        for bits in UNIFORM_BITS:
            r = point(EncodeSettings(bit_depth=bits))
            rows.append({"grid": f"uniform {bits}", **r})
            show(f"uniform {bits}-bit", r)
        for budget in args.budgets:
            lb = bitalloc.allocate(prof, budget)
            s = replace(EncodeSettings(), bit_depth=max(lb.values()), layer_bits=tuple(sorted(lb.items())))
            r = point(s.validate())
            counts = bitalloc.summary(prof, lb)["bits"]
            rows.append({"grid": f"auto {budget:g}", "budget": budget, **r})
            show(f"auto, budget {budget:g} " + "/".join(str(counts[b]) for b in prof.candidates), r)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
