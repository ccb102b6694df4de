"""The "plane" codecs (``xz``, ``zstd``): a bundle's integer pixels coded losslessly by a
general-purpose compressor instead of a video codec. Same quantisation grid, same tiles,
same manifest; only the bytes that hold the pixels differ. No PyAV here.

What is compressed (one file per kind, ``w.xz`` / ``bn.xz``): every layer in model order,
its exported image reassembled from its tiles, each pixel stored as its offset from its
tile's zero point (``(pixel − zero_point) mod 2^8`` at 8 bit, ``mod 2^16`` little-endian
at 10/12 bit) — so a zero coefficient is byte 0 in every tile — and a spatial layer's
image ``(O·Kh, I·Kw)`` written frequency-major, ``(Kh, Kw, O, I)``: all DC coefficients
of the layer, then each higher frequency's ``O × I`` plane. Measured on the real
CTNet-18 (λ 1e-7, 8 bit, 11.2 M pixels) with xz -9e: tiles of one size in stream order
747,612 B; layer images 702,980; zero-point offsets 680,970; offsets frequency-major
632,680 (one xz stream for the whole model; per-layer streams 648,041).

Raw BatchNorm (``bn.safetensors``) is compressed by the same coder with filters for
float32 (``bn.safetensors.xz``): 78,328 → 58,377 B on that model, bit-exact.
"""
from __future__ import annotations

from ..errors import PlaneError

import lzma
import math
from typing import Sequence

import numpy as np

XZ_FILTERS = {
    # lc=4: the literal coder's context is the whole previous byte (offsets repeat in runs);
    # pb=0/lp=0: no alignment in 8-bit data
    "u8": {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 4, "lp": 0, "pb": 0},
    # 16-bit little-endian samples: position bits model the low/high byte alternation
    "u16": {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 1, "lp": 1, "pb": 1},
    # float32: four-byte alignment
    "f32": {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 0, "lp": 2, "pb": 2},
}
ZSTD_LEVEL = 19  # 22 (--ultra) is 0.7 % smaller on the real CTNet-18's pixels and several times slower
KINDS = tuple(XZ_FILTERS)
ORDER = "frequency-major"



def kind_of(bits: int) -> str:
    return "u8" if bits <= 8 else "u16"


def _dtype(bits: int):
    return np.dtype(np.uint8) if bits <= 8 else np.dtype("<u2")


def options(codec: str, bits: int, kind: str | None = None) -> dict[str, str]:
    """Exactly how the coder is called (recorded in the manifest)."""
    kind = kind or kind_of(bits)
    if codec == "xz":
        f = XZ_FILTERS[kind]
        return {"format": "xz", "check": "crc32", "filter": "lzma2", "preset": "9e", "lc": str(f["lc"]),
                "lp": str(f["lp"]), "pb": str(f["pb"])}
    if codec == "zstd":
        return {"format": "zstd", "level": str(ZSTD_LEVEL), "checksum": "0", "content_size": "1"}
    raise PlaneError(f"unknown plane codec {codec!r}")


def describe(codec: str, bits: int) -> str:
    """One line: the coder's options and what it codes (format v2: the plan's frames of
    signed levels; version-1 bundles coded layer images of offsets from the zero point)."""
    opts = ":".join(f"{k}={v}" for k, v in options(codec, bits).items())
    width = "int8" if bits <= 8 else "int16le"
    return f"{opts}; coded frames of {width} levels (pixel − zero point), in plan order"


# --- format v2: coded frames of signed levels ------------------------------------------------------

def level_size(shape: tuple[int, ...], container_bits: int) -> int:
    return math.prod(shape) * (1 if container_bits <= 8 else 2)


def level_bytes(pixels: np.ndarray, container_bits: int) -> bytes:
    """Container pixels (level + 2^(c−1)) → the levels as two's-complement bytes (int8 at
    8 bits, little-endian int16 above): level 0 is byte 0, so empty areas are runs of zeros."""
    levels = pixels.astype(np.int32) - (1 << (container_bits - 1))
    return levels.astype(np.int8 if container_bits <= 8 else "<i2").tobytes()


