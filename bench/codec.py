"""Codec figures, measured side by side in one run on this machine.

    .venv/bin/python bench/codec.py --format-targets [BUNDLE_OR_CKPT] [--limit N]
    .venv/bin/python bench/codec.py [CKPT] --data ../shared/data/imagenette2-128 [--limit N]

``--format-targets`` (format v2's figures; default source: the demo's λ = 5e-7 CTNet-18 as
its v1 bundle, tests/assets/v1/lam5e-7-best): the v1 bundle's bytes, the v2 HEVC bundle
(default settings) and the v2 xz bundle of the same weights, side by side — bytes, ratio,
bits per non-zero level against the levels' zero-order entropy, metadata + BN share,
encode seconds at ``fast`` and ``medium``, decode seconds from disk, whether the weights are
exact, and decoded top-1 with ``--limit``/full val.

CKPT defaults to the shared plain ResNet-18, converted to CTNet-18 (forward DCT of its
weights, verified) — the "smoke" CTNet-18 until trained ones exist. Prints, then writes as
JSON with --json-out:

* encode seconds at ultrafast / fast / medium and decode seconds (8-bit lossless bundle);
  with ``--codec-timing [CODEC ...]`` only bytes, encode and decode seconds of each codec's
  8-bit lossless bundle, as ratios of HEVC's in the same run;
* bytes and decoded top-1 of fp32, fp16 + zstd, per-tensor INT8 + zstd, NNCodec (when
  ``import nncodec`` works; the smallest QP within 0.3 pt of fp32), CTNet H.265 8-bit
  lossless, and a CRF sweep with the best CRF within 0.3 pt of lossless.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctnet import baselines  # noqa: E402
from ctnet.checkpoint import load_model  # noqa: E402
from ctnet.codec.bundle import directory_bytes, encode_model, read_bundle, write_bundle  # noqa: E402
from ctnet.codec.manifest import EncodeSettings  # noqa: E402
from ctnet.data import load_split  # noqa: E402
from ctnet.evaluate import evaluate  # noqa: E402
from ctnet.layers import configure_export_training  # noqa: E402
from ctnet.models import fp32_bytes, replace_with_dct_convs  # noqa: E402

DEFAULT_CKPT = REPO.parent / "shared" / "models" / "resnet18-imagenette128-scratch.pt"
TOLERANCE = 0.3 + 1e-9  # ± 0.3 pt, inclusive (percentages are floats)


def ctnet_model(path: Path) -> tuple[torch.nn.Module, dict, str]:
    """The model with its raw stored weights (export simulation off), so every method below
    starts from the same floats. A bundle directory is decoded (its grid travels in meta)."""
    if path.is_dir():
        model, meta = read_bundle(path)
        return model, meta, f"bundle {path} (v{meta['version']}, {meta['bundle']['total_bytes']:,} B)"
    model, meta = load_model(path)
    configure_export_training(model, pixel_bit_depth=0)
    if meta["model"].get("ctnet", True):
        return model, meta, f"CTNet checkpoint {path.parent.parent.name}/{path.name}"
    model = replace_with_dct_convs(model, block_size=16).eval()
    meta = {**meta, "model": {**meta["model"], "ctnet": True, "dct_block_size": 16}}
    return model, meta, f"{path.name} converted to CTNet-18 (block 16)"


def nncodec_rows(model: torch.nn.Module, acc, qps: list[int]) -> list[dict]:
    ok, why = baselines.nncodec_status()
    if not ok:
        print(f"{why}; skipped", flush=True)
        return []
    rows = []
    for qp in qps:
        c = baselines.nncodec(model, qp)
        rows.append({"method": f"NNCodec qp {qp}", "bytes": c.bytes, "acc1": acc(c.model), "qp": qp})
        print(f"  NNCodec qp {qp}: {rows[-1]['bytes']:,} B, top-1 {rows[-1]['acc1']:.2f}", flush=True)
    return rows


def decode_seconds(bundle: Path, repeats: int = 3):
    """Best of ``repeats`` reads of a bundle from disk (read + verify + rebuild), and the result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        decoded = read_bundle(bundle)
        times.append(time.perf_counter() - t0)
    return min(times), decoded


