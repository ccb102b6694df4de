"""``ctnet <subcommand>``: each subcommand is a ``main(argv)`` so tests call it in-process.

Errors the user can fix (bad flags, bad files, bad data) print one line naming the problem
and exit with status 2; nothing is overwritten.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Callable

from .codec import command as codec_command
from .errors import CtnetError

# what a user can fix: ctnet's own errors (ctnet.errors.CtnetError), files that are missing
# or cannot be written (OSError: no such file, permission, disk full), and the ValueErrors
# ctnet's own code raises for bad flags. Anything else is a bug (exit status 1).
USER_ERRORS: tuple[type[BaseException], ...] = (CtnetError, OSError, ValueError)
BUG_EXIT = 1


def add_eval_args(p: argparse.ArgumentParser, *, workers: int | None = None, workers_help: str | None = None) -> None:
    """The flags of every command that evaluates on ImageNette val: --limit, --device,
    --batch-size, --workers (default: up to 4, no more than the cores), --json."""
    p.add_argument("--limit", type=int, default=None, help="evaluate N class-balanced val images (default all)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1) if workers is None else workers,
                   help=workers_help or "data loader workers")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


_PACKAGE = str(Path(__file__).resolve().parent)


def _one_line(exc: BaseException) -> str:
    """The message on one line (a worker's traceback or torch's advice must not flood the
    terminal); long messages are cut."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines) if len(lines) <= 3 else lines[0]
    return (text[:500] + "…") if len(text) > 500 else (text or type(exc).__name__)


def _fail(prog: str, exc: BaseException) -> int:
    print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
    return 2


