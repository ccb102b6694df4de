"""A bundle: one directory holding everything needed to rebuild a model exactly.

Format v2 (what ``ctnet encode`` writes):

``manifest.json``
    Human-readable JSON (``format`` ``ctnet-bundle``, ``version`` 2): the model description,
    label map, image size, the source's metrics, the settings, how the levels were coded
    (container depth, frames, escapes, the encoder's exact options), every member file with
    its size and SHA-256, and the digest over all of it (``ctnet.codec.manifest``).
``tables.bin``
    The grid (per-tile scale and zero point), row/column classes, the coded-frame bitmap,
    escapes and BatchNorm, packed and LZMA2-compressed (``ctnet.codec.tables``).
``w.mp4`` (``w.mkv`` for FFV1, ``w.xz`` / ``w.zst`` for the plane codecs)
    The coded frames: the signed levels of every layer arranged by :mod:`ctnet.codec.plan`
    (frequency planes, rows/columns by non-zero class, frames wholly at level 0 left out),
    one stream.

Version-1 bundles (one stream per tile size of the tensor images, grid in the JSON) still
decode bit-exactly through :mod:`ctnet.codec.v1`.

Everything is built in memory (:func:`encode_model` → :class:`EncodeResult`), so the app can look
at a bundle without files; :func:`write_bundle` puts it on disk atomically and
:func:`read_bundle` validates and decodes a directory.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import export, quant
from ..layers import configure_export_training
from ..models import ModelSpec, build_model, fp32_bytes
from . import frames as F
from . import plan as PL
from . import tables as T
from .manifest import (BN_MODES, FORMAT, MANIFEST, MAX_FILE_BYTES, MAX_MANIFEST_BYTES, TABLES, VERSION,
                       BundleError, EncodeSettings, Manifest, check_layer_bits, check_name, digest_of, sha256)
from .registry import CODECS, VideoError

SOURCE_METRICS = ("acc1", "acc5", "est_bytes_export", "nonzero", "ratio", "fp32_bytes")


def _version() -> str:
    from .. import __version__
    return __version__


def weights_file(codec: str) -> str:
    return "w" + CODECS[codec].extension


# --- what the encoder works on ------------------------------------------------------------------

@dataclass
class Grid:
    """One tensor on its export grid: per-tile scale/zero point and the signed levels."""

    name: str
    shape: tuple[int, ...]
    boxes: list[tuple[int, int, int, int]]
    scale: np.ndarray  # (tiles,) float32
    zero_point: np.ndarray  # (tiles,) int64
    levels: np.ndarray  # int32, tensor layout
    first_tile: int  # global tile number (seeds the dither)

    def tile_pixels(self) -> list[np.ndarray]:
        img = quant.tensor_to_image(torch.from_numpy(self.levels)).numpy()
        return [img[r0:r0 + h, c0:c0 + w] + int(z) for (r0, c0, h, w), z in zip(self.boxes, self.zero_point)]


def grid_of(name: str, t: torch.Tensor, settings: EncodeSettings, first_tile: int,
            known: tuple[np.ndarray, np.ndarray] | None = None) -> Grid:
    """Quantise a tensor on the export grid (``ctnet.codec.frames.quantize_tensor``) — or on
    ``known`` (scale, zero point), the grid of a bundle it was decoded from, so re-encoding a
    decoded model codes exactly the levels it decoded from."""
    bits = settings.bits_of(name)
    if known is not None and settings.dither == 0:
        img = quant.tensor_to_image(t.detach().cpu().float())
        pixels, scale, zp = quant.quantize_image(img, bits, settings.tile,
                                                 torch.from_numpy(known[0]), torch.from_numpy(known[1]))
        h, w = img.shape
        boxes = quant.tile_boxes(h, w, settings.tile)
        scale, zp = known
        pix = pixels.numpy()
    else:
        tf = F.quantize_tensor(name, t, bits=bits, tile=settings.tile, first_frame=first_tile,
                               dither=settings.dither, seed=settings.seed)
        boxes, scale, zp = tf.boxes, tf.scale, tf.zero_point
        h, w = tf.image_shape
        pix = np.empty((h, w), np.int64)
        for (r0, c0, th, tw), p in zip(boxes, tf.pixels):
            pix[r0:r0 + th, c0:c0 + tw] = p
    levels_img = pix.astype(np.int64).copy()
    for (r0, c0, th, tw), z in zip(boxes, zp):
        levels_img[r0:r0 + th, c0:c0 + tw] -= int(z)
    levels = quant.image_to_tensor(torch.from_numpy(levels_img.astype(np.int32)), tuple(t.shape)).contiguous().numpy()
    return Grid(name, tuple(t.shape), boxes, np.asarray(scale, np.float32), np.asarray(zp, np.int64), levels,
                first_tile)


def _bn_image(m: _BatchNorm) -> torch.Tensor:
    if m.weight is None or m.bias is None or m.running_mean is None or m.running_var is None:
        raise BundleError("BatchNorm layers without affine parameters or running statistics are not supported")
    return torch.stack([m.weight.detach(), m.bias.detach(), m.running_mean.detach(),
                        m.running_var.detach()]).float().cpu()


def bn_table(bns: Mapping[str, _BatchNorm], mode: str) -> np.ndarray:
    """BatchNorm as stored (``ctnet.codec.tables`` packs it): ``affine`` — the eval-mode per-channel scale and shift
    (``y = x·a + b``, a = γ/√(var + ε), b = β − mean·a), computed in float64; ``raw`` — the
    four float32 vectors."""
    if not bns:
        return np.zeros((2 if mode == "affine" else 4, 0), np.float32)
    imgs = [_bn_image(m).double() for m in bns.values()]
    if mode == "raw":
        return torch.cat(imgs, 1).float().numpy()
    rows = []
    for (name, m), img in zip(bns.items(), imgs):
        a = img[0] / torch.sqrt(img[3] + m.eps)
        rows.append(torch.stack([a, img[1] - img[2] * a]))
    return torch.cat(rows, 1).numpy()


def _load_bn(bns: Mapping[str, _BatchNorm], table: np.ndarray, mode: str, state: dict) -> None:
    pos = 0
    for name, m in bns.items():
        c = m.num_features
        part = torch.from_numpy(np.ascontiguousarray(table[:, pos:pos + c]))
        pos += c
        prefix = f"{name}." if name else ""
        if mode == "raw":
            weight, bias, mean, var = part[0], part[1], part[2], part[3]
            if (var < 0).any():
                raise BundleError(f"BatchNorm {name}: negative running variance (damaged)")
        else:
            # y = (x − 0)/√(var + ε)·a + b with var + ε = 1: exactly the stored affine
            weight, bias = part[0], part[1]
            mean = torch.zeros(c)
            var = torch.full((c,), 1.0) - torch.tensor(m.eps, dtype=torch.float32)
        state[prefix + "weight"], state[prefix + "bias"] = weight.clone(), bias.clone()
        state[prefix + "running_mean"], state[prefix + "running_var"] = mean.clone(), var.clone()
        if getattr(m, "num_batches_tracked", None) is not None:
            state[prefix + "num_batches_tracked"] = torch.zeros((), dtype=torch.long)


# --- encoding ---------------------------------------------------------------------------------

@dataclass
class EncodeResult:
    """A bundle in memory — its files and manifest — with what was measured while encoding it
    (per-layer and per-stream reports, the coded frames, the decoded model). What
    ``ctnet.api.encode`` returns; :meth:`summary` is its JSON form (``ctnet encode --json``)."""

    files: dict[str, bytes]
    manifest: dict
    layers: list[dict]  # name, kind, shape, frames, coded_frames, bytes, nonzero, entropy_bits, errors
    streams: list[dict]  # file, kind, height, width, frames, bytes, frame_bytes, params, options, workaround
    frames: np.ndarray  # (coded frames, S, S) uint16 pixels as fed to the coder
    frame_info: list[dict]  # per plan frame: layer, coded, bytes, parts (see plan.LayerPlan.frame_contents)
    model: nn.Module  # decoded from the encoded bytes
    seconds: float
    fp32_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.total_bytes

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def settings(self) -> dict:
        return dict(self.manifest["settings"])

    @property
    def weights_bytes(self) -> int:
        return sum(x["bytes"] for x in self.layers if x["kind"] == "weight")

    @property
    def nonzero(self) -> int:
        return sum(x["nonzero"] for x in self.layers if x["kind"] == "weight")

    @property
    def bits_per_nonzero(self) -> float | None:
        """Bits of the weight stream per non-zero level."""
        return 8 * self.weights_bytes / self.nonzero if self.nonzero else None

    @property
    def entropy_bits_per_nonzero(self) -> float | None:
        """The levels' zero-order entropy (per layer, summed) per non-zero level."""
        return sum(x["entropy_bits"] for x in self.layers if x["kind"] == "weight") / self.nonzero \
            if self.nonzero else None

    @property
    def metadata_bytes(self) -> int:
        return len(self.files[MANIFEST]) + len(self.files[TABLES])

    def summary(self) -> dict:
        """JSON-ready report (``ctnet encode --json``)."""
        return {"total_bytes": self.total_bytes, "fp32_bytes": self.fp32_bytes, "ratio": self.ratio,
                "seconds": round(self.seconds, 3), "version": VERSION, "settings": self.settings,
                "digest": self.digest, "files": {k: len(v) for k, v in sorted(self.files.items())},
                "weights_bytes": self.weights_bytes, "nonzero": self.nonzero,
                "bits_per_nonzero": self.bits_per_nonzero, "entropy_bits_per_nonzero": self.entropy_bits_per_nonzero,
                "metadata_bytes": self.metadata_bytes,
                "streams": [{k: s[k] for k in ("file", "kind", "height", "width", "frames", "bytes", "workaround")}
                            for s in self.streams],
                "layers": [{k: x[k] for k in ("name", "kind", "bits", "bytes", "frames", "coded_frames", "nonzero",
                                              "bits_per_nonzero", "entropy_bits_per_nonzero", "max_abs_error")}
                           for x in self.layers]}

    def report(self) -> dict:
        """The result as plain values for another process (the app's encode worker to its
        server): every field, the decoded model as its tensors (numpy, ``model_state``);
        :meth:`from_report` rebuilds it."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        out["model_state"] = {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        return out

    @classmethod
    def from_report(cls, report: dict) -> "EncodeResult":
        """The result a :meth:`report` came from. Its files must be the bundle the report
        describes (their manifest's digest, every member's size and SHA-256), else
        BundleError; the model is rebuilt from the decoded tensors, not decoded again."""
        names = {f.name for f in fields(cls)} - {"model"}
        if not isinstance(report, dict) or set(report) != names | {"model_state"} or MANIFEST not in report["files"]:
            raise BundleError("not an encode report")
        files = report["files"]
        m = Manifest.from_json(files[MANIFEST])
        if m.digest != report["manifest"].get("digest"):
            raise BundleError("an encode report whose files are another bundle than its manifest")
        _check_members(m, files)
        model = _load_decoded(build_model(m.model), {k: torch.from_numpy(v) for k, v in report["model_state"].items()})
        return cls(**{k: report[k] for k in names}, model=model)


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


def _source_meta(meta: dict, spec: ModelSpec) -> dict:
    labels = meta.get("label_map")
    if labels is None:
        try:
            from ..data import label_map
            labels = label_map(spec.num_classes)
        except ValueError:
            labels = None
    source: dict = meta["source"] if isinstance(meta.get("source"), dict) else {}
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else source.get("metrics")
    metrics = {k: metrics[k] for k in SOURCE_METRICS if isinstance(metrics, dict) and isinstance(
        metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool) and math.isfinite(metrics[k])}
    epoch = meta.get("epoch", source.get("epoch"))
    return {"model": spec.to_dict(), "label_map": dict(labels) if labels is not None else None,
            "image_size": int(meta.get("image_size", 128)), "pixel_bit_depth": int(meta.get("pixel_bit_depth", 0)),
            "source": {"metrics": metrics or None, "epoch": epoch if isinstance(epoch, int) else None}}


def known_grid(meta: dict, settings: EncodeSettings) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The grid a model was decoded from (bundles only), of every tensor whose grid is the one
    ``settings`` asks for: re-encoding it then codes exactly the same levels."""
    b = meta.get("bundle") if isinstance(meta, dict) else None
    if not isinstance(b, dict) or not b.get("grid"):
        return {}
    if b.get("grid_tile") != settings.tile or b.get("dithered"):
        return {}
    decoded_bits = b.get("grid_layer_bits") or {}
    return {name: g for name, g in b["grid"].items()
            if decoded_bits.get(name, b.get("grid_bits")) == settings.bits_of(name)}


