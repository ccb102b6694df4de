"""The registry of every codec a bundle can use (:data:`CODECS`) and the settings of one
stream (:class:`VideoSettings`): what each codec accepts and exactly which options it is
opened with. No PyAV here, so the CLI, the rate-distortion sweeps and the app's forms can
describe codecs without loading it; :mod:`ctnet.codec.video` does the coding.

What each video codec can do, as bundled with PyAV 18.1 (checked here; tests hold it):

=====  ==========================  =====================  ========  =====================
codec  pixel formats (ours→FFmpeg)  bit depths             lossless  quality knob
=====  ==========================  =====================  ========  =====================
hevc   gray→gray/gray10le/gray12le  8, 10, 12              lossless=1  CRF 1..51
       yuv420→yuv420p/…10le/…12le
h264   gray→gray/gray10le           8, 10                  qp=0        CRF 1..51
       yuv420→yuv420p/yuv420p10le
av1    yuv420→yuv420p/yuv420p10le   8, 10                  lossless=1  CRF 1..63
ffv1   gray→gray/gray16le*          8, 10, 12              always      none (lossless only)
       yuv420→yuv420p/…10le/…12le
=====  ==========================  =====================  ========  =====================

* FFV1 has no gray10/gray12 input: those depths are fed as gray16le with the samples in
the top bits and ``bits_per_raw_sample`` set, and decode as gray10le/gray12le.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import VideoError
from ..limits import BIT_DEPTHS as GRID_BIT_DEPTHS

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
PIX_FMTS = ("gray", "yuv420")
MAX_SIDE = 8192
MAX_FRAMES = 1_000_000
# libx265 4.2 misbehaves on small frames (a side under 128, i.e. less than two CTUs): lossless
# inter frames that FFmpeg's decoder (the reference here) reconstructs differently (seen at
# widths 16..64), and output that changes from run to run even single-threaded (seen up to
# 64x128 at --preset slower; uninitialised memory, by the look of it). Intra-only coding of
# such streams was exact and deterministic in every case tried, and for weight tiles it is
# no bigger. So small frames (the edge tiles of a layer) are coded as intra frames, and a
# lossless stream that still fails its round-trip check is coded again that way.
# SVT-AV1 4.1 has a like bug: at 10 bit, lossless inter frames sometimes decode one pixel
# off (libdav1d; seen on sparse 48..128-px frames at every preset); intra-only was exact.
# So a lossless HEVC or AV1 stream that fails its round-trip check is coded again as intra
# frames (each codec spells that its own way; ``workaround`` records it).
INTRA = "keyint=1:bframes=0"  # later x265 options override earlier ones
# The app's quick preview of a lossless HEVC encode (app/encodes.py): x265's own ultrafast GOP
# (3 B-frames decided without the trellis, 1 reference, a 5-frame lookahead) instead of SPEC §4's
# 16/16/250 — the same levels, coded 2.5–2.9× faster for 6–13 % more bytes (bench/lab_stages.py,
# docs/app.md). Recorded in the manifest like INTRA; not for bundles meant to be small.
QUICK = "bframes=3:b-adapt=0:rc-lookahead=5:ref=1"
WORKAROUNDS = ("", INTRA, QUICK)
INTRA_FALLBACK = ("hevc", "av1")  # codecs whose lossless streams are retried as intra frames
NARROW = 128


def geometry_workaround(height: int, width: int, codec: str = "hevc") -> str:
    return INTRA if codec == "hevc" and min(height, width) < NARROW else ""



@dataclass(frozen=True)
class Codec:
    """What a bundle's ``codec`` names: how its frames become bytes, and what it accepts.

    ``family`` "video": a PyAV encoder, one stream per coded frame size (``encode_frames``).
    "planes": a general-purpose coder of whole layer images (``ctnet.codec.planes``).
    ``max_crf`` 0 means lossless only; every codec here has a true lossless mode, asked for
    with CRF 0."""

    name: str  # what --codec and the manifest say
    label: str  # for people
    family: str
    encoder: str  # FFmpeg encoder (video) or Python module (planes) doing the work
    decoders: tuple[str, ...]  # names PyAV reports for the decoder FFmpeg picks
    container: str | None
    extension: str
    codec_tag: str | None  # MP4 sample entry
    pix_fmts: tuple[str, ...]  # the first is the codec's default
    bit_depths: tuple[int, ...]
    max_crf: int
    min_side: int = 1  # smallest frame side the encoder takes (smaller tiles are padded)
    max_aspect: int = 0  # longest/shortest side the encoder takes (0 = any)
    uses_preset: bool = True

    @property
    def lossy(self) -> bool:
        return self.max_crf > 0

    def av_pix_fmt(self, s: "VideoSettings") -> str:
        if s.pix_fmt == "gray":
            return "gray" if s.bit_depth == 8 else f"gray{s.bit_depth}le"
        return "yuv420p" if s.bit_depth == 8 else f"yuv420p{s.bit_depth}le"

    def decoded_pix_fmts(self, s: "VideoSettings") -> set[str]:
        fmts = {self.av_pix_fmt(s)}
        if fmts == {"yuv420p"}:
            fmts.add("yuvj420p")  # full-range 8-bit 4:2:0 as FFmpeg names it
        return fmts

    def luma_shift(self, s: "VideoSettings") -> int:
        """Bits the samples are shifted up by in the encoder's input format."""
        return 0

    def params(self, s: "VideoSettings") -> str:
        """The encoder's own parameter string (x265-params, x264-params, svtav1-params …)."""
        raise NotImplementedError

    def options(self, s: "VideoSettings") -> dict[str, str]:
        """Exactly the options the encoder is opened with (recorded in the manifest)."""
        raise NotImplementedError


