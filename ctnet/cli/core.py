"""``ctnet summary | train | eval | download``."""
from __future__ import annotations

import argparse
import json

from .. import api
from .common import ArgumentParser, _guarded, add_arch_arg, add_eval_args, int_in


# --- summary -------------------------------------------------------------------------------

def summary_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="ctnet summary", description="Parameter breakdown of a CTNet architecture: the "
                                "share of its parameters in spatial DCT convs, channel-DCT 1×1, plain and other layers.")
    add_arch_arg(p, default="resnet18", help="the torchvision CNN")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the head (default 10: ImageNette)")
    p.add_argument("--dct-block-size", type=int, default=16)
    p.add_argument("--plain-1x1", action="store_true", help="keep 1×1 convolutions plain (ResNet-50 hybrid)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run():
        spec = api.ModelSpec(args.arch, args.num_classes, True, args.dct_block_size, args.plain_1x1)
        rows = api.parameter_summary(api.build_model(spec))
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'group':<18}{'layers':>8}{'parameters':>14}{'share':>9}{'fp32 bytes':>14}{'fp32 MiB':>10}")
            for r in rows:
                print(f"{r['group']:<18}{r['layers']:>8}{r['parameters']:>14,}{100 * r['share']:>8.1f}%"
                      f"{r['fp32_bytes']:>14,}{r['fp32_bytes'] / 2**20:>10.1f}")
        return 0
    return _guarded("ctnet summary", run)


# --- train -----------------------------------------------------------------------------------

def train_parser() -> argparse.ArgumentParser:
    d = api.TrainConfig(data="")
    p = ArgumentParser(prog="ctnet train", description="Train a CTNet (or a plain baseline) on an image "
                                "folder (ImageNette or your own).")
    p.add_argument("data", help="dataset root holding train/<class>/ and val/<class>/ image folders (ImageNette's "
                   "WordNet IDs or any class names)")
    p.add_argument("--output-dir", default=d.output_dir)
    add_arch_arg(p, default=d.arch, help="the torchvision CNN")
    p.add_argument("--plain", action="store_true", help="train the plain torchvision model (baseline, no DCT, no rate)")
    p.add_argument("--plain-1x1", action="store_true", help="keep 1×1 convs as plain Conv2d (ResNet-50 hybrid)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="head size (default: one per class folder; --init-from reads it from the weights); 1000 on "
                        "ImageNette maps its WordNet IDs to ImageNet indices")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--pretrained", action="store_true", help="start from torchvision's ImageNet weights (from its cache)")
    p.add_argument("--init-from", metavar="CKPT", help="start from a trained plain or CTNet checkpoint, a bundle, or a "
                   "plain torchvision state dict (.pt/.pth) of the --arch")
    p.add_argument("--optimizer", default=d.optimizer, choices=list(api.OPTIMIZERS))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-size", type=int_in(1, api.MAX_BATCH_SIZE), default=d.batch_size)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear LR warm-up, then cosine decay")
    p.add_argument("--lambda-rate", type=float, default=d.lambda_rate, help="weight λ of the rate proxy")
    p.add_argument("--qstep", type=float, default=d.qstep, help="quantisation step q of the rate proxy and noise")
    p.add_argument("--rate-grid", default=d.rate_grid, choices=list(api.RATE_GRIDS),
                   help="measure coefficient levels in the fixed --qstep (paper) or in each tile's own export step")
    p.add_argument("--lambda-alpha", type=float, default=d.lambda_alpha, help="L2 weight λ2 = α·λ")
    p.add_argument("--steepness", type=float, default=d.steepness, help="slope s of the significance sigmoid")
    p.add_argument("--no-train-noise", dest="train_noise", action="store_false", help="no uniform noise on coefficients")
    p.add_argument("--dct-dropout", type=float, default=d.dct_dropout)
    p.add_argument("--dct-block-size", type=int, default=d.dct_block_size, help="channel-DCT block B (0 = full matrix)")
    p.add_argument("--pixel-bit-depth", type=int, default=d.pixel_bit_depth, choices=list(api.PIXEL_BIT_DEPTHS),
                   help="export-aware training: simulate the N-bit export (0 = off)")
    p.add_argument("--export-dither", type=float, default=d.export_dither, metavar="A",
                   help=f"with --pixel-bit-depth N and --rate-grid export: simulate the grid of a bundle encoded with "
                        f"`ctnet encode --dither A` (0..{api.MAX_DITHER:g} pixel steps; 0 = off). Its margin of free "
                        "levels sets the step the forward pass and the rate proxy use; a bundle's offsets depend on "
                        "its layout, so a fresh offset is drawn every step (training sees the dither's error "
                        "distribution, not one draw). Encode the result with --bit-depth N --dither A")
    p.add_argument("--rate-warmup-epochs", type=float, default=d.rate_warmup_epochs)
    p.add_argument("--group-rate", type=float, default=d.group_rate, metavar="BITS",
                   help="rate term for format v2's layout: proxy bits per non-empty row/column of each frequency "
                        "plane (0 = off; 420 is what the v2 calibration fits, docs/method.md)")
    p.add_argument("--distill-from", metavar="CKPT", help="distil from this trained model's logits "
                   "(a checkpoint or bundle with the same classes, e.g. the --init-from model)")
    p.add_argument("--distill-temperature", type=float, default=d.distill_temperature, metavar="T")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight, metavar="W",
                   help="loss = (1 − W)·cross-entropy + W·T²·KL(teacher ‖ student)")
    p.add_argument("--cache-dataset", action="store_true", help="decode the dataset once into tensors on the device")
    p.add_argument("--resume", metavar="PATH", help="continue from a 'last' checkpoint")
    p.add_argument("--force", action="store_true",
                   help="replace a run already in --output-dir (the old one stays until the new one is complete)")
    p.add_argument("--evaluate", dest="evaluate_only", action="store_true", help="only evaluate the starting model")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast + channels-last (CUDA, or a CPU with AVX-512 BF16 / AMX; ~1.9x faster there); "
                        "the export simulation and the rate terms stay float32")
    p.add_argument("--limit-train", type=int, default=None, help="use N training images (class-balanced)")
    p.add_argument("--limit-val", type=int, default=None, help="use N validation images (class-balanced)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int_in(0, api.MAX_WORKERS), default=d.workers,
                   help=f"data loader workers without --cache-dataset (0..{api.MAX_WORKERS})")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="write 'last' every N epochs")
    return p


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)

    def run():
        config = api.TrainConfig(**vars(args))
        result = api.fit(config)
        if config.evaluate_only:
            print(json.dumps(result))
        return 0
    return _guarded("ctnet train", run)


