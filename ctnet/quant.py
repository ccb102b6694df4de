"""Export quantisation shared by training (straight-through estimator) and the codec.

Every exported parameter becomes a 2-D image (SPEC §4), cut into tiles of at most
``TILE``×``TILE``; each tile gets its own affine grid at ``bits`` bits. Training and export
call the same functions, so an export-aware model trains on exactly the values the 8-bit
bundle stores.

The grid is the standard affine one: ``scale = (hi − lo)/(2^b − 1)`` over the tile's range
extended to contain 0, ``zero_point = round(−lo/scale)``, ``pixel = round(v/scale) + zero_point``.
It differs from SPEC's literal ``round((v − centre)(2^b − 1)/span + 2^(b−1))`` on purpose:
that one overflows at the tile maximum, leaves 0 between two levels (so zero coefficients
decode to a small bias) and is not idempotent, so re-encoding a decoded model would move it.
Here 0 is exactly a level, re-quantising a decoded tile gives the same pixels, and the error
never exceeds half a step.
"""
from __future__ import annotations

import math

import torch

TILE = 128
SUPPORTED_BITS = (8, 10, 12)


def tensor_to_image(t: torch.Tensor) -> torch.Tensor:
    """Lay a parameter out as its exported 2-D image: (O, I, Kh, Kw) → (O·Kh, I·Kw),
    matrices unchanged, vectors → (1, N)."""
    if t.dim() == 4:
        o, i, kh, kw = t.shape
        return t.permute(0, 2, 1, 3).reshape(o * kh, i * kw)
    if t.dim() == 2:
        return t
    if t.dim() == 1:
        return t.reshape(1, -1)
    raise ValueError(f"cannot lay out a {t.dim()}-D tensor as an image")


def image_to_tensor(img: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Inverse of :func:`tensor_to_image`."""
    if len(shape) == 4:
        o, i, kh, kw = shape
        return img.reshape(o, kh, i, kw).permute(0, 2, 1, 3)
    return img.reshape(shape)


def image_shape(shape: tuple[int, ...] | torch.Size) -> tuple[int, int]:
    """Shape of the exported image of a tensor of ``shape``."""
    if len(shape) == 4:
        return shape[0] * shape[2], shape[1] * shape[3]
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 1:
        return 1, shape[0]
    raise ValueError(f"cannot lay out a {len(shape)}-D tensor as an image")


def tile_grid(height: int, width: int, tile: int = TILE) -> tuple[int, int]:
    """Number of tile rows and columns covering an image (edge tiles may be smaller)."""
    return -(-height // tile), -(-width // tile)


def tile_boxes(height: int, width: int, tile: int = TILE) -> list[tuple[int, int, int, int]]:
    """(row0, col0, height, width) of every tile, row-major."""
    rows, cols = tile_grid(height, width, tile)
    return [(r * tile, c * tile, min(tile, height - r * tile), min(tile, width - c * tile))
            for r in range(rows) for c in range(cols)]


_TILE_INDEX: dict[tuple, torch.Tensor] = {}


def tile_index(shape, tile: int = TILE, device=None) -> torch.Tensor:
    """For every element of a tensor of ``shape`` (in its own layout), the row-major index of
    the tile its pixel falls in. Cached per (shape, tile, device): training calls it every step."""
    key = (tuple(shape), tile, str(device or "cpu"))
    ids = _TILE_INDEX.get(key)
    if ids is None:
        h, w = image_shape(shape)
        cols = tile_grid(h, w, tile)[1]
        img = (torch.arange(h)[:, None] // tile) * cols + torch.arange(w)[None, :] // tile
        ids = image_to_tensor(img, shape).contiguous().to(device)
        _TILE_INDEX[key] = ids
    return ids


def _tile_params_flat(t: torch.Tensor, bits: int, tile: int):
    """Per-tile (scale, zero_point) as flat vectors, plus the element → tile index."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bit depth must be one of {SUPPORTED_BITS}, got {bits}")
    ids = tile_index(t.shape, tile, t.device)
    n = int(math.prod(tile_grid(*image_shape(t.shape), tile)))
    flat, idx = t.detach().float().reshape(-1), ids.reshape(-1)
    # starting from 0 extends every tile's range to contain 0
    lo = torch.zeros(n, device=t.device).scatter_reduce(0, idx, flat, "amin")
    hi = torch.zeros(n, device=t.device).scatter_reduce(0, idx, flat, "amax")
    levels = float(2**bits - 1)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all-zero tile
    zero_point = torch.round(-lo / scale).clamp(0, levels).to(torch.int64)
    return scale, zero_point, ids


