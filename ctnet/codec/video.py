"""Where the bitstream is made: lists of 2-D integer frames ↔ one video stream in a standard
container, through PyAV's bundled encoders. The only module of ``ctnet`` that imports ``av``.

The codec is a parameter (:data:`CODECS`); HEVC through libx265 is the one implemented.
Streams are MP4 files that ffprobe and players open; the container is written bit-exactly
(no creation time, no muxer version), so the same frames and settings give the same bytes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Sequence

import av
import numpy as np

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
BIT_DEPTHS = (8, 10, 12)
PIX_FMTS = ("gray", "yuv420")
MAX_SIDE = 8192
MAX_FRAMES = 1_000_000
CONTAINER = "mp4"
EXTENSION = ".mp4"
# libx265 4.2 misbehaves on small frames (a side under 128, i.e. less than two CTUs): lossless
# inter frames that FFmpeg's decoder (the reference here) reconstructs differently (seen at
# widths 16..64), and output that changes from run to run even single-threaded (seen up to
# 64x128 at --preset slower; uninitialised memory, by the look of it). Intra-only coding of
# such streams was exact and deterministic in every case tried, and for weight tiles it is
# no bigger. So small frames (the edge tiles of a layer) are coded as intra frames, and a
# lossless stream that still fails its round-trip check is coded again that way.
INTRA = "keyint=1:bframes=0"  # later x265 options override earlier ones
WORKAROUNDS = ("", INTRA)
NARROW = 128


def geometry_workaround(height: int, width: int) -> str:
    return INTRA if min(height, width) < NARROW else ""


class VideoError(ValueError):
    """A stream that cannot be made or read as described; the message names the problem."""


@dataclass(frozen=True)
class Codec:
    name: str  # bitstream name as FFmpeg's decoders know it
    encoder: str  # FFmpeg encoder wrapping the library
    codec_tag: str | None  # MP4 sample entry

    def params(self, settings: "VideoSettings") -> str:
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


CODECS: dict[str, Codec] = {"hevc": X265("hevc", "libx265", "hvc1")}


@dataclass(frozen=True)
class VideoSettings:
    """How one stream is coded. ``crf`` 0 means true lossless (x265 ``lossless=1``)."""

    codec: str = "hevc"
    bit_depth: int = 8
    pix_fmt: str = "gray"  # gray: 4:0:0 (HEVC RExt); yuv420: data in Y, neutral chroma (Main/Main10)
    crf: int = 0
    preset: str = "medium"
    workaround: str = ""  # one of WORKAROUNDS: INTRA for narrow frames (see above)

    @property
    def lossless(self) -> bool:
        return self.crf == 0

    def validate(self) -> "VideoSettings":
        if self.codec not in CODECS:
            raise VideoError(f"codec must be one of {sorted(CODECS)}, got {self.codec!r}")
        if self.bit_depth not in BIT_DEPTHS:
            raise VideoError(f"bit depth must be one of {BIT_DEPTHS}, got {self.bit_depth}")
        if self.pix_fmt not in PIX_FMTS:
            raise VideoError(f"pixel format must be one of {PIX_FMTS}, got {self.pix_fmt!r}")
        if not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise VideoError(f"CRF must be an integer in 0..51 (0 = lossless), got {self.crf!r}")
        if self.workaround not in WORKAROUNDS:
            raise VideoError(f"unknown encoder workaround {self.workaround!r}")
        if self.preset not in PRESETS:
            raise VideoError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        return self

    @property
    def av_pix_fmt(self) -> str:
        if self.pix_fmt == "gray":
            return "gray" if self.bit_depth == 8 else f"gray{self.bit_depth}le"
        return "yuv420p" if self.bit_depth == 8 else f"yuv420p{self.bit_depth}le"

    @property
    def even(self) -> bool:
        """4:2:0 needs even frame sizes."""
        return self.pix_fmt == "yuv420"

    def encoder_params(self) -> str:
        return CODECS[self.codec].params(self)

    def to_dict(self) -> dict:
        return {"codec": self.codec, "encoder": CODECS[self.codec].encoder, "container": CONTAINER,
                "bit_depth": self.bit_depth, "pix_fmt": self.pix_fmt, "crf": self.crf, "lossless": self.lossless,
                "preset": self.preset, "params": self.encoder_params()}


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

    Narrow frames are coded as intra frames (:data:`INTRA`). Lossless streams are always
    decoded and compared with the input; one that differs is coded again as intra frames,
    and if that too differs it is an error. ``EncodedStream.settings`` says what was used.
    """
    settings.validate()
    if not frames:
        raise VideoError("no frames to encode")
    h, w = np.asarray(frames[0]).shape
    if not settings.workaround:
        settings = replace(settings, workaround=geometry_workaround(h, w))
    encoded = _encode(frames, settings)
    if not (settings.lossless or decode):
        return encoded
    encoded.decoded = _decode_like(encoded, frames)
    if settings.lossless and not np.array_equal(encoded.decoded, np.stack([np.asarray(f) for f in frames])):
        if settings.workaround == INTRA:
            raise VideoError(f"lossless {h}x{w} stream does not decode to its input, even as intra frames")
        return encode_frames(frames, replace(settings, workaround=INTRA), decode=decode)
    return encoded


