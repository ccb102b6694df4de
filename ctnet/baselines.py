"""Compressors that are not CTNet bundles, run on the same weights for comparison (SPEC §5):
fp16 + zstd, per-tensor INT8/INT4 + zstd, and NNCodec (Fraunhofer's MPEG NNR codec) when it
is importable. Each one writes real bytes and decodes them back into a model; sizes count
every byte needed to rebuild the weights given the architecture (as a bundle's do). No PyAV.

*What is quantised* is what the checkpoint stores: a CTNet's DCT coefficients (its
``video_tensors``), a plain model's spatial weights. BatchNorm travels as float32 inside the
same zstd stream. NNCodec codes the *plain twin* (DCT layers turned back into convolutions),
since it knows nothing of DCT layers.

NNCodec is not a dependency (it pins numpy < 2); install it beside the environment:
``pip install --no-deps --target DIR nncodec==2.1.3 opencv-python-headless scipy scikit-learn
h5py torchmetrics lightning-utilities ptflops joblib threadpoolctl cloudpickle pybind11`` and
put DIR on ``PYTHONPATH``. :func:`nncodec_status` says whether it can be used here and why not.
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .export import bn_layers, video_tensors
from .layers import DCT_LAYERS
from .models import swap_modules

ZSTD_LEVEL = 19
INT_BITS = (8, 4)
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@dataclass
class Compressed:
    """One compressed copy of a model: its bytes and what they decode to."""

    method: str  # fp16, int8, int4, nncodec
    settings: dict
    bytes: int
    model: nn.Module  # decoded from the bytes, eval mode
    encode_seconds: float
    decode_seconds: float
    notes: dict = field(default_factory=dict)


def _zstd():
    import zstandard
    return zstandard


def plain_twin(model: nn.Module) -> nn.Module:
    """The plain torchvision network with the materialised weights (for NNCodec)."""
    plain = copy.deepcopy(model)
    swap_modules(plain, lambda child: child.to_conv() if isinstance(child, DCT_LAYERS) else None)
    return plain.eval()


# --- fp16 / INTn + zstd ------------------------------------------------------------------------

def _bn_bytes(model: nn.Module) -> bytes:
    return b"".join(getattr(m, k).detach().cpu().numpy().astype("<f4").tobytes()
                    for m in bn_layers(model).values() for k in BN_KEYS)


def _load_bn(model: nn.Module, data: memoryview) -> int:
    pos = 0
    with torch.no_grad():
        for m in bn_layers(model).values():
            for k in BN_KEYS:
                t = getattr(m, k)
                n = t.numel() * 4
                t.copy_(torch.from_numpy(np.frombuffer(data[pos:pos + n], "<f4").copy()).reshape(t.shape))
                pos += n
    return pos


@torch.no_grad()
def fp16_zstd(model: nn.Module, level: int = ZSTD_LEVEL) -> Compressed:
    """Every stored tensor as IEEE half precision, BN float32, one zstd stream."""
    t0 = time.perf_counter()
    raw = b"".join(t.detach().cpu().numpy().astype("<f2").tobytes() for t in video_tensors(model).values())
    data = _zstd().ZstdCompressor(level=level).compress(raw + _bn_bytes(model))
    t1 = time.perf_counter()
    decoded = copy.deepcopy(model)
    buf = memoryview(_zstd().ZstdDecompressor().decompress(data))
    pos = 0
    for t in video_tensors(decoded).values():
        n = t.numel() * 2
        t.copy_(torch.from_numpy(np.frombuffer(buf[pos:pos + n], "<f2").astype(np.float32)).reshape(t.shape))
        pos += n
    _load_bn(decoded, buf[pos:])
    return Compressed("fp16", {"zstd": level}, len(data), decoded.eval(), t1 - t0, time.perf_counter() - t1)


def _pack(q: np.ndarray, bits: int) -> bytes:
    """Signed levels → bytes: int8 as is; int4 as (level + 8) nibbles, two per byte."""
    if bits == 8:
        return q.astype(np.int8).tobytes()
    u = (q.reshape(-1).astype(np.int16) + 8).astype(np.uint8)
    if len(u) % 2:
        u = np.append(u, np.uint8(8))
    return (u[0::2] | (u[1::2] << 4)).astype(np.uint8).tobytes()


def _unpack(data: memoryview, n: int, bits: int) -> tuple[np.ndarray, int]:
    if bits == 8:
        return np.frombuffer(data[:n], np.int8).astype(np.float32), n
    size = (n + 1) // 2
    b = np.frombuffer(data[:size], np.uint8)
    u = np.empty(size * 2, np.int16)
    u[0::2], u[1::2] = b & 0x0F, b >> 4
    return (u[:n] - 8).astype(np.float32), size


@torch.no_grad()
def int_zstd(model: nn.Module, bits: int = 8, level: int = ZSTD_LEVEL) -> Compressed:
    """Symmetric per-tensor INTn of every stored tensor (scale = max|w| / (2^(n−1) − 1),
    levels in ±(2^(n−1) − 1)), its float32 scale before it; BN float32; one zstd stream."""
    if bits not in INT_BITS:
        raise ValueError(f"integer bits must be one of {INT_BITS}, got {bits}")
    peak = 2 ** (bits - 1) - 1
    t0 = time.perf_counter()
    parts = []
    for t in video_tensors(model).values():
        x = t.detach().cpu().float()
        scale = np.float32(float(x.abs().max()) / peak or 1.0)
        q = torch.round(x / float(scale)).clamp(-peak, peak).numpy()
        parts.append(scale.astype("<f4").tobytes() + _pack(q, bits))
    data = _zstd().ZstdCompressor(level=level).compress(b"".join(parts) + _bn_bytes(model))
    t1 = time.perf_counter()
    decoded = copy.deepcopy(model)
    buf = memoryview(_zstd().ZstdDecompressor().decompress(data))
    pos = 0
    for t in video_tensors(decoded).values():
        scale = np.frombuffer(buf[pos:pos + 4], "<f4")[0]
        levels, size = _unpack(buf[pos + 4:], t.numel(), bits)
        t.copy_(torch.from_numpy(levels * scale).reshape(t.shape))
        pos += 4 + size
    _load_bn(decoded, buf[pos:])
    return Compressed(f"int{bits}", {"bits": bits, "granularity": "per-tensor", "zstd": level}, len(data),
                      decoded.eval(), t1 - t0, time.perf_counter() - t1)


# --- NNCodec ---------------------------------------------------------------------------------

def nncodec_status() -> tuple[bool, str]:
    """(usable, why not / which version)."""
    try:
        from nncodec import nnc  # noqa: F401
    except Exception as exc:  # not installed, or installed against other numpy/torch
        return False, f"NNCodec is not importable ({type(exc).__name__}: {exc})"
    try:
        from importlib.metadata import version
        return True, f"nncodec {version('nncodec')}"
    except Exception:
        return True, "nncodec (version unknown)"


@torch.no_grad()
def nncodec(model: nn.Module, qp: int, *, nonweight_qp: int = -75, use_dq: bool = True) -> Compressed:
    """NNCodec's bitstream of the plain twin at ``qp`` (coarser as it rises toward 0);
    non-weight tensors (BN, biases) at ``nonweight_qp``; bytes = the bitstream file."""
    ok, why = nncodec_status()
    if not ok:
        raise RuntimeError(why)
    from nncodec import nnc
    plain = plain_twin(model)
    with tempfile.TemporaryDirectory(prefix="ctnet-nnc-") as tmp:
        path = os.path.join(tmp, "model.nnc")
        t0 = time.perf_counter()
        nnc.compress_model(copy.deepcopy(plain), bitstream_path=path, qp=qp, nonweight_qp=nonweight_qp,
                           use_dq=use_dq, verbose=False)
        t1 = time.perf_counter()
        rec = nnc.decompress(path, verbose=False)
        decoded = copy.deepcopy(plain)
        state = decoded.state_dict()
        missing = [k for k, v in state.items() if v.is_floating_point() and k not in rec]
        decoded.load_state_dict({k: torch.as_tensor(np.asarray(rec[k])).reshape(v.shape).to(v.dtype) if k in rec else v
                                 for k, v in state.items()})
        t2 = time.perf_counter()
        size = os.path.getsize(path)
    return Compressed("nncodec", {"qp": qp, "nonweight_qp": nonweight_qp, "use_dq": use_dq}, size, decoded.eval(),
                      t1 - t0, t2 - t1, {"not_in_bitstream": missing, "version": why})


__all__ = ["Compressed", "INT_BITS", "ZSTD_LEVEL", "fp16_zstd", "int_zstd", "nncodec", "nncodec_status", "plain_twin"]