@dataclass
class Layout:
    """Where every level of a model goes under ``settings`` (before any coding)."""

    grids: list[Grid]
    plan: PL.FramePlan
    levels: np.ndarray  # (plan frames, S, S) int32
    row_classes: list
    col_classes: list
    coded: np.ndarray  # bool per plan frame: holds a non-zero level

    def info(self, frame_bytes=None) -> list[dict]:
        """Per plan frame: its layer, whether it is coded, its bytes, what it holds."""
        return [{"frame": k, "coded": bool(self.coded[k]), "bytes": int(frame_bytes[k]) if frame_bytes is not None
                 else None, **self.plan.describe(k)} for k in range(len(self.levels))]


@torch.no_grad()
def layout(model: nn.Module, meta: dict, settings: EncodeSettings) -> Layout:
    """Quantise every stored tensor on the export grid and arrange its levels as the plan's
    frames (what :func:`encode_model` codes; the app's Frames page shows it)."""
    video = export.video_tensors(model)
    check_layer_bits(settings, list(video))
    known = known_grid(meta, settings)
    grids, first_tile = [], 0
    for name, t in video.items():
        g = grid_of(name, t, settings, first_tile, known.get(name))
        grids.append(g)
        first_tile += len(g.boxes)
    plan = PL.make_plan([(g.name, g.shape) for g in grids], settings.frame)
    all_frames, rcs, ccs = [], [], []
    for g, lp in zip(grids, plan.layers):
        planes = PL.to_planes(g.levels)
        rc, cc = PL.order_classes(planes) if settings.order == "count" and lp.ordered else (None, None)
        rcs.append(rc)
        ccs.append(cc)
        all_frames.append(PL.layer_frames(planes, lp, rc, cc))
    levels = np.concatenate(all_frames)
    return Layout(grids, plan, levels, rcs, ccs, np.asarray(levels.reshape(len(levels), -1).any(axis=1)))


