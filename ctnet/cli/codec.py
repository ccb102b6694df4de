"""``ctnet encode | decode | verify | profile | export``: each a ``main(argv)`` (see ``ctnet.cli``).

``ctnet export encode|decode|profile ...`` is the seed's spelling of the same commands
(``export encode --arch resnet18 --crf 0 --bit-depth 8 --bn-bit-depth 12 --bn-crf 0
--preset slower``; ``export decode --h265-dir DIR``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..api import (AUTO_BITS, BIT_DEPTHS, BN_MODES, CODECS, DEFAULT_BUDGET, DEFAULT_IMAGES, FRAME_SIZES, ORDERS,
                   PIX_FMTS, PRESETS, BundleError, EncodeSettings, LoadedModel, auto_layer_bits, check_destination,
                   check_encode_destination, decode, default_codec, encode, evaluate_model, load_any, read_layer_map,
                   verify, write_decoded, write_encoded)
from .common import ArgumentParser, _guarded, add_arch_arg, add_eval_args

DEFAULTS = EncodeSettings()  # every codec flag's default comes from here


def add_codec_args(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    g = p.add_argument_group("codec")
    g.add_argument("--codec", default=None, choices=list(CODECS),
                   help=f"{d.codec} (libx265) unless $CTNET_CODEC names another; h264 (libx264), av1 (libsvtav1), "
                        "ffv1 (lossless only), or a plane codec coding the same levels without video: xz, zstd")
    g.add_argument("--crf", type=int, default=d.crf,
                   help="CRF (hevc/h264 0..51, av1 0..63); 0 = true lossless (x265/SVT-AV1 lossless=1, x264 qp=0); "
                        "ffv1/xz/zstd take 0 only")
    g.add_argument("--bit-depth", default=str(d.bit_depth), metavar="N|auto|MAP.json",
                   help=f"bit depth of the export grid, {BIT_DEPTHS[0]}..{BIT_DEPTHS[-1]} (what --pixel-bit-depth "
                        "training simulates; grids up to 7 bits are coded in 8-bit frames, deeper ones 1–2 bits "
                        "deeper so every signed level fits); 'auto' (ctnet encode, with --data): a grid per layer "
                        "chosen by measured sensitivity; or a JSON file mapping every stored tensor to its bits"),
    g.add_argument("--pix-fmt", default=None, choices=list(PIX_FMTS),
                   help="gray: 4:0:0 (HEVC RExt); yuv420: data in luma, neutral chroma (Main10, hardware-decodable)."
                        " Default: gray, or yuv420 for av1 (SVT-AV1 takes nothing else)")
    g.add_argument("--preset", default=d.preset, choices=list(PRESETS))
    g.add_argument("--frame", type=int, default=d.frame, choices=list(FRAME_SIZES),
                   help="side of the coded frames")
    g.add_argument("--order", default=d.order, choices=list(ORDERS),
                   help="rows and columns of each layer ordered by non-zero-count class (stored), or natural")
    g.add_argument("--dither", type=float, default=d.dither, metavar="AMP",
                   help="subtractive dither amplitude in pixel steps (0 = off; seeded by --seed and tile number)")
    g.add_argument("--seed", type=int, default=d.seed, help="dither seed")
    g.add_argument("--bn-mode", default=None, choices=list(BN_MODES),
                   help=f"BatchNorm as its eval-mode scale and shift in 24-bit floats ({d.bn_mode}, the default) or the four "
                        "float32 vectors (raw, exact)")
    g.add_argument("--bn-crf", type=int, default=None,
                   help="older spelling, kept for scripts: --bn-crf 0 (lossless BN) selects --bn-mode raw")
    g.add_argument("--bn-bit-depth", type=int, default=None, choices=[8, 10, 12],
                   help="older spelling, accepted with --bn-crf 0 (BN is then stored exactly)")
    g.add_argument("--tile", type=int, default=d.tile,
                   help="tile of the export grid (training simulates 128; another tile re-quantises)")


def settings_from_args(args, **overrides) -> EncodeSettings:
    """The seed's ``--bn-bit-depth 12 --bn-crf 0`` asked for lossless BN: format v2 stores
    it exactly (``raw``); a lossy BN stream is not offered (the affine in 24-bit floats is
    a quarter of raw's bytes)."""
    bn_mode = args.bn_mode
    if args.bn_crf is not None or args.bn_bit_depth is not None:
        if args.bn_crf not in (None, 0):
            raise ValueError("a lossy BN stream is not offered: BN is stored as its affine in 24-bit floats "
                             "(--bn-mode affine) or exactly (--bn-mode raw)")
        bn_mode = bn_mode or "raw"
    codec = args.codec or default_codec()
    pix_fmt = args.pix_fmt or CODECS[codec].pix_fmts[0]
    values = dict(codec=codec, crf=args.crf, **grid_from_arg(args.bit_depth), pix_fmt=pix_fmt, preset=args.preset,
                  frame=args.frame, order=args.order, dither=args.dither, seed=args.seed,
                  bn_mode=bn_mode or DEFAULTS.bn_mode, tile=args.tile)
    values.update(overrides)
    return EncodeSettings(**values).validate()


def grid_from_arg(text: str) -> dict:
    """``--bit-depth``: an integer, ``auto`` (the finest candidate grid until :func:`_auto`
    chooses the layers' own) or a JSON per-layer map → the settings' grid fields."""
    if text == "auto":
        return {"bit_depth": max(AUTO_BITS)}
    try:
        bits = int(text)
    except ValueError:
        layer_bits = read_layer_map(text)
        return {"bit_depth": max(layer_bits.values()), "layer_bits": layer_bits}
    if bits not in BIT_DEPTHS:
        raise ValueError(f"--bit-depth must be {BIT_DEPTHS[0]}..{BIT_DEPTHS[-1]}, 'auto' or a per-layer map, got {bits}")
    return {"bit_depth": bits}


def _auto(args, settings: EncodeSettings, loaded: LoadedModel) -> tuple[EncodeSettings, dict | None]:
    """With ``--bit-depth auto``: the settings with a grid per layer chosen from the source's
    sensitivity profile (measured on ``--data``'s train split, or cached), and what was chosen."""
    if args.bit_depth != "auto":
        return settings, None
    if not args.data:
        raise ValueError("--bit-depth auto measures each layer's sensitivity on a slice of the train split: "
                         "pass --data DIR (an ImageNette root)")
    layer_bits, chosen = auto_layer_bits(loaded, args.data, budget=args.budget, images=args.auto_images,
                                         device=args.device, log=lambda m: print(m, file=sys.stderr, flush=True))
    return replace(settings, bit_depth=max(layer_bits.values()), layer_bits=tuple(sorted(layer_bits.items()))
                   ).validate(), chosen


def _checkpoint_path(args) -> str:
    path = args.checkpoint or args.checkpoint_flag
    if not path:
        raise ValueError("no checkpoint given (CKPT or --checkpoint)")
    return path


def _load(args) -> LoadedModel:
    """The source to encode: a checkpoint file, or a bundle directory (transcoding; its
    decoded weights keep their grid, so an 8-bit bundle re-encodes to exactly its levels)."""
    return load_any(_checkpoint_path(args), expected_arch=args.arch, expected_block_size=args.dct_block_size)


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="checkpoint file (safetensors or weights-only .pt) or bundle directory")
    p.add_argument("--checkpoint", "--resume", dest="checkpoint_flag", metavar="CKPT", help="same as CKPT")
    add_arch_arg(p, default=None, help="refuse a checkpoint of another architecture")
    p.add_argument("--dct-block-size", type=int, default=None, help="refuse a checkpoint trained with another block size")


