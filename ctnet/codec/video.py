"""Where the bitstream is made: lists of 2-D integer frames ↔ one stream, through PyAV's
bundled encoders: HEVC (libx265), H.264 (libx264), AV1 (libsvtav1, decoded by libdav1d) and
FFV1. The only module of ``ctnet`` that imports ``av``; what each codec accepts is in
:mod:`ctnet.codec.registry`.

Streams are files in a standard container (MP4; Matroska for FFV1) that ffprobe and
players open, written bit-exactly (no creation time, no muxer version), so the same frames
and settings give the same bytes.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable, Sequence, cast

# SVT-AV1 prints a banner and per-stream info straight to stderr unless told otherwise; it
# reads this once, when its first encoder is created. 1 = errors only.
os.environ.setdefault("SVT_LOG", "1")

import av  # noqa: E402
import numpy as np  # noqa: E402

from .registry import (CODECS, INTRA, INTRA_FALLBACK, MAX_FRAMES, MAX_SIDE, NARROW,  # noqa: E402,F401
                       PIX_FMTS, PLANE_CODECS, PRESETS, QUICK, VIDEO_BIT_DEPTHS, WORKAROUNDS, Codec, VideoError,
                       VideoSettings, default_codec, geometry_workaround)


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


def encode_frames(frames: Sequence[np.ndarray], settings: VideoSettings, *, decode: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> EncodedStream:
    """Encode equally sized 2-D integer frames (values in [0, 2^b − 1]) as one stream and,
    with ``decode``, decode it back (``EncodedStream.decoded``). ``progress(frames coded,
    frames in all)`` is called as the encoder hands back each coded frame.

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
    if settings.workaround in ("", QUICK) and geometry_workaround(h, w, settings.codec):
        settings = replace(settings, workaround=geometry_workaround(h, w, settings.codec))  # intra is quick too
    encoded = _encode(frames, settings, progress)
    if not (settings.lossless or decode):
        return encoded
    encoded.decoded = _decode_like(encoded, frames)
    if settings.lossless and not np.array_equal(encoded.decoded, np.stack([np.asarray(f) for f in frames])):
        if settings.codec not in INTRA_FALLBACK or settings.workaround == INTRA:
            raise VideoError(f"lossless {h}x{w} {settings.codec} stream does not decode to its input"
                             + (", even as intra frames" if settings.codec in INTRA_FALLBACK else ""))
        return encode_frames(frames, replace(settings, workaround=INTRA), decode=decode, progress=progress)
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


def _encode(frames: Sequence[np.ndarray], settings: VideoSettings,
            progress: Callable[[int, int], None] | None = None) -> EncodedStream:
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
            stream = cast(av.VideoStream, out.add_stream(codec.encoder, rate=Fraction(25, 1)))
            stream.width, stream.height, stream.pix_fmt = w, h, fmt
            stream.codec_context.color_range = 2  # full (pc) range: every level is data
            if codec.codec_tag:
                stream.codec_tag = codec.codec_tag
            stream.options = dict[str, object](settings.encoder_options())

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
                    if progress:
                        progress(len(sizes), len(frames))

            for i, f in enumerate(frames):
                if f.shape != (h, w):
                    raise VideoError(f"frame {i} is {f.shape[0]}x{f.shape[1]}, the stream is {h}x{w}")
                if f.size and (int(f.min()) < 0 or int(f.max()) > peak):
                    raise VideoError(f"frame {i} has values outside 0..{peak}")
                vf = av.VideoFrame(w, h, fmt)
                y = np.left_shift(f.astype(dtype), shift) if shift else f.astype(dtype)
                if settings.pix_fmt == "gray":
                    _fill(vf, [y])
                else:
                    chroma = np.full((h // 2, w // 2), 1 << (settings.bit_depth - 1), dtype)
                    _fill(vf, [y, chroma, chroma])
                vf.pts = i
                vf.color_range = 2
                collect(stream.encode(vf))
            # the lookahead holds most frames until the flush: take its packets one by one, so
            # progress (and a cancel between frames) follows the coding
            for p in stream.codec_context.encode_lazy(None):
                p.stream = stream
                collect([p])
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
    except (av.FFmpegError, AttributeError, TypeError, ValueError) as exc:  # a damaged header can yield no codec
        if isinstance(exc, VideoError):
            raise
        raise VideoError(f"not a readable video stream ({type(exc).__name__}: {exc})") from exc


def _bitstream_name(cc) -> str:
    """FFmpeg's codec id name (AV1 streams report the decoder libdav1d otherwise)."""
    try:
        return cc.codec.canonical_name
    except AttributeError:
        return {"libdav1d": "av1"}.get(cc.name, cc.name) if isinstance(getattr(cc, "name", None), str) else "?"


def check_header(data: bytes, settings: VideoSettings, *, height: int, width: int, count: int) -> set[str]:
    """What the stream's container says (codec, frame size, frame count, pixel format),
    checked against what ``settings`` and the plan expect, without decoding a frame (``ctnet
    verify``; :func:`decode_frames` starts with it). → the pixel formats its frames may decode to."""
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
    if info["pix_fmt"] and info["pix_fmt"] not in expected_fmts:
        raise VideoError(f"stream is {info['pix_fmt']}, expected {settings.av_pix_fmt}")
    return expected_fmts


def decode_frames(data: bytes, settings: VideoSettings, *, height: int, width: int, count: int,
                  packet_sizes: list | None = None) -> np.ndarray:
    """Decode a stream made by :func:`encode_frames` → (count, height, width) uint16 luma in
    display (input) order. Anything that disagrees with the expected codec, size, pixel
    format or frame count is an error, checked before and while decoding."""
    expected_fmts = check_header(data, settings, height=height, width=width, count=count)
    out = np.empty((count, height, width), np.uint16)
    n = 0
    try:
        with av.open(io.BytesIO(data), "r") as c:
            st = c.streams.video[0]
            st.codec_context.thread_type = "AUTO"
            for frame in _frames(c, st, packet_sizes):
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
    if packet_sizes is not None and len(packet_sizes) != count:
        raise VideoError(f"stream holds {len(packet_sizes)} packets, expected {count}")
    return out


def _frames(container, stream, packet_sizes: list | None):
    """The stream's decoded frames; with ``packet_sizes``, also fill it with each frame's
    packet bytes in display (input) order — read in the same demux pass."""
    if packet_sizes is None:
        yield from container.decode(stream)
        return
    sizes: dict[int, int] = {}
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None:
            sizes[int(packet.pts)] = packet.size
        yield from packet.decode()
    packet_sizes[:] = [sizes[k] for k in sorted(sizes)]


__all__ = ["CODECS", "Codec", "EncodedStream", "INTRA", "PIX_FMTS",
           "PLANE_CODECS", "PRESETS", "VIDEO_BIT_DEPTHS",
           "VideoError", "VideoSettings", "WORKAROUNDS", "check_geometry", "default_codec",
           "check_header", "decode_frames", "encode_frames", "geometry_workaround", "probe"]


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