def from_level_bytes(data: bytes, shape: tuple[int, ...], container_bits: int) -> np.ndarray:
    dtype = np.int8 if container_bits <= 8 else np.dtype("<i2")
    if len(data) != level_size(shape, container_bits):
        raise PlaneError(f"level data holds {len(data)} bytes, {level_size(shape, container_bits)} expected")
    levels = np.frombuffer(data, dtype).astype(np.int32).reshape(shape)
    return (levels + (1 << (container_bits - 1))).astype(np.uint16)


def compress(codec: str, data: bytes, kind: str) -> bytes:
    if kind not in KINDS:
        raise PlaneError(f"unknown data kind {kind!r}")
    if codec == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=[XZ_FILTERS[kind]])
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False, write_content_size=True,
                                        threads=0).compress(data)
    raise PlaneError(f"unknown plane codec {codec!r}")


XZ_MAGIC = b"\xfd7zXZ\x00"


def check_header(codec: str, data: bytes, size: int) -> None:
    """What a plane file's header says, checked without decompressing it (``ctnet verify``):
    the coder's magic bytes and, for zstd, the content size it declares."""
    if codec == "xz":
        if not data.startswith(XZ_MAGIC):
            raise PlaneError("not an xz stream (no xz header)")
    elif codec == "zstd":
        import zstandard
        try:
            declared = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise PlaneError(f"not a zstd frame ({exc})") from exc
        if declared != size:
            raise PlaneError(f"zstd frame declares {declared} bytes, {size} expected")
    else:
        raise PlaneError(f"unknown plane codec {codec!r}")


def decompress(codec: str, data: bytes, size: int) -> bytes:
    """Exactly ``size`` bytes, or an error (never more memory than that)."""
    if codec == "xz":
        try:
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            out = d.decompress(data, max_length=size + 1)
        except (lzma.LZMAError, EOFError) as exc:
            raise PlaneError(f"xz data does not decode ({exc})") from exc
        if not d.eof or d.unused_data:
            raise PlaneError(f"xz data does not end where it should ({len(out)} bytes decoded, {size} expected)")
    elif codec == "zstd":
        import zstandard
        try:
            declared = zstandard.frame_content_size(data)
            if declared != size:
                raise PlaneError(f"zstd frame declares {declared} bytes, {size} expected")
            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        except zstandard.ZstdError as exc:
            raise PlaneError(f"zstd data does not decode ({exc})") from exc
    else:
        raise PlaneError(f"unknown plane codec {codec!r}")
    if len(out) != size:
        raise PlaneError(f"{codec} data decodes to {len(out)} bytes, {size} expected")
    return out


# --- layer images ↔ bytes ------------------------------------------------------------------------

def _image_shape(shape: Sequence[int]) -> tuple[int, int]:
    from ..quant import image_shape
    return image_shape(tuple(shape))