# --- encode ----------------------------------------------------------------------------------

def encode_main(argv: list[str] | None = None, prog: str = "ctnet encode") -> int:
    p = ArgumentParser(prog=prog, description="Encode a checkpoint (or re-encode a bundle) as a format-v2 "
                                                     "bundle directory (H.265 by default; --codec for the others).")
    _checkpoint_args(p)
    p.add_argument("--out", "--output-dir", dest="out", help="bundle directory to create")
    p.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--profile", action="store_true", help="instead of writing, encode with every preset and tabulate")
    add_codec_args(p)
    a = p.add_argument_group("--bit-depth auto")
    a.add_argument("--data", help="ImageNette root whose train split measures each layer's sensitivity")
    a.add_argument("--auto-images", type=int, default=DEFAULT_IMAGES,
                   help=f"class-balanced train images the sensitivity is measured on (default {DEFAULT_IMAGES})")
    a.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                   help="how far the predictions on the train slice may move: the mean KL divergence from the "
                        f"reference (nats), summed over layers each coarsened alone (default {DEFAULT_BUDGET})")
    a.add_argument("--device", default="cpu", help="where the sensitivity is measured (cpu, cuda, …)")
    args = p.parse_args(argv)

    def run():
        settings = settings_from_args(args)
        _checkpoint_path(args)
        if args.profile:
            if args.bit_depth == "auto":
                raise ValueError("--profile times presets at one grid: give --bit-depth N or a per-layer map")
            return _profile(args, settings, list(PRESETS))
        if not args.out:
            raise ValueError("--out DIR is required")
        if args.auto_images < 1:
            raise ValueError(f"--auto-images must be ≥ 1, got {args.auto_images}")
        check_encode_destination(args.out, _checkpoint_path(args))  # before encoding: refuse early
        loaded = _load(args)
        settings, chosen = _auto(args, settings, loaded)
        encoded = encode(loaded, settings)
        write_encoded(encoded, args.out, overwrite=args.force)
        report = {"out": str(args.out), **encoded.summary(), **({"auto": chosen} if chosen else {})}
        if args.json:
            print(json.dumps(report))
        else:
            _print_encode(report)
        return 0
    return _guarded(prog, run)