class X265(Codec):
    """libx265 with SPEC §4's settings: one I-frame, 16 B-frames, 16 references, full range."""

    def params(self, s: "VideoSettings") -> str:
        rate = "lossless=1" if s.lossless else f"crf={s.crf}"
        # allow-non-conformance: 16 references exceed the level's DPB limits at small frame
        # sizes, which x265 otherwise refuses to open. info=0: no SEI with the encoder's
        # command line (a constant ~2 KB per stream that nothing reads). frame-threads=1: x265
        # picks the number of concurrently coded frames from the core count, and the bytes
        # depend on it (1 below 4 cores, more above) — pinned, a bundle is the same everywhere.
        return ":".join([
            "keyint=-1", "bframes=16", "ref=16", "b-adapt=2", "rc-lookahead=250", "range=full", rate,
            "allow-non-conformance=1", "info=0", "log-level=error", "frame-threads=1",
            *([s.workaround] if s.workaround else []),
        ])

    def options(self, s: "VideoSettings") -> dict[str, str]:
        return {"preset": s.preset, "x265-params": self.params(s)}


class X264(Codec):
    """libx264 with the same GOP as x265 (one I-frame, 16 B-frames, 16 references). True
    lossless is ``qp=0`` (High 4:4:4 Predictive; x264's CRF 0 is lossless only at 8 bit).
    One thread: x264's output depends on its thread count, and single-threaded it is both
    reproducible on every machine and smaller (1,081,565 against 1,142,357 B at veryslow on
    the real CTNet-18's 8-bit tiles; the whole model still codes in under a second)."""

    def params(self, s: "VideoSettings") -> str:
        rate = "qp=0" if s.lossless else f"crf={s.crf}"
        return ":".join(["keyint=infinite", "bframes=16", "ref=16", "b-adapt=2", "rc-lookahead=250", rate,
                         "log=-1"])

    def options(self, s: "VideoSettings") -> dict[str, str]:
        return {"preset": s.preset, "threads": "1", "x264-params": self.params(s)}


# SVT-AV1 numbers its presets 0 (slowest) … 13; ours are x26x's names. Presets 11 and up are
# never used: SVT-AV1 4.1 writes lossless streams there that libdav1d rejects as invalid
# (every 3-to-9-frame sparse 32x128 stream tried; 10 and below were exact).
SVT_PRESETS = {"ultrafast": 10, "superfast": 10, "veryfast": 10, "faster": 9, "fast": 9, "medium": 8, "slow": 7,
               "slower": 5, "veryslow": 3, "placebo": 2}