@torch.no_grad()
def encode_model(model: nn.Module, meta: dict, settings: EncodeSettings | None = None, *,
                 progress: Callable[[int, int], None] | None = None) -> EncodeResult:
    """Encode a model (with its checkpoint metadata, or a decoded bundle's) into an in-memory
    v2 bundle, then rebuild the model those bytes decode to. ``progress(frames done, frames
    in all)`` is called as the frames are coded."""
    t0 = time.perf_counter()
    settings = (settings or EncodeSettings()).validate()
    spec = ModelSpec.from_dict(meta["model"])
    video = export.video_tensors(model)
    bns = export.bn_layers(model)
    _check_state(model, video, bns)
    lay = layout(model, meta, settings)
    grids, plan, levels, rcs, ccs, coded_mask = lay.grids, lay.plan, lay.levels, lay.row_classes, \
        lay.col_classes, lay.coded
    coded_ids = np.nonzero(coded_mask)[0]
    pixels, escapes = PL.to_pixels(levels[coded_ids], settings.container_bits)
    escapes = [(int(coded_ids[f]), pos, lv) for f, pos, lv in escapes]

    files: dict[str, bytes] = {}
    frame_bytes = np.zeros(len(levels), np.int64)
    stream = None
    if len(coded_ids):
        data, per_frame, stream, decoded = _code_frames(pixels, settings, progress)
        frame_bytes[coded_ids] = per_frame
        files[weights_file(settings.codec)] = data
    else:
        decoded = pixels
        if progress:
            progress(0, 0)

    bn = bn_table(bns, settings.bn_mode)
    tables = T.Tables([g.scale for g in grids], [g.zero_point for g in grids], rcs, ccs, coded_mask, escapes, bn)
    raw_tables = T.pack(tables, bits=settings.bit_depth, frame=settings.frame, bn_mode=settings.bn_mode,
                        layer_bits=[settings.bits_of(g.name) for g in grids] if settings.layer_bits else None)
    files[TABLES] = T.compress(raw_tables)

    members = [{"file": name, "role": "weights" if name != TABLES else "tables", "bytes": len(data),
                "sha256": sha256(data)} for name, data in sorted(files.items())]
    manifest = {
        "format": FORMAT, "version": VERSION, **_source_meta(meta, spec),
        "fp32_bytes": fp32_bytes(model), "ctnet_version": _version(),
        "settings": settings.to_dict(),
        "coding": {"planes": "frequency planes (k×k convs), matrices, vectors; rows/columns by non-zero class"
                             if settings.order == "count" else "frequency planes, matrices, vectors; natural order",
                   "frames": int(len(levels)), "coded_frames": int(len(coded_ids)),
                   "container_bits": settings.container_bits, "level_offset": PL.container_offset(settings.container_bits),
                   "escapes": len(escapes), "codec": settings.codec, "encoder": CODECS[settings.codec].encoder,
                   "container": CODECS[settings.codec].container,
                   "options": stream["options"] if stream else {}, "workaround": stream["workaround"] if stream else ""},
        "tables": {"file": TABLES, "raw_bytes": len(raw_tables), "compression": "LZMA2 raw, preset 9e, lc3 lp0 pb0"},
        "members": members,
    }
    manifest["digest"] = digest_of(manifest)
    files[MANIFEST] = (json.dumps(manifest, separators=(",", ":")) + "\n").encode()

    # rebuild from what a decoder sees: the decoded frames and the packed tables
    checked = Manifest.from_json(files[MANIFEST])
    decoded_levels = np.zeros_like(levels)
    decoded_levels[coded_ids] = PL.from_pixels(decoded, settings.container_bits)
    decoded_model = _rebuild(checked, _unpack_tables(checked, raw_tables), decoded_levels)

    layers = _layer_report(grids, plan, frame_bytes, coded_mask, video, decoded_model, settings)
    bn_packed = bn.shape[1] * (2 * 3 if settings.bn_mode == "affine" else 4 * 4)  # bytes in the raw tables
    layers += _bn_report(bns, decoded_model, len(files[TABLES]), len(raw_tables), bn_packed)
    streams = [stream] if stream else []
    return EncodeResult(files, manifest, layers, streams, pixels, lay.info(frame_bytes), decoded_model, time.perf_counter() - t0,
                   manifest["fp32_bytes"])


