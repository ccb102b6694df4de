"""CTNet-18 training step vs plain torchvision ResNet-18: same batch, same run, ratios.

    python bench/train_step.py [--batch 32] [--size 128] [--repeats 5] [--device cpu|cuda]
                               [--steps N] [--amp | --no-amp] [--threads N]

Three steps are timed, interleaved: the plain ResNet-18; CTNet-18 with the DCT
parametrisation only; CTNet-18 with everything the recipe turns on (rate proxy on the
export grid, export-aware 8-bit STE, L2 with α = 0.5). Each step is forward + backward +
AdamW update, built by ``ctnet.train.step_loss`` exactly as ``ctnet train`` runs it (on CUDA
with channels-last inputs and, by default, bf16 autocast as in ``scripts/train_demo.sh``).
Each timed call runs ``--steps`` steps (default 1 on the CPU, 10 on CUDA) and synchronises
the device only around the timing; the ratios are step times and images/s against the plain
step. ``CTNET_COMPILE=0`` times the eager rate proxy.
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
    extra.add_argument("--amp", action=__import__("argparse").BooleanOptionalAction, default=None)
    extra.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    opts, rest = extra.parse_known_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    args, dev, x = batch_bench_args(__doc__.splitlines()[0], batch=32, repeats=5, argv=rest)
    cuda = dev.type == "cuda"
    steps = opts.steps or (10 if cuda else 1)
    amp = cuda if opts.amp is None else opts.amp
    y = torch.randint(0, 10, (args.batch,), device=dev)
    config = TrainConfig(data="", rate_grid="export", pixel_bit_depth=8, lambda_alpha=0.5, amp=amp)
    plain = plain_model("resnet18", num_classes=10)
    dct_only = replace_with_dct_convs(plain_model("resnet18", num_classes=10))
    full = configure_export_training(replace_with_dct_convs(plain_model("resnet18", num_classes=10)), pixel_bit_depth=8)
    models = [m.to(dev).train() for m in (plain, dct_only, full)]
    if cuda:  # as ctnet train does on CUDA
        torch.backends.cudnn.benchmark = True
        models = [m.to(memory_format=torch.channels_last) for m in models]
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if cuda else None
    med = interleaved_medians({"plain ResNet-18": step_fn(models[0], x, y, config, False, steps),
                               "CTNet-18 (DCT parametrisation)": step_fn(models[1], x, y, config, False, steps),
                               "CTNet-18 (rate proxy + 8-bit STE + L2)": step_fn(models[2], x, y, config, True, steps)},
                              args.repeats, sync=sync)
    med = {name: t / steps for name, t in med.items()}
    print_ratios(f"training step, batch {args.batch} at {args.size} px on {dev} ({torch.get_num_threads()} threads"
                 f"{', bf16 autocast' if amp else ''}), median of {args.repeats} × {steps} step(s)", med, 40, 2)
    base = next(iter(med.values()))
    print("images/s (ratio to plain):")
    for name, t in med.items():
        print(f"  {name:<40} {args.batch / t:9.1f}   {base / t:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