def _to_stored(img: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Exported image (O·Kh, I·Kw) → the order it is stored in: (Kh, Kw, O, I) for spatial
    layers, row-major for everything else."""
    if len(shape) == 4:
        o, i, kh, kw = shape
        return img.reshape(o, kh, i, kw).transpose(1, 3, 0, 2)
    return img


def _from_stored(flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    h, w = _image_shape(shape)
    if len(shape) == 4:
        o, i, kh, kw = shape
        return flat.reshape(kh, kw, o, i).transpose(2, 0, 3, 1).reshape(h, w)
    return flat.reshape(h, w)


def pack(layers: Sequence[tuple[Sequence[int], Sequence[tuple], Sequence[np.ndarray], Sequence[int]]],
         bits: int) -> bytes:
    """Layers as (tensor shape, tile boxes, tile pixels, tile zero points) → the bytes that
    get compressed (module docstring)."""
    dtype = _dtype(bits)
    modulus = 1 << (8 * dtype.itemsize)
    parts = []
    for shape, boxes, pixels, zero_points in layers:
        h, w = _image_shape(shape)
        img = np.empty((h, w), np.int64)
        if len(boxes) != len(pixels) or len(boxes) != len(zero_points):
            raise PlaneError("every tile needs its pixels and zero point")
        for (r0, c0, th, tw), p, zp in zip(boxes, pixels, zero_points):
            if p.shape != (th, tw):
                raise PlaneError(f"tile of shape {p.shape} where the layout needs {(th, tw)}")
            img[r0:r0 + th, c0:c0 + tw] = p.astype(np.int64) - int(zp)
        parts.append(np.ascontiguousarray(_to_stored(img % modulus, shape)).astype(dtype).tobytes())
    return b"".join(parts)


def packed_size(layers: Sequence[tuple[Sequence[int], *tuple[object, ...]]], bits: int) -> int:
    return sum(math.prod(_image_shape(layer[0])) for layer in layers) * _dtype(bits).itemsize


def unpack(data: bytes, layers: Sequence[tuple[Sequence[int], Sequence[tuple], Sequence[int]]],
           bits: int) -> list[list[np.ndarray]]:
    """Inverse of :func:`pack`: layers as (tensor shape, tile boxes, tile zero points) →
    per layer, its tiles' pixels (uint16). Values off the ``bits``-bit range are an error."""
    dtype = _dtype(bits)
    modulus = 1 << (8 * dtype.itemsize)
    peak = (1 << bits) - 1
    if len(data) != packed_size(layers, bits):
        raise PlaneError(f"plane data holds {len(data)} bytes, the layout needs {packed_size(layers, bits)}")
    out, pos = [], 0
    for shape, boxes, zero_points in layers:
        h, w = _image_shape(shape)
        n = h * w * dtype.itemsize
        img = _from_stored(np.frombuffer(data, dtype, count=h * w, offset=pos).astype(np.int64), shape)
        pos += n
        tiles = []
        for (r0, c0, th, tw), zp in zip(boxes, zero_points):
            p = (img[r0:r0 + th, c0:c0 + tw] + int(zp)) % modulus
            if p.size and int(p.max()) > peak:
                raise PlaneError(f"decoded pixels exceed {peak} (damaged data)")
            tiles.append(p.astype(np.uint16))
        out.append(tiles)
    return out


def encode(codec: str, layers, bits: int) -> bytes:
    return compress(codec, pack(layers, bits), kind_of(bits))


def decode(codec: str, data: bytes, layers, bits: int) -> list[list[np.ndarray]]:
    return unpack(decompress(codec, data, packed_size(layers, bits)), layers, bits)


def apportion(total: int, frames: Sequence[np.ndarray]) -> list[int]:
    """A compressed stream's bytes shared out over its frames in proportion to each frame's
    zeroth-order entropy (plus one byte), summing exactly to ``total``. The coder shares its
    statistics across frames, so no frame has bytes of its own: this is an attribution for
    per-layer and per-frame views, not a measurement."""
    weights = []
    for f in frames:
        _, counts = np.unique(np.asarray(f), return_counts=True)
        n = counts.sum()
        weights.append(float((counts * np.log2(n / counts)).sum()) / 8 + 1.0)
    w = np.asarray(weights)
    exact = total * w / w.sum()
    share = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - share), kind="stable")[: total - int(share.sum())]:
        share[i] += 1
    return [int(x) for x in share]


__all__ = ["KINDS", "ORDER", "PlaneError", "XZ_FILTERS", "ZSTD_LEVEL", "apportion", "check_header", "compress", "decode",
           "decompress", "describe", "encode", "from_level_bytes", "kind_of", "level_bytes", "level_size", "options", "pack",
           "packed_size", "unpack"]