def _print_encode(r: dict) -> None:
    print_layers(r["layers"])
    if r.get("auto"):
        a = r["auto"]
        print(f"--bit-depth auto (budget {a['budget']:g} on {a['images']} train images): "
              + ", ".join(f"{n} layers at {b} bits" for b, n in a["bits"].items() if n)
              + f"; estimated {a['est_bytes']:,} B of levels and tables against {a['est_bytes_top']:,} B all at "
                f"{max(a['bits'])} bits")
    for name, size in r["files"].items():
        print(f"  {name:<30}{size:>12,} bytes")
    bpn = r.get("bits_per_nonzero")
    print(f"wrote {r['out']}: {r['total_bytes']:,} bytes, {r['ratio']:.2f}x smaller than fp32 "
          f"({r['fp32_bytes']:,}) in {r['seconds']:.2f} s"
          + (f"; weights {bpn:.2f} bits per non-zero level (zero-order entropy {r['entropy_bits_per_nonzero']:.2f})"
             if bpn else ""))
    print(f"digest {r['digest']}")


def print_layers(layers: list[dict]) -> None:
    """Where the bytes go: per layer, bytes and bits per non-zero level beside the levels'
    zero-order entropy (what a good coder should approach)."""
    print(f"{'layer':<36}{'kind':>7}{'grid':>5}{'frames':>8}{'bytes':>10}{'non-zero':>10}{'bits/nz':>9}{'H0/nz':>7}"
          f"{'max |err|':>11}")
    for x in layers:
        bpn, h0 = x.get("bits_per_nonzero"), x.get("entropy_bits_per_nonzero")
        frames = f"{x['coded_frames']}/{x['frames']}" if x["kind"] == "weight" else "-"
        grid = str(x["bits"]) if x.get("bits") else "-"
        print(f"{x['name']:<36}{x['kind']:>7}{grid:>5}{frames:>8}{x['bytes']:>10,}{x['nonzero']:>10,}"
              f"{(f'{bpn:.2f}' if bpn else '-'):>9}{(f'{h0:.2f}' if h0 else '-'):>7}{x['max_abs_error']:>11.3g}")


