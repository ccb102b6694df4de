"""Eval-mode CTNet-18 (materialised weights cached) vs torchvision ResNet-18 forward, ratio.

    python bench/inference.py [--batch 64] [--size 128] [--repeats 10] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._timing import interleaved_medians  # noqa: E402
from ctnet.models import plain_model, replace_with_dct_convs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    plain = plain_model("resnet18", num_classes=10).to(dev).eval()
    ctnet = replace_with_dct_convs(plain_model("resnet18", num_classes=10)).to(dev).eval()

    def forward(model):
        def run():
            with torch.no_grad():
                model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
        return run

    med = interleaved_medians({"plain ResNet-18": forward(plain), "CTNet-18 (eval, cached)": forward(ctnet)},
                              args.repeats)
    base = med["plain ResNet-18"]
    print(f"inference, batch {args.batch} at {args.size} px on {dev} ({torch.get_num_threads()} threads), "
          f"median of {args.repeats}")
    for name, t in med.items():
        print(f"  {name:<26} {t * 1000:9.1f} ms   {t / base:5.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
