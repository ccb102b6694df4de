"""`ctnet train` itself, fp32 against --amp (bf16 autocast + channels-last): the full export-aware
recipe from the shared 89.53 % ResNet-18 on a class-balanced slice of the real train split,
both runs in one call, alternating, so the ratio sees the same machine.

    python bench/train_cli.py [--data ../shared/data/imagenette2-128] [--images 1280] [--rounds 2]

Each run trains 2 epochs (the first pays for torch.compile and the data cache); the second
epoch's seconds from train_log.jsonl (training + evaluation of --val images) are compared.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = ["--arch", "resnet18", "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.01", "--batch-size", "256",
          "--label-smoothing", "0.1", "--epochs", "2", "--rate-grid", "export", "--lambda-rate", "5e-7",
          "--lambda-alpha", "0.5", "--no-train-noise", "--dct-dropout", "0", "--pixel-bit-depth", "8",
          "--rate-warmup-epochs", "1", "--cache-dataset", "--device", "cpu", "--seed", "0"]


def second_epoch_seconds(data: str, init: str, images: int, val: int, amp: bool, out: Path) -> float:
    cmd = [sys.executable, "-m", "ctnet", "train", data, "--output-dir", str(out), "--init-from", init, *RECIPE,
           "--limit-train", str(images), "--limit-val", str(val), *(["--amp"] if amp else [])]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return rows[1]["seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "imagenette2-128"))
    ap.add_argument("--init-from", default=str(REPO.parent / "shared" / "models" / "resnet18-imagenette128-scratch.pt"))
    ap.add_argument("--images", type=int, default=1280)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for amp in (False, True):
                out = Path(tmp) / f"{r}-{amp}"
                times[amp].append(second_epoch_seconds(args.data, args.init_from, args.images, args.val, amp, out))
    fp32, fast = statistics.median(times[False]), statistics.median(times[True])
    print(f"ctnet train, full recipe, second epoch of {args.images} images + {args.val} val images, "
          f"median of {args.rounds}:")
    print(f"  fp32                      {fp32:7.1f} s   {args.images / fp32:6.1f} images/s   1.00x")
    print(f"  --amp (bf16 + chan-last)  {fast:7.1f} s   {args.images / fast:6.1f} images/s   {fp32 / fast:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
