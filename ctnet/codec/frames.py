"""Tensors ↔ integer frames: the per-tile grid of :mod:`ctnet.quant`, subtractive dither,
padding to a codable size and the order frames take inside a stream.

A tensor is laid out as its 2-D image (``quant.tensor_to_image``), cut into tiles
(``quant.tile_boxes``) and quantised on the per-tile affine grid of ``quant.tile_params``,
the same grid export-aware training simulates, so an undithered lossless bundle decodes to
exactly the values the training forward pass used. Every tile is one frame; frames are
numbered globally in model order (layer by layer, tiles row-major) and that number seeds
the frame's dither noise. A dithered tensor is quantised on the dithered grid of
``quant.tile_params(…, dither=A)`` (levels kept free at each end, so no dithered pixel is
clipped), the grid ``ctnet train --export-dither A`` simulates.

No PyAV here: this module is torch/numpy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import quant
from ..limits import MAX_DITHER

MIN_SIDE = 16  # libx265's smallest comfortable frame side; smaller tiles are wrapped to it


@dataclass
class TensorFrames:
    """One tensor as quantised tiles (model order), with its grid."""

    name: str
    shape: tuple[int, ...]
    image_shape: tuple[int, int]
    boxes: list[tuple[int, int, int, int]]
    pixels: list[np.ndarray]  # per tile, unpadded, uint16
    scale: np.ndarray  # (tiles,) float32
    zero_point: np.ndarray  # (tiles,) int64
    first_frame: int  # global index of the first tile

    @property
    def frame_ids(self) -> range:
        return range(self.first_frame, self.first_frame + len(self.boxes))


def check_dither(amplitude: float) -> float:
    amplitude = float(amplitude)
    if not (0.0 <= amplitude <= MAX_DITHER) or math.isnan(amplitude):
        raise ValueError(f"dither amplitude must be in [0, {MAX_DITHER:g}] pixel steps, got {amplitude}")
    return amplitude


def dither_offset(seed: int, frame_index: int, shape: tuple[int, int], amplitude: float) -> np.ndarray:
    """Deterministic noise of one frame, uniform in [−amplitude/2, amplitude/2) pixel steps,
    seeded by (seed, frame index) — the same on every machine (NumPy's PCG64)."""
    rng = np.random.default_rng([int(seed), int(frame_index)])
    return ((rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(amplitude)).astype(np.float32)


def _offset_image(image_shape, boxes, first_frame: int, seed: int, amplitude: float) -> torch.Tensor:
    offset = np.zeros(image_shape, np.float32)
    for k, (r0, c0, h, w) in enumerate(boxes):
        offset[r0:r0 + h, c0:c0 + w] = dither_offset(seed, first_frame + k, (h, w), amplitude)
    return torch.from_numpy(offset)


def quantize_tensor(name: str, t: torch.Tensor, *, bits: int, tile: int = quant.TILE, first_frame: int = 0,
                    dither: float = 0.0, seed: int = 0) -> TensorFrames:
    """Quantise one tensor into frames exactly as ``quant.fake_quantize`` does, with the same
    ``dither`` (its grid and, given the offset this draws, its values)."""
    img = quant.tensor_to_image(t.detach().cpu().float())
    img_h, img_w = img.shape
    boxes = quant.tile_boxes(img_h, img_w, tile)
    offset = None
    scale, zero_point = quant.tile_params(img, bits, tile, dither=dither)  # with dither: its margin (quant.dither_margin)
    if dither > 0:
        offset = _offset_image(tuple(img.shape), boxes, first_frame, seed, dither)
    pixels, scale, zero_point = quant.quantize_image(img, bits, tile, scale, zero_point, offset=offset)
    pix = pixels.numpy().astype(np.uint16)
    tiles = [np.ascontiguousarray(pix[r0:r0 + h, c0:c0 + w]) for r0, c0, h, w in boxes]
    return TensorFrames(name, tuple(t.shape), (img_h, img_w), boxes, tiles,
                        scale.flatten().numpy().astype(np.float32), zero_point.flatten().numpy().astype(np.int64),
                        first_frame)


def dequantize_tensor(pixels: list[np.ndarray], scale, zero_point, shape: tuple[int, ...], *, tile: int = quant.TILE,
                      first_frame: int = 0, dither: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Frames of one tensor (model order, unpadded) → the float32 tensor they decode to:
    ``(pixel − zero_point − offset)·scale`` per tile, the arithmetic of
    ``quant.dequantize_image`` (same float32 operations, so bit-identical results; a test
    holds them equal) done tile by tile in NumPy, which is several times faster."""
    h, w = image_shape(shape)
    boxes = quant.tile_boxes(h, w, tile)
    if len(pixels) != len(boxes):
        raise ValueError(f"expected {len(boxes)} frames, got {len(pixels)}")
    scale = np.asarray(scale, np.float32).reshape(-1)
    zero_point = np.asarray(zero_point, np.int64).reshape(-1)
    img = np.empty((h, w), np.float32)
    for k, ((r0, c0, th, tw), p) in enumerate(zip(boxes, pixels)):
        if p.shape != (th, tw):
            raise ValueError(f"frame of shape {p.shape} where the layout needs {(th, tw)}")
        x = (p.astype(np.int32) - np.int32(zero_point[k])).astype(np.float32)
        if dither > 0:
            x -= dither_offset(seed, first_frame + k, (th, tw), dither)
        img[r0:r0 + th, c0:c0 + tw] = x * scale[k]
    return quant.image_to_tensor(torch.from_numpy(img), tuple(shape)).contiguous()


image_shape = quant.image_shape


def coded_size(height: int, width: int, *, min_side: int = MIN_SIDE, even: bool = False,
               square: int | None = None, max_aspect: int = 0) -> tuple[int, int]:
    """Frame size a (height, width) tile is coded at: at least ``min_side`` on each side,
    the short side at least 1/``max_aspect`` of the long one (when given), rounded up to
    even sizes for 4:2:0; with ``square``, every tile is padded to that."""
    if square:
        return square, square
    h, w = max(height, min_side), max(width, min_side)
    if even:
        h, w = h + h % 2, w + w % 2
    if max_aspect:
        h, w = max(h, -(-w // max_aspect)), max(w, -(-h // max_aspect))
        if even:
            h, w = h + h % 2, w + w % 2
    return h, w


def pad_frame(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Circular padding (the tile repeated) up to ``size``; the decoder crops it away."""
    h, w = pixels.shape
    if (h, w) == tuple(size):
        return pixels
    return np.pad(pixels, ((0, size[0] - h), (0, size[1] - w)), mode="wrap")


def similarity_order(frames: np.ndarray) -> list[int]:
    """Greedy nearest-neighbour tour on mean squared pixel difference, from frame 0; ties go
    to the lowest index. Distances are computed exactly (integer pixels in float64), so the
    order is the same on every machine."""
    n = len(frames)
    if n <= 2:
        return list(range(n))
    x = frames.reshape(n, -1).astype(np.float64)
    norms = (x * x).sum(1)
    dist = norms[:, None] + norms[None, :] - 2.0 * (x @ x.T)
    visited = np.zeros(n, bool)
    order = [0]
    visited[0] = True
    for _ in range(n - 1):
        row = np.where(visited, np.inf, dist[order[-1]])
        nxt = int(np.argmin(row))
        order.append(nxt)
        visited[nxt] = True
    return order


ORDERS = ("similarity", "natural")


def stream_order(frames: np.ndarray, order: str) -> list[int]:
    if order == "similarity":
        return similarity_order(frames)
    if order == "natural":
        return list(range(len(frames)))
    raise ValueError(f"frame order must be one of {ORDERS}, got {order!r}")


__all__ = ["MIN_SIDE", "MAX_DITHER", "ORDERS", "TensorFrames", "check_dither", "coded_size", "dequantize_tensor",
           "dither_offset", "image_shape", "pad_frame", "quantize_tensor", "similarity_order",
           "stream_order"]