def _code_frames(pixels: np.ndarray, settings: EncodeSettings, progress):
    """Code the frames with the bundle's codec → (file bytes, bytes per frame, stream
    entry, frames as decoded)."""
    n = len(pixels)
    if settings.family == "planes":
        from . import planes as P
        data = P.compress(settings.codec, P.level_bytes(pixels, settings.container_bits), P.kind_of(
            settings.container_bits))
        back = P.from_level_bytes(P.decompress(settings.codec, data, P.level_size(pixels.shape,
                                                                                  settings.container_bits)),
                                  pixels.shape, settings.container_bits)
        if not np.array_equal(back, pixels):
            raise BundleError(f"{settings.codec} does not give back its input")
        per_frame = P.apportion(len(data), list(pixels))
        options = P.options(settings.codec, settings.container_bits)
        workaround, params = "", P.describe(settings.codec, settings.container_bits)
        decoded = pixels
    else:
        from . import video as V
        try:
            enc = V.encode_frames(list(pixels), settings.video(), decode=True, progress=progress)
        except VideoError as exc:
            raise BundleError(f"weight stream: {exc}") from exc
        assert enc.decoded is not None  # encode_frames(decode=True) decodes
        data, per_frame, decoded = enc.data, enc.frame_bytes, enc.decoded
        options, workaround, params = enc.settings.encoder_options(), enc.settings.workaround, \
            enc.settings.encoder_params()
    if progress and settings.family == "planes":
        progress(n, n)
    s = settings.frame
    stream = {"file": weights_file(settings.codec), "kind": "weight", "height": s, "width": s, "frames": n,
              "bytes": len(data), "sha256": sha256(data), "frame_bytes": [int(b) for b in per_frame],
              "params": params, "options": options, "workaround": workaround}
    return data, np.asarray(per_frame, np.int64), stream, decoded