def tile_params(img: torch.Tensor, bits: int, tile: int = TILE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile (scale, zero_point) of a 2-D image, each (rows, cols), float32 and int64."""
    scale, zero_point, _ = _tile_params_flat(img, bits, tile)
    grid = tile_grid(*img.shape, tile)
    return scale.reshape(grid), zero_point.reshape(grid)


def _quantize(t: torch.Tensor, bits: int, tile: int, scale=None, zero_point=None, offset=None):
    if scale is None or zero_point is None:
        scale, zero_point, ids = _tile_params_flat(t, bits, tile)
    else:
        ids = tile_index(t.shape, tile, t.device)
        scale, zero_point = scale.reshape(-1).to(t.device), zero_point.reshape(-1).to(t.device)
    x = t.detach().float() / scale[ids]
    if offset is not None:
        x = x + offset
    pixels = (torch.round(x) + zero_point[ids].to(x.dtype)).clamp(0, 2**bits - 1).to(torch.int64)
    return pixels, scale, zero_point, ids


def quantize_image(img: torch.Tensor, bits: int, tile: int = TILE,
                   scale: torch.Tensor | None = None, zero_point: torch.Tensor | None = None,
                   offset: torch.Tensor | None = None):
    """Image → integer pixels (int64, same shape), per-tile scale and zero point (rows, cols).

    ``offset`` (pixel units, same shape) is added before rounding: subtractive dither.
    """
    pixels, scale, zero_point, _ = _quantize(img, bits, tile, scale, zero_point, offset)
    grid = tile_grid(*img.shape, tile)
    return pixels, scale.reshape(grid), zero_point.reshape(grid)


def dequantize_image(pixels: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                     tile: int = TILE, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Integer pixels → float32 values: ``(pixel − zero_point − offset)·scale``."""
    ids = tile_index(pixels.shape, tile, pixels.device)
    scale = scale.reshape(-1).to(device=pixels.device, dtype=torch.float32)
    zero_point = zero_point.reshape(-1).to(pixels.device)
    x = (pixels - zero_point[ids]).to(torch.float32)
    if offset is not None:
        x = x - offset
    return x * scale[ids]


def fake_quantize(t: torch.Tensor, bits: int, tile: int = TILE) -> torch.Tensor:
    """Straight-through export simulation: the forward value is exactly what an N-bit bundle
    decodes to (without dither); the gradient passes through unchanged. Works in the
    tensor's own layout (same tiles as its image) and in float32 throughout: integer levels
    below 2^24 are exact there, so this equals ``dequantize_image(quantize_image(...))``."""
    scale, zero_point, ids = _tile_params_flat(t, bits, tile)
    step, zero = scale[ids], zero_point.to(torch.float32)[ids]
    levels = torch.clamp(torch.round(t.detach().float() / step) + zero, 0, 2**bits - 1) - zero
    decoded = levels * step
    # decoded + (t − t) is exactly ``decoded`` in the forward pass; t + (decoded − t) is not.
    return decoded.to(t.dtype) + (t - t.detach())


def export_step(t: torch.Tensor, bits: int, tile: int = TILE) -> torch.Tensor:
    """Each element's export quantisation step (its tile's scale), detached, shaped like ``t``."""
    scale, _, ids = _tile_params_flat(t, bits, tile)
    return scale[ids].to(t.dtype)


def entropy_bits(t: torch.Tensor, bits: int, tile: int = TILE) -> tuple[float, int]:
    """Zeroth-order entropy, summed over tiles, of a tensor's pixels at ``bits`` bits, and the
    number of pixels off their tile's zero point: the inputs of the size estimate that
    training logs (``ctnet.export.estimate_bytes``)."""
    pixels, _, zero_point, ids = _quantize(t, bits, tile)
    n_tiles, levels = len(zero_point), 2**bits
    counts = torch.bincount((ids * levels + pixels).reshape(-1), minlength=n_tiles * levels)
    counts = counts.reshape(n_tiles, levels).double()
    p = counts / counts.sum(1, keepdim=True).clamp(min=1)
    entropy = float(-(counts * torch.log2(torch.where(p > 0, p, torch.ones_like(p)))).sum())
    at_zero = counts.gather(1, zero_point.reshape(-1, 1)).sum()
    return entropy, int(t.numel() - at_zero)


def max_half_step(scale: torch.Tensor) -> float:
    """Largest half quantisation step over a tensor's tiles (the exact-decode error bound)."""
    return float(scale.max()) / 2 if scale.numel() else 0.0
