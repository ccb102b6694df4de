"""``ctnet rd``: rate–distortion curves of every codec, NNCodec and INT8/INT4 + zstd on the
same weights (the library is :mod:`ctnet.rd`)."""
from __future__ import annotations

import argparse
import json
import sys

from ..api import (DEFAULT_BITS, INT_BITS, LOSSY_CRFS, NNCODEC_QPS, TOLERANCE, RDJob, Sweep, baseline_jobs, bundle_jobs,
                   codec_names, sweep)
from .common import ArgumentParser, _guarded, add_eval_args


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="ctnet rd", description="Rate–distortion curves: bytes against decoded top-1 "
                                "for every codec, NNCodec and INT8/INT4 + zstd, on the same weights.")
    p.add_argument("source", help="checkpoint file or bundle directory")
    p.add_argument("--data", required=True, help="dataset root (its val/ is used: ImageNette or your own)")
    p.add_argument("--codecs", nargs="+", default=None, metavar="CODEC",
                   help="bundle codecs to sweep (default all: hevc h264 av1 ffv1 xz zstd); 'none' for none")
    p.add_argument("--bits", type=int, nargs="+", default=list(DEFAULT_BITS),
                   help="bit depths of the export grid, 4..12 (each codec: those its frames hold)")
    p.add_argument("--crfs", type=int, nargs="+", default=None, help="lossy CRFs of hevc and h264 "
                   f"(default {' '.join(map(str, LOSSY_CRFS['hevc']))}); lossless (0) is always measured")
    p.add_argument("--av1-crfs", type=int, nargs="+", default=None,
                   help=f"lossy CRFs of av1, 1..63 (default {' '.join(map(str, LOSSY_CRFS['av1']))})")
    p.add_argument("--preset", default="medium", help="encoder preset of hevc/h264/av1 (default medium)")
    p.add_argument("--nncodec-qps", type=int, nargs="*", default=list(NNCODEC_QPS), help="NNCodec QPs (none: skip)")
    p.add_argument("--int-bits", type=int, nargs="*", default=list(INT_BITS), help="INTn + zstd baselines (none: skip)")
    p.add_argument("--fp16", action="store_true", help="also fp16 + zstd")
    p.add_argument("--floor", type=float, default=None,
                   help=f"accuracy floor (top-1 %%) for the best codec (default: fp32 top-1 − {TOLERANCE})")
    p.add_argument("--cache", default=None, help="cache file (default: one per source under ~/.cache/ctnet/rd)")
    p.add_argument("--recompute", action="store_true", help="measure every point again (and update the cache)")
    add_eval_args(p, workers=0, workers_help="data loader workers (images are decoded once, up front)")
    return p


def plan_from_args(args) -> list[RDJob]:
    codecs = args.codecs if args.codecs is not None else list(codec_names())
    codecs = [] if codecs == ["none"] else [c for item in codecs for c in item.split(",") if c]
    crfs: dict[str, tuple[int, ...]] = {}
    if args.crfs is not None:
        crfs.update(hevc=tuple(args.crfs), h264=tuple(args.crfs))
    if args.av1_crfs is not None:
        crfs["av1"] = tuple(args.av1_crfs)
    return bundle_jobs(codecs, bits=args.bits, crfs=crfs, preset=args.preset) + \
        baseline_jobs(nncodec_qps=args.nncodec_qps, int_bits=args.int_bits, fp16=args.fp16)


def format_table(result: Sweep, floor: float | None = None) -> str:
    lines = [f"{result.source}: {result.images} images of {result.data}; fp32 {result.fp32_bytes:,} B; "
             f"cache {result.cache}",
             f"{'method':<36}{'bytes':>12}{'ratio':>9}{'top-1':>8}{'top-5':>8}{'enc s':>8}{'dec s':>8}"]
    for p in sorted(result.points, key=lambda p: (p["codec"], p["bytes"])):
        lines.append(f"{p['label']:<36}{p['bytes']:>12,}{p['ratio']:>8.1f}x{p['acc1']:>8.2f}{p['acc5']:>8.2f}"
                     f"{p['encode_seconds']:>8.2f}{p['decode_seconds']:>8.2f}" + ("  (cached)" if p["cached"] else ""))
    if not result.nncodec.get("available") and result.nncodec.get("status") != "not asked for":
        lines.append(f"NNCodec: no points — {result.nncodec.get('status')}")
    for e in result.errors:
        lines.append(f"FAILED {e['label']}: {e['error']}")
    best = result.best_at_floor(floor)
    if best.get("floor") is None:
        lines.append(best.get("reason", "no floor"))
        return "\n".join(lines)
    lines.append(f"\nsmallest point of each method with top-1 ≥ {best['floor']:.2f} %"
                 + (f" (fp32 {best['reference_acc1']:.2f} − {best['tolerance']})" if floor is None else ""))
    lines.append(f"{'method':<36}{'bytes':>12}{'ratio':>9}{'top-1':>8}{'vs hevc':>9}")
    for r in best["per_codec"]:
        vs = f"{r['vs_hevc']:.3f}" if r["vs_hevc"] is not None else "—"
        lines.append(f"{r['label']:<36}{r['bytes']:>12,}{r['ratio']:>8.1f}x{r['acc1']:>8.2f}{vs:>9}")
    if best["missing"]:
        lines.append(f"no point at the floor: {', '.join(best['missing'])}")
    return "\n".join(lines)


def rd_main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def run():
        jobs = plan_from_args(args)

        def progress(done, total, job, point):
            if point is None and done < total:
                print(f"[{done + 1}/{total}] {job.label()} …", file=sys.stderr, flush=True)
            elif point is not None:
                print(f"    {point['bytes']:,} B, top-1 {point['acc1']:.2f}" + (" (cached)" if point["cached"] else
                      f", {point['encode_seconds']:.1f} s + {point['decode_seconds']:.1f} s"),
                      file=sys.stderr, flush=True)
        result = sweep(args.source, args.data, jobs, limit=args.limit, cache=args.cache, device=args.device,
                       batch_size=args.batch_size, workers=args.workers, recompute=args.recompute, progress=progress)
        if args.json:
            print(json.dumps(result.to_json(args.floor)))
        else:
            print(format_table(result, args.floor))
        return 0 if not result.errors else 1
    return _guarded("ctnet rd", run)