def _layer_report(grids, plan, frame_bytes, coded_mask, video, decoded_model, settings) -> list[dict]:
    decoded = export.video_tensors(decoded_model)
    rows = []
    for g, lp in zip(grids, plan.layers):
        ids = slice(lp.first_frame, lp.first_frame + lp.frames)
        nz = int(np.count_nonzero(g.levels))
        b = int(frame_bytes[ids].sum())
        h0 = PL.entropy_bits(g.tile_pixels())
        err = float((decoded[g.name].float() - video[g.name].detach().float().cpu()).abs().max())
        rows.append({"name": g.name, "kind": "weight", "bits": settings.bits_of(g.name), "shape": list(g.shape),
                     "frames": lp.frames,
                     "coded_frames": int(coded_mask[ids].sum()), "bytes": b, "nonzero": nz, "entropy_bits": h0,
                     "bits_per_nonzero": 8 * b / nz if nz else None,
                     "entropy_bits_per_nonzero": h0 / nz if nz else None,
                     "max_abs_error": err, "max_half_step": float(g.scale.max()) / 2, "tiles": len(g.boxes)})
    return rows


def _bn_report(bns: Mapping[str, _BatchNorm], decoded_model: nn.Module, table_bytes: int, raw_table_bytes: int,
               bn_raw_bytes: int) -> list[dict]:
    """BN rows: error of the decoded eval-mode affine against the source's, and the BN share
    of the compressed tables (by raw size)."""
    out = []
    share = table_bytes * bn_raw_bytes / raw_table_bytes if raw_table_bytes else 0
    total_c = sum(m.num_features for m in bns.values()) or 1
    dec = export.bn_layers(decoded_model)
    for name, m in bns.items():
        src, d = _bn_image(m), _bn_image(dec[name])  # weight, bias, mean, var (float32)
        a_src = (src[0] / torch.sqrt(src[3] + m.eps)).double()
        a_dec = (d[0] / torch.sqrt(d[3] + dec[name].eps)).double()
        b_src = src[1].double() - src[2].double() * a_src
        b_dec = d[1].double() - d[2].double() * a_dec
        err = float(torch.maximum((a_src - a_dec).abs().max(), (b_src - b_dec).abs().max()))
        out.append({"name": name, "kind": "bn", "bits": None, "shape": [m.num_features], "frames": 0, "coded_frames": 0,
                    "bytes": int(round(share * m.num_features / total_c)), "nonzero": 0, "entropy_bits": 0.0,
                    "bits_per_nonzero": None, "entropy_bits_per_nonzero": None, "max_abs_error": err,
                    "max_half_step": 0.0, "tiles": 0})
    return out


