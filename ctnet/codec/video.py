"""Where the bitstream is made: lists of 2-D integer frames ↔ one stream, and the registry
of every codec a bundle can use (:data:`CODECS`). The only module of ``ctnet`` that imports ``av``.

Video codecs go through PyAV's bundled encoders: HEVC (libx265), H.264 (libx264), AV1
(libsvtav1, decoded by libdav1d) and FFV1. Their streams are files in a standard container
(MP4; Matroska for FFV1) that ffprobe and players open, written bit-exactly (no creation
time, no muxer version), so the same frames and settings give the same bytes. "Plane"
codecs (xz, zstd) are general-purpose lossless coders of whole layer images; they are
described here so that every codec has one registry and one settings type, and implemented
in :mod:`ctnet.codec.planes` (no PyAV).

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

\* FFV1 has no gray10/gray12 input: those depths are fed as gray16le with the samples in
the top bits and ``bits_per_raw_sample`` set, and decode as gray10le/gray12le.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Sequence

# SVT-AV1 prints a banner and per-stream info straight to stderr unless told otherwise; it
# reads this once, when its first encoder is created. 1 = errors only.
os.environ.setdefault("SVT_LOG", "1")

import av  # noqa: E402
import numpy as np  # noqa: E402

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
BIT_DEPTHS = (8, 10, 12)
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
WORKAROUNDS = ("", INTRA)
INTRA_FALLBACK = ("hevc", "av1")  # codecs whose lossless streams are retried as intra frames
NARROW = 128


def geometry_workaround(height: int, width: int, codec: str = "hevc") -> str:
    return INTRA if codec == "hevc" and min(height, width) < NARROW else ""


class VideoError(ValueError):
    """A stream that cannot be made or read as described; the message names the problem."""


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
        # command line (a constant ~2 KB per stream that nothing reads).
        return ":".join([
            "keyint=-1", "bframes=16", "ref=16", "b-adapt=2", "rc-lookahead=250", "range=full", rate,
            "allow-non-conformance=1", "info=0", "log-level=error", *([s.workaround] if s.workaround else []),
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
               (8, 10, 12), 0, uses_preset=False),
    PlaneCodec("zstd", "zstd -19 of the layer images", "planes", "zstandard", (), None, ".zst", None, ("gray",),
               (8, 10, 12), 0, uses_preset=False),
)}
PLANE_CODECS = tuple(n for n, c in CODECS.items() if c.family == "planes")
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
    workaround: str = ""  # one of WORKAROUNDS: INTRA for narrow HEVC frames (see above)

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
        if self.bit_depth not in BIT_DEPTHS:
            raise VideoError(f"bit depth must be one of {BIT_DEPTHS}, got {self.bit_depth}")
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
        if self.workaround not in WORKAROUNDS or (self.workaround and c.name not in INTRA_FALLBACK):
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


@dataclass
class EncodedStream:
    data: bytes  # the container file
    frame_bytes: list[int]  # bytes of each input frame's packet, by input index
    coded_order: list[int]  # input indices in bitstream (decode) order
    settings: "VideoSettings"  # as actually used (with a workaround, see encode_frames)
    decoded: np.ndarray | None = None  # (n, h, w) uint16 as a decoder sees them


def _dtype(bit_depth: int):
    return np.uint8 if bit_depth == 8 else np.uint16


def _fill(frame: "av.VideoFrame", planes: Sequence[np.ndarray]) -> None:
    for plane, arr in zip(frame.planes, planes):
        stride = plane.line_size // arr.dtype.itemsize
        buf = np.zeros((plane.height, stride), arr.dtype)
        buf[:, : arr.shape[1]] = arr
        plane.update(buf.tobytes())


def _luma(frame: "av.VideoFrame", bit_depth: int) -> np.ndarray:
    plane = frame.planes[0]
    dtype = np.dtype(_dtype(bit_depth))
    rows = np.frombuffer(memoryview(plane), dtype)
    return rows.reshape(plane.height, plane.line_size // dtype.itemsize)[:, : plane.width].astype(np.uint16)


def encode_frames(frames: Sequence[np.ndarray], settings: VideoSettings, *, decode: bool = True) -> EncodedStream:
    """Encode equally sized 2-D integer frames (values in [0, 2^b − 1]) as one stream and,
    with ``decode``, decode it back (``EncodedStream.decoded``).

    Narrow HEVC frames are coded as intra frames (:data:`INTRA`). Lossless streams are
    always decoded and compared with the input; an HEVC or AV1 stream that differs is coded
    again as intra frames, and if that too differs (or another codec's differs) it is an error.
    ``EncodedStream.settings`` says what was used.
    """
    settings.validate()
    if settings.spec.family != "video":
        raise VideoError(f"{settings.codec} codes layer images, not video frames (see ctnet.codec.planes)")
    if not frames:
        raise VideoError("no frames to encode")
    h, w = np.asarray(frames[0]).shape
    if not settings.workaround:
        settings = replace(settings, workaround=geometry_workaround(h, w, settings.codec))
    encoded = _encode(frames, settings)
    if not (settings.lossless or decode):
        return encoded
    encoded.decoded = _decode_like(encoded, frames)
    if settings.lossless and not np.array_equal(encoded.decoded, np.stack([np.asarray(f) for f in frames])):
        if settings.codec not in INTRA_FALLBACK or settings.workaround == INTRA:
            raise VideoError(f"lossless {h}x{w} {settings.codec} stream does not decode to its input"
                             + (", even as intra frames" if settings.codec in INTRA_FALLBACK else ""))
        return encode_frames(frames, replace(settings, workaround=INTRA), decode=decode)
    return encoded


def _decode_like(encoded: EncodedStream, frames) -> np.ndarray:
    h, w = frames[0].shape
    return decode_frames(encoded.data, encoded.settings, height=h, width=w, count=len(frames))


def check_geometry(height: int, width: int, settings: VideoSettings) -> None:
    """Frame sizes the codec cannot take are errors here, before an encoder sees them (SVT-AV1
    would hang on a long thin frame)."""
    c = settings.spec
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise VideoError(f"frame size {height}x{width} outside 1..{MAX_SIDE}")
    if settings.even and (height % 2 or width % 2):
        raise VideoError(f"4:2:0 needs even frame sizes, got {height}x{width}")
    if min(height, width) < c.min_side:
        raise VideoError(f"{c.name} needs frames of at least {c.min_side} px a side, got {height}x{width}")
    if c.max_aspect and max(height, width) > c.max_aspect * min(height, width):
        raise VideoError(f"{c.name} ({c.encoder}) cannot code {height}x{width} frames: a side is more than "
                         f"{c.max_aspect}x the other")


def _encode(frames: Sequence[np.ndarray], settings: VideoSettings) -> EncodedStream:
    if not frames:
        raise VideoError("no frames to encode")
    h, w = frames[0].shape
    check_geometry(h, w, settings)
    peak = 2**settings.bit_depth - 1
    codec = settings.spec
    fmt = settings.av_pix_fmt
    dtype = np.uint8 if fmt in ("gray", "yuv420p") else np.uint16
    shift = codec.luma_shift(settings)
    buf = io.BytesIO()
    sizes: dict[int, int] = {}
    order: list[int] = []
    try:
        out = av.open(buf, "w", format=codec.container, container_options={"fflags": "+bitexact"})
        try:
            stream = out.add_stream(codec.encoder, rate=Fraction(25, 1))
            stream.width, stream.height, stream.pix_fmt = w, h, fmt
            stream.codec_context.color_range = 2  # full (pc) range: every level is data
            if codec.codec_tag:
                stream.codec_tag = codec.codec_tag
            stream.options = settings.encoder_options()

            packets = []

            def collect(new_packets):
                for p in new_packets:
                    if p.size == 0:  # libx265 can flush empty packets; the MP4 muxer rejects them
                        continue
                    if p.pts is None or p.pts in sizes:
                        raise VideoError(f"encoder returned a packet without a frame of its own (pts {p.pts})")
                    sizes[int(p.pts)] = p.size
                    order.append(int(p.pts))
                    packets.append(p)

            for i, f in enumerate(frames):
                if f.shape != (h, w):
                    raise VideoError(f"frame {i} is {f.shape[0]}x{f.shape[1]}, the stream is {h}x{w}")
                if f.size and (int(f.min()) < 0 or int(f.max()) > peak):
                    raise VideoError(f"frame {i} has values outside 0..{peak}")
                vf = av.VideoFrame(w, h, fmt)
                y = f.astype(dtype) << shift if shift else f.astype(dtype)
                if settings.pix_fmt == "gray":
                    _fill(vf, [y])
                else:
                    chroma = np.full((h // 2, w // 2), 1 << (settings.bit_depth - 1), dtype)
                    _fill(vf, [y, chroma, chroma])
                vf.pts = i
                vf.color_range = 2
                collect(stream.encode(vf))
            collect(stream.encode(None))
            _fix_dts(packets)
            for p in packets:
                out.mux(p)
        finally:
            out.close()
    except av.FFmpegError as exc:
        raise VideoError(f"{codec.encoder} failed: {exc}") from exc
    if sorted(sizes) != list(range(len(frames))):
        raise VideoError(f"encoder returned {len(sizes)} frames for {len(frames)} inputs")
    return EncodedStream(buf.getvalue(), [sizes[i] for i in range(len(frames))], order, settings)


def _fix_dts(packets) -> None:
    """libx265 reports nonsense decode timestamps for some short streams (e.g. −2^40 for a
    single frame with B-frames enabled), which the MP4 muxer refuses. Valid ones (increasing,
    never after their pts) are kept; otherwise they are rebuilt from the decode order."""
    pts = [int(p.pts) for p in packets]
    dts = [p.dts for p in packets]
    if all(d is not None for d in dts) and all(a < b for a, b in zip(dts, dts[1:])) \
            and all(-len(pts) <= d <= q for d, q in zip(dts, pts)):
        return
    ranked = sorted(pts)
    delay = max([0] + [r - q for r, q in zip(ranked, pts)])
    for p, r in zip(packets, ranked):
        p.dts = r - delay


def probe(data: bytes) -> dict:
    """What the container says about its (single) video stream, without decoding. ``codec``
    is the bitstream's name (hevc, h264, av1, ffv1), ``decoder`` the decoder FFmpeg picks."""
    try:
        with av.open(io.BytesIO(data), "r") as c:
            videos = c.streams.video
            if len(c.streams) != 1 or len(videos) != 1:
                raise VideoError(f"expected exactly one video stream, found {len(c.streams)} streams")
            st = videos[0]
            cc = st.codec_context
            frames = int(st.frames)
            if frames == 0 and c.format.name.startswith("matroska"):
                frames = sum(1 for p in c.demux(st) if p.size)  # Matroska keeps no frame count
            return {"codec": _bitstream_name(cc), "decoder": cc.name,
                    "width": cc.width, "height": cc.height, "frames": frames, "pix_fmt": cc.pix_fmt,
                    "profile": cc.profile, "container": c.format.name}
    except av.FFmpegError as exc:
        raise VideoError(f"not a readable video stream ({exc})") from exc


def _bitstream_name(cc) -> str:
    """FFmpeg's codec id name (AV1 streams report the decoder libdav1d otherwise)."""
    try:
        return cc.codec.canonical_name  # type: ignore[attr-defined]
    except AttributeError:
        return {"libdav1d": "av1"}.get(cc.name, cc.name)


def decode_frames(data: bytes, settings: VideoSettings, *, height: int, width: int, count: int) -> np.ndarray:
    """Decode a stream made by :func:`encode_frames` → (count, height, width) uint16 luma in
    display (input) order. Anything that disagrees with the expected codec, size, pixel
    format or frame count is an error, checked before and while decoding."""
    settings.validate()
    codec = settings.spec
    if codec.family != "video":
        raise VideoError(f"{settings.codec} codes layer images, not video frames (see ctnet.codec.planes)")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and 1 <= count <= MAX_FRAMES):
        raise VideoError(f"implausible stream geometry: {count} frames of {height}x{width}")
    info = probe(data)
    if info["codec"] != codec.name and info["decoder"] not in codec.decoders:
        raise VideoError(f"stream is {info['codec']}, expected {codec.name}")
    if (info["height"], info["width"]) != (height, width):
        raise VideoError(f"stream frames are {info['height']}x{info['width']}, expected {height}x{width}")
    if info["frames"] != count:
        raise VideoError(f"stream holds {info['frames']} frames, expected {count}")
    expected_fmts = codec.decoded_pix_fmts(settings)
    if codec.name == "h264" and settings.pix_fmt == "gray":
        # FFmpeg's H.264 decoder returns 4:0:0 as 4:2:0 with neutral chroma; the luma is the data
        expected_fmts |= {"yuvj420p", "yuv420p"} if settings.bit_depth == 8 else {"yuv420p10le"}
    out = np.empty((count, height, width), np.uint16)
    n = 0
    try:
        with av.open(io.BytesIO(data), "r") as c:
            st = c.streams.video[0]
            st.codec_context.thread_type = "AUTO"
            for frame in c.decode(st):
                if n >= count:
                    raise VideoError(f"stream decodes to more than the {count} frames expected")
                if frame.format.name not in expected_fmts:
                    raise VideoError(f"stream decodes to {frame.format.name}, expected {settings.av_pix_fmt}")
                if (frame.height, frame.width) != (height, width):
                    raise VideoError(f"frame {n} is {frame.height}x{frame.width}, expected {height}x{width}")
                out[n] = _luma(frame, 8 if frame.format.name in ("gray", "yuv420p", "yuvj420p") else 16)
                n += 1
    except av.FFmpegError as exc:
        raise VideoError(f"stream does not decode ({exc})") from exc
    if n != count:
        raise VideoError(f"stream decodes to {n} frames, expected {count} (truncated or damaged)")
    return out


