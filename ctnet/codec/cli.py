"""``ctnet encode | decode | profile | export``: each a ``main(argv)`` (see ``ctnet.cli``).

``ctnet export encode|decode|profile ...`` is the seed's spelling of the same commands
(``export encode --arch resnet18 --crf 0 --bit-depth 8 --bn-bit-depth 12 --bn-crf 0
--preset slower``; ``export decode --h265-dir DIR``).
"""
from __future__ import annotations

import argparse
import json
import time

from ..cli import _guarded, add_eval_args
from .bundle import BN_MODES, EncodeSettings
from .frames import ORDERS
from .video import CODECS, PIX_FMTS, PRESETS, default_codec


def add_codec_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("codec")
    g.add_argument("--codec", default=None, choices=list(CODECS),
                   help="hevc (libx265; the default unless $CTNET_CODEC names another), h264 (libx264), av1 (libsvtav1; 4:2:0, 8/10 bit), ffv1 (lossless "
                        "only), or a plane codec coding the same pixels without video: xz, zstd (lossless only)")
    g.add_argument("--crf", type=int, default=0,
                   help="CRF (hevc/h264 0..51, av1 0..63); 0 = true lossless (x265/SVT-AV1 lossless=1, x264 qp=0); "
                        "ffv1/xz/zstd take 0 only")
    g.add_argument("--bit-depth", type=int, default=8, choices=[8, 10, 12], help="pixel bit depth of weight frames")
    g.add_argument("--pix-fmt", default=None, choices=list(PIX_FMTS),
                   help="gray: 4:0:0 (HEVC RExt); yuv420: data in luma, neutral chroma (Main/Main10, hardware-decodable)."
                        " Default: gray, or yuv420 for av1 (SVT-AV1 takes nothing else)")
    g.add_argument("--preset", default="medium", choices=list(PRESETS))
    g.add_argument("--dither", type=float, default=0.0, metavar="AMP",
                   help="subtractive dither amplitude in pixel steps (0 = off; seeded by --seed and frame number)")
    g.add_argument("--seed", type=int, default=0, help="dither seed")
    g.add_argument("--bn-mode", default=None, choices=list(BN_MODES),
                   help="BatchNorm as raw float32 safetensors (default) or its own video stream")
    g.add_argument("--bn-crf", type=int, default=None, help="CRF of the BN stream (0 = lossless; implies --bn-mode video)")
    g.add_argument("--bn-bit-depth", type=int, default=None, choices=[8, 10, 12],
                   help="bit depth of the BN stream (default 12; implies --bn-mode video)")
    g.add_argument("--tile", type=int, default=128, help="largest frame side; bigger images are cut into tiles")
    g.add_argument("--order", default="similarity", choices=list(ORDERS),
                   help="frame order in a stream: greedy nearest neighbour on MSE, or model order")


def settings_from_args(args, **overrides) -> EncodeSettings:
    """``--bn-crf``/``--bn-bit-depth`` only mean something for a BN stream, so giving either
    without ``--bn-mode`` selects ``video`` (the seed's spelling passes both)."""
    bn_mode = args.bn_mode or ("video" if args.bn_crf is not None or args.bn_bit_depth is not None else "raw")
    codec = args.codec or default_codec()
    pix_fmt = args.pix_fmt or CODECS[codec].pix_fmts[0]
    values = dict(codec=codec, crf=args.crf, bit_depth=args.bit_depth, pix_fmt=pix_fmt, preset=args.preset,
                  dither=args.dither, seed=args.seed, bn_mode=bn_mode,
                  bn_crf=0 if args.bn_crf is None else args.bn_crf,
                  bn_bit_depth=12 if args.bn_bit_depth is None else args.bn_bit_depth, tile=args.tile,
                  order=args.order)
    values.update(overrides)
    return EncodeSettings(**values).validate()


def _checkpoint_path(args) -> str:
    path = args.checkpoint or args.checkpoint_flag
    if not path:
        raise ValueError("no checkpoint given (CKPT or --checkpoint)")
    return path


def _load(args):
    from ..checkpoint import load_model
    return load_model(_checkpoint_path(args), expected_arch=args.arch, expected_block_size=args.dct_block_size)


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="checkpoint file (safetensors or weights-only .pt)")
    p.add_argument("--checkpoint", "--resume", dest="checkpoint_flag", metavar="CKPT", help="same as CKPT")
    p.add_argument("--arch", default=None, choices=["resnet18", "resnet50"],
                   help="refuse a checkpoint of another architecture")
    p.add_argument("--dct-block-size", type=int, default=None, help="refuse a checkpoint trained with another block size")


# --- encode ----------------------------------------------------------------------------------

def encode_main(argv: list[str] | None = None, prog: str = "ctnet encode") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Encode a checkpoint as a bundle directory (H.265 by default; "
                                                     "--codec for the others).")
    _checkpoint_args(p)
    p.add_argument("--out", "--output-dir", dest="out", help="bundle directory to create")
    p.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--profile", action="store_true", help="instead of writing, encode with every preset and tabulate")
    add_codec_args(p)
    args = p.parse_args(argv)

    def run():
        settings = settings_from_args(args)
        _checkpoint_path(args)
        if args.profile:
            return _profile(args, settings, list(PRESETS))
        if not args.out:
            raise ValueError("--out DIR is required")
        from .bundle import encode_model, write_bundle
        model, meta = _load(args)
        encoded = encode_model(model, meta, settings)
        write_bundle(encoded, args.out, overwrite=args.force)
        report = {"out": str(args.out), **encoded.summary()}
        if args.json:
            print(json.dumps(report))
        else:
            _print_encode(report)
        return 0
    return _guarded(prog, run)


