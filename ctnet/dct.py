"""Orthonormal DCT-II matrices, block DCT over channel matrices and HEVC scan orders.

Pure functions on tensors; no module state. Convention (SPEC §1): forward ``Ŵ = C_h W C_wᵀ``,
inverse ``W = C_hᵀ Ŵ C_w``, so index (0, 0) is DC and frequency grows along both axes.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch


@lru_cache(maxsize=64)
def _dct_matrix_cpu(n: int) -> torch.Tensor:
    # explicitly on the CPU: a call under `with torch.device("meta")` (shape-only model
    # building) must not leave a meta tensor in this cache
    k = torch.arange(n, dtype=torch.float64, device="cpu").unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64, device="cpu").unsqueeze(0)
    c = math.sqrt(2.0 / n) * torch.cos(math.pi * (2 * i + 1) * k / (2 * n))
    c[0] /= math.sqrt(2.0)  # row 0 → sqrt(1/N): makes C orthonormal
    return c


def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The N×N orthonormal DCT-II matrix ``C[k, n] = sqrt(2/N) cos(π(2n+1)k/2N)``."""
    if n < 1:
        raise ValueError(f"DCT size must be ≥ 1, got {n}")
    return _dct_matrix_cpu(n).to(dtype=dtype, device=device)


def dct2(x: torch.Tensor, c_h: torch.Tensor, c_w: torch.Tensor) -> torch.Tensor:
    """Forward 2-D DCT over the last two axes."""
    return c_h @ x @ c_w.transpose(-1, -2)


def idct2(x: torch.Tensor, c_h: torch.Tensor, c_w: torch.Tensor) -> torch.Tensor:
    """Inverse 2-D DCT over the last two axes."""
    return c_h.transpose(-1, -2) @ x @ c_w


def padded_size(n: int, block: int) -> int:
    """``n`` rounded up to a multiple of ``block`` (``block`` 0 = the full matrix, no padding)."""
    return n if block == 0 else -(-n // block) * block


def block_dct2(m: torch.Tensor, block: int, inverse: bool = False) -> torch.Tensor:
    """2-D DCT of every B×B block of a matrix whose sides are multiples of B.

    ``block`` 0 transforms the whole matrix at once (full-size channel DCT).
    """
    h, w = m.shape[-2:]
    if block == 0:
        c_h, c_w = dct_matrix(h, m.dtype, m.device), dct_matrix(w, m.dtype, m.device)
        return idct2(m, c_h, c_w) if inverse else dct2(m, c_h, c_w)
    if h % block or w % block:
        raise ValueError(f"matrix {h}×{w} is not a multiple of block size {block}")
    c = dct_matrix(block, m.dtype, m.device)
    blocks = m.reshape(h // block, block, w // block, block).permute(0, 2, 1, 3)
    out = idct2(blocks, c, c) if inverse else dct2(blocks, c, c)
    return out.permute(0, 2, 1, 3).reshape(h, w)


@lru_cache(maxsize=64)
def diagonal_scan_positions(h: int, w: int) -> tuple[tuple[int, int], ...]:
    """HEVC up-right diagonal scan of an h×w block: anti-diagonals from DC outwards, each
    walked from bottom-left to top-right. Returns (row, col) pairs in scan order."""
    order = []
    for d in range(h + w - 1):
        for row in range(min(d, h - 1), -1, -1):
            col = d - row
            if col < w:
                order.append((row, col))
    return tuple(order)


def zigzag_weights(h: int, w: int) -> torch.Tensor:
    """Scan weight of each (k_h, k_w): position in the diagonal scan mapped linearly from
    1.0 (DC) to h·w (last coefficient)."""
    weights = torch.empty(h, w)
    for pos, (row, col) in enumerate(diagonal_scan_positions(h, w)):
        weights[row, col] = 1.0 + pos
    return weights


def radial_weights(h: int, w: int) -> torch.Tensor:
    """Bounded weight ``1 + u/(H−1) + v/(W−1)`` (1.0 … 3.0) for channel-DCT matrices; a
    linear zig-zag weight would reach H·W there."""
    u = torch.arange(h, dtype=torch.float32).unsqueeze(1) / max(h - 1, 1)
    v = torch.arange(w, dtype=torch.float32).unsqueeze(0) / max(w - 1, 1)
    return 1.0 + u + v