class SvtAv1(Codec):
    """libsvtav1 (SVT-AV1 4.1), decoded by libdav1d. 4:2:0 only (data in luma, neutral
    chroma), 8 and 10 bit; ``lossless=1`` is exact. SVT-AV1 hangs (never returns) on frames
    longer than 4× their width or height, so such tiles are padded (``max_aspect``)."""

    def params(self, s: "VideoSettings") -> str:
        return ":".join(["keyint=1" if s.workaround == INTRA else "keyint=-1",
                         "lossless=1" if s.lossless else f"crf={s.crf}"])

    def options(self, s: "VideoSettings") -> dict[str, str]:
        return {"preset": str(SVT_PRESETS[s.preset]), "svtav1-params": self.params(s)}


class Ffv1(Codec):
    """FFV1 version 3, lossless only: range coder with the large context model, one slice
    per frame, no slice CRCs (the manifest's SHA-256 covers the file), and one GOP for the
    whole stream so the coder's statistics carry from frame to frame (−6 % on the real
    CTNet-18 against a key frame every frame)."""

    def av_pix_fmt(self, s: "VideoSettings") -> str:
        if s.pix_fmt == "gray" and s.bit_depth > 8:
            return "gray16le"
        return super().av_pix_fmt(s)

    def decoded_pix_fmts(self, s: "VideoSettings") -> set[str]:
        if s.pix_fmt == "gray" and s.bit_depth > 8:
            return {f"gray{s.bit_depth}le"}
        return super().decoded_pix_fmts(s)

    def luma_shift(self, s: "VideoSettings") -> int:
        return 16 - s.bit_depth if s.pix_fmt == "gray" and s.bit_depth > 8 else 0

    def params(self, s: "VideoSettings") -> str:
        return ":".join(f"{k}={v}" for k, v in self.options(s).items())

    def options(self, s: "VideoSettings") -> dict[str, str]:
        opts = {"level": "3", "coder": "1", "context": "1", "slices": "1", "slicecrc": "0", "g": str(MAX_FRAMES)}
        if self.luma_shift(s):
            opts["bits_per_raw_sample"] = str(s.bit_depth)
        return opts


class PlaneCodec(Codec):
    """A general-purpose lossless coder of layer images (see ``ctnet.codec.planes``)."""

    def params(self, s: "VideoSettings") -> str:
        from . import planes
        return planes.describe(self.name, s.bit_depth)

    def options(self, s: "VideoSettings") -> dict[str, str]:
        from . import planes
        return planes.options(self.name, s.bit_depth)


CODECS: dict[str, Codec] = {c.name: c for c in (
    X265("hevc", "H.265 / HEVC (libx265)", "video", "libx265", ("hevc",), "mp4", ".mp4", "hvc1", PIX_FMTS,
         (8, 10, 12), 51, min_side=16),
    X264("h264", "H.264 / AVC (libx264)", "video", "libx264", ("h264",), "mp4", ".mp4", "avc1", PIX_FMTS, (8, 10), 51),
    SvtAv1("av1", "AV1 (libsvtav1, decoded by libdav1d)", "video", "libsvtav1", ("libdav1d", "av1"), "mp4", ".mp4",
           "av01", ("yuv420",), (8, 10), 63, min_side=8, max_aspect=4),
    Ffv1("ffv1", "FFV1 v3 (lossless)", "video", "ffv1", ("ffv1",), "matroska", ".mkv", None, PIX_FMTS,
         (8, 10, 12), 0, uses_preset=False),
    PlaneCodec("xz", "xz (LZMA2) of the layer images", "planes", "lzma", (), None, ".xz", None, ("gray",),
               GRID_BIT_DEPTHS, 0, uses_preset=False),
    PlaneCodec("zstd", "zstd -19 of the layer images", "planes", "zstandard", (), None, ".zst", None, ("gray",),
               GRID_BIT_DEPTHS, 0, uses_preset=False),
)}
PLANE_CODECS = tuple(n for n, c in CODECS.items() if c.family == "planes")
# the pixel depths some video codec codes frames at (a grid is coded at its container_bits)
VIDEO_BIT_DEPTHS = tuple(sorted({d for c in CODECS.values() if c.family == "video" for d in c.bit_depths}))
DEFAULT_CODEC_ENV = "CTNET_CODEC"