def _raised_by_ctnet(exc: BaseException) -> bool:
    """Whether the innermost Python frame that raised ``exc`` is ctnet's own code."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and os.path.abspath(last.tb_frame.f_code.co_filename).startswith(_PACKAGE + os.sep)


def is_user_error(exc: BaseException) -> bool:
    """A CtnetError, an OSError (missing file, permission, disk full) or a ValueError that
    ctnet raised itself about its input; not a ValueError from deep inside torch or PIL."""
    if isinstance(exc, (CtnetError, OSError)):
        return True
    return isinstance(exc, ValueError) and _raised_by_ctnet(exc)


def _bug(prog: str, exc: BaseException) -> int:
    if os.environ.get("CTNET_DEBUG"):
        traceback.print_exception(exc)
    what = "out of memory" if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower() else "internal error"
    hint = " (a smaller --batch-size or --device cpu may fit)" if what == "out of memory" else ""
    print(f"{prog}: {what}: {type(exc).__name__}: {_one_line(exc)}{hint} — this is a bug or a limit ctnet does "
          f"not check; please report it with the command line (CTNET_DEBUG=1 prints the traceback)", file=sys.stderr)
    return BUG_EXIT


def _guarded(prog: str, fn: Callable[[], int]) -> int:
    """Run a command: a user error prints one line and exits 2, a bug one line and exits 1."""
    try:
        return fn()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every exception ends here: a one-line error or a bug report
        if is_user_error(exc):
            return _fail(prog, exc)
        return _bug(prog, exc)


# --- summary -------------------------------------------------------------------------------

def summary_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ctnet summary", description="Parameter breakdown of a CTNet architecture.")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--dct-block-size", type=int, default=16)
    p.add_argument("--plain-1x1", action="store_true", help="keep 1×1 convolutions plain (ResNet-50 hybrid)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run():
        from .models import ModelSpec, build_model, parameter_summary
        rows = parameter_summary(build_model(ModelSpec(args.arch, args.num_classes, True, args.dct_block_size, args.plain_1x1)))
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'group':<18}{'layers':>8}{'parameters':>14}{'fp32 bytes':>14}{'fp32 MiB':>10}")
            for r in rows:
                print(f"{r['group']:<18}{r['layers']:>8}{r['parameters']:>14,}{r['fp32_bytes']:>14,}"
                      f"{r['fp32_bytes'] / 2**20:>10.1f}")
        return 0
    return _guarded("ctnet summary", run)


# --- train -----------------------------------------------------------------------------------

def train_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig
    d = TrainConfig(data="")
    p = argparse.ArgumentParser(prog="ctnet train", description="Train a CTNet (or a plain baseline) on ImageNette.")
    p.add_argument("data", help="ImageNette root holding train/ and val/ WNID folders")
    p.add_argument("--output-dir", default=d.output_dir)
    p.add_argument("--arch", default=d.arch, choices=["resnet18", "resnet50"])
    p.add_argument("--plain", action="store_true", help="train the plain torchvision model (baseline, no DCT, no rate)")
    p.add_argument("--plain-1x1", action="store_true", help="keep 1×1 convs as plain Conv2d (ResNet-50 hybrid)")
    p.add_argument("--num-classes", type=int, default=None, help="10 (default) or 1000 (ImageNet head; labels remapped)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--pretrained", action="store_true", help="start from torchvision's ImageNet weights (from its cache)")
    p.add_argument("--init-from", metavar="CKPT", help="start from a trained plain or CTNet checkpoint")
    p.add_argument("--optimizer", default=d.optimizer, choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear LR warm-up, then cosine decay")
    p.add_argument("--lambda-rate", type=float, default=d.lambda_rate, help="weight λ of the rate proxy")
    p.add_argument("--qstep", type=float, default=d.qstep, help="quantisation step q of the rate proxy and noise")
    p.add_argument("--rate-grid", default=d.rate_grid, choices=["qstep", "export"],
                   help="measure coefficient levels in the fixed --qstep (paper) or in each tile's own export step")
    p.add_argument("--lambda-alpha", type=float, default=d.lambda_alpha, help="L2 weight λ2 = α·λ")
    p.add_argument("--steepness", type=float, default=d.steepness, help="slope s of the significance sigmoid")
    p.add_argument("--no-train-noise", dest="train_noise", action="store_false", help="no uniform noise on coefficients")
    p.add_argument("--dct-dropout", type=float, default=d.dct_dropout)
    p.add_argument("--dct-block-size", type=int, default=d.dct_block_size, help="channel-DCT block B (0 = full matrix)")
    p.add_argument("--pixel-bit-depth", type=int, default=d.pixel_bit_depth, choices=[0, 8, 10, 12],
                   help="export-aware training: simulate the N-bit export (0 = off)")
    p.add_argument("--rate-warmup-epochs", type=float, default=d.rate_warmup_epochs)
    p.add_argument("--cache-dataset", action="store_true", help="decode the dataset once into tensors on the device")
    p.add_argument("--resume", metavar="PATH", help="continue from a 'last' checkpoint")
    p.add_argument("--force", action="store_true",
                   help="replace a run already in --output-dir (the old one stays until the new one is complete)")
    p.add_argument("--evaluate", dest="evaluate_only", action="store_true", help="only evaluate the starting model")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--limit-train", type=int, default=None, help="use N training images (class-balanced)")
    p.add_argument("--limit-val", type=int, default=None, help="use N validation images (class-balanced)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="data loader workers without --cache-dataset")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="write 'last' every N epochs")
    return p


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)

    def run():
        from .train import TrainConfig, fit
        config = TrainConfig(**vars(args))
        result = fit(config)
        if config.evaluate_only:
            print(json.dumps(result))
        return 0
    return _guarded("ctnet train", run)


# --- eval ------------------------------------------------------------------------------------

def eval_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ctnet eval", description="Top-1/top-5 of a checkpoint on ImageNette val.")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="ImageNette root (its val/ is used) or a folder of WNID folders")
    add_eval_args(p)
    args = p.parse_args(argv)

    def run():
        from .api import evaluate_path
        result = evaluate_path(args.checkpoint, args.data, limit=args.limit, device=args.device,
                               batch_size=args.batch_size, workers=args.workers)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"top-1 {result['acc1']:.2f} %  top-5 {result['acc5']:.2f} %  on {result['images']} images  "
                  f"({result['device']})")
        return 0
    return _guarded("ctnet eval", run)


# --- download --------------------------------------------------------------------------------

def download_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ctnet download", description="Fetch and unpack the official ImageNette archive.")
    p.add_argument("dataset", choices=["imagenette"])
    p.add_argument("dest")
    p.add_argument("--variant", default="160", choices=["160", "320", "full"])
    p.add_argument("--url", help="archive URL to use instead of fast.ai's (e.g. file:///path/imagenette2-160.tgz)")
    args = p.parse_args(argv)

    def run():
        from tqdm import tqdm
        from .data import download_imagenette
        bar = tqdm(unit="B", unit_scale=True, desc="download")

        def progress(done, total):
            bar.total = total if total > 0 else None
            bar.n = done
            bar.refresh()
        try:
            path = download_imagenette(args.variant, args.dest, url=args.url, progress=progress)
        finally:
            bar.close()
        print(path)
        return 0
    return _guarded("ctnet download", run)


COMMANDS: dict[str, Callable[[list[str] | None], int]] = {
    "summary": summary_main,
    "train": train_main,
    "eval": eval_main,
    "download": download_main,
    # the codec's commands (ctnet/codec/cli.py) import PyAV only when run
    "encode": codec_command("encode_main"),
    "decode": codec_command("decode_main"),
    "profile": codec_command("profile_main"),
    "export": codec_command("export_main"),
    "rd": codec_command("rd_main"),  # ctnet/rd.py: rate–distortion curves of every codec
    "verify": codec_command("verify_main"),  # a bundle's digest and members, without decoding
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(f"usage: ctnet <command> [options]\ncommands: {names}\n'ctnet <command> --help' for details",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])
