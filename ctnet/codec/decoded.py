"""What every bundle reader (format v2 and v1) shares: members checked against what the
manifest states, and the decoded tensors checked against the model it describes, then loaded.

Checked before a decoded model is used: every tensor finite (as stored and as the layers
materialise it: a finite scale of 3e38 still gives infinite weights), every BatchNorm variance
≥ 0, every tensor of the described network present with its shape (strict ``load_state_dict``)
and, when the manifest records a *model check* (v2 bundles written since it exists), that the
channel-DCT weights under the described DCT block size are the ones the encoder decoded. The
shapes cannot make that last check — block sizes 8 and 16 give a ResNet the same shapes — and
without it a bundle relabelled from one to the other, its digest rewritten, decodes to ~10 %
top-1. It is a second record of the block size beside the digest, not a signature either.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

import torch
from torch import nn

from ..layers import ChannelDCTConv1x1, all_finite, configure_export_training, non_finite_part
from .manifest import BundleError, sha256


def stream_limit(pixels: int, container_bits: int) -> int:
    """The most bytes a coded stream of ``pixels`` levels may take: twice their raw size and
    a MiB (lossless coders of the noisiest levels stay well under 1×)."""
    return 2 * pixels * (1 if container_bits <= 8 else 2) + (1 << 20)


def check_members(members: Mapping[str, tuple[int, str]], files: Mapping[str, bytes]) -> None:
    """Every member present with the size and SHA-256 its manifest states."""
    for name, (size, digest) in members.items():
        if name not in files:
            raise BundleError(f"{name}: missing from the bundle")
        if len(files[name]) != size:
            raise BundleError(f"{name}: {len(files[name])} bytes, the manifest says {size} (truncated or replaced)")
        if sha256(files[name]) != digest:
            raise BundleError(f"{name}: contents do not match the manifest's SHA-256 (damaged file)")


def model_check(model: nn.Module) -> dict | None:
    """What a v2 manifest records about the model its encoder decoded (``model_check``): the
    first 64 bits of a SHA-256 over every channel-DCT layer's block size, shape and decoded
    coefficients (exact bytes, so the same on every machine); None without such layers."""
    layers = [m for m in model.modules() if isinstance(m, ChannelDCTConv1x1)]
    if not layers:
        return None
    h = hashlib.sha256(b"ctnet-channel-dct-check-1\0")
    for m in layers:
        w = m.weight_dct.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{m.block_size}:{tuple(w.shape)}\0".encode())
        h.update(w.numpy().tobytes())
    return {"channel_dct": h.hexdigest()[:16]}


def load_decoded(model: nn.Module, state: dict[str, torch.Tensor], check: dict | None = None) -> nn.Module:
    """``model`` (as the manifest describes it) holding the decoded ``state``, in eval mode and
    computing with the values as stored; anything that does not fit is a BundleError."""
    for name, t in state.items():
        if not all_finite(t):
            raise BundleError(f"decoded {name} holds {int((~torch.isfinite(t)).sum())} non-finite value(s): a scale "
                              f"or BatchNorm value in the bundle is out of range (damaged or edited)")
        if name.endswith("running_var") and bool((t < 0).any()):
            raise BundleError(f"decoded {name} holds a negative BatchNorm variance (damaged)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"decoded tensors do not fit the model: {str(exc).splitlines()[0]}") from exc
    if check is not None:
        _check(model, check)
    configure_export_training(model, pixel_bit_depth=0)  # the values are already on the grid
    model.eval()
    bad = non_finite_part(model)
    if bad:
        what = "its outputs on a probe image are" if bad == "its outputs" else f"the weights {bad} computes with are"
        raise BundleError(f"the decoded model is not usable: {what} not finite (a scale in the bundle is out of range)")
    return model


def _check(model: nn.Module, check: dict) -> None:
    if model_check(model) != check:
        blocks = sorted({m.block_size for m in model.modules() if isinstance(m, ChannelDCTConv1x1)})
        raise BundleError(f"the model check does not match: the channel-DCT weights with the manifest's DCT block size "
                          f"{'/'.join(map(str, blocks)) or '(none)'} are not the ones this bundle was encoded with (the "
                          f"manifest was edited after encoding, its digest rewritten)")


__all__ = ["check_members", "load_decoded", "model_check", "stream_limit"]
