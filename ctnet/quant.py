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

A **dithered** grid (subtractive dither of amplitude A pixel steps, ``ctnet encode --dither A``)
keeps ``m = ⌊A/2⌋ + 1`` levels free at each end (:func:`dither_margin`), so the tile's range
maps onto ``2^b − 1 − 2m`` levels and no dithered pixel is ever clipped. The codec and
``--export-dither`` training both take that grid from :func:`_grid_params`.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch

from .limits import BIT_DEPTHS

TILE = 128
_CPU_CHUNK = 1 << 18  # elements: what the STE's elementwise passes work on at once on a CPU


def tensor_to_image(t: torch.Tensor) -> torch.Tensor:
    """Lay a parameter out as its exported 2-D image: (O, I, Kh, Kw) → (O·Kh, I·Kw),
    matrices unchanged, anything else (vectors, ConvNeXt's (C, 1, 1) layer scale) → (1, N)."""
    if t.dim() == 4:
        o, i, kh, kw = t.shape
        return t.permute(0, 2, 1, 3).reshape(o * kh, i * kw)
    if t.dim() == 2:
        return t
    return t.reshape(1, -1)


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
    return 1, math.prod(shape)


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


def _tiles(t: torch.Tensor, tile: int) -> torch.Tensor:
    """The tensor's exported image in float32 (detached), zero-padded to whole tiles and viewed
    as (tile rows, tile, tile cols, tile): every per-tile statistic is then a dense reduction
    over dims (1, 3) and every per-tile value broadcasts from (rows, 1, cols, 1); no scatter
    (atomics on a GPU) and no gather. Padding with 0 changes no tile's range, which contains 0."""
    h, w = image_shape(t.shape)
    rows, cols = tile_grid(h, w, tile)
    src = t.detach()
    if rows * tile == h and cols * tile == w and t.dim() <= 2 and src.dtype == torch.float32:
        return src.reshape(h, w).view(rows, tile, cols, tile) if src.is_contiguous() else \
            src.reshape(h, w).contiguous().view(rows, tile, cols, tile)
    buf = torch.empty(rows * tile, cols * tile, dtype=torch.float32, device=t.device)
    buf[h:].zero_()
    buf[:h, w:].zero_()
    region = buf[:h, :w]
    if t.dim() == 4:  # one kernel row at a time: several times faster on a CPU than the 4-D permute
        o, i, kh, kw = t.shape
        view = region.view(o, kh, i, kw)
        for k in range(kh):
            view[:, k].copy_(src[:, :, k])
    else:
        region.copy_(src.reshape(h, w))
    return buf.view(rows, tile, cols, tile)


def dither_margin(amplitude: float) -> int:
    """Levels a dithered grid keeps free at each end: ``⌊amplitude/2⌋ + 1`` (0 without dither).
    With an offset in [−A/2, A/2) no pixel is then clipped, so the decoded error stays within
    half a step."""
    return int(amplitude // 2) + 1 if amplitude > 0 else 0


def _grid_params(tiles: torch.Tensor, bits: int, dither: float = 0.0):
    """Per-tile (scale, zero_point) of tiles viewed (rows, tile, cols, tile), shaped (rows, 1, cols, 1);
    with ``dither`` > 0 the dithered grid (its margin of :func:`dither_margin` levels at each end)."""
    if bits not in BIT_DEPTHS:
        raise ValueError(f"bit depth must be {BIT_DEPTHS[0]}..{BIT_DEPTHS[-1]}, got {bits}")
    # the range of every tile extended to contain 0 (padding is 0, so it contains 0 already
    # where there is padding; the clamps do it for the others)
    lo = tiles.amin(dim=3, keepdim=True).amin(dim=1, keepdim=True).clamp_(max=0)  # inner dim first: faster
    hi = tiles.amax(dim=3, keepdim=True).amax(dim=1, keepdim=True).clamp_(min=0)
    if not dither > 0:
        levels = float(2**bits - 1)
        scale = (hi - lo) / levels
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all-zero tile
        zero_point = torch.round(-lo / scale).clamp(0, levels).to(torch.int64)
        return scale, zero_point
    margin = dither_margin(dither)
    usable = 2**bits - 1 - 2 * margin
    # the step as dithered bundles have always been written: the range in float64, rounded
    # once to float32 (the undithered grid above divides in float32: both stay as they were)
    scale = ((hi.double() - lo.double()) / usable).to(torch.float32)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-lo / scale).to(torch.int64) + margin
    return scale, zero_point


def _tile_params_flat(t: torch.Tensor, bits: int, tile: int, dither: float = 0.0):
    """Per-tile (scale, zero_point) as flat vectors, plus the element → tile index."""
    if bits not in BIT_DEPTHS:
        raise ValueError(f"bit depth must be {BIT_DEPTHS[0]}..{BIT_DEPTHS[-1]}, got {bits}")
    scale, zero_point = _grid_params(_tiles(t, tile), bits, dither)
    return scale.reshape(-1), zero_point.reshape(-1), tile_index(t.shape, tile, t.device)