# --- decoding ---------------------------------------------------------------------------------

def _model_layout(m: Manifest) -> tuple[nn.Module, PL.FramePlan, list[list], dict]:
    model = build_model(m.model)
    video = export.video_tensors(model)
    plan = PL.make_plan([(n, tuple(t.shape)) for n, t in video.items()], m.settings.frame)
    check_layer_bits(m.settings, list(video))
    if plan.total_frames != m.frames:
        raise BundleError(f"manifest says {m.frames} frames, the model's layout has {plan.total_frames}")
    boxes = [quant.tile_boxes(*quant.image_shape(tuple(t.shape)), m.settings.tile) for t in video.values()]
    return model, plan, boxes, export.bn_layers(model)


def _unpack_tables(m: Manifest, raw: bytes) -> tuple:
    model, plan, boxes, bns = _model_layout(m)
    ordered = [m.settings.order == "count" and lp.ordered for lp in plan.layers]
    tables = T.unpack(raw, plan=plan, tiles=[len(b) for b in boxes], ordered=ordered, bits=m.settings.bit_depth,
                      escapes=m.escapes, bn_channels=sum(x.num_features for x in bns.values()),
                      bn_mode=m.settings.bn_mode,
                      layer_bits=[m.settings.bits_of(lp.name) for lp in plan.layers] if m.settings.layer_bits else None)
    if int(tables.coded.sum()) != m.coded_frames:
        raise BundleError(f"tables mark {int(tables.coded.sum())} frames as coded, the manifest says {m.coded_frames}")
    if not np.isfinite(tables.bn).all():
        raise BundleError("tables hold BatchNorm values that are not finite")
    for f, _, level in tables.escapes:
        if not tables.coded[f] or abs(level) > 2**m.settings.bit_depth - 1:
            raise BundleError("tables: an escape in a frame that is not coded, or a level off the grid")
    return model, plan, boxes, bns, tables


def _rebuild(m: Manifest, unpacked: tuple, levels: np.ndarray) -> nn.Module:
    """Model from a checked manifest, its unpacked tables and all plan frames' levels."""
    model, plan, boxes, bns, tables = unpacked
    s = m.settings
    for f, pos, level in tables.escapes:
        levels[f].reshape(-1)[pos] = level
    state: dict[str, torch.Tensor] = {}
    lossless = s.crf == 0
    grid_out = {}
    first_tile = 0
    for lp, bx, scale, zp, rc, cc in zip(plan.layers, boxes, tables.scales, tables.zero_points, tables.row_classes,
                                         tables.col_classes):
        planes = PL.layer_planes(levels[lp.first_frame:lp.first_frame + lp.frames], lp, rc, cc)
        lev = PL.from_planes(planes, lp.shape)
        img = quant.tensor_to_image(torch.from_numpy(np.ascontiguousarray(lev))).numpy()
        bits = s.bits_of(lp.name)
        peak = 2**bits - 1
        tiles = []
        for (r0, c0, h, w), z in zip(bx, zp):
            p = img[r0:r0 + h, c0:c0 + w].astype(np.int64) + int(z)
            if p.min() < 0 or p.max() > peak:
                if lossless:
                    raise BundleError(f"layer {lp.name}: decoded levels fall off the {bits}-bit grid (damaged)")
                p = np.clip(p, 0, peak)  # a lossy stream may overshoot
            tiles.append(p.astype(np.uint16))
        state[lp.name] = F.dequantize_tensor(tiles, scale, zp, lp.shape, tile=s.tile, first_frame=first_tile,
                                             dither=s.dither, seed=s.seed)
        grid_out[lp.name] = (scale, zp)
        first_tile += len(bx)
    _load_bn(bns, tables.bn, s.bn_mode, state)
    model = _load_decoded(model, state)
    model.__dict__["_ctnet_grid"] = grid_out
    return model


