"""Eval-mode CTNet-18 (materialised weights cached) and what ``ctnet decode --out`` ships (the
plain torchvision model in PyTorch; the ONNX graph in ONNX Runtime, on the CPU when it
imports) vs torchvision's ResNet-18 forward, in one run, as ratios.

    python bench/inference.py [--batch 64] [--size 128] [--repeats 10] [--device cpu|cuda]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._timing import batch_bench_args, interleaved_medians, print_ratios  # noqa: E402
from ctnet.models import plain_model, replace_with_dct_convs  # noqa: E402
from ctnet.plain import export_onnx, onnx_session, to_torchvision  # noqa: E402


def main(argv=None) -> int:
    args, dev, x = batch_bench_args(__doc__.splitlines()[0], batch=64, repeats=10, argv=argv)
    plain = plain_model("resnet18", num_classes=10).to(dev).eval()
    ctnet = replace_with_dct_convs(plain_model("resnet18", num_classes=10)).to(dev).eval()
    exported = to_torchvision(ctnet).to(dev)

    def forward(model):
        def run():
            with torch.no_grad():
                model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
        return run

    fns = {"plain ResNet-18": forward(plain), "CTNet-18 (eval, cached)": forward(ctnet),
           "exported plain (PyTorch)": forward(exported)}
    with tempfile.TemporaryDirectory(prefix="ctnet-bench-") as tmp:
        session = None
        if dev.type == "cpu":  # the CPU provider only: on a GPU run the comparison would mean nothing
            path, _ = export_onnx(ctnet.cpu(), {"model": {"arch": "resnet18"}, "image_size": args.size},
                                  Path(tmp) / "ctnet18.onnx")
            session = onnx_session(path, threads=torch.get_num_threads())
        if session is not None:
            feed = {"input": x.numpy()}
            fns["exported ONNX (ONNX Runtime)"] = lambda: session.run(None, feed)
        med = interleaved_medians(fns, args.repeats)
    print_ratios(f"inference, batch {args.batch} at {args.size} px on {dev} ({torch.get_num_threads()} threads), "
                 f"median of {args.repeats}", med, 28, 3)
    if session is None:
        print("  (ONNX Runtime: " + ("CPU runs only" if dev.type != "cpu" else "not installed") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
