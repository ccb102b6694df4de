"""CTNet-18 training step vs plain torchvision ResNet-18: same batch, same run, ratios.

    python bench/train_step.py [--batch 32] [--size 128] [--repeats 5] [--device cpu|cuda]
                               [--steps N] [--threads N]

Four steps are timed, interleaved: the plain ResNet-18 and CTNet-18 with everything the
recipe turns on (rate proxy on the export grid, export-aware 8-bit STE, L2 with α = 0.5),
each in float32 (contiguous) and with bf16 autocast + channels-last (``ctnet train --amp``).
Each step is forward + backward + AdamW update, built by ``ctnet.train.step_loss`` exactly as
``ctnet train`` runs it. Each timed call runs ``--steps`` steps (default 1 on the CPU, 10 on
CUDA) and synchronises the device only around the timing; the ratios are step times and
images/s against the plain fp32 step. ``CTNET_COMPILE=0`` times the eager rate proxy.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._timing import batch_bench_args, interleaved_medians, print_ratios  # noqa: E402
from ctnet.layers import configure_export_training  # noqa: E402
from ctnet.models import plain_model, replace_with_dct_convs  # noqa: E402
from ctnet.train import TrainConfig, step_loss  # noqa: E402

LAMBDA = 1e-6


def step_fn(model, x, y, config: TrainConfig, regularise: bool, steps: int):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        for _ in range(steps):
            loss, _ = step_loss(model, x, y, config, LAMBDA, regularise=regularise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return step


def main(argv=None) -> int:
    extra = __import__("argparse").ArgumentParser(add_help=False)
    extra.add_argument("--steps", type=int, default=None)
    extra.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    opts, rest = extra.parse_known_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    args, dev, x = batch_bench_args(__doc__.splitlines()[0], batch=32, repeats=5, argv=rest)
    cuda = dev.type == "cuda"
    steps = opts.steps or (10 if cuda else 1)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    if cuda:
        torch.backends.cudnn.benchmark = True

    def built(recipe: bool, fast: bool):
        """(model, input, config): plain or the full recipe; fp32 contiguous or bf16 + channels-last."""
        config = TrainConfig(data="", rate_grid="export", pixel_bit_depth=8, lambda_alpha=0.5, amp=fast)
        model = plain_model("resnet18", num_classes=10)
        if recipe:
            model = configure_export_training(replace_with_dct_convs(model), pixel_bit_depth=8)
        fmt = torch.channels_last if fast else torch.contiguous_format
        return model.to(dev).to(memory_format=fmt).train(), x.contiguous(memory_format=fmt), config

    cases = {"plain ResNet-18, fp32": (False, False),
             "plain ResNet-18, bf16 + channels-last": (False, True),
             "CTNet-18 full recipe, fp32": (True, False),
             "CTNet-18 full recipe, bf16 + channels-last": (True, True)}
    fns = {}
    for name, (recipe, fast) in cases.items():
        model, xin, config = built(recipe, fast)
        fns[name] = step_fn(model, xin, y, config, recipe, steps)
    med = interleaved_medians(fns, args.repeats, sync=torch.cuda.synchronize if cuda else None)
    med = {name: t / steps for name, t in med.items()}
    print_ratios(f"training step, batch {args.batch} at {args.size} px on {dev} ({torch.get_num_threads()} threads), "
                 f"median of {args.repeats} × {steps} step(s); full recipe = rate proxy on the export grid + "
                 f"8-bit STE + L2", med, 44, 2)
    base = next(iter(med.values()))
    print("images/s (ratio to plain fp32):")
    for name, t in med.items():
        print(f"  {name:<44} {args.batch / t:9.1f}   {base / t:5.2f}x")
    fp32_full, fast_full = med["CTNet-18 full recipe, fp32"], med["CTNet-18 full recipe, bf16 + channels-last"]
    print(f"full recipe, bf16 + channels-last against fp32: {fp32_full / fast_full:.2f}x the images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