# --- decode ----------------------------------------------------------------------------------

def decode_main(argv: list[str] | None = None, prog: str = "ctnet decode") -> int:
    p = ArgumentParser(prog=prog, description="Decode a bundle; with --data, evaluate the decoded model; "
                                                     "with --out, write it as a file.")
    p.add_argument("bundle", nargs="?", help="bundle directory")
    p.add_argument("--h265-dir", dest="bundle_flag", metavar="DIR", help="older spelling of the bundle argument")
    p.add_argument("--data", help="dataset root (its val/ is used: ImageNette or your own) to report decoded "
                   "top-1/top-5")
    p.add_argument("--out", metavar="FILE", help="write the decoded model to FILE (atomically)")
    p.add_argument("--format", default=None, metavar="FMT",
                   help="safetensors: plain torchvision state dict (default; .onnx files: onnx), "
                        "ctnet: CTNet checkpoint (DCT coefficients, resumable), onnx: ONNX graph of the plain model")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    add_eval_args(p)
    args = p.parse_args(argv)

    def run():
        path = args.bundle or args.bundle_flag
        if not path:
            raise ValueError("no bundle directory given (DIR or --h265-dir)")
        fmt = args.format or ("onnx" if args.out and args.out.lower().endswith(".onnx") else "safetensors")
        if args.out:
            check_destination(args.out, fmt, args.force, source=path)  # before decoding: refuse early, write nothing
        elif args.format:
            raise ValueError("--format needs --out FILE")
        t0 = time.perf_counter()
        loaded = decode(path)
        seconds = time.perf_counter() - t0
        b = loaded.bundle
        assert b is not None  # a decoded bundle's facts
        report = {"bundle": str(path), "total_bytes": b.total_bytes, "fp32_bytes": b.fp32_bytes,
                  "ratio": b.ratio, "decode_seconds": round(seconds, 3), "acc1": None, "acc5": None,
                  "images": 0, "source_metrics": loaded.metrics or None}
        if args.data:
            acc = evaluate_model(loaded, args.data, limit=args.limit, device=args.device,
                                 batch_size=args.batch_size, workers=args.workers)
            report.update(acc1=acc["acc1"], acc5=acc["acc5"], images=acc["images"], device=acc["device"])
        if args.out:
            report.update(write_decoded(loaded, args.out, fmt, origin=str(path), data=args.data))
        if args.json:
            print(json.dumps(report))
        else:
            print(f"{path}: {report['total_bytes']:,} bytes, {report['ratio']:.2f}x smaller than fp32 "
                  f"({report['fp32_bytes']:,}); decoded in {seconds:.2f} s")
            if args.data:
                print(f"decoded top-1 {report['acc1']:.2f} %  top-5 {report['acc5']:.2f} %  on {report['images']} images")
            if args.out:
                check = report.get("onnx_max_abs_diff")
                opset = f", opset {report['onnx_opset']}" if "onnx_opset" in report else ""
                print(f"wrote {report['out']} ({report['format']}{opset}, {report['out_bytes']:,} bytes)"
                      + (f"; onnxruntime vs PyTorch max |logit diff| {check:.3g} on {report['onnx_check_batch']}"
                         if check is not None else ""))
        return 0
    return _guarded(prog, run)


# --- profile ---------------------------------------------------------------------------------

