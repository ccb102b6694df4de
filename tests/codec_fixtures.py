"""Shared helpers of the codec tests (imported by tests/test_codec_*.py)."""
from __future__ import annotations

import hashlib

import torch

from ctnet.export import bn_layers, video_tensors
from ctnet.models import ModelSpec, build_model

SPEC = ModelSpec("resnet18", 10, True, 16)


def sparse_ctnet18(seed: int = 0, keep: float = 0.003) -> tuple[torch.nn.Module, dict]:
    """A CTNet-18 that looks trained under the rate proxy: most coefficients exactly zero,
    a few large; BN statistics non-trivial. Encodes in a few seconds."""
    g = torch.Generator().manual_seed(seed)
    model = build_model(SPEC).eval()
    with torch.no_grad():
        for name, t in video_tensors(model).items():
            mask = torch.rand(t.shape, generator=g) < keep
            t.copy_(torch.randn(t.shape, generator=g) * 0.05 * mask)
        for m in bn_layers(model).values():
            c = m.num_features
            m.weight.copy_(1 + 0.1 * torch.randn(c, generator=g))
            m.bias.copy_(0.1 * torch.randn(c, generator=g))
            m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) * 2 + 1e-3)
    meta = {"model": SPEC.to_dict(), "image_size": 128, "pixel_bit_depth": 0,
            "metrics": {"epoch": 1, "acc1": 10.0}, "epoch": 1}
    return model, meta


def state_hash(model) -> str:
    """SHA-256 of a model's state dict (names and bytes): equal hashes, bit-identical weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()
