"""A bundle: one directory holding everything needed to rebuild a model exactly.

``manifest.json``
    Versioned JSON (``format`` ``ctnet-bundle``, ``version`` 1): the model description,
    label map, image size, the source's export-aware bit depth and metrics, the video and BN
    settings, per layer its shape, first frame number, per-frame ``scale`` (exact float32) and
    ``zero_point`` and the bytes its frames cost, and per stream its file, frame size, frame
    order, size, SHA-256 and the exact encoder options.
``w_<H>x<W>.mp4`` (``.mkv`` for FFV1)
    One video stream per coded frame size (tiles of the same size share a stream), in the
    bundle's codec: HEVC (default), H.264, AV1 or FFV1.
``w.xz`` / ``w.zst``
    … or, with a plane codec (``xz``, ``zstd``), every weight pixel in one compressed file of
    layer images (``ctnet.codec.planes``).
``bn.safetensors`` (``--bn-mode raw``) or ``bn_<H>x<W>.mp4`` / ``bn.xz`` (``--bn-mode video``)
    BatchNorm as one float32 [4, C] tensor per layer (weight, bias, running_mean, running_var);
    with a plane codec the raw file is compressed by it (``bn.safetensors.xz``).

Everything is built in memory (:func:`encode_model` → :class:`Encoded`), so the app can look
at a bundle without files; :func:`write_bundle` puts it on disk atomically and
:func:`read_bundle` validates and decodes a directory. Any problem with a bundle raises
:class:`BundleError` (a ``ValueError``) whose message names it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
import time
from typing import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .. import export, quant
from ..layers import configure_export_training
from ..models import ModelSpec, build_model, fp32_bytes
from . import frames as F
from . import planes as P
from . import video as V

FORMAT = "ctnet-bundle"
VERSION = 1
MANIFEST = "manifest.json"
BN_FILE = "bn.safetensors"
MAX_MANIFEST_BYTES = 64 << 20
MAX_FILE_BYTES = 4 << 30
MAX_TILE = 1024
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
BN_MODES = ("raw", "video")


class BundleError(ValueError):
    """A bundle that cannot be written or read as described; the message names the problem."""


# --- settings ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides a bundle's bytes. ``crf`` 0 (and ``bn_crf`` 0) = lossless."""

    crf: int = 0
    bit_depth: int = 8
    pix_fmt: str = "gray"
    preset: str = "medium"
    dither: float = 0.0  # subtractive dither amplitude in pixel steps (0 = off)
    seed: int = 0
    bn_mode: str = "raw"
    bn_crf: int = 0
    bn_bit_depth: int = 12
    tile: int = quant.TILE
    order: str = "similarity"
    codec: str = "hevc"

    def video(self) -> V.VideoSettings:
        return V.VideoSettings(self.codec, self.bit_depth, self.pix_fmt, self.crf, self.preset)

    def bn_video(self) -> V.VideoSettings:
        return V.VideoSettings(self.codec, self.bn_bit_depth, self.pix_fmt, self.bn_crf, self.preset)

    def validate(self) -> "EncodeSettings":
        """The checked settings. Plane codecs code frames in model order, so their ``order``
        is returned as ``natural`` whatever was asked (it has no effect on them)."""
        try:
            self.video().validate()
            if self.bn_mode == "video":
                self.bn_video().validate()
            F.check_dither(self.dither)
        except (V.VideoError, ValueError, TypeError) as exc:
            raise BundleError(str(exc)) from exc
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise BundleError(f"dither seed must be an integer in [0, 2^63), got {self.seed!r}")
        if self.bn_mode not in BN_MODES:
            raise BundleError(f"BN mode must be one of {BN_MODES}, got {self.bn_mode!r}")
        if not isinstance(self.tile, int) or not F.MIN_SIDE <= self.tile <= MAX_TILE:
            raise BundleError(f"tile size must be an integer in {F.MIN_SIDE}..{MAX_TILE}, got {self.tile!r}")
        if self.order not in F.ORDERS:
            raise BundleError(f"frame order must be one of {F.ORDERS}, got {self.order!r}")
        if self.family == "planes" and self.order != "natural":
            return replace(self, order="natural")
        return self

    @property
    def family(self) -> str:
        return V.CODECS[self.codec].family if self.codec in V.CODECS else ""

    def to_dict(self) -> dict:
        return asdict(self)


# --- encoding ----------------------------------------------------------------------------------

