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

Version-1 bundles (one stream per tile size of the tensor images, grid in the JSON, no digest)
still decode bit-exactly through :mod:`ctnet.codec.v1`, with a warning that they cannot be verified.

Everything is built in memory (:func:`encode_model` → :class:`EncodeResult`), so the app can look
at a bundle without files; :func:`write_bundle` puts it on disk atomically. Reading has one path
for every use: :func:`reader` checks a manifest against the model it describes before any member
is read (a :class:`Reader`, or ``v1.Reader``), bounding every member by that model; its
``check`` is what :func:`verify` does (all but the frames), its ``decode`` what
:func:`read_bundle` and :func:`decode_files` do.
"""
from __future__ import annotations

import copy
import ctypes
import errno
import functools
import glob
import hashlib
import json
import math
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import export, quant
from .. import fileio
from ..models import ModelSpec, build_model, fp32_bytes
from . import frames as F
from . import plan as PL
from . import tables as T
from .decoded import check_members, load_decoded, model_check, stream_limit
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
    layers: list[dict]  # name, kind, shape, frames, coded_frames, bytes, nonzero, entropy_bits, errors (max, RMS)
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
        r = Reader(m)
        check_members(r.members, files)
        model = load_decoded(r.model, {k: torch.from_numpy(v) for k, v in report["model_state"].items()},
                             m.model_check)
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


# what :func:`layout` reads of the settings: encodes that differ only in codec, preset, rate or
# BatchNorm mode lay the same levels out the same way (the app's worker lays a model out once
# for its preview and its exact encode, and on checkpoint selection)
LAYOUT_FIELDS = ("bit_depth", "layer_bits", "tile", "dither", "seed", "frame", "order")


def layout_key(settings: EncodeSettings) -> tuple:
    """The settings' fields that decide a model's :func:`layout`."""
    return tuple(getattr(settings, f) for f in LAYOUT_FIELDS)


@dataclass
class Layout:
    """Where every level of a model goes under ``settings`` (before any coding)."""

    grids: list[Grid]
    plan: PL.FramePlan
    levels: np.ndarray  # (plan frames, S, S) int32
    row_classes: list
    col_classes: list
    coded: np.ndarray  # bool per plan frame: holds a non-zero level
    key: tuple = ()  # layout_key of the settings it was made for
    # what every encode of this layout computes alike, made once (:func:`prepare_encode`): its
    # pixels, tables and the model a lossless stream of it decodes to; "source": the model it is of
    memo: dict = field(default_factory=dict, repr=False, compare=False)

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
    return Layout(grids, plan, levels, rcs, ccs, np.asarray(levels.reshape(len(levels), -1).any(axis=1)),
                  layout_key(settings))


def _memo(lay: Layout, model: nn.Module) -> dict | None:
    """The layout's memo when it is of ``model`` (the first model it codes claims it), else None:
    nothing cached for one model is used for another."""
    if lay.memo.setdefault("source", model) is not model:
        return None
    return lay.memo


def _pixels(lay: Layout, container_bits: int, memo: dict | None) -> tuple[np.ndarray, np.ndarray, list]:
    """(coded plan frames, their pixels, the escapes) of the layout in ``container_bits`` frames."""
    key = ("pixels", container_bits)
    if memo is not None and key in memo:
        return memo[key]
    coded_ids = np.nonzero(lay.coded)[0]
    pixels, escapes = PL.to_pixels(lay.levels[coded_ids], container_bits)
    out = (coded_ids, pixels, [(int(coded_ids[f]), pos, lv) for f, pos, lv in escapes])
    if memo is not None:
        memo[key] = out
    return out


def _memo_key(kind: str, settings: EncodeSettings) -> tuple:
    """A layout memo's key for what its tables (``kind`` "tables") or its lossless rebuild
    ("lossless") depend on beyond the layout: the container depth and the BN mode (the rebuild
    reads the grid fields too, which are the layout's own key)."""
    return (kind, settings.container_bits, settings.bn_mode)


def _tables(lay: Layout, bns: Mapping[str, _BatchNorm], settings: EncodeSettings, escapes: list,
            memo: dict | None) -> tuple[np.ndarray, bytes, bytes]:
    """(BatchNorm table, raw tables, LZMA-compressed tables) of the layout at ``settings``."""
    key = _memo_key("tables", settings)
    if memo is not None and key in memo:
        return memo[key]
    bn = bn_table(bns, settings.bn_mode)
    tables = T.Tables([g.scale for g in lay.grids], [g.zero_point for g in lay.grids], lay.row_classes,
                      lay.col_classes, lay.coded, escapes, bn)
    raw = T.pack(tables, bits=settings.bit_depth, frame=settings.frame, bn_mode=settings.bn_mode,
                 layer_bits=[settings.bits_of(g.name) for g in lay.grids] if settings.layer_bits else None)
    out = (bn, raw, T.compress(raw))
    if memo is not None:
        memo[key] = out
    return out


def _rebuilt(reader: "Reader", raw_tables: bytes, coded_ids: np.ndarray, decoded: np.ndarray, total_frames: int,
             settings: EncodeSettings) -> nn.Module:
    """The model a decoder rebuilds from the decoded frames and the packed tables."""
    levels = np.zeros((total_frames, settings.frame, settings.frame), np.int32)
    levels[coded_ids] = PL.from_pixels(decoded, settings.container_bits)
    reader.unpack(raw_tables)
    return reader.rebuild(levels)


def _lossless(lay: Layout, model: nn.Module, meta: dict, settings: EncodeSettings, memo: dict) -> tuple:
    """(decoded model, weight rows without bytes, BN rows) of any lossless encode of the layout at
    ``settings``' container depth and BN mode: the model rebuilt, as a decoder does, from the
    levels every lossless stream decodes to (the layout's own, its escapes in the tables) and the
    packed tables, through a reader of the manifest's model and settings (the rebuild reads
    nothing else of a manifest: not its codec, preset or members), with the same checks."""
    key = _memo_key("lossless", settings)
    if key not in memo:
        spec = ModelSpec.from_dict(meta["model"])
        video, bns = export.video_tensors(model), export.bn_layers(model)
        coded_ids, pixels, escapes = _pixels(lay, settings.container_bits, memo)
        bn, raw_tables, packed = _tables(lay, bns, settings, escapes, memo)
        m = Manifest(spec, None, 0, 0, {}, 1, settings, len(lay.levels), len(coded_ids), len(escapes),
                     len(raw_tables), {}, "", (), "", {})
        decoded_model = _rebuilt(Reader(m), raw_tables, coded_ids, pixels, len(lay.levels), settings)
        rows = _layer_rows(lay.grids, lay.plan, lay.coded, video, decoded_model, settings)
        memo[key] = (decoded_model, rows, _bn_report(bns, decoded_model, len(packed), len(raw_tables),
                                                     _bn_raw_bytes(bn, settings)))
    return memo[key]


def _bn_raw_bytes(bn: np.ndarray, settings: EncodeSettings) -> int:
    """Bytes the BatchNorm table ``bn`` takes in the raw tables."""
    return bn.shape[1] * (2 * 3 if settings.bn_mode == "affine" else 4 * 4)


@torch.no_grad()
def prepare_encode(model: nn.Module, meta: dict, settings: EncodeSettings, lay: Layout) -> None:
    """Compute, in ``lay``'s memo, what every encode of ``model`` laid out as ``lay`` at
    ``settings``' container depth and BN mode computes alike (before any click: the app's
    worker on checkpoint selection): its pixels and tables and, for a lossless encode, the model
    the stream decodes to with its per-layer errors. The encodes give the same bytes and tensors."""
    settings = settings.validate()
    if lay.key != layout_key(settings):
        raise ValueError("a layout is prepared for settings of its own grid")
    memo = _memo(lay, model)
    if memo is None:
        return
    video, bns = export.video_tensors(model), export.bn_layers(model)
    _check_state(model, video, bns)
    _, _, escapes = _pixels(lay, settings.container_bits, memo)
    _tables(lay, bns, settings, escapes, memo)
    if settings.crf == 0:
        _lossless(lay, model, meta, settings, memo)


@torch.no_grad()
def encode_model(model: nn.Module, meta: dict, settings: EncodeSettings | None = None, *,
                 progress: Callable[[int, int], None] | None = None, laid_out: Layout | None = None,
                 quick: bool = False) -> EncodeResult:
    """Encode a model (with its checkpoint metadata, or a decoded bundle's) into an in-memory
    v2 bundle, then rebuild the model those bytes decode to. ``progress(frames done, frames
    in all)`` is called as the frames are coded. ``laid_out``: this model's :func:`layout`
    made earlier for settings with the same :func:`layout_key` (else ValueError); its levels
    are read, not changed, and what every encode of it computes alike is kept in its memo
    (:func:`prepare_encode`): the pixels, the tables and, when the stream decodes to exactly the
    pixels coded (every lossless one does), the model they decode to, as a copy. ``quick``: a
    lossless HEVC stream is coded with x265's own short GOP (``registry.QUICK``, recorded as
    the stream's workaround): the same levels, sooner, a few per cent more bytes (the app's
    preview)."""
    t0 = time.perf_counter()
    settings = (settings or EncodeSettings()).validate()
    spec = ModelSpec.from_dict(meta["model"])
    if laid_out is not None and laid_out.key != layout_key(settings):
        raise ValueError(f"a layout made for {dict(zip(LAYOUT_FIELDS, laid_out.key))} cannot code these settings' "
                         f"levels ({dict(zip(LAYOUT_FIELDS, layout_key(settings)))})")
    video = export.video_tensors(model)
    bns = export.bn_layers(model)
    memo = _memo(laid_out, model) if laid_out is not None else None
    if memo is None or _memo_key("tables", settings) not in memo:
        _check_state(model, video, bns)  # prepare_encode checked it when it made the tables
    lay = laid_out if laid_out is not None else layout(model, meta, settings)
    levels = lay.levels
    coded_ids, pixels, escapes = _pixels(lay, settings.container_bits, memo)

    files: dict[str, bytes] = {}
    frame_bytes = np.zeros(len(levels), np.int64)
    stream = None
    if len(coded_ids):
        data, per_frame, stream, decoded = _code_frames(pixels, settings, progress, quick)
        frame_bytes[coded_ids] = per_frame
        files[weights_file(settings.codec)] = data
    else:
        decoded = pixels
        if progress:
            progress(0, 0)

    bn, raw_tables, files[TABLES] = _tables(lay, bns, settings, escapes, memo)

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
    # rebuild from what a decoder sees (the decoded frames and the packed tables), then record
    # what the described block size makes of the decoded weights (ctnet.codec.decoded); a stream
    # that decodes to exactly the pixels coded gives the model its layout's lossless rebuild made
    manifest["digest"] = digest_of(manifest)
    reader = Reader(Manifest.from_obj(manifest))
    if memo is not None and settings.crf == 0 and np.array_equal(decoded, pixels):
        reader.unpack(raw_tables)  # the tables as the decoder reads them, against this manifest
        lossless_model, rows, bn_rows = _lossless(lay, model, meta, settings, memo)
        decoded_model = copy.deepcopy(lossless_model)
        layers = [dict(r) for r in rows]
    else:
        decoded_model = _rebuilt(reader, raw_tables, coded_ids, decoded, len(levels), settings)
        layers = _layer_rows(lay.grids, lay.plan, lay.coded, video, decoded_model, settings)
        bn_rows = _bn_report(bns, decoded_model, len(files[TABLES]), len(raw_tables), _bn_raw_bytes(bn, settings))
    check = model_check(decoded_model)
    if check is not None:
        manifest["model_check"] = check
    manifest["digest"] = digest_of(manifest)
    files[MANIFEST] = (json.dumps(manifest, separators=(",", ":")) + "\n").encode()
    Manifest.from_json(files[MANIFEST])  # what the decoder will read

    layers = _with_bytes(layers, lay.plan, frame_bytes) + [dict(r) for r in bn_rows]
    streams = [stream] if stream else []
    return EncodeResult(files, manifest, layers, streams, pixels, lay.info(frame_bytes), decoded_model,
                        time.perf_counter() - t0, manifest["fp32_bytes"])


def _code_frames(pixels: np.ndarray, settings: EncodeSettings, progress, quick: bool = False):
    """Code the frames with the bundle's codec → (file bytes, bytes per frame, stream
    entry, frames as decoded); ``quick``: see :func:`encode_model`."""
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
            vs = settings.video()
            if quick and settings.codec == "hevc" and settings.crf == 0:
                vs = replace(vs, workaround=V.QUICK)
            enc = V.encode_frames(list(pixels), vs, decode=True, progress=progress)
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


def _layer_rows(grids, plan, coded_mask, video, decoded_model, settings) -> list[dict]:
    """Per weight tensor: what its levels and its decoded weights are (all but the stream's bytes)."""
    decoded = export.video_tensors(decoded_model)
    rows = []
    for g, lp in zip(grids, plan.layers):
        ids = slice(lp.first_frame, lp.first_frame + lp.frames)
        nz = int(np.count_nonzero(g.levels))
        h0 = PL.entropy_bits(g.tile_pixels())
        src = video[g.name].detach().cpu().double()
        diff = decoded[g.name].detach().cpu().double() - src  # one pass for the max and the RMS error
        err, rms, rms_src = float(diff.abs().max()), float(diff.pow(2).mean().sqrt()), float(src.pow(2).mean().sqrt())
        rows.append({"name": g.name, "kind": "weight", "bits": settings.bits_of(g.name), "shape": list(g.shape),
                     "frames": lp.frames,
                     "coded_frames": int(coded_mask[ids].sum()), "bytes": None, "nonzero": nz, "entropy_bits": h0,
                     "bits_per_nonzero": None,
                     "entropy_bits_per_nonzero": h0 / nz if nz else None,
                     "max_abs_error": err, "rms_error": rms, "rel_rms_error": rms / rms_src if rms_src else 0.0,
                     "max_half_step": float(g.scale.max()) / 2, "tiles": len(g.boxes)})
    return rows


def _with_bytes(rows: list[dict], plan, frame_bytes) -> list[dict]:
    """The weight rows with their stream's bytes (each layer's frames) and bits per non-zero."""
    for row, lp in zip(rows, plan.layers):
        b = int(frame_bytes[lp.first_frame:lp.first_frame + lp.frames].sum())
        row["bytes"], row["bits_per_nonzero"] = b, 8 * b / row["nonzero"] if row["nonzero"] else None
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


# --- reading: one versioned reader for decode, load and verify -----------------------------------

READ_CHUNK = 1 << 20
MAX_BUNDLE_ENTRIES = 10_000  # files and folders a bundle directory may hold (it holds three)
MAX_ESCAPE_BYTES = 8  # two varints: a position delta < 2^42 (6 bytes) and a zig-zagged level < 2^14 (2)


class Reader:
    """A format-v2 manifest checked against the model it describes before any member is read:
    ``members`` says what each member must be (name → (bytes, SHA-256)), each bounded by what
    that model can need. :meth:`check` checks the members short of decoding frames (what
    ``ctnet verify`` does), :meth:`decode` decodes them. :func:`reader` picks the reader of a
    manifest's version; :class:`ctnet.codec.v1.Reader` reads format v1 the same way."""

    version = VERSION

    def __init__(self, m: Manifest, where: str = ""):
        self.m, self.where, self.digest = m, where, m.digest
        s = m.settings
        self.model = build_model(m.model)
        video = export.video_tensors(self.model)
        self.plan = PL.make_plan([(n, tuple(t.shape)) for n, t in video.items()], s.frame)
        check_layer_bits(s, list(video))
        if self.plan.total_frames != m.frames:
            raise BundleError(f"manifest says {m.frames} frames, the model's layout has {self.plan.total_frames}")
        self.boxes = [quant.tile_boxes(*quant.image_shape(tuple(t.shape)), s.tile) for t in video.values()]
        self.bns = export.bn_layers(self.model)
        self.ordered = [s.order == "count" and lp.ordered for lp in self.plan.layers]
        area = s.frame * s.frame
        if m.escapes > m.coded_frames * area:
            raise BundleError(f"manifest lists {m.escapes} escapes for {m.coded_frames} coded frames of {area} levels")
        fixed = self._tables_fixed_bytes()
        if not fixed + 2 * m.escapes <= m.tables_raw_bytes <= fixed + MAX_ESCAPE_BYTES * m.escapes:
            raise BundleError(f"manifest says the tables hold {m.tables_raw_bytes} bytes; this model's hold {fixed} "
                              f"and 2..{MAX_ESCAPE_BYTES} bytes per escape ({m.escapes})")
        limits = {"tables": m.tables_raw_bytes + m.tables_raw_bytes // 64 + 1024,  # LZMA2 of incompressible data
                  "weights": stream_limit(m.coded_frames * area, s.container_bits)}
        for e in m.members:
            if e.role == "weights" and e.file != weights_file(s.codec):
                raise BundleError(f"a {s.codec} bundle keeps its levels in {weights_file(s.codec)}, not {e.file}")
            if e.bytes > limits[e.role]:
                raise BundleError(f"{e.file}: the manifest says {e.bytes} bytes; this model's {e.role} need at "
                                  f"most {limits[e.role]}")
        self.members = {e.file: (e.bytes, e.sha256) for e in m.members}
        self.tables: T.Tables | None = None

    def _tables_fixed_bytes(self) -> int:
        """Bytes of everything in the raw tables but the escapes (ctnet.codec.tables' layout)."""
        s = self.m.settings
        tiles = sum(len(b) for b in self.boxes)
        classes = sum(lp.plane_h + lp.plane_w for lp, o in zip(self.plan.layers, self.ordered) if o)
        channels = sum(b.num_features for b in self.bns.values())
        bn = channels * (2 * 3 if s.bn_mode == "affine" else 4 * 4)
        layer_bits = len(self.plan.layers) if s.layer_bits else 0
        return (6 + layer_bits + tiles * (4 + (1 if s.bit_depth <= 8 else 2)) + classes
                + -(-self.plan.total_frames // 8) + bn)

    def check(self, files: Mapping[str, bytes]) -> None:
        """Every member as the manifest states it, the tables against the model and the
        weight stream's header against the settings and the plan — all but the frames."""
        check_members(self.members, files)
        self.unpack(T.decompress(files[self.m.member("tables").file], self.m.tables_raw_bytes))
        if self.m.coded_frames:
            data, s = files[self.m.member("weights").file], self.m.settings
            if s.family == "planes":
                from . import planes as P
                try:
                    P.check_header(s.codec, data, P.level_size((self.m.coded_frames, s.frame, s.frame),
                                                               s.container_bits))
                except P.PlaneError as exc:
                    raise BundleError(f"{self.m.member('weights').file}: {exc}") from exc
            else:
                from . import video as V
                try:
                    V.check_header(data, self._video(), height=s.frame, width=s.frame, count=self.m.coded_frames)
                except VideoError as exc:
                    raise BundleError(f"{self.m.member('weights').file}: {exc}") from exc

    def _video(self):
        vs = self.m.settings.video()
        if self.m.workaround:
            vs = replace(vs, workaround=self.m.workaround)
        try:
            return vs.validate()
        except VideoError as exc:
            raise BundleError(f"manifest field 'coding.workaround': {exc}") from exc

    def unpack(self, raw: bytes) -> T.Tables:
        m = self.m
        tables = T.unpack(raw, plan=self.plan, tiles=[len(b) for b in self.boxes], ordered=self.ordered,
                          bits=m.settings.bit_depth, escapes=m.escapes,
                          bn_channels=sum(x.num_features for x in self.bns.values()), bn_mode=m.settings.bn_mode,
                          layer_bits=[m.settings.bits_of(lp.name) for lp in self.plan.layers]
                          if m.settings.layer_bits else None)
        if int(tables.coded.sum()) != m.coded_frames:
            raise BundleError(f"tables mark {int(tables.coded.sum())} frames as coded, the manifest says {m.coded_frames}")
        if not np.isfinite(tables.bn).all():
            raise BundleError("tables hold BatchNorm values that are not finite")
        for f, _, level in tables.escapes:
            if not tables.coded[f] or abs(level) > 2**m.settings.bit_depth - 1:
                raise BundleError("tables: an escape in a frame that is not coded, or a level off the grid")
        self.tables = tables
        return tables

    def decode(self, files: Mapping[str, bytes]) -> tuple[nn.Module, dict]:
        """(decoded model in eval mode, manifest + ``bundle`` totals); :meth:`check` first."""
        self.check(files)
        assert self.tables is not None  # check() unpacked them
        levels, sizes = self._levels(files)
        model = self.rebuild(levels)
        m = self.m
        total = sum(len(b) for b in files.values())
        meta = dict(m.raw)
        meta["bundle"] = {"version": VERSION, "digest": m.digest, "total_bytes": total, "fp32_bytes": m.fp32_bytes,
                          "ratio": m.fp32_bytes / total, "files": {k: len(v) for k, v in sorted(files.items())},
                          "grid": model.__dict__.pop("_ctnet_grid"), "grid_bits": m.settings.bit_depth,
                          "grid_layer_bits": dict(m.settings.layer_bits), "grid_tile": m.settings.tile,
                          "dithered": m.settings.dither > 0,
                          "frame_bytes": _frame_bytes(self.tables.coded, sizes)}
        return model, meta

    def _levels(self, files: Mapping[str, bytes]) -> tuple[np.ndarray, list[int]]:
        """All plan frames' levels (uncoded frames at 0) and the coded frames' bytes."""
        m, s = self.m, self.m.settings
        assert self.tables is not None
        levels = np.zeros((self.plan.total_frames, s.frame, s.frame), np.int32)
        if not m.coded_frames:
            return levels, []
        name = m.member("weights").file
        data = files[name]
        shape = (m.coded_frames, s.frame, s.frame)
        sizes: list[int] = []
        if s.family == "planes":
            from . import planes as P
            try:
                pixels = P.from_level_bytes(P.decompress(s.codec, data, P.level_size(shape, s.container_bits)), shape,
                                            s.container_bits)
            except P.PlaneError as exc:
                raise BundleError(f"{name}: {exc}") from exc
            sizes = P.apportion(len(data), list(pixels))
        else:
            from . import video as V
            try:
                pixels = V.decode_frames(data, self._video(), height=s.frame, width=s.frame, count=m.coded_frames,
                                         packet_sizes=sizes)
            except VideoError as exc:
                raise BundleError(f"{name}: {exc}") from exc
        levels[np.nonzero(self.tables.coded)[0]] = PL.from_pixels(pixels, s.container_bits)
        return levels, sizes

    def rebuild(self, levels: np.ndarray) -> nn.Module:
        """The model from the unpacked tables and all plan frames' levels, checked against
        its description (``ctnet.codec.decoded``)."""
        tables, s = self.tables, self.m.settings
        assert tables is not None
        for f, pos, level in tables.escapes:
            levels[f].reshape(-1)[pos] = level
        state: dict[str, torch.Tensor] = {}
        grid_out = {}
        first_tile = 0
        for lp, bx, scale, zp, rc, cc in zip(self.plan.layers, self.boxes, tables.scales, tables.zero_points,
                                             tables.row_classes, tables.col_classes):
            planes = PL.layer_planes(levels[lp.first_frame:lp.first_frame + lp.frames], lp, rc, cc)
            lev = PL.from_planes(planes, lp.shape)
            img = quant.tensor_to_image(torch.from_numpy(np.ascontiguousarray(lev))).numpy()
            bits = s.bits_of(lp.name)
            peak = 2**bits - 1
            tiles = []
            for (r0, c0, h, w), z in zip(bx, zp):
                p = img[r0:r0 + h, c0:c0 + w].astype(np.int64) + int(z)
                if p.min() < 0 or p.max() > peak:
                    if s.crf == 0:
                        raise BundleError(f"layer {lp.name}: decoded levels fall off the {bits}-bit grid (damaged)")
                    p = np.clip(p, 0, peak)  # a lossy stream may overshoot
                tiles.append(p.astype(np.uint16))
            with np.errstate(over="ignore", invalid="ignore"):  # a huge scale overflows: refused by load_decoded
                state[lp.name] = F.dequantize_tensor(tiles, scale, zp, lp.shape, tile=s.tile, first_frame=first_tile,
                                                     dither=s.dither, seed=s.seed)
            grid_out[lp.name] = (scale, zp)
            first_tile += len(bx)
        _load_bn(self.bns, tables.bn, s.bn_mode, state)
        model = load_decoded(self.model, state, self.m.model_check)
        model.__dict__["_ctnet_grid"] = grid_out
        return model


def reader(manifest: bytes, where: str = ""):
    """The reader of a manifest's format version (v2: :class:`Reader`, v1:
    :class:`ctnet.codec.v1.Reader`): the manifest checked against its model, members bounded."""
    obj = Manifest.parse(manifest)
    if obj["version"] == 1:
        from . import v1
        return v1.Reader(obj, where)
    return Reader(Manifest.from_obj(obj), where)


def decode_files(files: Mapping[str, bytes]) -> tuple[nn.Module, dict]:
    """Validate and decode a bundle held in memory (file name → bytes): v2, or v1."""
    if MANIFEST not in files:
        raise BundleError(f"{MANIFEST} missing from the bundle")
    return reader(files[MANIFEST]).decode(files)


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
    """Write a bundle's files into a temporary directory beside ``dest`` and move it into
    place, so an interrupted write leaves no half-written bundle. An existing ``dest`` is
    replaced only with ``overwrite`` and only if it is a bundle (or empty); the two are
    exchanged in one step (``renameat2(RENAME_EXCHANGE)`` on Linux), so ``dest`` always holds
    a complete bundle — the old one until the new one is."""
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.~{fileio._HOST}~{os.getpid()}~", suffix=".tmp", dir=dest.parent))
    old = dest.parent / f".{dest.name}.old"
    try:
        for name, data in sorted(files.items()):
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        umask = fileio.umask()
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
        for name in files:
            os.chmod(tmp / name, 0o666 & ~umask)
        if dest.exists():
            if not _exchange(tmp, dest):  # tmp now holds the old bundle (removed below)
                os.rename(dest, old)  # no atomic exchange here: until the next rename, _recover() puts it back
                os.rename(tmp, dest)
        else:
            os.rename(tmp, dest)
    except BaseException:
        if old.exists() and not dest.exists():
            os.rename(old, dest)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return dest


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    libc = _libc()
    if libc is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot swap {b} with its replacement: {os.strerror(err)}")


@functools.cache
def _libc():
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        return libc
    except (OSError, AttributeError):  # no glibc 2.28+: the two renames
        return None


def _recover(dest: Path) -> None:
    """Undo what an interrupted :func:`write_bundle` left: the old bundle moved aside and not
    replaced is put back; temporary directories whose writer is gone (this host), or untouched
    for ``fileio.ORPHAN_AGE_S``, are removed."""
    old = dest.parent / f".{dest.name}.old"
    if old.is_dir() and not old.is_symlink():
        if not dest.exists():
            os.rename(old, dest)
        else:
            shutil.rmtree(old, ignore_errors=True)
    if dest.parent.is_dir():
        for p in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
            try:
                if not p.is_dir() or p.is_symlink():
                    continue
                alive = fileio._writer_alive(p.name)
                if alive is False or (alive is None and time.time() - p.stat().st_mtime > fileio.ORPHAN_AGE_S):
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                continue


def _load(path: str | os.PathLike):
    """(reader, files) of a bundle directory: the manifest first, then only the members it
    names, each a plain file of the size it states (bounded by the model it describes), read
    and hashed in one pass."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    manifest = _read_member(root, MANIFEST, None, None)
    r = reader(manifest, str(root))
    files = {MANIFEST: manifest}
    for name, (size, digest) in r.members.items():
        files[name] = _read_member(root, name, size, digest)
    return r, files


def load_files(path: str | os.PathLike) -> dict[str, bytes]:
    """The files of a bundle directory that its manifest names (plus the manifest), after
    checking names, file types, sizes and SHA-256 against the manifest."""
    return _load(path)[1]


def _read_member(root: Path, name: str, size: int | None, digest: str | None) -> bytes:
    p = root / check_name(name)
    limit = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_FILE_BYTES
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise BundleError(f"{name}: missing from the bundle") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError(f"{name}: not a regular file (links are not followed)") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):  # checked on the open file: a FIFO is never read
            raise BundleError(f"{name}: not a regular file (links are not followed)")
        if st.st_size > limit:
            raise BundleError(f"{name}: {st.st_size} bytes is more than a bundle file may hold")
        if size is not None and st.st_size != size:
            raise BundleError(f"{name}: {st.st_size} bytes on disk, the manifest says {size} (truncated or replaced)")
        h = hashlib.sha256()
        buf = bytearray()
        want = st.st_size if size is None else size
        while chunk := f.read(min(READ_CHUNK, want + 1 - len(buf))):
            h.update(chunk)
            buf += chunk
            if len(buf) > want:
                raise BundleError(f"{name}: grew while it was read (being written?)")
    if len(buf) != want:
        raise BundleError(f"{name}: {len(buf)} bytes read, the manifest says {want} (truncated or being written)")
    if digest is not None and h.hexdigest() != digest:
        raise BundleError(f"{name}: contents do not match the manifest's SHA-256 (damaged file)")
    return bytes(buf)


def directory_bytes(path: str | os.PathLike) -> int:
    """Every byte of every file under a bundle directory (SPEC §4's size accounting); walked
    without recursion, links not followed, at most :data:`MAX_BUNDLE_ENTRIES` entries."""
    total, seen, stack = 0, 0, [os.fspath(path)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for e in entries:
                seen += 1
                if seen > MAX_BUNDLE_ENTRIES:
                    raise BundleError(f"{path} holds more than {MAX_BUNDLE_ENTRIES} files and folders; a bundle holds "
                                      f"three")
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
    return total


def read_bundle(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(decoded model in eval mode, manifest + ``bundle`` totals) of a bundle directory. The
    size counts every file in the directory, whether the manifest names it or not."""
    r, files = _load(path)
    model, meta = r.decode(files)
    total = directory_bytes(path)
    meta["bundle"].update(path=str(path), total_bytes=total, ratio=meta["fp32_bytes"] / total)
    return model, meta


def verify(path: str | os.PathLike) -> dict:
    """Check a bundle directory as decoding does, short of decoding its frames: manifest
    fields and digest, the manifest against the model it describes, every member's size and
    SHA-256, the tables, the weight stream's header. Returns the digest and what was checked;
    raises BundleError naming the first problem — and for a format-v1 bundle, whose manifest
    carries no digest, an error saying that it cannot be verified."""
    r, files = _load(path)
    r.check(files)
    total = directory_bytes(path)
    if r.version == 1:
        raise BundleError(f"{path}: a format-v1 bundle cannot be verified: its members match their SHA-256 and "
                          f"every field is in range, but its manifest carries no digest, so an edit to it (a scale, "
                          f"the dither, the image size) would go unnoticed; `ctnet encode {path} --out NEW` migrates "
                          f"it to format v2, which has one")
    extra = sorted(set(os.listdir(path)) - set(files))
    return {"bundle": str(path), "version": VERSION, "digest": r.digest, "total_bytes": total,
            "members": {k: len(v) for k, v in files.items()}, "unlisted": extra}


__all__ = ["BN_MODES", "BundleError", "EncodeResult", "EncodeSettings", "LAYOUT_FIELDS", "Layout", "layout",
           "layout_key", "FORMAT", "MANIFEST",
           "Reader", "TABLES", "VERSION", "bn_table", "check_members", "decode_files", "directory_bytes", "encode_model",
           "known_grid", "load_files", "read_bundle", "read_manifest", "reader", "stream_limit", "verify",
           "weights_file", "write_bundle"]
