"""Format version 1, read only: bundles written by ctnet before format v2 keep decoding
bit-exactly.

A v1 bundle holds every parameter as its exported image (spatial DCT (O,I,Kh,Kw) →
(O·Kh, I·Kw)), cut into tiles of at most ``tile``×``tile``; each tile is one frame on its own
affine grid, frames of one size share a stream (``w_<H>x<W>.mp4``), the grid (per-frame
scale and zero point) and the frame order of every stream are in ``manifest.json``, and
BatchNorm is raw float32 (``bn.safetensors``) or its own stream. Plane-codec v1 bundles
(``w.xz``/``w.zst``) hold layer images of offsets from the zero point.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import nn

from .. import export, quant
from ..errors import UnverifiedWarning
from ..limits import IMAGE_SIZE_RANGE
from ..models import ModelSpec, build_model
from . import frames as F
from . import planes as P
from . import video as V
from .decoded import check_members, load_decoded, stream_limit
from .manifest import MANIFEST, BundleError
from .manifest import check_name as _check_name

V1_BIT_DEPTHS = (8, 10, 12)  # the grids format v1 could store (4-12-bit grids came with v2)
V1_PIXEL_BIT_DEPTHS = (0, *V1_BIT_DEPTHS)

VERSION = 1
BN_FILE = "bn.safetensors"
MAX_TILE = 1024
BN_MODES = ("raw", "video")


@dataclass(frozen=True)
class EncodeSettings:  # the v1 settings, as v1 manifests record them
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


# --- reading -----------------------------------------------------------------------------------

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


def _bn_file(codec: str) -> str:
    """Raw BN is stored as is beside video streams, compressed beside plane files."""
    c = V.CODECS[codec]
    return BN_FILE + (c.extension if c.family == "planes" else "")


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
        settings = EncodeSettings(**{k: s[k] for k in EncodeSettings.__dataclass_fields__ if k != "layer_bits"})
    except KeyError as exc:
        raise BundleError(f"manifest is missing field 'settings.{exc.args[0]}'") from exc
    except TypeError as exc:
        raise BundleError(f"manifest field 'settings' is malformed ({exc})") from exc
    for key, kind in (("crf", int), ("bit_depth", int), ("bn_crf", int), ("bn_bit_depth", int), ("tile", int),
                      ("seed", int), ("dither", (int, float)), ("pix_fmt", str), ("preset", str), ("bn_mode", str),
                      ("order", str), ("codec", str)):
        _need(s, key, kind, "settings.")
    if settings.bit_depth not in V1_BIT_DEPTHS:
        raise BundleError(f"manifest field 'settings.bit_depth' is {settings.bit_depth}, not one of {V1_BIT_DEPTHS} "
                          "(the grids of format v1)")
    return settings.validate()


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
        with np.errstate(over="ignore"):  # beyond float32: inf, refused next
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


def _rebuild(settings: EncodeSettings, model: nn.Module, plan: list[dict], bn_mode: str,
             frames: dict[int, np.ndarray], bn_raw: dict | None) -> nn.Module:
    """Model from a checked manifest's plan, decoded frames (global id → padded frame) and
    raw BN, checked against its description (``ctnet.codec.decoded``)."""
    state: dict[str, torch.Tensor] = {}
    bn_images = {}
    for p in plan:
        pixels = [frames[p["first_frame"] + k][:b[2], :b[3]] for k, b in enumerate(p["boxes"])]
        dither = settings.dither if p["kind"] == "weight" else 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # a huge scale overflows: refused by load_decoded
            t = F.dequantize_tensor(pixels, p["scale"], p["zero_point"], p["shape"], tile=settings.tile,
                                    first_frame=p["first_frame"], dither=dither, seed=settings.seed)
        if p["kind"] == "weight":
            state[p["name"]] = t
        else:
            bn_images[p["name"]] = t
    if bn_mode == "raw":
        assert bn_raw is not None  # Reader.check reads it whenever the mode is raw
        bn_images = bn_raw
    for name, m in export.bn_layers(model).items():
        img = bn_images.get(name)
        if img is None or tuple(img.shape) != (4, m.num_features) or img.dtype != torch.float32:
            raise BundleError(f"BatchNorm {name}: stored tensor missing or not float32 [4, {m.num_features}]")
        if not torch.isfinite(img).all():
            raise BundleError(f"BatchNorm {name}: stored values are not finite (damaged)")
        if bn_mode == "raw" and (img[3] < 0).any():
            raise BundleError(f"BatchNorm {name}: negative running variance (damaged)")
        prefix = f"{name}." if name else ""
        state[prefix + "weight"], state[prefix + "bias"] = img[0].clone(), img[1].clone()
        state[prefix + "running_mean"] = img[2].clone()
        state[prefix + "running_var"] = img[3].clamp(min=0).clone()  # a lossy stream can dip below 0
        if hasattr(m, "num_batches_tracked") and m.num_batches_tracked is not None:
            state[prefix + "num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    if bn_raw is not None and set(bn_raw) != set(export.bn_layers(model)):
        raise BundleError(f"{BN_FILE} holds tensors other than the model's BatchNorm layers")
    return load_decoded(model, state)


def _video_streams(manifest: dict, settings: EncodeSettings, plan: list[dict]) -> list[dict]:
    """The manifest's streams checked against the plan: per stream its file, settings, frame
    size and which global frames it holds, in coded order."""
    need: dict[tuple[str, tuple[int, int]], list[int]] = {}  # which frames each stream must hold
    for p in plan:
        for k, b in enumerate(p["boxes"]):
            need.setdefault((p["kind"], coded_frame_size(settings, b[2], b[3])), []).append(p["first_frame"] + k)
    out, seen = [], set()
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
        out.append({"file": s["file"], "video": vs, "height": h, "width": w, "order": order,
                    "limit": stream_limit(n * h * w, vs.bit_depth)})
    if seen != set(need):
        missing = sorted(set(need) - seen)
        raise BundleError(f"bundle has no stream for {missing[0][0]} frames of {missing[0][1][0]}x{missing[0][1][1]}")
    return out


def _plane_streams(manifest: dict, settings: EncodeSettings, plan: list[dict]) -> list[dict]:
    """The manifest's plane files (one per kind) checked against the plan."""
    kinds = [k for k in ("weight", "bn") if any(p["kind"] == k for p in plan)]
    streams = manifest["streams"]
    listed = [_need(s, "kind", str, f"streams[{i}].") for i, s in enumerate(streams)]
    if listed != kinds:
        raise BundleError(f"a {settings.codec} bundle needs one file per kind ({', '.join(kinds)}), "
                          f"the manifest lists {listed}")
    out = []
    for i, (s, kind) in enumerate(zip(streams, kinds)):
        members = [p for p in plan if p["kind"] == kind]
        ids = [p["first_frame"] + k for p in members for k in range(len(p["boxes"]))]
        if _need(s, "frames", int, f"streams[{i}].") != len(ids):
            raise BundleError(f"{s['file']}: manifest says {s['frames']} frames, the model's layout needs {len(ids)}")
        if _need(s, "order", list, f"streams[{i}].") != ids:
            raise BundleError(f"{s['file']}: a {settings.codec} file holds its frames in model order")
        vs = settings.video() if kind == "weight" else settings.bn_video()
        layers = [(p["shape"], p["boxes"], p["zero_point"]) for p in members]
        raw = P.packed_size(layers, vs.bit_depth)
        out.append({"file": s["file"], "ids": ids, "layers": layers, "bits": vs.bit_depth, "raw": raw,
                    "limit": raw + raw // 64 + (1 << 20)})
    return out


def _read_raw_bn(bn: dict, data: bytes, settings: EncodeSettings) -> dict:
    name = bn["file"]
    if settings.family == "planes":
        try:
            data = P.decompress(settings.codec, data, bn["raw_bytes"])
        except P.PlaneError as exc:
            raise BundleError(f"{name}: {exc}") from exc
    try:
        return st_load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise BundleError(f"{name}: not a readable safetensors file ({exc})") from exc


class Reader:
    """A format-v1 manifest checked against the model it describes, the same way as
    :class:`ctnet.codec.bundle.Reader` reads v2: ``members`` (name → (bytes, SHA-256), each
    bounded by that model), :meth:`check` (short of decoding frames), :meth:`decode`. Every
    field is range-checked and the decoded weights must be finite, but a v1 manifest carries
    no digest: an edited scale, dither or image size cannot be detected, so :meth:`decode`
    says so as an :class:`ctnet.errors.UnverifiedWarning` and ``ctnet verify`` refuses it."""

    version = VERSION
    digest = None

    def __init__(self, manifest: dict, where: str = ""):
        for key, kind in (("model", dict), ("layers", list), ("streams", list), ("bn", dict), ("settings", dict),
                          ("fp32_bytes", int), ("image_size", int), ("pixel_bit_depth", int)):
            _need(manifest, key, kind, "")
        if "label_map" not in manifest:
            raise BundleError("manifest is missing field 'label_map'")
        lo, hi = IMAGE_SIZE_RANGE
        if not lo <= manifest["image_size"] <= hi:
            raise BundleError(f"manifest field 'image_size' is {manifest['image_size']}, outside {lo}..{hi}")
        if manifest["pixel_bit_depth"] not in V1_PIXEL_BIT_DEPTHS:
            raise BundleError(f"manifest field 'pixel_bit_depth' is {manifest['pixel_bit_depth']}, not one of "
                              f"{V1_PIXEL_BIT_DEPTHS} (the grids of format v1)")
        if not 1 <= manifest["fp32_bytes"] <= 1 << 40:
            raise BundleError("manifest field 'fp32_bytes' is out of range")
        self.manifest, self.where = manifest, where
        self.settings, self.model, self.plan = _checked(manifest)
        labels = manifest["label_map"]
        n = int(manifest["model"]["num_classes"])
        if labels is not None and not (isinstance(labels, dict) and all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n for v in labels.values())):
            raise BundleError(f"manifest field 'label_map' must map names to class indices below {n}")
        refs = referenced_files(manifest)
        bn = manifest["bn"]
        self.bn_mode = bn["mode"]
        if self.settings.family == "planes":
            self.streams = _plane_streams(manifest, self.settings, self.plan)
        else:
            self.streams = _video_streams(manifest, self.settings, self.plan)
        limits = {s["file"]: s["limit"] for s in self.streams}
        if self.bn_mode == "raw":
            if bn["file"] != _bn_file(self.settings.codec):
                raise BundleError(f"a {self.settings.codec} bundle keeps raw BatchNorm in "
                                  f"{_bn_file(self.settings.codec)}, not {bn['file']}")
            channels = sum(m.num_features for m in export.bn_layers(self.model).values())
            raw_limit = 16 * channels + (64 << 10)  # four float32 vectors and a safetensors header
            if self.settings.family == "planes":
                raw = _need(bn, "raw_bytes", int, "bn.")
                if not 0 < raw <= raw_limit:
                    raise BundleError(f"manifest field 'bn.raw_bytes' is implausible ({raw})")
            limits[bn["file"]] = raw_limit + raw_limit // 64 + 1024
        for name, (size, _) in refs.items():
            if not 0 <= size <= limits[name]:
                raise BundleError(f"{name}: the manifest says {size} bytes; this model needs at most {limits[name]}")
        self.members = refs
        self.bn_raw: dict | None = None

    def check(self, files) -> None:
        """Every member as the manifest states it, each stream's header against the settings
        and the plan, raw BatchNorm readable — all but the frames."""
        check_members(self.members, files)
        for s in self.streams:
            try:
                if self.settings.family == "planes":
                    P.check_header(self.settings.codec, files[s["file"]], s["raw"])
                else:
                    V.check_header(files[s["file"]], s["video"], height=s["height"], width=s["width"],
                                   count=len(s["order"]))
            except (V.VideoError, P.PlaneError) as exc:
                raise BundleError(f"{s['file']}: {exc}") from exc
        if self.bn_mode == "raw":
            bn = self.manifest["bn"]
            self.bn_raw = _read_raw_bn(bn, files[bn["file"]], self.settings)

    def decode(self, files) -> tuple[nn.Module, dict]:
        self.check(files)
        where = self.where or "this bundle"
        warnings.warn(UnverifiedWarning(
            f"{where} is a format-v1 bundle: its manifest carries no digest, so an edit to it (a scale, the dither, "
            f"the image size) cannot be detected and would decode to another model; `ctnet encode {self.where or 'DIR'}"
            f" --out NEW` migrates it to format v2, which has one"), stacklevel=2)
        frames: dict[int, np.ndarray] = {}
        for s in self.streams:
            try:
                if self.settings.family == "planes":
                    tiles = P.decode(self.settings.codec, files[s["file"]], s["layers"], s["bits"])
                    frames.update(zip(s["ids"], (t for layer in tiles for t in layer)))
                else:
                    decoded = V.decode_frames(files[s["file"]], s["video"], height=s["height"], width=s["width"],
                                              count=len(s["order"]))
                    frames.update(zip(s["order"], decoded))
            except (V.VideoError, P.PlaneError) as exc:
                raise BundleError(f"{s['file']}: {exc}") from exc
        model = _rebuild(self.settings, self.model, self.plan, self.bn_mode, frames, self.bn_raw)
        manifest = self.manifest
        total = sum(len(b) for b in files.values())
        meta = dict(manifest)
        meta["bundle"] = {"version": VERSION, "digest": None, "total_bytes": total,
                          "fp32_bytes": manifest["fp32_bytes"], "ratio": manifest["fp32_bytes"] / total,
                          "files": {k: len(v) for k, v in sorted(files.items())},
                          # the grid the weights were decoded from: a v2 encode of this model reuses it exactly
                          "grid": {p["name"]: (p["scale"], p["zero_point"]) for p in self.plan if p["kind"] == "weight"},
                          "grid_bits": self.settings.bit_depth, "grid_tile": self.settings.tile,
                          "dithered": self.settings.dither > 0}
        return model, meta


__all__ = ["BN_FILE", "Reader", "VERSION", "referenced_files"]