def _decode_like(encoded: EncodedStream, frames) -> np.ndarray:
    h, w = frames[0].shape
    return decode_frames(encoded.data, encoded.settings, height=h, width=w, count=len(frames))


def _encode(frames: Sequence[np.ndarray], settings: VideoSettings) -> EncodedStream:
    if not frames:
        raise VideoError("no frames to encode")
    h, w = frames[0].shape
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise VideoError(f"frame size {h}x{w} outside 1..{MAX_SIDE}")
    if settings.even and (h % 2 or w % 2):
        raise VideoError(f"4:2:0 needs even frame sizes, got {h}x{w}")
    peak = 2**settings.bit_depth - 1
    dtype = _dtype(settings.bit_depth)
    codec = CODECS[settings.codec]
    buf = io.BytesIO()
    sizes: dict[int, int] = {}
    order: list[int] = []
    try:
        out = av.open(buf, "w", format=CONTAINER, container_options={"fflags": "+bitexact"})
        try:
            stream = out.add_stream(codec.encoder, rate=Fraction(25, 1))
            stream.width, stream.height, stream.pix_fmt = w, h, settings.av_pix_fmt
            stream.codec_context.color_range = 2  # full (pc) range, as range=full says
            if codec.codec_tag:
                stream.codec_tag = codec.codec_tag
            stream.options = {"preset": settings.preset, "x265-params": settings.encoder_params()}

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
                vf = av.VideoFrame(w, h, settings.av_pix_fmt)
                y = f.astype(dtype)
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
    """What the container says about its (single) video stream, without decoding."""
    try:
        with av.open(io.BytesIO(data), "r") as c:
            videos = c.streams.video
            if len(c.streams) != 1 or len(videos) != 1:
                raise VideoError(f"expected exactly one video stream, found {len(c.streams)} streams")
            st = videos[0]
            cc = st.codec_context
            return {"codec": cc.name, "width": cc.width, "height": cc.height, "frames": int(st.frames),
                    "pix_fmt": cc.pix_fmt, "profile": cc.profile, "container": c.format.name}
    except av.FFmpegError as exc:
        raise VideoError(f"not a readable {CONTAINER} stream ({exc})") from exc


def decode_frames(data: bytes, settings: VideoSettings, *, height: int, width: int, count: int) -> np.ndarray:
    """Decode a stream made by :func:`encode_frames` → (count, height, width) uint16 luma in
    display (input) order. Anything that disagrees with the expected codec, size, pixel
    format or frame count is an error, checked before and while decoding."""
    settings.validate()
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and 1 <= count <= MAX_FRAMES):
        raise VideoError(f"implausible stream geometry: {count} frames of {height}x{width}")
    info = probe(data)
    codec = CODECS[settings.codec]
    if info["codec"] != codec.name:
        raise VideoError(f"stream is {info['codec']}, expected {codec.name}")
    if (info["height"], info["width"]) != (height, width):
        raise VideoError(f"stream frames are {info['height']}x{info['width']}, expected {height}x{width}")
    if info["frames"] != count:
        raise VideoError(f"stream holds {info['frames']} frames, expected {count}")
    expected_fmts = {settings.av_pix_fmt}
    if settings.av_pix_fmt == "yuv420p":
        expected_fmts.add("yuvj420p")  # full-range 8-bit 4:2:0 as FFmpeg names it
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
                out[n] = _luma(frame, settings.bit_depth)
                n += 1
    except av.FFmpegError as exc:
        raise VideoError(f"stream does not decode ({exc})") from exc
    if n != count:
        raise VideoError(f"stream decodes to {n} frames, expected {count} (truncated or damaged)")
    return out


__all__ = ["BIT_DEPTHS", "CODECS", "CONTAINER", "EXTENSION", "EncodedStream", "INTRA", "PIX_FMTS", "PRESETS",
           "VideoError", "VideoSettings", "WORKAROUNDS", "decode_frames", "encode_frames", "geometry_workaround",
           "probe"]


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