def measure_timing(model, meta):
    """Encode seconds of an 8-bit lossless bundle at ultrafast / fast / medium, and decode
    seconds (best of 3) of the medium one from disk; returns the timings and that decode."""
    timing = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("ultrafast", "fast", "medium"):
            enc = encode_model(model, meta, EncodeSettings(bit_depth=8, crf=0, preset=preset))
            timing[f"encode_{preset}_s"] = round(enc.seconds, 2)
            timing[f"bytes_{preset}"] = enc.total_bytes
            print(f"  encode {preset}: {enc.seconds:.2f} s, {enc.total_bytes:,} B", flush=True)
        seconds, decoded = decode_seconds(write_bundle(enc, Path(tmp) / "lossless8"))
        timing["decode_s"] = round(seconds, 3)
    timing["load_average"] = round(os.getloadavg()[0], 1)
    return timing, decoded


def codec_timing(model, meta, codecs: list[str]) -> list[dict]:
    """Per codec, in one run: lossless encode seconds (best of 2, the library's whole encode)
    and decode seconds from disk (best of 3), bytes, each as a ratio of HEVC's."""
    from ctnet.codec.video import CODECS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for codec in codecs:
            settings = EncodeSettings(codec=codec, bit_depth=8, crf=0, pix_fmt=CODECS[codec].pix_fmts[0])
            encodes = [encode_model(model, meta, settings) for _ in range(2)]
            enc = min(encodes, key=lambda e: e.seconds)
            seconds, _ = decode_seconds(write_bundle(enc, Path(tmp) / codec))
            rows.append({"codec": codec, "bytes": enc.total_bytes, "encode_s": round(enc.seconds, 2),
                         "decode_s": round(seconds, 3)})
            print(f"  {codec}: {enc.total_bytes:,} B, encode {enc.seconds:.2f} s, decode {seconds:.3f} s", flush=True)
    hevc = next((r for r in rows if r["codec"] == "hevc"), rows[0])
    for r in rows:
        r.update(bytes_vs_hevc=round(r["bytes"] / hevc["bytes"], 3), encode_vs_hevc=round(r["encode_s"] / hevc["encode_s"], 2),
                 decode_vs_hevc=round(r["decode_s"] / hevc["decode_s"], 2))
    return rows