@dataclass
class Encoded:
    """A bundle in memory: its files, its manifest, and what the app shows about it."""

    files: dict[str, bytes]
    manifest: dict
    layers: list[dict]  # name, kind, bytes, frames, max_abs_error, max_half_step
    streams: list[dict]  # file, kind, height, width, frames, bytes, frame_bytes, order, coded_order
    frames_stored: list[dict]  # model order: layer, tile, frame, box, pixels (unpadded)
    frames_coded: dict[str, np.ndarray]  # per stream file, (n, H, W) as fed to the encoder
    frames_decoded: dict[str, np.ndarray]  # per stream file, (n, H, W) as a decoder returns them
    model: nn.Module  # decoded from the encoded bytes
    seconds: float
    fp32_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())

    def summary(self) -> dict:
        """JSON-ready report (``ctnet encode --json``)."""
        total = self.total_bytes
        return {"total_bytes": total, "fp32_bytes": self.fp32_bytes, "ratio": self.fp32_bytes / total,
                "seconds": round(self.seconds, 3), "settings": self.manifest["settings"],
                "files": {k: len(v) for k, v in sorted(self.files.items())},
                "streams": [{k: s[k] for k in ("file", "kind", "height", "width", "frames", "bytes", "workaround")}
                            for s in self.streams],
                "layers": [{k: layer[k] for k in ("name", "kind", "bytes", "frames", "max_abs_error")}
                           for layer in self.layers]}


def _f32(x) -> float:
    """A float32 as the shortest decimal that parses back (via float64) to the same float32."""
    f = np.float32(x)
    short = float(str(f))
    return short if np.float32(short) == f else float(f)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bn_image(m: nn.Module) -> torch.Tensor:
    if m.weight is None or m.bias is None or m.running_mean is None or m.running_var is None:
        raise BundleError("BatchNorm layers without affine parameters or running statistics are not supported")
    return torch.stack([m.weight.detach(), m.bias.detach(), m.running_mean.detach(), m.running_var.detach()]).float().cpu()