class ExportGrid(NamedTuple):
    """A tensor's export grid at ``bits`` (dithered or not): its image as tiles (rows, tile, cols,
    tile), float32, detached, zero-padded; per-tile scale and zero point (float32) shaped
    (rows, 1, cols, 1)."""

    tiles: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    shape: torch.Size

    def to_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Values laid out like ``tiles`` → the tensor's own layout (a view, padding cropped)."""
        rows, tile, cols, _ = self.tiles.shape
        h, w = image_shape(self.shape)
        return image_to_tensor(x.reshape(rows * tile, cols * tile)[:h, :w], self.shape)

    def write_tensor(self, x: torch.Tensor, out: torch.Tensor, factor: torch.Tensor | None = None) -> torch.Tensor:
        """``out`` (the tensor's shape, any strides) ← values laid out like ``tiles``
        (× ``factor``). A 4-D tensor is written one kernel row at a time: the same copy, but
        three times faster on a CPU than through the 4-D permuted view."""
        view = self.to_tensor(x)
        pairs = [(view[:, :, k], out[:, :, k]) for k in range(self.shape[2])] if len(self.shape) == 4 else [(view, out)]
        for src, dst in pairs:
            if factor is None:
                dst.copy_(src)
            else:
                torch.mul(src, factor, out=dst)
        return out


_SHARED: dict | None = None  # id(tensor) → (tensor, key, grid) while a shared_export_grids() scope is open


@contextlib.contextmanager
def shared_export_grids():
    """Within this scope every tensor's export grid is computed once per (version, bits, tile)
    and shared: one training step's straight-through forward (``fake_quantize``) and the rate
    proxy on the export grid then read the same tile statistics. Any in-place update of a
    tensor (the optimizer step) bumps its version and so invalidates its entry; leaving the
    scope drops them all. Nested scopes share the outermost one."""
    global _SHARED
    outer = _SHARED
    if outer is None:
        _SHARED = {}
    try:
        yield
    finally:
        if outer is None:
            _SHARED = None


def export_grid(t: torch.Tensor, bits: int, tile: int = TILE, dither: float = 0.0) -> ExportGrid:
    """The export grid of ``t`` (see :class:`ExportGrid`; with ``dither`` > 0 the grid of a
    bundle dithered by that amplitude), shared within a :func:`shared_export_grids` scope."""
    shared = _SHARED
    if shared is not None:
        try:
            key = (bits, tile, float(dither), t._version, t.data_ptr(), t.dtype, t.device, t.shape)
        except RuntimeError:  # inference tensors have no version counter
            shared = key = None
        hit = shared.get(id(t)) if shared is not None else None
        if hit is not None and hit[0] is t and hit[1] == key:
            return hit[2]
    tiles = _tiles(t, tile)
    scale, zero_point = _grid_params(tiles, bits, dither)
    grid = ExportGrid(tiles, scale, zero_point.to(torch.float32), t.shape)
    if shared is not None:
        shared[id(t)] = (t, key, grid)  # holding t keeps its id from being reused
    return grid