# --- eval ------------------------------------------------------------------------------------

def eval_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="ctnet eval", description="Top-1/top-5 on a val split of a checkpoint, a bundle, "
                                "or a file written by `ctnet decode --out` (plain safetensors in torchvision, "
                                ".onnx in onnxruntime).")
    p.add_argument("checkpoint", help="checkpoint file, bundle directory, or exported .safetensors / .onnx")
    p.add_argument("--data", required=True, help="dataset root (its val/ is used) or a folder of class folders, read "
                   "by the model's label map")
    p.add_argument("--against", metavar="REFERENCE",
                   help="a second checkpoint or bundle evaluated on the same images: prints the top-1 change image by "
                        "image with its 95 %% interval (a paired comparison)")
    add_eval_args(p)
    args = p.parse_args(argv)

    def run():
        kw = dict(limit=args.limit, device=args.device, batch_size=args.batch_size, workers=args.workers)
        if args.against is not None:
            if api.is_exported(args.checkpoint) or api.is_exported(args.against):
                raise ValueError("--against compares checkpoints and bundles (ctnet's own files), not exported "
                                 "torchvision/ONNX files")
            result = api.evaluate_against(args.checkpoint, args.against, args.data, **kw)
        else:
            evaluate_any = api.evaluate_exported if api.is_exported(args.checkpoint) else api.evaluate_path
            result = evaluate_any(args.checkpoint, args.data, **kw)
        if args.json:
            print(json.dumps(result))
            return 0
        runtime = f", {result['runtime']}" if "runtime" in result else ""
        print(f"top-1 {result['acc1']:.2f} %  top-5 {result['acc5']:.2f} %  on {result['images']} images  "
              f"({result['device']}{runtime})")
        if "against" in result:
            a = result["against"]
            print(f"against {a['reference']} (top-1 {a['acc1']:.2f} %): {a['delta']:+.2f} pt, 95 % interval "
                  f"{a['low']:+.2f} to {a['high']:+.2f} pt, paired on the same images ({a['gained']} gained, "
                  f"{a['lost']} lost)")
        return 0
    return _guarded("ctnet eval", run)


# --- download --------------------------------------------------------------------------------

def download_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="ctnet download", description="Fetch and unpack the official ImageNette archive.")
    p.add_argument("dataset", choices=["imagenette"])
    p.add_argument("dest")
    p.add_argument("--variant", default="160", choices=list(api.IMAGENETTE_URLS))
    p.add_argument("--url", help="archive URL to use instead of fast.ai's (e.g. file:///path/imagenette2-160.tgz)")
    args = p.parse_args(argv)

    def run():
        from tqdm import tqdm
        bars = []  # made at the first byte (a bad URL fails before any bar), on a terminal only; erased on close

        def progress(done, total):
            if not bars:
                bars.append(tqdm(unit="B", unit_scale=True, desc="download", disable=None, leave=False))
            bar = bars[0]
            bar.total = total if total > 0 else None
            bar.n = done
            bar.refresh()
        try:
            path = api.download_imagenette(args.variant, args.dest, url=args.url, progress=progress)
        finally:
            for bar in bars:
                bar.close()
        print(path)
        return 0
    return _guarded("ctnet download", run)
