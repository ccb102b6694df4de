"""A v2 bundle's side tables: everything but the levels, in one compact binary member.

``tables.bin`` is a raw LZMA2 stream (preset 9e; its uncompressed size is in the manifest)
of, in this order:

* ``CTT2`` and the number of layers;
* only in a bundle with a grid per layer (``settings.layer_bits``): every layer's grid bits,
  one byte each, in model order — the decoder checks them against the manifest's;
* every grid tile's scale (float32, exactly what training used), all layers together,
  byte-plane shuffled (the exponent bytes of similar scales compress to almost nothing);
* every tile's zero point (uint8 for grids of up to 8 bits, else uint16, shuffled the same way);
* per ordered layer, its row classes then its column classes (uint8, < 8);
* the coded-frame bitmap (one bit per plan frame, little-endian bit order);
* the escapes: levels that do not fit the container, as varints (delta of the global
  position ``frame · S² + offset``, then the zig-zagged level);
* BatchNorm: ``affine`` — every layer's eval-mode scale then shift as 24-bit floats (float32
  with the last mantissa byte rounded off: relative error ≤ 2^-16), shuffled; ``raw`` —
  weight, bias, running_mean, running_var as float32, shuffled.

Why 24-bit and not float16 for the affine: float16's 2^-11 moved decoded top-1 of the demo's
λ = 1e-5 CTNet-18 by −0.06 pt on the full val split (83.24 → 83.18 %), more than the 0.05 pt
a user should expect from a "lossless" bundle; 24-bit floats cost 4 KB more on CTNet-18.

Measured on the demo's λ = 5e-7 CTNet-18 (699 tiles): the JSON manifest would need about
27 KB for the same grid; see the README for the bundle's metadata bytes.
"""
from __future__ import annotations

import lzma
from dataclasses import dataclass

import numpy as np

from . import plan as PL
from .manifest import BundleError

MAGIC = b"CTT2"
FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 3, "lp": 0, "pb": 0}]


@dataclass
class Tables:
    scales: list[np.ndarray]  # per layer, float32 (tiles,)
    zero_points: list[np.ndarray]  # per layer, int64 (tiles,)
    row_classes: list[np.ndarray | None]  # per layer (None: not ordered)
    col_classes: list[np.ndarray | None]
    coded: np.ndarray  # bool (plan frames,)
    escapes: list[tuple[int, int, int]]  # (plan frame, offset in frame, level), sorted
    bn: np.ndarray  # float32 (2, C) affine or (4, C) raw, all BN layers concatenated along C


def _shuffle(a: np.ndarray) -> bytes:
    """Byte planes of a little-endian array: all first bytes, then all second bytes …"""
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return b.T.tobytes()


def _unshuffle(data: bytes, dtype, n: int) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    return np.frombuffer(data, np.uint8).reshape(size, n).T.copy().view(dtype).reshape(n)


def pack(t: Tables, *, bits: int, frame: int, bn_mode: str, layer_bits: list[int] | None = None) -> bytes:
    """``bits``: the largest grid's; ``layer_bits``: each layer's, when layers have their own."""
    zp_dtype = np.dtype("<u1") if bits <= 8 else np.dtype("<u2")
    parts = [MAGIC, len(t.scales).to_bytes(2, "little"),
             *([bytes(layer_bits)] if layer_bits is not None else []),
             _shuffle(np.concatenate(t.scales).astype("<f4")),
             _shuffle(np.concatenate(t.zero_points).astype(zp_dtype))]
    for rc, cc in zip(t.row_classes, t.col_classes):
        if rc is not None:
            assert cc is not None  # a layer has both classes or neither
            parts += [rc.astype(np.uint8).tobytes(), cc.astype(np.uint8).tobytes()]
    parts.append(np.packbits(t.coded.astype(bool), bitorder="little").tobytes())
    values, last = [], 0
    for f, pos, level in t.escapes:
        g = f * frame * frame + pos
        values += [g - last, PL.zigzag(level)]
        last = g
    parts.append(PL.varints(values))
    if bn_mode == "affine":
        parts.append(_float24(t.bn.astype("<f4").reshape(-1)))
    else:
        parts.append(_shuffle(t.bn.astype("<f4").reshape(-1)))
    return b"".join(parts)


def _float24(a: np.ndarray) -> bytes:
    """float32 → its top three bytes, rounded to nearest (ties to even), byte planes shuffled."""
    u = a.view("<u4").astype(np.uint64)
    top = (u + 0x7F + ((u >> 8) & 1)) >> 8
    b = np.stack([(top >> (8 * k)) & 0xFF for k in range(3)]).astype(np.uint8)
    return b.tobytes()


def _from_float24(data: bytes, n: int) -> np.ndarray:
    b = np.frombuffer(data, np.uint8).reshape(3, n).astype(np.uint32)
    return ((b[0] | (b[1] << 8) | (b[2] << 16)) << 8).view("<f4").astype(np.float32)


