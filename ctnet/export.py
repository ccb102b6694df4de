"""What a bundle stores, and the size estimate that training logs.

Every parameter except BatchNorm's becomes a video image; BatchNorm layers (weight, bias,
running_mean, running_var) travel separately (raw float tensors by default).
"""
from __future__ import annotations

from typing import TypeGuard

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .limits import BIT_DEPTHS
from .quant import TILE, entropy_bits, image_shape, tile_grid

# Bytes of a tensor's levels in a format-v2 bundle (x265 lossless, default settings) ≈
# a·H0/8 + b·N + c, with H0 the zeroth-order entropy (bits, over grid tiles) of its levels and
# N its non-zero levels. Fitted per grid on every layer of six demo CTNet-18s, from λ = 1e-6
# to the dense paper-proxy run (bench/size_calibration.py … --bits 4 5 6 7 8): at 8 bits whole
# bundles within −2 … +6 %; at 4–7 bits (the same weights re-quantised, 8-bit frames) the
# refit leaves −8 … +12 %. The demo's weights sit on the 8-bit grid, so they cannot calibrate
# 9–12 bits (their levels there are the 8-bit ones scaled); those use the 8-bit constants,
# uncalibrated.
_EIGHT = (1.0789, -0.1451, 2290.1)
SIZE_CALIBRATION = {4: (0.5172, 0.0947, 1910.4), 5: (0.6202, 0.0573, 2125.7), 6: (0.7695, -0.0213, 2511.2),
                    7: (0.8797, -0.0664, 3032.2), **{bits: _EIGHT for bits in BIT_DEPTHS if bits >= 8}}
# Bytes that are not levels: manifest, and the compressed tables — grid (scale + zero point
# per tile), row/column classes, frame bitmap — and BN as its 24-bit-float affine.
METADATA_FIXED = 1600
METADATA_PER_TILE = 3.9
METADATA_PER_ROW = 0.4
BN_BYTES_PER_CHANNEL = 4.9  # 24-bit float scale and shift, compressed


def is_batchnorm(module: nn.Module) -> TypeGuard[_BatchNorm]:
    return isinstance(module, _BatchNorm)


def video_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """state-dict name → tensor of every parameter stored as video (all but BatchNorm's)."""
    out = {}
    for mod_name, module in model.named_modules():
        if is_batchnorm(module):
            continue
        for p_name, p in module.named_parameters(recurse=False):
            out[f"{mod_name}.{p_name}" if mod_name else p_name] = p
    return out


def bn_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    return {name: m for name, m in model.named_modules() if is_batchnorm(m)}


@torch.no_grad()
def tensor_bytes(t: torch.Tensor, bits: int, tile: int = TILE) -> float:
    """Estimated bytes one stored tensor adds to a lossless format-v2 bundle on a ``bits``-bit
    grid: its levels (calibrated entropy) and its share of the tables."""
    a, b, c = SIZE_CALIBRATION[bits]
    h0, nonzero = entropy_bits(t, bits, tile)
    rows, cols = tile_grid(*image_shape(t.shape), tile)
    total = a * h0 / 8 + b * nonzero + c + METADATA_PER_TILE * rows * cols
    if t.dim() in (2, 4) and t.shape[0] > 1 and t.shape[1] > 1:  # the plan orders its rows and columns
        total += METADATA_PER_ROW * (t.shape[0] + t.shape[1])
    return total


@torch.no_grad()
def estimate_bytes(model: nn.Module, bits: int | dict[str, int], tile: int = TILE) -> int:
    """Estimated size of a lossless format-v2 bundle (default settings) on a ``bits``-bit grid
    (or a grid per stored tensor, name → bits): calibrated entropy of every stored tensor's
    levels + tables + manifest + BN."""
    total: float = METADATA_FIXED
    for name, t in video_tensors(model).items():
        total += tensor_bytes(t, bits if isinstance(bits, int) else bits[name], tile)
    total += BN_BYTES_PER_CHANNEL * sum(m.num_features for m in bn_layers(model).values())
    return int(round(total))


@torch.no_grad()
def nonzero_coefficients(model: nn.Module, qstep: float = 0.1) -> int:
    """Stored values with |c| ≥ q/2 (those HEVC-style rounding at step q would keep)."""
    return int(sum(int((t.abs() >= qstep / 2).sum()) for t in video_tensors(model).values()))