def _check_state(model: nn.Module, video: dict, bns: dict) -> None:
    covered = set(video)
    for name in bns:
        prefix = f"{name}." if name else ""
        covered |= {prefix + k for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    extra = sorted(set(model.state_dict()) - covered)
    if extra:
        raise BundleError(f"model has tensors a bundle cannot store: {', '.join(extra[:5])}")
    for name, t in {**video, **{n: _bn_image(m) for n, m in bns.items()}}.items():
        if not torch.isfinite(t).all():
            raise BundleError(f"{name} has non-finite values; nothing to encode")


def _version() -> str:
    from .. import __version__
    return __version__


def _layout(settings: EncodeSettings) -> dict:
    """How tiles become frames: what a reader must agree with to crop them back."""
    codec = V.CODECS[settings.codec]
    if codec.family == "planes":
        return {"tile": settings.tile, "min_side": 1, "pad": "none", "even": False, "square": None,
                "frames": f"model order: layers as listed, tiles row-major; each kind's pixels in one file of "
                          f"{P.ORDER} layer images"}
    layout = {"tile": settings.tile, "min_side": codec.min_side, "pad": "wrap", "even": settings.pix_fmt == "yuv420",
              "square": _square(settings),
              "frames": "model order: layers as listed, tiles row-major; streams list them in coded order"}
    if codec.max_aspect:
        layout["max_aspect"] = codec.max_aspect
    return layout


LAYOUT_KEYS = {"tile": None, "min_side": None, "pad": None, "even": None, "square": None, "max_aspect": 0}


def _square(settings: EncodeSettings) -> int | None:
    """HEVC 4:2:0 bundles are for hardware decoders: every tile is padded to one square size
    of at least two CTUs, so all of it is one Main/Main10 stream with inter frames (x265
    codes smaller frames only as intra frames, which are RExt profiles; see video.py)."""
    if settings.pix_fmt != "yuv420" or settings.codec != "hevc":
        return None
    side = max(settings.tile, V.NARROW)
    return side + side % 2


def coded_frame_size(settings: EncodeSettings, height: int, width: int) -> tuple[int, int]:
    """The frame size a (height, width) tile is coded at under ``settings`` (padding rules of
    the codec and pixel format; plane codecs code tiles as they are)."""
    codec = V.CODECS[settings.codec]
    if codec.family == "planes":
        return height, width
    return F.coded_size(height, width, min_side=codec.min_side, even=settings.pix_fmt == "yuv420",
                        square=_square(settings), max_aspect=codec.max_aspect)


def _stream_name(kind: str, size: tuple[int, int], codec: str) -> str:
    return f"{'w' if kind == 'weight' else 'bn'}_{size[0]}x{size[1]}{V.CODECS[codec].extension}"


def _plane_name(kind: str, codec: str) -> str:
    return f"{'w' if kind == 'weight' else 'bn'}{V.CODECS[codec].extension}"


def _bn_file(codec: str) -> str:
    """Raw BN is stored as is beside video streams, compressed beside plane files."""
    c = V.CODECS[codec]
    return BN_FILE + (c.extension if c.family == "planes" else "")


def _source_meta(meta: dict, spec: ModelSpec) -> dict:
    labels = meta.get("label_map")
    if labels is None:
        try:
            from ..data import label_map
            labels = label_map(spec.num_classes)
        except ValueError:
            labels = None
    return {"model": spec.to_dict(), "label_map": labels, "image_size": int(meta.get("image_size", 128)),
            "pixel_bit_depth": int(meta.get("pixel_bit_depth", 0)),
            "source": {"metrics": meta.get("metrics"), "epoch": meta.get("epoch")}}


@torch.no_grad()
def encode_model(model: nn.Module, meta: dict, settings: EncodeSettings | None = None, *,
                 progress: Callable[[int, int], None] | None = None) -> Encoded:
    """Encode a model (with its checkpoint metadata: ``model`` spec, label map, image size,
    metrics) into an in-memory bundle, then decode those bytes back into a model.
    ``progress(frames done, frames in all)`` is called as each stream (or plane file) is coded."""
    t0 = time.perf_counter()
    settings = (settings or EncodeSettings()).validate()
    spec = ModelSpec.from_dict(meta["model"])
    video_tensors = export.video_tensors(model)
    bns = export.bn_layers(model)
    _check_state(model, video_tensors, bns)

    tensors: list[tuple[str, str, F.TensorFrames]] = []
    next_frame = 0
    for name, t in video_tensors.items():
        tf = F.quantize_tensor(name, t, bits=settings.bit_depth, tile=settings.tile, first_frame=next_frame,
                               dither=settings.dither, seed=settings.seed)
        tensors.append(("weight", name, tf))
        next_frame += len(tf.boxes)
    bn_images = {name: _bn_image(m) for name, m in bns.items()}
    if settings.bn_mode == "video":
        for name, img in bn_images.items():
            tf = F.quantize_tensor(name, img, bits=settings.bn_bit_depth, tile=settings.tile, first_frame=next_frame)
            tensors.append(("bn", name, tf))
            next_frame += len(tf.boxes)

    frames_stored = [{"layer": name, "kind": kind, "tile": k, "frame": tf.first_frame + k, "box": box, "pixels": pix}
                     for kind, name, tf in tensors for k, (box, pix) in enumerate(zip(tf.boxes, tf.pixels))]
    if settings.family == "planes":
        coded = _plane_streams(tensors, settings, progress)
    else:
        coded = _video_streams(tensors, settings, progress)
    files, streams, frame_bytes, frames_coded, frames_decoded, decoded_frames = coded

    bn_bytes = None
    if settings.bn_mode == "raw":
        bn_bytes = st_save({name: img.contiguous() for name, img in bn_images.items()})
        files[_bn_file(settings.codec)] = (P.compress(settings.codec, bn_bytes, "f32")
                                           if settings.family == "planes" else bn_bytes)

    layers_m = []
    for kind, name, tf in tensors:
        fb = [frame_bytes[i] for i in tf.frame_ids]
        layers_m.append({"name": name, "kind": kind, "shape": list(tf.shape), "image": list(tf.image_shape),
                         "first_frame": tf.first_frame,
                         "scale": [_f32(s) for s in tf.scale], "zero_point": [int(z) for z in tf.zero_point],
                         "bytes": sum(fb), "frame_bytes": fb})
    manifest = {
        "format": FORMAT, "version": VERSION, **_source_meta(meta, spec),
        "fp32_bytes": fp32_bytes(model),
        "ctnet_version": _version(),
        "settings": settings.to_dict(),
        "layout": _layout(settings),
        "video": settings.video().to_dict(),
        "bn": (_raw_bn_entry(settings, files, bn_bytes, list(bn_images)) if settings.bn_mode == "raw" else
               {"mode": "video", "video": settings.bn_video().to_dict(), "layers": list(bn_images)}),
        "layers": layers_m,
        "streams": [{k: s[k] for k in ("file", "kind", "height", "width", "frames", "order", "bytes", "sha256",
                                       "params", "options") if s.get(k) is not None} for s in streams],
    }
    files[MANIFEST] = (json.dumps(manifest, separators=(",", ":")) + "\n").encode()

    decoded_model = _rebuild(manifest, decoded_frames, st_load(bn_bytes) if bn_bytes is not None else None)
    reference = {**video_tensors, **bn_images}
    decoded_state = {**export.video_tensors(decoded_model),
                     **{n: _bn_image(m) for n, m in export.bn_layers(decoded_model).items()}}
    layers = []
    for kind, name, tf in tensors:
        err = float((decoded_state[name].float() - reference[name].float()).abs().max())
        layers.append({"name": name, "kind": kind, "bytes": sum(frame_bytes[i] for i in tf.frame_ids),
                       "frames": len(tf.boxes), "max_abs_error": err,
                       "max_half_step": float(tf.scale.max()) / 2, "shape": list(tf.shape)})
    if settings.bn_mode == "raw":
        for name, img in bn_images.items():
            err = float((decoded_state[name] - img).abs().max())
            layers.append({"name": name, "kind": "bn", "bytes": img.numel() * 4, "frames": 0,
                           "max_abs_error": err, "max_half_step": 0.0, "shape": list(img.shape)})
    return Encoded(files, manifest, layers, streams, frames_stored, frames_coded, frames_decoded, decoded_model,
                   time.perf_counter() - t0, manifest["fp32_bytes"])


def _raw_bn_entry(settings: EncodeSettings, files: dict, raw: bytes, layers: list[str]) -> dict:
    name = _bn_file(settings.codec)
    entry = {"mode": "raw", "file": name, "bytes": len(files[name]), "sha256": _sha256(files[name]), "layers": layers}
    if settings.family == "planes":
        entry.update(compression=settings.codec, raw_bytes=len(raw),
                     options=P.options(settings.codec, 32, "f32"))
    return entry


def _video_streams(tensors: list[tuple[str, str, F.TensorFrames]], settings: EncodeSettings, progress=None):
    """Tiles grouped by (kind, coded size), padded, ordered, one video stream per group."""
    groups: dict[tuple[str, tuple[int, int]], list[tuple[int, np.ndarray]]] = {}
    for kind, name, tf in tensors:
        for k, (box, pix) in enumerate(zip(tf.boxes, tf.pixels)):
            size = coded_frame_size(settings, box[2], box[3])
            groups.setdefault((kind, size), []).append((tf.first_frame + k, F.pad_frame(pix, size)))
    files: dict[str, bytes] = {}
    streams, frame_bytes, frames_coded, frames_decoded = [], {}, {}, {}
    decoded_frames: dict[int, np.ndarray] = {}
    total, done = sum(len(m) for m in groups.values()), 0
    for (kind, size), members in sorted(groups.items(), key=lambda kv: (kv[0][0] != "weight", kv[0][1])):
        ids = [i for i, _ in members]
        stack = np.stack([p for _, p in members])
        perm = F.stream_order(stack, settings.order)
        coded = stack[perm]
        vs = settings.video() if kind == "weight" else settings.bn_video()
        try:
            enc = V.encode_frames(list(coded), vs, decode=True)
        except V.VideoError as exc:
            raise BundleError(f"{kind} stream {size[0]}x{size[1]}: {exc}") from exc
        fname = _stream_name(kind, size, settings.codec)
        order = [ids[j] for j in perm]
        files[fname] = enc.data
        for j, fid in enumerate(order):
            frame_bytes[fid] = enc.frame_bytes[j]
            decoded_frames[fid] = enc.decoded[j]
        frames_coded[fname], frames_decoded[fname] = coded, enc.decoded
        streams.append({"file": fname, "kind": kind, "height": size[0], "width": size[1], "frames": len(order),
                        "order": order, "bytes": len(enc.data), "sha256": _sha256(enc.data),
                        "params": enc.settings.encoder_params(), "options": enc.settings.encoder_options(),
                        "workaround": enc.settings.workaround,
                        "frame_bytes": [enc.frame_bytes[j] for j in range(len(order))],
                        "coded_order": [order[j] for j in enc.coded_order]})
        done += len(order)
        if progress:
            progress(done, total)
    return files, streams, frame_bytes, frames_coded, frames_decoded, decoded_frames


def _plane_streams(tensors: list[tuple[str, str, F.TensorFrames]], settings: EncodeSettings, progress=None):
    """One compressed file of layer images per kind (``ctnet.codec.planes``), decoded back
    and compared before it is trusted. Frames have no bytes of their own in such a file:
    ``frame_bytes`` apportions the file's bytes (``planes.apportion``). ``frames_coded`` and
    ``frames_decoded`` stay empty: there are no coded frames, only layer images."""
    files: dict[str, bytes] = {}
    streams, frame_bytes, decoded_frames = [], {}, {}
    total, done = sum(len(tf.boxes) for _, _, tf in tensors), 0
    for kind in ("weight", "bn"):
        members = [tf for k, _, tf in tensors if k == kind]
        if not members:
            continue
        vs = settings.video() if kind == "weight" else settings.bn_video()
        layers = [(tf.shape, tf.boxes, tf.pixels, tf.zero_point) for tf in members]
        try:
            data = P.encode(settings.codec, layers, vs.bit_depth)
            decoded = P.decode(settings.codec, data, [(tf.shape, tf.boxes, tf.zero_point) for tf in members],
                               vs.bit_depth)
        except P.PlaneError as exc:
            raise BundleError(f"{kind} planes: {exc}") from exc
        ids = [fid for tf in members for fid in tf.frame_ids]
        pixels = [p for tf in members for p in tf.pixels]
        back = [p for tiles in decoded for p in tiles]
        if not all(np.array_equal(a, b) for a, b in zip(pixels, back)):
            raise BundleError(f"{kind} planes: {settings.codec} does not give back its input")
        fb = P.apportion(len(data), pixels)
        for fid, b, p in zip(ids, fb, back):
            frame_bytes[fid], decoded_frames[fid] = b, p
        fname = _plane_name(kind, settings.codec)
        files[fname] = data
        streams.append({"file": fname, "kind": kind, "height": None, "width": None, "frames": len(ids),
                        "order": ids, "bytes": len(data), "sha256": _sha256(data), "params": vs.encoder_params(),
                        "options": vs.encoder_options(), "workaround": "", "frame_bytes": fb, "coded_order": ids})
        done += len(ids)
        if progress:
            progress(done, total)
    return files, streams, frame_bytes, {}, {}, decoded_frames


# --- writing ---------------------------------------------------------------------------------

def write_bundle(files: dict[str, bytes] | Encoded, dest: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a bundle's files into a temporary directory beside ``dest`` and rename it into
    place, so an interrupted write leaves no half-written bundle. An existing ``dest`` is
    replaced only with ``overwrite`` and only if it is a bundle (or empty)."""
    if isinstance(files, Encoded):
        files = files.files
    dest = Path(dest)
    for name in files:
        _check_name(name)
    if dest.exists() or dest.is_symlink():
        if not overwrite:
            raise BundleError(f"{dest} already exists (pass --force to replace it)")
        if not dest.is_dir() or dest.is_symlink() or (any(dest.iterdir()) and not (dest / MANIFEST).is_file()):
            raise BundleError(f"{dest} exists and is not a bundle directory; refusing to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    old = None
    try:
        for name, data in sorted(files.items()):
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.rename(dest, old / "bundle")
        os.rename(tmp, dest)
    except BaseException:
        if old is not None and not dest.exists():
            os.rename(old / "bundle", dest)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


# --- reading -----------------------------------------------------------------------------------

def _check_name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise BundleError(f"file name {name!r} is not a plain file name inside the bundle")
    return name


def _need(d, key: str, kind, where: str):
    if not isinstance(d, dict) or key not in d:
        raise BundleError(f"manifest is missing field '{where}{key}'")
    value = d[key]
    ok = isinstance(value, kind) and not (kind in (int, (int, float)) and isinstance(value, bool))
    if not ok:
        raise BundleError(f"manifest field '{where}{key}' has the wrong type ({type(value).__name__})")
    return value


def _int_list(values, n: int, lo: int, hi: int, where: str) -> list[int]:
    if not isinstance(values, list) or len(values) != n:
        raise BundleError(f"manifest field '{where}' must list {n} values")
    if not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in values):
        raise BundleError(f"manifest field '{where}' has values outside {lo}..{hi}")
    return values


def _settings_from(manifest: dict) -> EncodeSettings:
    s = _need(manifest, "settings", dict, "")
    try:
        settings = EncodeSettings(**{k: s[k] for k in EncodeSettings.__dataclass_fields__})
    except KeyError as exc:
        raise BundleError(f"manifest is missing field 'settings.{exc.args[0]}'") from exc
    except TypeError as exc:
        raise BundleError(f"manifest field 'settings' is malformed ({exc})") from exc
    for key, kind in (("crf", int), ("bit_depth", int), ("bn_crf", int), ("bn_bit_depth", int), ("tile", int),
                      ("seed", int), ("dither", (int, float)), ("pix_fmt", str), ("preset", str), ("bn_mode", str),
                      ("order", str), ("codec", str)):
        _need(s, key, kind, "settings.")
    return settings.validate()


def read_manifest(data: bytes) -> dict:
    """Parse and check the top level of a manifest (format, version)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST}: format is {manifest.get('format')!r}, not {FORMAT!r}")
    version = _need(manifest, "version", int, "")
    if version != VERSION:
        raise BundleError(f"unknown bundle format version {version} (this ctnet reads version {VERSION})")
    return manifest


def referenced_files(manifest: dict) -> dict[str, tuple[int, str]]:
    """name → (bytes, sha256) of every file the manifest needs, names checked."""
    out = {}
    streams = _need(manifest, "streams", list, "")
    for i, s in enumerate(streams):
        name = _check_name(_need(s, "file", str, f"streams[{i}]."))
        out[name] = (_need(s, "bytes", int, f"streams[{i}]."), _need(s, "sha256", str, f"streams[{i}]."))
    bn = _need(manifest, "bn", dict, "")
    if _need(bn, "mode", str, "bn.") == "raw":
        name = _check_name(_need(bn, "file", str, "bn."))
        out[name] = (_need(bn, "bytes", int, "bn."), _need(bn, "sha256", str, "bn."))
    if MANIFEST in out or len(out) != len(streams) + (bn.get("mode") == "raw"):
        raise BundleError("manifest names the same file twice")
    return out


def load_files(path: str | os.PathLike) -> dict[str, bytes]:
    """The files of a bundle directory that its manifest names (plus the manifest), after
    checking names, file types and sizes against the manifest."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    files = {MANIFEST: _read_plain(root, MANIFEST, None)}
    manifest = read_manifest(files[MANIFEST])
    for name, (size, _) in referenced_files(manifest).items():
        files[name] = _read_plain(root, name, size)
    return files


def _read_plain(root: Path, name: str, size: int | None) -> bytes:
    p = root / _check_name(name)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise BundleError(f"{name}: missing from the bundle") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{name}: not a regular file (links are not followed)")
    limit = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_FILE_BYTES
    if st.st_size > limit:
        raise BundleError(f"{name}: {st.st_size} bytes is more than a bundle file may hold")
    if size is not None and st.st_size != size:
        raise BundleError(f"{name}: {st.st_size} bytes on disk, the manifest says {size} (truncated or replaced)")
    with open(p, "rb") as f:
        return f.read()


def directory_bytes(path: str | os.PathLike) -> int:
    """Every byte of every file under a bundle directory (SPEC §4's size accounting)."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _layer_plan(manifest: dict, model: nn.Module, settings: EncodeSettings) -> list[dict]:
    """Check the manifest's layers against the model it describes; return the checked plan."""
    layers = _need(manifest, "layers", list, "")
    expected = {n: ("weight", tuple(t.shape)) for n, t in export.video_tensors(model).items()}
    bn_names = list(export.bn_layers(model))
    bn = manifest["bn"]
    bn_listed = _need(bn, "layers", list, "bn.")
    if bn_listed != bn_names:
        raise BundleError("manifest's BatchNorm layers do not match the model it describes")
    if bn["mode"] == "video":
        for n, m in export.bn_layers(model).items():
            expected[n] = ("bn", (4, m.num_features))
    elif bn["mode"] != "raw":
        raise BundleError(f"unknown BN mode {bn['mode']!r}")
    names = [_need(layer, "name", str, f"layers[{i}].") for i, layer in enumerate(layers)]
    if sorted(names) != sorted(expected) or len(set(names)) != len(names):
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        raise BundleError(f"manifest's layers do not match the model it describes "
                          f"(missing {missing[:3]}, unexpected {extra[:3]})")
    plan, next_frame = [], 0
    for i, layer in enumerate(layers):
        where = f"layers[{i}]."
        name = layer["name"]
        kind, shape = expected[name]
        if _need(layer, "kind", str, where) != kind:
            raise BundleError(f"layer {name}: kind {layer['kind']!r}, expected {kind!r}")
        if tuple(_need(layer, "shape", list, where)) != shape:
            raise BundleError(f"layer {name}: shape {layer['shape']} does not match the model's {list(shape)}")
        h, w = F.image_shape(shape)
        boxes = quant.tile_boxes(h, w, settings.tile)
        if _need(layer, "first_frame", int, where) != next_frame:
            raise BundleError(f"layer {name}: first frame {layer['first_frame']}, expected {next_frame}")
        scale = _need(layer, "scale", list, where)
        if len(scale) != len(boxes) or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scale):
            raise BundleError(f"layer {name}: needs {len(boxes)} numeric scales")
        scale = np.asarray(scale, np.float64).astype(np.float32)
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise BundleError(f"layer {name}: scales must be finite and positive")
        bits = settings.bit_depth if kind == "weight" else settings.bn_bit_depth
        zp = _int_list(_need(layer, "zero_point", list, where), len(boxes), 0, 2**bits - 1, f"{where}zero_point")
        plan.append({"name": name, "kind": kind, "shape": shape, "boxes": boxes, "first_frame": next_frame,
                     "scale": scale, "zero_point": np.asarray(zp, np.int64)})
        next_frame += len(boxes)
    return plan


def _checked(manifest: dict) -> tuple[EncodeSettings, nn.Module, list[dict]]:
    """Settings, the (untrained) model the manifest describes and its checked layer plan."""
    settings = _settings_from(manifest)
    layout = _need(manifest, "layout", dict, "")
    expected = _layout(settings)
    for key, absent in LAYOUT_KEYS.items():
        if layout.get(key, absent) != expected.get(key, absent):
            raise BundleError(f"manifest field 'layout.{key}' is {layout.get(key, absent)!r}; this ctnet lays frames "
                              f"out with {expected.get(key, absent)!r}")
    try:
        spec = ModelSpec.from_dict(_need(manifest, "model", dict, ""))
    except BundleError:
        raise
    except ValueError as exc:
        raise BundleError(f"manifest field 'model': {exc}") from exc
    model = build_model(spec)
    return settings, model, _layer_plan(manifest, model, settings)


def _rebuild(manifest: dict, frames: dict[int, np.ndarray], bn_raw: dict | None, checked=None) -> nn.Module:
    """Model from a checked manifest, decoded frames (global id → padded frame) and raw BN."""
    settings, model, plan = checked or _checked(manifest)
    state: dict[str, torch.Tensor] = {}
    bn_images = {}
    for p in plan:
        pixels = [frames[p["first_frame"] + k][:b[2], :b[3]] for k, b in enumerate(p["boxes"])]
        dither = settings.dither if p["kind"] == "weight" else 0.0
        t = F.dequantize_tensor(pixels, p["scale"], p["zero_point"], p["shape"], tile=settings.tile,
                                first_frame=p["first_frame"], dither=dither, seed=settings.seed)
        if p["kind"] == "weight":
            state[p["name"]] = t
        else:
            bn_images[p["name"]] = t
    if manifest["bn"]["mode"] == "raw":
        bn_images = bn_raw
    for name, m in export.bn_layers(model).items():
        img = bn_images.get(name)
        if img is None or tuple(img.shape) != (4, m.num_features) or img.dtype != torch.float32:
            raise BundleError(f"BatchNorm {name}: stored tensor missing or not float32 [4, {m.num_features}]")
        prefix = f"{name}." if name else ""
        state[prefix + "weight"], state[prefix + "bias"] = img[0].clone(), img[1].clone()
        state[prefix + "running_mean"] = img[2].clone()
        state[prefix + "running_var"] = img[3].clamp(min=0).clone()  # a lossy stream can dip below 0
        if hasattr(m, "num_batches_tracked") and m.num_batches_tracked is not None:
            state[prefix + "num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    if bn_raw is not None and set(bn_raw) != set(export.bn_layers(model)):
        raise BundleError(f"{BN_FILE} holds tensors other than the model's BatchNorm layers")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"decoded tensors do not fit the model: {str(exc).splitlines()[0]}") from exc
    configure_export_training(model, pixel_bit_depth=0)  # the values are already on the grid
    return model.eval()


def _decode_video(manifest: dict, files: dict[str, bytes], settings: EncodeSettings, plan: list[dict]):
    """Global frame number → decoded (padded) frame, from a bundle's video streams."""
    need: dict[tuple[str, tuple[int, int]], list[int]] = {}  # which frames each stream must hold
    for p in plan:
        for k, b in enumerate(p["boxes"]):
            need.setdefault((p["kind"], coded_frame_size(settings, b[2], b[3])), []).append(p["first_frame"] + k)
    frames: dict[int, np.ndarray] = {}
    seen = set()
    for i, s in enumerate(manifest["streams"]):
        where = f"streams[{i}]."
        kind = _need(s, "kind", str, where)
        h, w = _need(s, "height", int, where), _need(s, "width", int, where)
        n = _need(s, "frames", int, where)
        key = (kind, (h, w))
        if not (1 <= h <= MAX_TILE + 1 and 1 <= w <= MAX_TILE + 1):
            raise BundleError(f"{s['file']}: implausible frame size {h}x{w}")
        if key not in need or key in seen:
            raise BundleError(f"{s['file']}: no {kind} frames of {h}x{w} in this model (or listed twice)")
        seen.add(key)
        ids = need[key]
        if n != len(ids):
            raise BundleError(f"{s['file']}: manifest says {n} frames, the model's layout needs {len(ids)}")
        order = _need(s, "order", list, where)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in order) or sorted(order) != ids:
            raise BundleError(f"{s['file']}: frame order is not a permutation of the stream's frames")
        vs = settings.video() if kind == "weight" else settings.bn_video()
        try:
            decoded = V.decode_frames(files[s["file"]], vs, height=h, width=w, count=n)
        except V.VideoError as exc:
            raise BundleError(f"{s['file']}: {exc}") from exc
        for j, fid in enumerate(order):
            frames[fid] = decoded[j]
    if seen != set(need):
        missing = sorted(set(need) - seen)
        raise BundleError(f"bundle has no stream for {missing[0][0]} frames of {missing[0][1][0]}x{missing[0][1][1]}")
    return frames