def format_targets(model, meta, label: str, source: Path, data: str, limit: int | None) -> dict:
    """Format v2 against the source bundle, one run: see the module docstring."""
    from ctnet.export import video_tensors
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in (("v2 hevc", EncodeSettings()), ("v2 xz", EncodeSettings(codec="xz"))):
            enc = encode_model(model, meta, settings)
            s = enc.summary()
            exact = all(torch.equal(a, b) for a, b in zip(video_tensors(model).values(),
                                                           video_tensors(enc.model).values()))
            bn_bytes = sum(x["bytes"] for x in enc.layers if x["kind"] == "bn")
            seconds, (decoded, _) = decode_seconds(write_bundle(enc, Path(tmp) / name.replace(" ", "-")))
            rows.append({"bundle": name, "bytes": enc.total_bytes, "ratio": enc.fp32_bytes / enc.total_bytes,
                         "weights_bytes": s["weights_bytes"], "bits_per_nonzero": s["bits_per_nonzero"],
                         "entropy_bits_per_nonzero": s["entropy_bits_per_nonzero"],
                         "metadata_bytes": s["metadata_bytes"], "bn_bytes": bn_bytes,
                         "metadata_bn_share": s["metadata_bytes"] / enc.total_bytes,
                         "encode_medium_s": round(enc.seconds, 2), "decode_s": round(seconds, 3), "exact": exact,
                         "model": decoded})
            print(f"  {name}: {enc.total_bytes:,} B in {enc.seconds:.2f} s, decode {seconds:.3f} s", flush=True)
        fast = min((encode_model(model, meta, EncodeSettings(preset="fast")) for _ in range(2)),
                   key=lambda e: e.seconds)
        rows[0].update(encode_fast_s=round(fast.seconds, 2), bytes_fast=fast.total_bytes)
    base = directory_bytes(source) if source.is_dir() else None
    acc = {}
    if data:
        split = load_split(data, "val", labels=meta.get("label_map"), num_classes=int(meta["model"]["num_classes"]),
                           size=int(meta.get("image_size", 128)), limit=limit)
        acc["source"] = evaluate(model.eval(), split, device="cpu", workers=0)["acc1"]
        for r in rows:
            acc[r["bundle"]] = evaluate(r["model"], split, device="cpu", workers=0)["acc1"]
        acc["images"] = len(split)
    h, x = rows
    print(f"\n{label}; {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    print("| | source (v1) | v2 HEVC | v2 xz |\n|---|---:|---:|---:|")
    print(f"| bytes | {base or 0:,} | {h['bytes']:,} | {x['bytes']:,} |")
    print(f"| ratio vs fp32 | {meta['fp32_bytes'] / base if base else 0:.1f}x | {h['ratio']:.1f}x | {x['ratio']:.1f}x |")
    if base:
        print(f"| bytes vs source | 1.00 | {h['bytes'] / base:.3f} | {x['bytes'] / base:.3f} |")
    print(f"| weights: bits per non-zero level | | {h['bits_per_nonzero']:.2f} | {x['bits_per_nonzero']:.2f} |")
    print(f"| zero-order entropy of those levels | | {h['entropy_bits_per_nonzero']:.2f} | "
          f"{x['entropy_bits_per_nonzero']:.2f} |")
    print(f"| metadata (manifest + tables incl. BN) | | {h['metadata_bytes']:,} ({100 * h['metadata_bn_share']:.1f} %)"
          f" | {x['metadata_bytes']:,} |")
    print(f"| of which BN (share of the tables) | | {h['bn_bytes']:,} | {x['bn_bytes']:,} |")
    print(f"| HEVC / xz bytes | | {h['bytes'] / x['bytes']:.3f} | 1.000 |")
    print(f"| encode medium (s) | | {h['encode_medium_s']} | {x['encode_medium_s']} |")
    print(f"| encode fast (s; bytes) | | {h['encode_fast_s']} ({h['bytes_fast']:,} B) | |")
    print(f"| decode from disk (s) | | {h['decode_s']} | {x['decode_s']} |")
    print(f"| weights exactly the source's | | {h['exact']} | {x['exact']} |")
    if acc:
        print(f"| decoded top-1 ({acc['images']} images) | {acc['source']:.2f} % | {acc['v2 hevc']:.2f} % | "
              f"{acc['v2 xz']:.2f} % |")
    for r in rows:
        r.pop("model")
    return {"source": str(source), "source_bytes": base, "rows": rows, "acc1": acc}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default=None,
                   help=f"checkpoint or bundle (default: {DEFAULT_CKPT.name}; with --format-targets the v1 fixture)")
    p.add_argument("--format-targets", action="store_true", help="format v2 against the source bundle (see above)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "imagenette2-128"))
    p.add_argument("--limit", type=int, default=None, help="evaluate on N val images (class-balanced)")
    p.add_argument("--crfs", type=int, nargs="+", default=[4, 8, 12, 16, 20, 24, 28])
    p.add_argument("--bits", type=int, nargs="+", default=[8], help="bit depths of the CRF sweep")
    p.add_argument("--sweep-preset", default="medium")
    p.add_argument("--nncodec-qps", type=int, nargs="+", default=[-38, -32, -30, -29, -28, -27])
    p.add_argument("--json-out", help="also write the results here")
    p.add_argument("--timing-only", action="store_true", help="only the encode/decode seconds (no data needed)")
    p.add_argument("--codec-timing", nargs="*", metavar="CODEC", default=None,
                   help="only lossless 8-bit bytes, encode and decode seconds per codec (default all), vs HEVC")
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)

    if args.format_targets:
        source = Path(args.checkpoint or REPO / "tests" / "assets" / "v1" / "lam5e-7-best")
        model, meta, label = ctnet_model(source)
        result = format_targets(model, meta, label, source, args.data if args.limit != 0 else None, args.limit)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=2))
        return 0
    model, meta, label = ctnet_model(Path(args.checkpoint or DEFAULT_CKPT))
    if args.codec_timing is not None:
        from ctnet.codec.video import CODECS
        rows = codec_timing(model, meta, args.codec_timing or ["hevc", *(c for c in CODECS if c != "hevc")])
        print(f"{label}; {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
        print(f"{'codec':<8}{'bytes':>12}{'vs hevc':>9}{'encode s':>10}{'vs hevc':>9}{'decode s':>10}{'vs hevc':>9}")
        for r in rows:
            print(f"{r['codec']:<8}{r['bytes']:>12,}{r['bytes_vs_hevc']:>9.3f}{r['encode_s']:>10.2f}"
                  f"{r['encode_vs_hevc']:>9.2f}{r['decode_s']:>10.3f}{r['decode_vs_hevc']:>9.2f}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(rows, indent=2))
        return 0
    if args.timing_only:
        timing, _ = measure_timing(model, meta)
        print(f"{label}; {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
        print("  ".join(f"{k} {v}" for k, v in timing.items()))
        return 0
    split = load_split(args.data, "val", labels=meta.get("label_map"), num_classes=int(meta["model"]["num_classes"]),
                       size=int(meta.get("image_size", 128)), limit=args.limit)

    def acc(m) -> float:
        return evaluate(m.eval(), split, device="cpu", workers=0)["acc1"]

    print(f"model: {label}; {len(split)} val images; torch threads {torch.get_num_threads()}", flush=True)
    fp32 = fp32_bytes(model)
    rows = [{"method": "fp32", "bytes": fp32, "acc1": acc(model)}]
    print(f"  fp32: {fp32:,} B, top-1 {rows[0]['acc1']:.2f}", flush=True)
    trained_bits = int(meta.get("pixel_bit_depth", 0))
    if trained_bits:  # what training evaluated: the N-bit export simulation on
        simulated = configure_export_training(copy.deepcopy(model), pixel_bit_depth=trained_bits)
        rows.append({"method": f"fp32 with the {trained_bits}-bit export simulation (as trained)", "bytes": fp32,
                     "acc1": acc(simulated)})
    c = baselines.fp16_zstd(model)
    rows.append({"method": "fp16 + zstd-19", "bytes": c.bytes, "acc1": acc(c.model)})
    c = baselines.int_zstd(model, 8)
    rows.append({"method": "INT8 per-tensor + zstd-19", "bytes": c.bytes, "acc1": acc(c.model)})
    print(f"  fp16/int8 done: {rows[-2]['bytes']:,} / {rows[-1]['bytes']:,}", flush=True)
    nnc = nncodec_rows(model, acc, args.nncodec_qps)
    ok = [r for r in nnc if r["acc1"] >= rows[0]["acc1"] - TOLERANCE]
    if nnc:
        best = min(ok, key=lambda r: r["bytes"]) if ok else max(nnc, key=lambda r: r["acc1"])
        rows.append({**best, "method": f"NNCodec 2.x qp {best['qp']} (smallest within {TOLERANCE:.1f} pt of fp32)"})

    timing, (decoded, dmeta) = measure_timing(model, meta)
    lossless = {"method": "CTNet H.265 8-bit lossless (medium)", "bytes": dmeta["bundle"]["total_bytes"],
                "acc1": acc(decoded)}
    print(f"  decode {timing['decode_s']} s; lossless top-1 {lossless['acc1']:.2f}", flush=True)

    sweep = []
    for bits in args.bits:
        for crf in args.crfs:
            enc = encode_model(model, meta, EncodeSettings(bit_depth=bits, crf=crf, preset=args.sweep_preset))
            sweep.append({"bits": bits, "crf": crf, "bytes": enc.total_bytes, "acc1": acc(enc.model),
                          "seconds": round(enc.seconds, 2)})
            print(f"  {bits}-bit CRF {crf}: {sweep[-1]['bytes']:,} B, top-1 {sweep[-1]['acc1']:.2f}", flush=True)
    rows.append(lossless)
    good = [r for r in sweep if r["acc1"] >= lossless["acc1"] - TOLERANCE]
    if good:
        best = min(good, key=lambda r: r["bytes"])
        rows.append({"method": f"CTNet H.265 {best['bits']}-bit CRF {best['crf']} ({args.sweep_preset}; best within "
                               f"{TOLERANCE:.1f} pt of lossless)", "bytes": best["bytes"], "acc1": best["acc1"]})

    print(f"\n{label}; top-1 on {len(split)} ImageNette val images; {os.cpu_count()} CPU cores")
    print("| method | bytes | ratio vs fp32 | top-1 |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['bytes']:,} | {fp32 / r['bytes']:.1f}x | {r['acc1']:.2f} % |")
    print("\n| bits | CRF | bytes | ratio | top-1 | encode s |\n|---:|---:|---:|---:|---:|---:|")
    for r in sweep:
        print(f"| {r['bits']} | {r['crf']} | {r['bytes']:,} | {fp32 / r['bytes']:.1f}x | {r['acc1']:.2f} % "
              f"| {r['seconds']} |")
    print("\n" + "  ".join(f"{k} {v}" for k, v in timing.items()))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"model": label, "images": len(split), "rows": rows,
                                                   "sweep": sweep, "timing": timing}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
