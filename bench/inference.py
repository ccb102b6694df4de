"""Eval-mode CTNet-18 (materialised weights cached) vs torchvision ResNet-18 forward, ratio.

    python bench/inference.py [--batch 64] [--size 128] [--repeats 10] [--device cpu|cuda]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._timing import batch_bench_args, interleaved_medians, print_ratios  # noqa: E402
from ctnet.models import plain_model, replace_with_dct_convs  # noqa: E402


def main(argv=None) -> int:
    args, dev, x = batch_bench_args(__doc__.splitlines()[0], batch=64, repeats=10, argv=argv)
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
    print_ratios(f"inference, batch {args.batch} at {args.size} px on {dev} ({torch.get_num_threads()} threads), "
                 f"median of {args.repeats}", med, 26, 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