def _decode_planes(manifest: dict, files: dict[str, bytes], settings: EncodeSettings, plan: list[dict]):
    """Global frame number → decoded frame, from a bundle's plane files (one per kind)."""
    kinds = [k for k in ("weight", "bn") if any(p["kind"] == k for p in plan)]
    streams = manifest["streams"]
    listed = [_need(s, "kind", str, f"streams[{i}].") for i, s in enumerate(streams)]
    if listed != kinds:
        raise BundleError(f"a {settings.codec} bundle needs one file per kind ({', '.join(kinds)}), "
                          f"the manifest lists {listed}")
    frames: dict[int, np.ndarray] = {}
    for i, (s, kind) in enumerate(zip(streams, kinds)):
        members = [p for p in plan if p["kind"] == kind]
        ids = [p["first_frame"] + k for p in members for k in range(len(p["boxes"]))]
        if _need(s, "frames", int, f"streams[{i}].") != len(ids):
            raise BundleError(f"{s['file']}: manifest says {s['frames']} frames, the model's layout needs {len(ids)}")
        if _need(s, "order", list, f"streams[{i}].") != ids:
            raise BundleError(f"{s['file']}: a {settings.codec} file holds its frames in model order")
        vs = settings.video() if kind == "weight" else settings.bn_video()
        try:
            tiles = P.decode(settings.codec, files[s["file"]],
                             [(p["shape"], p["boxes"], p["zero_point"]) for p in members], vs.bit_depth)
        except P.PlaneError as exc:
            raise BundleError(f"{s['file']}: {exc}") from exc
        for fid, pix in zip(ids, (t for layer in tiles for t in layer)):
            frames[fid] = pix
    return frames