def _print_encode(r: dict) -> None:
    print(f"{'layer':<36}{'kind':>7}{'frames':>7}{'bytes':>11}{'max |err|':>12}")
    for layer in r["layers"]:
        print(f"{layer['name']:<36}{layer['kind']:>7}{layer['frames']:>7}{layer['bytes']:>11,}"
              f"{layer['max_abs_error']:>12.3g}")
    for name, size in r["files"].items():
        print(f"  {name:<30}{size:>12,} bytes")
    print(f"wrote {r['out']}: {r['total_bytes']:,} bytes, {r['ratio']:.2f}x smaller than fp32 "
          f"({r['fp32_bytes']:,}) in {r['seconds']:.2f} s")


# --- decode ----------------------------------------------------------------------------------

def decode_main(argv: list[str] | None = None, prog: str = "ctnet decode") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Decode a bundle; with --data, evaluate the decoded model; "
                                                     "with --out, write it as a file.")
    p.add_argument("bundle", nargs="?", help="bundle directory")
    p.add_argument("--h265-dir", dest="bundle_flag", metavar="DIR", help="same as the bundle argument")
    p.add_argument("--data", help="ImageNette root (val/ is used) to report decoded top-1/top-5")
    p.add_argument("--out", metavar="FILE", help="write the decoded model to FILE (atomically)")
    p.add_argument("--format", default=None, metavar="FMT",
                   help="safetensors: plain torchvision state dict (default; .onnx files: onnx), "
                        "ctnet: CTNet checkpoint (DCT coefficients, resumable), onnx: ONNX graph of the plain model")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    add_eval_args(p)
    args = p.parse_args(argv)

    def run():
        from .bundle import read_bundle
        path = args.bundle or args.bundle_flag
        if not path:
            raise ValueError("no bundle directory given (DIR or --h265-dir)")
        fmt = args.format or ("onnx" if args.out and args.out.lower().endswith(".onnx") else "safetensors")
        if args.out:
            from ..plain import check_destination
            check_destination(args.out, fmt, args.force)  # before decoding: refuse early, write nothing
        elif args.format:
            raise ValueError("--format needs --out FILE")
        t0 = time.perf_counter()
        model, meta = read_bundle(path)
        seconds = time.perf_counter() - t0
        b = meta["bundle"]
        report = {"bundle": str(path), "total_bytes": b["total_bytes"], "fp32_bytes": b["fp32_bytes"],
                  "ratio": b["ratio"], "decode_seconds": round(seconds, 3), "acc1": None, "acc5": None,
                  "images": 0, "source_metrics": meta.get("source", {}).get("metrics")}
        if args.data:
            from ..api import evaluate_model
            acc = evaluate_model(model, meta, args.data, limit=args.limit, device=args.device,
                                 batch_size=args.batch_size, workers=args.workers)
            report.update(acc1=acc["acc1"], acc5=acc["acc5"], images=acc["images"], device=acc["device"])
        if args.out:
            from ..plain import write_decoded
            report.update(write_decoded(model.cpu(), meta, args.out, fmt, origin=str(path), data=args.data))
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
    from dataclasses import replace
    from .bundle import encode_model
    if not CODECS[settings.codec].uses_preset:
        raise ValueError(f"{settings.codec} has no presets: it codes the same way whatever --preset says")
    model, meta = _load(args)
    rows = []
    for preset in presets:
        enc = encode_model(model, meta, replace(settings, preset=preset).validate())
        rows.append({"preset": preset, "bytes": enc.total_bytes, "ratio": enc.fp32_bytes / enc.total_bytes,
                     "seconds": round(enc.seconds, 3)})
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'preset':<11}{'bytes':>13}{'ratio':>8}{'seconds':>9}")
        for r in rows:
            print(f"{r['preset']:<11}{r['bytes']:>13,}{r['ratio']:>7.2f}x{r['seconds']:>9.2f}")
    return 0


def profile_main(argv: list[str] | None = None, prog: str = "ctnet profile") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Encode with each preset (of --codec, x265 by default); "
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


# --- rd (ctnet/rd.py: rate–distortion sweeps over every codec) -------------------------------------

def rd_main(argv: list[str] | None = None) -> int:
    from ..rd import rd_main as main
    return main(argv)


# --- export (the seed's spelling) --------------------------------------------------------------

EXPORT_COMMANDS = {"encode": encode_main, "decode": decode_main, "profile": profile_main}


def export_main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] not in EXPORT_COMMANDS:
        print("usage: ctnet export {encode,decode,profile} [options]  (the seed's spelling of "
              "ctnet encode / decode / profile)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return EXPORT_COMMANDS[argv[0]](argv[1:], prog=f"ctnet export {argv[0]}")


__all__ = ["add_codec_args", "decode_main", "encode_main", "export_main", "profile_main", "rd_main",
           "settings_from_args"]
