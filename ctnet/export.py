"""What a bundle stores, and the size estimate that training logs.

Every parameter except BatchNorm's becomes a video image; BatchNorm layers (weight, bias,
running_mean, running_var) travel separately (raw float tensors by default).
"""
from __future__ import annotations

import torch
from torch import nn

from .quant import TILE, entropy_bits, tensor_to_image, tile_grid

# Bytes of a tensor's frames in an x265 lossless stream ≈ a·H0/8 + b·O + c·frames, with H0
# the tensor's zeroth-order tile entropy (bits) and O its pixels off the zero point. Fitted per
# layer on real bundles of GPU-trained CTNet-18/50 checkpoints (bench/size_calibration.py);
# whole-bundle error within ±8 % there (README). Plain H0 underestimates sparse layers by up
# to 1.9×: HEVC codes isolated levels less efficiently than their entropy.
SIZE_CALIBRATION = {8: (1.6385, -0.3690, 110.8), 10: (1.7906, -0.0400, 129.1), 12: (1.8608, 0.4470, 152.3)}
# Bundle bytes that are not video: manifest entry per frame and fixed part, BN tensor headers
MANIFEST_BYTES_PER_FRAME = 36  # measured: 25.7 KB for CTNet-18's 699 frames
MANIFEST_BYTES_FIXED = 500
SAFETENSORS_BYTES_PER_TENSOR = 90


def is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def video_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """state-dict name → tensor of every parameter stored as video (all but BatchNorm's)."""
    out = {}
    for mod_name, module in model.named_modules():
        if is_batchnorm(module):
            continue
        for p_name, p in module.named_parameters(recurse=False):
            out[f"{mod_name}.{p_name}" if mod_name else p_name] = p
    return out


def bn_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if is_batchnorm(m)}


def bn_raw_bytes(model: nn.Module) -> int:
    """Bytes of the BN tensors stored raw (float32 safetensors)."""
    total = 0
    for m in bn_layers(model).values():
        total += 4 * 4 * m.num_features + 4 * SAFETENSORS_BYTES_PER_TENSOR
    return total


def frame_count(model: nn.Module, tile: int = TILE) -> int:
    n = 0
    for t in video_tensors(model).values():
        rows, cols = tile_grid(*tensor_to_image(t).shape, tile)
        n += rows * cols
    return n


@torch.no_grad()
def estimate_bytes(model: nn.Module, bits: int, tile: int = TILE) -> int:
    """Estimated size of a lossless ``bits``-bit bundle with raw BN: calibrated tile
    entropy of every video tensor + BN tensors + manifest."""
    a, b, c = SIZE_CALIBRATION[bits]
    frames = frame_count(model, tile)
    video = c * frames
    for t in video_tensors(model).values():
        h0, off_zero = entropy_bits(t, bits, tile)
        video += a * h0 / 8 + b * off_zero
    manifest = MANIFEST_BYTES_FIXED + MANIFEST_BYTES_PER_FRAME * frames
    return int(round(video + bn_raw_bytes(model) + manifest))


@torch.no_grad()
def nonzero_coefficients(model: nn.Module, qstep: float = 0.1) -> int:
    """Stored values with |c| ≥ q/2 (those HEVC-style rounding at step q would keep)."""
    return int(sum(int((t.abs() >= qstep / 2).sum()) for t in video_tensors(model).values()))