def _read_raw_bn(bn: dict, files: dict[str, bytes], settings: EncodeSettings) -> dict:
    name = bn["file"]
    if name != _bn_file(settings.codec):
        raise BundleError(f"a {settings.codec} bundle keeps raw BatchNorm in {_bn_file(settings.codec)}, not {name}")
    data = files[name]
    if settings.family == "planes":
        raw = _need(bn, "raw_bytes", int, "bn.")
        if not 0 < raw <= MAX_FILE_BYTES:
            raise BundleError(f"manifest field 'bn.raw_bytes' is implausible ({raw})")
        try:
            data = P.decompress(settings.codec, data, raw)
        except P.PlaneError as exc:
            raise BundleError(f"{name}: {exc}") from exc
    try:
        return st_load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise BundleError(f"{name}: not a readable safetensors file ({exc})") from exc


def decode_files(files: dict[str, bytes]) -> tuple[nn.Module, dict]:
    """Validate and decode a bundle held in memory (file name → bytes)."""
    if MANIFEST not in files:
        raise BundleError(f"{MANIFEST} missing from the bundle")
    manifest = read_manifest(files[MANIFEST])
    for key, kind in (("model", dict), ("layers", list), ("streams", list), ("bn", dict), ("settings", dict),
                      ("fp32_bytes", int), ("image_size", int), ("pixel_bit_depth", int)):
        _need(manifest, key, kind, "")
    if "label_map" not in manifest:
        raise BundleError("manifest is missing field 'label_map'")
    refs = referenced_files(manifest)
    for name, (size, digest) in refs.items():
        if name not in files:
            raise BundleError(f"{name}: missing from the bundle")
        if len(files[name]) != size:
            raise BundleError(f"{name}: {len(files[name])} bytes, the manifest says {size} (truncated or replaced)")
        if _sha256(files[name]) != digest:
            raise BundleError(f"{name}: contents do not match the manifest's SHA-256 (damaged file)")
    checked = _checked(manifest)
    settings, _, plan = checked
    if settings.family == "planes":
        frames = _decode_planes(manifest, files, settings, plan)
    else:
        frames = _decode_video(manifest, files, settings, plan)
    bn_raw = None
    if manifest["bn"]["mode"] == "raw":
        bn_raw = _read_raw_bn(manifest["bn"], files, settings)
    model = _rebuild(manifest, frames, bn_raw, checked)
    total = sum(len(b) for b in files.values())
    meta = dict(manifest)
    meta["bundle"] = {"total_bytes": total, "fp32_bytes": manifest["fp32_bytes"],
                      "ratio": manifest["fp32_bytes"] / total, "files": {k: len(v) for k, v in sorted(files.items())}}
    return model, meta


def read_bundle(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(decoded model in eval mode, manifest + ``bundle`` totals) of a bundle directory. The
    size counts every file in the directory, whether the manifest names it or not."""
    model, meta = decode_files(load_files(path))
    total = directory_bytes(path)
    meta["bundle"].update(path=str(path), total_bytes=total, ratio=meta["fp32_bytes"] / total)
    return model, meta


__all__ = ["BN_FILE", "BN_MODES", "BundleError", "EncodeSettings", "Encoded", "FORMAT", "MANIFEST", "VERSION",
           "coded_frame_size", "decode_files", "directory_bytes", "encode_model", "load_files", "read_bundle", "read_manifest",
           "write_bundle"]