def tile_params(img: torch.Tensor, bits: int, tile: int = TILE,
                dither: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile (scale, zero_point) of a 2-D image, each (rows, cols), float32 and int64; with
    ``dither`` > 0 those of the dithered grid (the codec's for ``--dither``)."""
    scale, zero_point, _ = _tile_params_flat(img, bits, tile, dither)
    h, w = img.shape
    grid = tile_grid(h, w, tile)
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
    h, w = img.shape
    grid = tile_grid(h, w, tile)
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


def _decode(tiles, scale, zero, top: float):
    """levels = clamp(round(v/step) + zero, 0, 2^b − 1) − zero; decoded = levels·step: the same
    float32 operations, operand by operand, as quantize_image → dequantize_image."""
    return ((torch.round(tiles / scale) + zero).clamp(0, top) - zero) * scale


# torch.compile's C++ build (here and in ctnet.rate, which imports this module) looks for CUDA and
# logs "No CUDA runtime is found" on a CPU-only machine with a CUDA toolkit: noise before ctnet's
# own output and its one-line errors, so that logger only reports errors
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

# torch.compile(_decode) on the CPU; False once it failed or is off
_DECODE_COMPILED: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor] | Literal[False] | None = None


def _compiled_decode(tiles: torch.Tensor):
    """The compiled decode where it is bit-exact and pays: on the CPU (C++ with IEEE division
    and round-half-even, checked against the eager ops in tests/test_quant.py) for tensors of
    64 Ki elements or more; CTNET_COMPILE=0 turns it off, 1 on for every size. Never on CUDA,
    whose generated division need not be correctly rounded (and eager is fast there)."""
    global _DECODE_COMPILED
    flag = os.environ.get("CTNET_COMPILE", "")
    if tiles.device.type != "cpu" or flag == "0" or _DECODE_COMPILED is False or not hasattr(torch, "compile"):
        return None
    if flag != "1" and tiles.numel() < 1 << 16:
        return None
    if _DECODE_COMPILED is None:
        _DECODE_COMPILED = torch.compile(_decode, dynamic=True)
    return _DECODE_COMPILED


class _StraightThrough(torch.autograd.Function):
    """Forward: the export-decoded values; backward: the gradient unchanged."""

    @staticmethod
    def forward(ctx, t, grid: ExportGrid, bits: int, offset: torch.Tensor | None):
        global _DECODE_COMPILED
        tiles, scale, zero = grid.tiles, grid.scale, grid.zero
        top = float(2**bits - 1)
        compiled = _compiled_decode(tiles) if offset is None else None
        if compiled is not None:
            try:
                return grid.write_tensor(compiled(tiles, scale, zero, top),
                                         torch.empty(t.shape, dtype=t.dtype, device=t.device))
            except Exception as e:  # no C++ compiler or an unsupported build: eager is exact too
                _DECODE_COMPILED = False
                warnings.warn(f"torch.compile of the export simulation failed, running it eagerly: {e!s:.200}")
        x = torch.empty_like(tiles)
        rows = tiles.shape[0]
        # on the CPU a few tile rows at a time, so the six passes run in cache
        step = rows if tiles.is_cuda else max(1, _CPU_CHUNK // max(1, tiles[0].numel()))
        for a in range(0, rows, step):
            b = a + step  # the operations of _decode, in place
            v = torch.div(tiles[a:b], scale[a:b], out=x[a:b])
            if offset is None:
                v.round_().add_(zero[a:b]).clamp_(0, top).sub_(zero[a:b]).mul_(scale[a:b])
            else:  # quantize_image → dequantize_image with the offset, operand by operand
                v.add_(offset[a:b]).round_().add_(zero[a:b]).clamp_(0, top).sub_(zero[a:b])
                v.sub_(offset[a:b]).mul_(scale[a:b])
        return grid.write_tensor(x, torch.empty(t.shape, dtype=t.dtype, device=t.device))

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


def fake_quantize(t: torch.Tensor, bits: int, tile: int = TILE, dither: float = 0.0,
                  offset: torch.Tensor | None = None) -> torch.Tensor:
    """Straight-through export simulation: the forward value is exactly what an N-bit bundle
    decodes to; the gradient passes through unchanged. Works in float32 throughout (integer
    levels below 2^24 are exact there), so without dither this equals
    ``image_to_tensor(dequantize_image(*quantize_image(tensor_to_image(t), bits)))``.
    The tile statistics come from :func:`export_grid` (shared within a training step).

    With ``dither`` > 0 (pixel steps) it simulates a dithered bundle: the dithered grid (its
    margin, :func:`dither_margin`) and a subtractive offset added before rounding and removed
    after. A bundle's offsets are seeded by its layout (each tile's global frame number), which
    a layer does not know, so a fresh offset, uniform in [−dither/2, dither/2) like the codec's,
    is drawn from torch's generator at every call: training sees the distribution of the
    dither's error rather than one draw. ``offset`` (pixel steps, shaped like the tensor's
    exported image) fixes it instead: with the codec's offset the value is exactly what
    that bundle decodes to."""
    grid = export_grid(t, bits, tile, dither)
    tiles = None
    if dither > 0:
        if offset is None:
            noise = torch.rand(grid.tiles.shape, dtype=torch.float32, device=t.device)
            tiles = noise.sub_(0.5).mul_(float(dither))  # the codec's (u − 0.5)·A, in float32
        else:
            if tuple(offset.shape) != image_shape(t.shape):
                raise ValueError(f"dither offset of shape {tuple(offset.shape)} for a tensor whose image is "
                                 f"{image_shape(t.shape)}")
            tiles = _tiles(offset.to(device=t.device, dtype=torch.float32), tile)
    elif offset is not None:
        raise ValueError("a dither offset needs a dither amplitude > 0")
    return _StraightThrough.apply(t, grid, bits, tiles)


def export_step(t: torch.Tensor, bits: int, tile: int = TILE, dither: float = 0.0) -> torch.Tensor:
    """Each element's export quantisation step (its tile's scale, on the dithered grid with
    ``dither`` > 0), detached, shaped like ``t``."""
    grid = export_grid(t, bits, tile, dither)
    return grid.to_tensor(grid.scale.expand(grid.tiles.shape)).to(t.dtype).contiguous()


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