__all__ = ["BIT_DEPTHS", "CODECS", "Codec", "EncodedStream", "INTRA", "PIX_FMTS",
           "PLANE_CODECS", "PRESETS", "VideoError", "VideoSettings", "WORKAROUNDS", "check_geometry", "default_codec",
           "decode_frames", "encode_frames", "geometry_workaround", "probe"]


# --- preview for browsers (the app's Frames page) ------------------------------------------------

def preview_mp4(frames: Sequence[np.ndarray], fps: int = 12) -> bytes:
    """8-bit grey frames (equal sizes) as an H.264 MP4 made in memory, for a browser to play
    (browsers rarely play HEVC). yuv420p needs even sides: odd ones are padded by one pixel.
    Pixels are mapped onto video range (16…235), which every player shows as black…white
    (full-range flags are not honoured everywhere). A preview only: lossy, not in any bundle."""
    if not frames:
        raise VideoError("no frames to preview")
    if not 1 <= int(fps) <= 120:
        raise VideoError(f"preview frame rate must be in 1..120, got {fps}")
    h, w = np.asarray(frames[0]).shape
    ph, pw = h + h % 2, w + w % 2
    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=Fraction(int(fps), 1))
            stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "18", "tune": "grain"}
            chroma = np.full((ph // 2, pw // 2), 128, np.uint8)
            for i, f in enumerate(frames):
                f = np.asarray(f)
                if f.shape != (h, w) or f.dtype != np.uint8:
                    raise VideoError(f"preview frame {i} is {f.dtype} {f.shape}, expected uint8 {(h, w)}")
                vf = av.VideoFrame(pw, ph, "yuv420p")
                y = np.round(16 + f.astype(np.float32) * (219 / 255)).astype(np.uint8)
                _fill(vf, [np.pad(y, ((0, ph - h), (0, pw - w)), mode="edge"), chroma, chroma])
                vf.pts = i
                out.mux(stream.encode(vf))
            out.mux(stream.encode(None))
    except av.FFmpegError as exc:
        raise VideoError(f"libx264 preview failed: {exc}") from exc
    return buf.getvalue()
