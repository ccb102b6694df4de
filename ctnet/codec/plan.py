"""FramePlan: where every integer level of a model goes in a format-v2 bundle's frames.

The quantisation grid is the one export-aware training simulates (``ctnet.quant``: each
tensor laid out as its (O·Kh, I·Kw) image, per-tile scale and zero point). Format v2 keeps
that grid and changes only where the *signed levels* ``pixel − zero_point`` are placed,
because on rate-trained weights the arrangement decides the bytes (the demo's λ = 5e-7
CTNet-18, x265 lossless medium, weight stream: the v1 tensor images 529,638 B; frequency
planes in 128-px frames 368,381 B, with rows/columns by non-zero class 347,874 B, in 256-px
frames 341,453 B; x265 presets and CTU size moved it < 1 % — ``python bench/layout_study.py``):

* a spatial DCT convolution (O, I, Kh, Kw) becomes Kh·Kw *frequency planes* of O×I levels
  (plane (kh, kw) holds that DCT frequency of every filter);
* channel-DCT 1×1 matrices and the classifier stay one R×C plane;
* vectors (and any tensor that is neither 4-D nor 2-D) are one 1×N plane.

Each layer's rows and columns may be reordered (``order="count"``): every row (and column)
gets a *class*, its rank among 8 quantiles of the per-row non-zero count over all the
layer's planes, and rows are stably sorted by class, densest first. The classes, not a full
permutation, are stored (~3 bits a row instead of log2(n!)/n); 8 classes gave the smallest
bundle (2/4/8/16 classes: 376,232 / 372,627 / 371,455 / 371,582 B; natural order 386,431 B).

A layer's planes are laid side by side (as many as fit the frame width) and stacked, and the
result is cut into ``frame``×``frame`` frames padded with level 0. Frames wholly at level 0
are not coded; the bundle's tables say which are. Every frame belongs to one layer, so
per-layer bytes are the sizes of its frames' packets.

No PyAV here: this module is numpy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ORDER_CLASSES = 8
ORDERS = ("count", "natural")
FRAME_SIZES = (64, 128, 256)


@dataclass(frozen=True)
class LayerPlan:
    """How one tensor's levels are laid out as frames."""

    name: str
    shape: tuple[int, ...]
    planes: int  # number of planes
    plane_h: int
    plane_w: int
    per_row: int  # planes side by side in the layer's canvas
    first_frame: int  # plan index of the layer's first frame
    frames: int  # frames of the layer (coded or not)
    frame: int

    @property
    def ordered(self) -> bool:
        """Whether rows and columns carry an order (1-row or 1-column planes do not)."""
        return self.plane_h > 1 and self.plane_w > 1

    @property
    def canvas(self) -> tuple[int, int]:
        bands = -(-self.planes // self.per_row)
        return bands * self.plane_h, self.per_row * self.plane_w

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.canvas
        return -(-h // self.frame), -(-w // self.frame)

    def plane_index(self, kh: int, kw: int) -> int:
        return kh * self.shape[3] + kw if len(self.shape) == 4 else 0

    def frame_contents(self, k: int) -> dict:
        """What frame ``k`` of this layer holds: the planes (as (kh, kw) for spatial layers)
        and the range of (reordered) rows and columns of each, for display."""
        fr, fc = divmod(k, self.grid[1])
        r0, c0 = fr * self.frame, fc * self.frame
        out = []
        h, w = self.canvas
        for p in range(self.planes):
            band, slot = divmod(p, self.per_row)
            pr0, pc0 = band * self.plane_h, slot * self.plane_w
            rows = (max(r0, pr0) - pr0, min(r0 + self.frame, pr0 + self.plane_h) - pr0)
            cols = (max(c0, pc0) - pc0, min(c0 + self.frame, pc0 + self.plane_w) - pc0)
            if rows[0] < rows[1] and cols[0] < cols[1]:
                freq = divmod(p, self.shape[3]) if len(self.shape) == 4 else None
                out.append({"plane": p, "frequency": freq, "rows": rows, "cols": cols})
        return {"layer": self.name, "frame": k, "parts": out}


def arrangement(shape: tuple[int, ...]) -> str:
    return {4: "frequency planes", 2: "matrix"}.get(len(shape), "vector")


def plane_geometry(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(planes, plane height, plane width) of a tensor of ``shape``: anything not 4-D or 2-D
    (vectors, ConvNeXt's (C, 1, 1) layer scale) is one 1×N plane."""
    if len(shape) == 4:
        o, i, kh, kw = shape
        return kh * kw, o, i
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return 1, 1, math.prod(shape)


@dataclass(frozen=True)
class FramePlan:
    frame: int
    layers: tuple[LayerPlan, ...]

    @property
    def total_frames(self) -> int:
        return sum(lp.frames for lp in self.layers)

    def layer_of_frame(self) -> list[int]:
        """For every plan frame, the index of its layer."""
        return [i for i, lp in enumerate(self.layers) for _ in range(lp.frames)]

    def describe(self, k: int) -> dict:
        """What plan frame ``k`` holds (``LayerPlan.frame_contents``)."""
        for lp in self.layers:
            if lp.first_frame <= k < lp.first_frame + lp.frames:
                return lp.frame_contents(k - lp.first_frame)
        raise IndexError(k)


def make_plan(tensors: list[tuple[str, tuple[int, ...]]], frame: int) -> FramePlan:
    """The plan of tensors (name, shape) in model order with ``frame``×``frame`` frames."""
    if frame not in FRAME_SIZES:
        raise ValueError(f"frame size must be one of {FRAME_SIZES}, got {frame}")
    layers, first = [], 0
    for name, shape in tensors:
        planes, h, w = plane_geometry(tuple(shape))
        per_row = max(1, frame // w) if (w < frame and h <= frame) else 1
        per_row = min(per_row, planes)
        lp = LayerPlan(name, tuple(int(s) for s in shape), planes, h, w, per_row, first, 0, frame)
        gh, gw = lp.grid
        lp = LayerPlan(name, lp.shape, planes, h, w, per_row, first, gh * gw, frame)
        layers.append(lp)
        first += lp.frames
    return FramePlan(frame, tuple(layers))


# --- levels ↔ planes ↔ frames -------------------------------------------------------------------

def to_planes(levels: np.ndarray) -> np.ndarray:
    """Tensor-layout levels → (planes, h, w)."""
    if levels.ndim == 4:
        o, i, kh, kw = levels.shape
        return levels.transpose(2, 3, 0, 1).reshape(kh * kw, o, i)
    if levels.ndim == 2:
        return levels[None]
    return levels.reshape(1, 1, -1)


def from_planes(planes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 4:
        o, i, kh, kw = shape
        return planes.reshape(kh, kw, o, i).transpose(2, 3, 0, 1)
    return planes.reshape(shape)


def order_classes(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row and per-column class (0 … ORDER_CLASSES−1): the rank of its non-zero count
    among the count's quantiles over the layer."""
    nz = planes != 0
    return _classes(nz.sum(axis=(0, 2))), _classes(nz.sum(axis=(0, 1)))


def _classes(counts: np.ndarray) -> np.ndarray:
    q = np.linspace(0, 1, ORDER_CLASSES + 1)[1:-1]
    edges = np.unique(np.quantile(counts, q, method="lower"))
    return np.digitize(counts, edges).astype(np.uint8)


def permutation(classes: np.ndarray) -> np.ndarray:
    """Rows (or columns) in coded order: densest class first, ties in natural order."""
    return np.argsort(-classes.astype(np.int16), kind="stable")


def layer_frames(planes: np.ndarray, lp: LayerPlan, row_classes=None, col_classes=None) -> np.ndarray:
    """(frames, S, S) int32 levels of one layer, in plan order."""
    if row_classes is not None:
        planes = planes[:, permutation(row_classes)]
    if col_classes is not None:
        planes = planes[:, :, permutation(col_classes)]
    gh, gw = lp.grid
    s = lp.frame
    canvas = np.zeros((gh * s, gw * s), np.int32)
    for p in range(lp.planes):
        band, slot = divmod(p, lp.per_row)
        canvas[band * lp.plane_h:(band + 1) * lp.plane_h, slot * lp.plane_w:(slot + 1) * lp.plane_w] = planes[p]
    return canvas.reshape(gh, s, gw, s).transpose(0, 2, 1, 3).reshape(gh * gw, s, s)


def layer_planes(frames: np.ndarray, lp: LayerPlan, row_classes=None, col_classes=None) -> np.ndarray:
    """Inverse of :func:`layer_frames`: (planes, h, w) in natural row/column order."""
    gh, gw = lp.grid
    s = lp.frame
    canvas = frames.reshape(gh, gw, s, s).transpose(0, 2, 1, 3).reshape(gh * s, gw * s)
    planes = np.empty((lp.planes, lp.plane_h, lp.plane_w), frames.dtype)
    for p in range(lp.planes):
        band, slot = divmod(p, lp.per_row)
        planes[p] = canvas[band * lp.plane_h:(band + 1) * lp.plane_h, slot * lp.plane_w:(slot + 1) * lp.plane_w]
    if col_classes is not None:
        out = np.empty_like(planes)
        out[:, :, permutation(col_classes)] = planes
        planes = out
    if row_classes is not None:
        out = np.empty_like(planes)
        out[:, permutation(row_classes)] = planes
        planes = out
    return planes


# --- levels ↔ pixels of a container ---------------------------------------------------------------

def container_offset(container_bits: int) -> int:
    """The pixel value of level 0 in a ``container_bits`` frame: mid-range, so negative and
    positive levels both fit."""
    return 1 << (container_bits - 1)


def to_pixels(frames: np.ndarray, container_bits: int, first_frame: int = 0) -> tuple[np.ndarray, list]:
    """Levels → pixels (uint16) and escapes [(plan frame, flat position, level)] for the
    levels that do not fit the container; those pixels hold level 0."""
    off = container_offset(container_bits)
    # levels are within ±2^12 and the offset ≤ 2^15: int32 holds the sum (half the memory of int64)
    pix = frames.astype(np.int32, copy=False) + np.int32(off)
    bad = (pix < 0) | (pix > (1 << container_bits) - 1)
    escapes = []
    if bad.any():
        for f, pos in zip(*np.nonzero(bad.reshape(len(frames), -1))):
            escapes.append((first_frame + int(f), int(pos), int(frames.reshape(len(frames), -1)[f, pos])))
        pix[bad] = off
    return pix.astype(np.uint16), escapes


def from_pixels(pixels: np.ndarray, container_bits: int) -> np.ndarray:
    return pixels.astype(np.int32) - container_offset(container_bits)


def entropy_bits(pixels_per_tile) -> float:
    """Zeroth-order entropy in bits, summed over tiles, of integer tiles."""
    total = 0.0
    for p in pixels_per_tile:
        _, counts = np.unique(np.asarray(p), return_counts=True)
        n = counts.sum()
        total += float((counts * np.log2(n / counts)).sum())
    return total


def varints(values) -> bytes:
    out = bytearray()
    for v in values:
        v = int(v)
        if v < 0:
            raise ValueError("varints are unsigned")
        while True:
            b = v & 0x7F
            v >>= 7
            out.append(b | (0x80 if v else 0))
            if not v:
                break
    return bytes(out)


def read_varints(data: bytes, count: int, pos: int = 0, limit: int = 1 << 62) -> tuple[list[int], int]:
    out = []
    for _ in range(count):
        v, shift = 0, 0
        while True:
            if pos >= len(data):
                raise ValueError("varint runs past the end of the data")
            b = data[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift > 63:
                raise ValueError("varint too long")
        if v > limit:
            raise ValueError(f"value {v} out of range")
        out.append(v)
    return out, pos


def zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def unzigzag(u: int) -> int:
    return u >> 1 if not u & 1 else -((u + 1) >> 1)


__all__ = ["FRAME_SIZES", "FramePlan", "LayerPlan", "ORDERS", "ORDER_CLASSES", "arrangement", "container_offset",
           "entropy_bits", "from_pixels", "from_planes", "layer_frames", "layer_planes", "make_plan",
           "order_classes", "permutation", "plane_geometry", "read_varints", "to_pixels", "to_planes", "unzigzag",
           "varints", "zigzag"]