def default_codec() -> str:
    """The codec ``ctnet encode`` and the app's Codec lab start from: ``$CTNET_CODEC`` when
    set (e.g. ``xz``, the smallest on CTNet weights; see the README's codec shootout), else
    HEVC, the format this project stores weights in."""
    name = os.environ.get(DEFAULT_CODEC_ENV, "").strip() or "hevc"
    if name not in CODECS:
        raise VideoError(f"{DEFAULT_CODEC_ENV}={name!r} is not a codec; choose from {', '.join(CODECS)}")
    return name


@dataclass(frozen=True)
class VideoSettings:
    """How one stream is coded. ``crf`` 0 means true lossless (x265 ``lossless=1``, x264
    ``qp=0``, SVT-AV1 ``lossless=1``; FFV1 and the plane codecs are always lossless)."""

    codec: str = "hevc"
    bit_depth: int = 8
    pix_fmt: str = "gray"  # gray: 4:0:0 (HEVC RExt); yuv420: data in Y, neutral chroma (Main/Main10)
    crf: int = 0
    preset: str = "medium"
    workaround: str = ""  # one of WORKAROUNDS: INTRA for narrow HEVC frames, QUICK for a preview (see above)

    @property
    def lossless(self) -> bool:
        return self.crf == 0

    @property
    def spec(self) -> Codec:
        return CODECS[self.codec]

    def validate(self) -> "VideoSettings":
        if self.codec not in CODECS:
            raise VideoError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        c = self.spec
        if self.bit_depth not in VIDEO_BIT_DEPTHS:
            raise VideoError(f"bit depth must be one of {VIDEO_BIT_DEPTHS}, got {self.bit_depth}")
        if self.bit_depth not in c.bit_depths:
            raise VideoError(f"{c.name} ({c.encoder}) codes {'/'.join(map(str, c.bit_depths))}-bit pixels only, "
                             f"not {self.bit_depth}-bit")
        if self.pix_fmt not in PIX_FMTS:
            raise VideoError(f"pixel format must be one of {PIX_FMTS}, got {self.pix_fmt!r}")
        if self.pix_fmt not in c.pix_fmts:
            raise VideoError(f"{c.name} ({c.encoder}) takes pixel format {' or '.join(c.pix_fmts)} only, "
                             f"not {self.pix_fmt}")
        if not isinstance(self.crf, int) or isinstance(self.crf, bool):
            raise VideoError(f"CRF must be an integer (0 = lossless), got {self.crf!r}")
        if not c.lossy and self.crf != 0:
            raise VideoError(f"{c.name} is lossless only: CRF must be 0, got {self.crf}")
        if not 0 <= self.crf <= c.max_crf:
            raise VideoError(f"CRF must be an integer in 0..{c.max_crf} for {c.name} (0 = lossless), got {self.crf!r}")
        if self.workaround not in WORKAROUNDS or (self.workaround and c.name not in INTRA_FALLBACK) or \
                (self.workaround == QUICK and c.name != "hevc"):
            raise VideoError(f"unknown encoder workaround {self.workaround!r} for {c.name}")
        if self.preset not in PRESETS:
            raise VideoError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        return self

    @property
    def av_pix_fmt(self) -> str:
        return self.spec.av_pix_fmt(self)

    @property
    def even(self) -> bool:
        """4:2:0 needs even frame sizes."""
        return self.pix_fmt == "yuv420"

    def encoder_params(self) -> str:
        return self.spec.params(self)

    def encoder_options(self) -> dict[str, str]:
        return self.spec.options(self)

    def to_dict(self) -> dict:
        c = self.spec
        return {"codec": self.codec, "encoder": c.encoder, "container": c.container,
                "bit_depth": self.bit_depth, "pix_fmt": self.pix_fmt, "crf": self.crf, "lossless": self.lossless,
                "preset": self.preset, "params": self.encoder_params(), "options": self.encoder_options()}
