"""CTNet-18 training step vs plain torchvision ResNet-18: same batch, same run, ratio.

    python bench/train_step.py [--batch 32] [--size 128] [--repeats 5] [--device cpu|cuda]

Three steps are timed, interleaved: the plain ResNet-18; CTNet-18 with the DCT
parametrisation only; CTNet-18 with everything the recipe turns on (rate proxy on the
export grid, export-aware 8-bit STE). Each step is forward + backward + AdamW update.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._timing import batch_bench_args, interleaved_medians, print_ratios  # noqa: E402
from ctnet.layers import configure_export_training  # noqa: E402
from ctnet.models import plain_model, replace_with_dct_convs  # noqa: E402
from ctnet.rate import l2_penalty, rate_proxy  # noqa: E402


def step_fn(model, x, y, regularise: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = F.cross_entropy(model(x), y)
        if regularise:
            rate = rate_proxy(model, grid="export", bits=8)["total"]
            loss = loss + 1e-6 * (rate + 0.5 * l2_penalty(model))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()
    return step


def main(argv=None) -> int:
    args, dev, x = batch_bench_args(__doc__.splitlines()[0], batch=32, repeats=5, argv=argv)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    plain = plain_model("resnet18", num_classes=10).to(dev).train()
    dct_only = replace_with_dct_convs(plain_model("resnet18", num_classes=10)).to(dev).train()
    full = replace_with_dct_convs(plain_model("resnet18", num_classes=10)).to(dev).train()
    configure_export_training(full, pixel_bit_depth=8)
    med = interleaved_medians({"plain ResNet-18": step_fn(plain, x, y, False),
                               "CTNet-18 (DCT parametrisation)": step_fn(dct_only, x, y, False),
                               "CTNet-18 (rate proxy + 8-bit STE)": step_fn(full, x, y, True)}, args.repeats)
    print_ratios(f"training step, batch {args.batch} at {args.size} px on {dev} ({torch.get_num_threads()} threads), "
                 f"median of {args.repeats}", med, 36, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