def _load_decoded(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """``model`` holding decoded tensors, in eval mode, computing with them as stored."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"decoded tensors do not fit the model: {str(exc).splitlines()[0]}") from exc
    configure_export_training(model, pixel_bit_depth=0)  # the values are already on the grid
    return model.eval()


def _decode_weights(m: Manifest, files: dict[str, bytes], plan: PL.FramePlan, coded: np.ndarray) -> tuple:
    """All plan frames' levels (uncoded frames at 0) and the coded frames' bytes."""
    s = m.settings
    levels = np.zeros((plan.total_frames, s.frame, s.frame), np.int32)
    if not m.coded_frames:
        return levels, []
    member = m.member("weights")
    if member.file != weights_file(s.codec):
        raise BundleError(f"a {s.codec} bundle keeps its levels in {weights_file(s.codec)}, not {member.file}")
    data = files[member.file]
    shape = (m.coded_frames, s.frame, s.frame)
    sizes: list[int] = []
    if s.family == "planes":
        from . import planes as P
        try:
            pixels = P.from_level_bytes(P.decompress(s.codec, data, P.level_size(shape, s.container_bits)), shape,
                                        s.container_bits)
        except P.PlaneError as exc:
            raise BundleError(f"{member.file}: {exc}") from exc
        sizes = P.apportion(len(data), list(pixels))
    else:
        from . import video as V
        vs = s.video()
        if m.workaround:
            vs = replace(vs, workaround=m.workaround)
        try:
            vs.validate()
            pixels = V.decode_frames(data, vs, height=s.frame, width=s.frame, count=m.coded_frames, packet_sizes=sizes)
        except VideoError as exc:
            raise BundleError(f"{member.file}: {exc}") from exc
    levels[np.nonzero(coded)[0]] = PL.from_pixels(pixels, s.container_bits)
    return levels, sizes


def _check_members(m: Manifest, files: dict[str, bytes]) -> None:
    for e in m.members:
        if e.file not in files:
            raise BundleError(f"{e.file}: missing from the bundle")
        if len(files[e.file]) != e.bytes:
            raise BundleError(f"{e.file}: {len(files[e.file])} bytes, the manifest says {e.bytes} (truncated or replaced)")
        if sha256(files[e.file]) != e.sha256:
            raise BundleError(f"{e.file}: contents do not match the manifest's SHA-256 (damaged file)")


def decode_files(files: dict[str, bytes]) -> tuple[nn.Module, dict]:
    """Validate and decode a bundle held in memory (file name → bytes): v2, or v1."""
    if MANIFEST not in files:
        raise BundleError(f"{MANIFEST} missing from the bundle")
    obj = Manifest.parse(files[MANIFEST])
    if obj["version"] == 1:
        from . import v1
        return v1.decode_files(obj, files)
    m = Manifest.from_obj(obj)
    _check_members(m, files)
    unpacked = _unpack_tables(m, T.decompress(files[m.member("tables").file], m.tables_raw_bytes))
    _, plan, boxes, _, tables = unpacked
    levels, sizes = _decode_weights(m, files, plan, tables.coded)
    model = _rebuild(m, unpacked, levels)
    total = sum(len(b) for b in files.values())
    meta = dict(m.raw)
    meta["bundle"] = {"version": VERSION, "digest": m.digest, "total_bytes": total, "fp32_bytes": m.fp32_bytes,
                      "ratio": m.fp32_bytes / total, "files": {k: len(v) for k, v in sorted(files.items())},
                      "grid": model.__dict__.pop("_ctnet_grid"), "grid_bits": m.settings.bit_depth,
                      "grid_layer_bits": dict(m.settings.layer_bits),
                      "grid_tile": m.settings.tile, "dithered": m.settings.dither > 0,
                      "frame_bytes": _frame_bytes(tables.coded, sizes)}
    return model, meta


def _frame_bytes(coded: np.ndarray, sizes) -> list[int]:
    out = np.zeros(len(coded), np.int64)
    out[np.nonzero(coded)[0]] = np.asarray(sizes, np.int64)[:int(coded.sum())] if len(sizes) else 0
    return [int(x) for x in out]


def read_manifest(data: bytes) -> dict:
    """The manifest's JSON object (v1 or v2), checked as far as it can be without the model:
    format, version and, for v2, every field and the digest."""
    obj = Manifest.parse(data)
    if obj["version"] == VERSION:
        Manifest.from_obj(obj)
    return obj


# --- files ------------------------------------------------------------------------------------

def write_bundle(files: dict[str, bytes] | EncodeResult, dest: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a bundle's files into a temporary directory beside ``dest`` and rename it into
    place, so an interrupted write leaves no half-written bundle. An existing ``dest`` is
    replaced only with ``overwrite`` and only if it is a bundle (or empty); it stays readable
    at its path until the new one is complete."""
    if isinstance(files, EncodeResult):
        files = files.files
    dest = Path(dest)
    for name in files:
        check_name(name)
    _recover(dest)
    if dest.exists() or dest.is_symlink():
        if not overwrite:
            raise BundleError(f"{dest} already exists (pass --force to replace it)")
        if not dest.is_dir() or dest.is_symlink() or (any(dest.iterdir()) and not (dest / MANIFEST).is_file()):
            raise BundleError(f"{dest} exists and is not a bundle directory; refusing to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    old = dest.parent / f".{dest.name}.old"
    try:
        for name, data in sorted(files.items()):
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        from ..fileio import umask as read_umask
        umask = read_umask()
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
        for name in files:
            os.chmod(tmp / name, 0o666 & ~umask)
        if dest.exists():
            os.rename(dest, old)  # from here until the next rename, _recover() puts it back
        os.rename(tmp, dest)
    except BaseException:
        if old.exists() and not dest.exists():
            os.rename(old, dest)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return dest


def _recover(dest: Path) -> None:
    """Undo what an interrupted :func:`write_bundle` left: the old bundle moved aside and not
    replaced is put back; stale temporary directories are removed."""
    old = dest.parent / f".{dest.name}.old"
    if old.is_dir() and not old.is_symlink():
        if not dest.exists():
            os.rename(old, dest)
        else:
            shutil.rmtree(old, ignore_errors=True)
    if dest.parent.is_dir():
        for p in dest.parent.glob(f".{dest.name}.*.tmp"):
            if p.is_dir() and not p.is_symlink() and time.time() - p.stat().st_mtime > 60:
                shutil.rmtree(p, ignore_errors=True)


def load_files(path: str | os.PathLike) -> dict[str, bytes]:
    """The files of a bundle directory that its manifest names (plus the manifest), after
    checking names, file types and sizes against the manifest."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    files = {MANIFEST: _read_plain(root, MANIFEST, None)}
    obj = Manifest.parse(files[MANIFEST])
    if obj["version"] == 1:
        from . import v1
        refs = v1.referenced_files(obj)
    else:
        refs = {e.file: (e.bytes, e.sha256) for e in Manifest.from_obj(obj).members}
    for name, (size, _) in refs.items():
        files[name] = _read_plain(root, name, size)
    return files


def _read_plain(root: Path, name: str, size: int | None) -> bytes:
    p = root / check_name(name)
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
    for dirpath, _, names in os.walk(os.fspath(path)):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def read_bundle(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(decoded model in eval mode, manifest + ``bundle`` totals) of a bundle directory. The
    size counts every file in the directory, whether the manifest names it or not."""
    model, meta = decode_files(load_files(path))
    total = directory_bytes(path)
    meta["bundle"].update(path=str(path), total_bytes=total, ratio=meta["fp32_bytes"] / total)
    return model, meta


def verify(path: str | os.PathLike) -> dict:
    """Check a bundle directory without decoding its frames: manifest fields and digest,
    every member's size and SHA-256, the tables against the model. Returns the digest and
    what was checked; raises BundleError naming the first problem."""
    files = load_files(path)
    obj = Manifest.parse(files[MANIFEST])
    if obj["version"] == 1:
        from . import v1
        for name, (size, digest) in v1.referenced_files(obj).items():
            if sha256(files[name]) != digest:
                raise BundleError(f"{name}: contents do not match the manifest's SHA-256 (damaged file)")
        return {"bundle": str(path), "version": 1, "digest": None, "total_bytes": directory_bytes(path),
                "members": {k: len(v) for k, v in files.items()},
                "note": "version 1: members' SHA-256 checked; the manifest itself carries no digest"}
    m = Manifest.from_obj(obj)
    _check_members(m, files)
    _unpack_tables(m, T.decompress(files[m.member("tables").file], m.tables_raw_bytes))
    extra = sorted(set(os.listdir(path)) - set(files))
    return {"bundle": str(path), "version": VERSION, "digest": m.digest, "total_bytes": directory_bytes(path),
            "members": {k: len(v) for k, v in files.items()}, "unlisted": extra}


__all__ = ["BN_MODES", "BundleError", "EncodeResult", "EncodeSettings", "Layout", "layout", "FORMAT", "MANIFEST",
           "TABLES", "VERSION", "bn_table", "decode_files", "directory_bytes", "encode_model", "known_grid", "load_files",
           "read_bundle", "read_manifest", "verify", "weights_file", "write_bundle"]