def _profile(args, settings: EncodeSettings, presets: list[str]) -> int:
    if not CODECS[settings.codec].uses_preset:
        raise ValueError(f"{settings.codec} has no presets: it codes the same way whatever --preset says")
    loaded = _load(args)
    rows, last = [], None
    for preset in presets:
        enc = encode(loaded, settings, preset=preset)
        s = enc.summary()
        rows.append({"preset": preset, "bytes": enc.total_bytes, "ratio": enc.fp32_bytes / enc.total_bytes,
                     "seconds": round(enc.seconds, 3), "bits_per_nonzero": s["bits_per_nonzero"],
                     "entropy_bits_per_nonzero": s["entropy_bits_per_nonzero"], "layers": s["layers"]})
        last = s
    if args.json:
        print(json.dumps(rows))
    else:
        assert last is not None  # presets is never empty (profile_main refuses that)
        print_layers(last["layers"])
        print(f"\n{'preset':<11}{'bytes':>13}{'ratio':>8}{'seconds':>9}{'bits/nz':>9}")
        for r in rows:
            bpn = f"{r['bits_per_nonzero']:.2f}" if r["bits_per_nonzero"] else "-"
            print(f"{r['preset']:<11}{r['bytes']:>13,}{r['ratio']:>7.2f}x{r['seconds']:>9.2f}{bpn:>9}")
        if last["entropy_bits_per_nonzero"]:
            print(f"zero-order entropy of the levels: {last['entropy_bits_per_nonzero']:.2f} bits per non-zero level")
    return 0


def profile_main(argv: list[str] | None = None, prog: str = "ctnet profile") -> int:
    p = ArgumentParser(prog=prog, description="Encode with each preset (of --codec, x265 by default); "
                                                     "print bytes and seconds.")
    _checkpoint_args(p)
    p.add_argument("--presets", nargs="+", default=list(PRESETS), metavar="PRESET",
                   help="presets to try (space- or comma-separated; default all, ultrafast…placebo)")
    p.add_argument("--json", action="store_true")
    add_codec_args(p)
    args = p.parse_args(argv)

    def run():
        presets = [x for item in args.presets for x in item.split(",") if x]
        bad = [x for x in presets if x not in PRESETS]
        if bad or not presets:
            raise ValueError(f"unknown preset(s) {', '.join(bad) or '(none)'}; choose from {', '.join(PRESETS)}")
        return _profile(args, settings_from_args(args), presets)
    return _guarded(prog, run)


# --- verify ----------------------------------------------------------------------------------

def verify_main(argv: list[str] | None = None, prog: str = "ctnet verify") -> int:
    p = ArgumentParser(prog=prog, description="Check a bundle as decoding does, short of decoding its frames: "
                                              "manifest fields and digest, the manifest against the model it "
                                              "describes, every member's size and SHA-256, the tables, the weight "
                                              "stream's header; print the digest (compare it with a published one). "
                                              "A format-v1 bundle has no digest and cannot be verified (exit 2).")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run():
        folder = Path(args.bundle)
        if folder.is_dir() and not (folder / "manifest.json").is_file():
            inside = sorted(p.parent.name for p in folder.glob("bundles/*/manifest.json"))
            raise BundleError(f"{folder} is not a bundle (no manifest.json)" + (
                f"; it is a run folder: its bundles are {', '.join(f'bundles/{n}' for n in inside)}" if inside else ""))
        r = verify(args.bundle)
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['bundle']}: ok, format v{r['version']}, {r['total_bytes']:,} bytes")
            print(f"digest {r['digest']}")
            for name in r.get("unlisted", []):
                print(f"note: {name} is not part of the bundle (counted in its size, never read)")
        return 0
    return _guarded(prog, run)


# --- export (the seed's spelling) --------------------------------------------------------------

EXPORT_COMMANDS = {"encode": encode_main, "decode": decode_main, "profile": profile_main}


def export_main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] not in EXPORT_COMMANDS:
        print("usage: ctnet export {encode,decode,profile} [options]  (the seed's spelling of "
              "ctnet encode / decode / profile)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return EXPORT_COMMANDS[argv[0]](argv[1:], prog=f"ctnet export {argv[0]}")


__all__ = ["add_codec_args", "decode_main", "encode_main", "export_main", "print_layers", "profile_main",
           "verify_main",
           "settings_from_args"]