def compress(raw: bytes) -> bytes:
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=FILTERS)


def decompress(data: bytes, size: int) -> bytes:
    try:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=FILTERS)
        out = d.decompress(data, max_length=size + 1)
    except (lzma.LZMAError, EOFError) as exc:
        raise BundleError(f"tables do not decompress ({exc})") from None
    if len(out) != size or not d.eof:
        raise BundleError(f"tables decompress to {len(out)} bytes, the manifest says {size} (damaged)")
    return out


def unpack(raw: bytes, *, plan: PL.FramePlan, tiles: list[int], ordered: list[bool], bits: int, escapes: int,
           bn_channels: int, bn_mode: str, layer_bits: list[int] | None = None) -> Tables:
    """Parse and check the tables of a model whose plan and grid sizes are known;
    ``layer_bits``: every layer's grid bits as the manifest states them (per-layer grids)."""
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(raw):
            raise BundleError(f"tables end inside the {what} (damaged or from another model)")
        out = raw[pos:pos + n]
        pos += n
        return out

    if take(4, "header") != MAGIC:
        raise BundleError("tables do not start with CTT2 (not ctnet tables)")
    if int.from_bytes(take(2, "header"), "little") != len(plan.layers):
        raise BundleError("tables describe another number of layers than the model")
    if layer_bits is not None:
        stored = list(take(len(plan.layers), "per-layer bit depths"))
        bad = next((i for i, (a, b) in enumerate(zip(layer_bits, stored)) if a != b), None)
        if bad is not None:
            raise BundleError(f"the manifest's per-layer bits disagree with its tables: {plan.layers[bad].name} is "
                              f"{layer_bits[bad]}-bit in the manifest, {stored[bad]}-bit in the tables")
    n_tiles = sum(tiles)
    scales = _unshuffle(take(4 * n_tiles, "scales"), "<f4", n_tiles).astype(np.float32)
    if not (np.isfinite(scales).all() and (scales > 0).all()):
        raise BundleError("tables hold a scale that is not finite and positive")
    zp_dtype = np.dtype("<u1") if bits <= 8 else np.dtype("<u2")
    zps = _unshuffle(take(zp_dtype.itemsize * n_tiles, "zero points"), zp_dtype, n_tiles).astype(np.int64)
    split = np.cumsum(tiles)[:-1]
    for i, (lp, zp) in enumerate(zip(plan.layers, np.split(zps, split))):
        top = 2**(layer_bits[i] if layer_bits is not None else bits) - 1
        if (zp > top).any():
            raise BundleError(f"tables hold a zero point of {lp.name} outside its grid's 0..{top}")
    row_classes: list[np.ndarray | None] = []
    col_classes: list[np.ndarray | None] = []
    for lp, is_ordered in zip(plan.layers, ordered):
        if is_ordered:
            rc = np.frombuffer(take(lp.plane_h, "row classes"), np.uint8).copy()
            cc = np.frombuffer(take(lp.plane_w, "column classes"), np.uint8).copy()
            if (rc >= PL.ORDER_CLASSES).any() or (cc >= PL.ORDER_CLASSES).any():
                raise BundleError(f"layer {lp.name}: row/column classes outside 0..{PL.ORDER_CLASSES - 1}")
            row_classes.append(rc)
            col_classes.append(cc)
        else:
            row_classes.append(None)
            col_classes.append(None)
    n = plan.total_frames
    coded = np.unpackbits(np.frombuffer(take(-(-n // 8), "frame bitmap"), np.uint8), bitorder="little")[:n]
    coded = coded.astype(bool)
    esc: list[tuple[int, int, int]] = []
    g = 0
    area = plan.frame * plan.frame
    limit = n * area
    for _ in range(escapes):
        try:
            (delta, z), pos = PL.read_varints(raw, 2, pos, limit)
        except ValueError as exc:
            raise BundleError(f"tables: escapes damaged ({exc})") from None
        g += delta
        if g >= limit or (esc and delta == 0):
            raise BundleError("tables: an escape outside the frames or listed twice")
        f, off = divmod(g, area)
        esc.append((f, off, PL.unzigzag(z)))
    if bn_mode == "affine":
        bn = _from_float24(take(3 * 2 * bn_channels, "BatchNorm"), 2 * bn_channels).reshape(2, bn_channels)
    else:
        bn = _unshuffle(take(4 * 4 * bn_channels, "BatchNorm"), "<f4", 4 * bn_channels).reshape(4, bn_channels)
    if pos != len(raw):
        raise BundleError(f"tables hold {len(raw) - pos} bytes more than the model needs")
    return Tables(list(np.split(scales, split)), list(np.split(zps, split)), row_classes, col_classes, coded, esc, bn)


__all__ = ["Tables", "compress", "decompress", "pack", "unpack"]
