"""Typed boundary objects: what a checkpoint's metadata holds, checked once, strictly.

A checkpoint's JSON header comes from a file anyone may have edited. :meth:`CheckpointMeta.from_json`
is its one parser: every field is type- and range-checked (integers are bounded before any
arithmetic touches them, strings and containers are size-limited), and whatever is wrong
becomes one :class:`ctnet.errors.CheckpointError` naming the field — never a
``KeyError``/``TypeError``/``OverflowError``/``MemoryError`` deep inside evaluation or training.

:class:`LoadedModel` is what loading any model source gives (``ctnet.api.load_any``): the model
with, typed once, what callers ask of it (kind of source, model description, metrics, codec
settings, bundle facts), so no caller probes a metadata dict by key.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .codec.manifest import EncodeSettings
from .data import label_map_problem
from .errors import CheckpointError
from .limits import IMAGE_SIZE_RANGE, MAX_INT, PIXEL_BIT_DEPTHS
from .models import ModelSpec
from .strict import JSONInvalid, parse_json

FORMAT = "ctnet-checkpoint"
VERSION = 1
# a checkpoint's metadata is a few kB, plus its label map: up to MAX_NUM_CLASSES names
MAX_HEADER_CHARS = 32 << 20
MAX_DEPTH = 8
MAX_ITEMS = 100_000
KNOWN_FIELDS = ("format", "version", "model", "label_map", "image_size", "pixel_bit_depth", "train_config",
                "epoch", "metrics", "resume_state", "optimizer", "digest")


def _fail(where: str, msg: str) -> NoReturn:
    raise CheckpointError(f"{where}metadata {msg}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(where: str, name: str, v, lo: int, hi: int) -> int:
    if not _is_int(v):
        _fail(where, f"'{name}' must be an integer, not {type(v).__name__} {_short(v)}")
    if not lo <= v <= hi:  # comparisons of big ints are cheap; nothing else touches v first
        digits = len(str(abs(v))) if abs(v) < 10 ** 50 else "> 50"
        _fail(where, f"'{name}' out of range [{lo}, {hi}]: "
              + (str(v) if abs(v) < 10 ** 20 else f"an integer of {digits} digits"))
    return v


def _number(where: str, name: str, v, lo: float = -math.inf, hi: float = math.inf, finite: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _fail(where, f"'{name}' must be a number, not {type(v).__name__} {_short(v)}")
    if _is_int(v) and not -MAX_INT <= v <= MAX_INT:
        _fail(where, f"'{name}' is an integer too large to be a measurement")
    if finite and not math.isfinite(v):
        _fail(where, f"'{name}' must be finite, not {v}")
    if math.isfinite(v) and not lo <= v <= hi:
        _fail(where, f"'{name}' out of range [{lo}, {hi}]: {v}")
    return v


def _json_value(where: str, name: str, v, depth: int = 0) -> None:
    """Any JSON value, bounded: integers within ±2^53, nesting ≤ MAX_DEPTH, containers ≤ MAX_ITEMS."""
    if depth > MAX_DEPTH:
        _fail(where, f"'{name}' is nested deeper than {MAX_DEPTH} levels")
    if v is None or isinstance(v, (bool, str, float)):
        return
    if _is_int(v):
        if not -MAX_INT <= v <= MAX_INT:
            _fail(where, f"'{name}' holds an integer out of range (±2^53)")
        return
    if isinstance(v, (list, tuple)):
        if len(v) > MAX_ITEMS:
            _fail(where, f"'{name}' holds more than {MAX_ITEMS} items")
        for i, x in enumerate(v):
            _json_value(where, f"{name}[{i}]", x, depth + 1)
        return
    if isinstance(v, dict):
        if len(v) > MAX_ITEMS:
            _fail(where, f"'{name}' holds more than {MAX_ITEMS} items")
        for k, x in v.items():
            _json_value(where, f"{name}.{k}", x, depth + 1)
        return
    _fail(where, f"'{name}' is not a JSON value")


def _object(where: str, name: str, v) -> dict:
    """A JSON object (its values were bounded by the walk over the whole header)."""
    if not isinstance(v, dict):
        _fail(where, f"'{name}' must be a JSON object, not {type(v).__name__}")
    return v


def _metrics(where: str, v) -> dict:
    m = _object(where, "metrics", v)
    for key in ("acc1", "acc5"):
        if key in m:
            _number(where, f"metrics.{key}", m[key], 0.0, 100.0)
    for key in ("fp32_bytes", "est_bytes_export"):
        if key in m:
            _number(where, f"metrics.{key}", m[key], 0, MAX_INT)
    if "epoch" in m:
        _int(where, "metrics.epoch", m["epoch"], 0, 1_000_000)
    if "ratio" in m:
        _number(where, "metrics.ratio", m["ratio"], 0.0, math.inf, finite=False)
    if "est_bytes" in m:
        sizes = _object(where, "metrics.est_bytes", m["est_bytes"])
        for k, b in sizes.items():
            _number(where, f"metrics.est_bytes.{k}", b, 0, MAX_INT)
    return m


def _resume_state(where: str, v) -> dict:
    s = _object(where, "resume_state", v)
    for key in ("epoch", "scheduler_step", "pareto"):
        if key not in s:
            _fail(where, f"'resume_state' has no '{key}'")
    _int(where, "resume_state.epoch", s["epoch"], 0, 1_000_000)
    _int(where, "resume_state.scheduler_step", s["scheduler_step"], 0, 1 << 40)
    pareto = _object(where, "resume_state.pareto", s["pareto"])
    for role, entry in pareto.items():
        e = _object(where, f"resume_state.pareto.{role}", entry)
        for key in ("epoch", "acc1", "est_bytes_export"):
            if key not in e:
                _fail(where, f"'resume_state.pareto.{role}' has no '{key}'")
        _int(where, f"resume_state.pareto.{role}.epoch", e["epoch"], 0, 1_000_000)
        _number(where, f"resume_state.pareto.{role}.acc1", e["acc1"], 0.0, 100.0)
        _number(where, f"resume_state.pareto.{role}.est_bytes_export", e["est_bytes_export"], 0, MAX_INT)
    return s


def _optimizer(where: str, v) -> dict:
    o = _object(where, "optimizer", v)
    if not isinstance(o.get("param_groups"), list) or not all(isinstance(g, dict) for g in o["param_groups"]):
        _fail(where, "'optimizer.param_groups' must be a list of objects")
    scalars = o.get("scalars")
    if not isinstance(scalars, dict):
        _fail(where, "'optimizer.scalars' must be an object")
    for name in scalars:
        idx, _, key = name.partition(".")
        if not (idx.isdigit() and len(idx) <= 9 and key):
            _fail(where, f"'optimizer.scalars' has a malformed name {_short(name)}")
    return o


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's metadata, every field checked. ``other`` keeps fields this version
    does not know (bounded JSON), so a reader never drops what a writer stored."""

    model: ModelSpec
    version: int = VERSION
    label_map: dict[str, int] | None = None
    image_size: int = 128
    pixel_bit_depth: int = 0
    train_config: dict | None = None
    epoch: int | None = None
    metrics: dict | None = None
    resume_state: dict | None = None
    optimizer: dict | None = None
    digest: str | None = None  # "sha256:<hex>" over the metadata and every tensor (ctnet.checkpoint)
    other: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | bytes | dict, *, source: str | os.PathLike | None = None) -> CheckpointMeta:
        """Parse the ``ctnet`` entry of a safetensors header (a JSON string) or an already
        decoded dict. Raises :class:`ctnet.errors.CheckpointError` naming the field."""
        where = f"{source}: " if source is not None else ""
        if isinstance(text, (str, bytes)):
            if len(text) > MAX_HEADER_CHARS:
                _fail(where, f"is {len(text):,} characters; a checkpoint's is a few thousand")
            try:
                doc = parse_json(text)
            except JSONInvalid as exc:
                _fail(where, {"syntax": f"is not valid JSON ({exc.detail})", "unusable": f"is not usable JSON ({exc.detail})",
                              "nested": "is nested too deeply"}[exc.reason])
        else:
            doc = text
        if not isinstance(doc, dict):
            _fail(where, f"must be a JSON object, not {'null' if doc is None else type(doc).__name__}")
        if len(doc) > 64:
            _fail(where, f"has {len(doc)} fields; a checkpoint's has about ten")
        for key, value in doc.items():
            _json_value(where, key, value)
        fmt = doc.get("format")
        if fmt != FORMAT:
            _fail(where, f"format {_short(fmt)} is not {FORMAT!r}")
        version = doc.get("version", VERSION)
        if not _is_int(version):
            _fail(where, f"'version' must be an integer, not {type(version).__name__} {_short(version)}")
        if version > VERSION:
            raise CheckpointError(f"{where}checkpoint version {_short(version)} is newer than this ctnet ({VERSION})")
        _int(where, "version", version, 1, VERSION)
        if "model" not in doc:
            _fail(where, "has no 'model' (the architecture description): not a ctnet checkpoint")
        try:
            spec = ModelSpec.from_dict(doc["model"])
        except ValueError as exc:
            _fail(where, f"'model': {exc}")
        label_map = doc.get("label_map")
        if label_map is not None:
            problem = label_map_problem(label_map, spec.num_classes)
            if problem:
                _fail(where, f"'label_map' {problem}")
        image_size = _int(where, "image_size", doc.get("image_size", 128), *IMAGE_SIZE_RANGE)
        bits = doc.get("pixel_bit_depth", 0)
        if not _is_int(bits) or bits not in PIXEL_BIT_DEPTHS:
            _fail(where, f"'pixel_bit_depth' must be 0 or {PIXEL_BIT_DEPTHS[1]}..{PIXEL_BIT_DEPTHS[-1]}, not {_short(bits)}")
        train_config = doc.get("train_config")
        if train_config is not None:
            _object(where, "train_config", train_config)
            block = train_config.get("dct_block_size")
            if spec.ctnet and block is not None and block != spec.dct_block_size:
                _fail(where, f"'model.dct_block_size' {spec.dct_block_size} disagrees with the block size the "
                             f"weights were trained with (train_config.dct_block_size {_short(block)})")
        epoch = doc.get("epoch")
        if epoch is not None:
            _int(where, "epoch", epoch, 0, 1_000_000)
        metrics = _metrics(where, doc["metrics"]) if doc.get("metrics") is not None else None
        resume = _resume_state(where, doc["resume_state"]) if doc.get("resume_state") is not None else None
        optimizer = _optimizer(where, doc["optimizer"]) if doc.get("optimizer") is not None else None
        digest = doc.get("digest")
        if digest is not None and not (isinstance(digest, str) and digest.startswith("sha256:") and len(digest) == 71
                                       and all(c in "0123456789abcdef" for c in digest[7:])):
            _fail(where, f"'digest' must be 'sha256:' and 64 hex digits, not {_short(digest)}")
        other = {k: v for k, v in doc.items() if k not in KNOWN_FIELDS}
        return cls(spec, version, label_map, image_size, bits, train_config, epoch, metrics, resume, optimizer,
                   digest, other)

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> CheckpointMeta:
        """Metadata of a file without any (a torchvision ``.pt``): the inferred model only."""
        return cls(spec)

    def to_json(self) -> dict:
        """The metadata as the plain dict the rest of ctnet (and ``load_any``) passes around."""
        d: dict = {"format": FORMAT, "version": self.version, "model": self.model.to_dict(),
                   "image_size": self.image_size, "pixel_bit_depth": self.pixel_bit_depth}
        for name in ("label_map", "train_config", "epoch", "metrics", "resume_state", "optimizer", "digest"):
            value = getattr(self, name)
            if value is not None:
                d[name] = value
        return {**d, **self.other}


@dataclass(frozen=True)
class BundleFacts:
    """What a decoded bundle is on disk (or in memory): its format version, digest (None for
    format v1), every byte of it, the fp32 size of the model it holds, and (format v2) the
    bytes of each plan frame (0: a frame not coded)."""

    version: int
    digest: str | None
    total_bytes: int
    fp32_bytes: int
    files: dict[str, int]
    frame_bytes: tuple[int, ...] | None = None

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.total_bytes


@dataclass(frozen=True)
class LoadedModel:
    """A model source, loaded (``ctnet.api.load_any``): the network in eval mode and, typed,
    what every caller asks of it — the kind of source and its path, the model description,
    input size and export grid, what training measured (a bundle: its source checkpoint's),
    the codec settings and facts of a bundle. ``meta`` is the metadata as stored (a
    checkpoint's :meth:`CheckpointMeta.to_json`, a bundle's manifest with its decoded grid),
    for the library functions that re-encode or re-export the model; callers read the fields."""

    model: Any  # torch.nn.Module
    kind: str  # "checkpoint" or "bundle"
    path: Path | None  # None: decoded from files in memory
    spec: ModelSpec
    image_size: int
    pixel_bit_depth: int
    label_map: dict[str, int] | None
    epoch: int | None
    metrics: dict  # training's measurements (acc1, est_bytes_export …); {} when there are none
    train_config: dict | None
    settings: EncodeSettings | None  # the codec settings a format-v2 bundle was made with
    bundle: BundleFacts | None
    meta: dict

    @classmethod
    def of(cls, model, meta: dict, kind: str, path: Path | None) -> LoadedModel:
        """The typed view of a loader's ``(model, metadata)``: the one place that reads the
        metadata dict's keys (they differ between checkpoints, v1 and v2 bundles). The loaders'
        parsers checked every field already, so nothing is validated again here."""
        source: dict = meta["source"] if isinstance(meta.get("source"), dict) else {}
        b = meta.get("bundle")
        bundle = settings = None
        if kind == "bundle" and isinstance(b, dict):
            frame_bytes = b.get("frame_bytes")
            bundle = BundleFacts(int(b["version"]), b.get("digest"), int(b["total_bytes"]), int(b["fp32_bytes"]),
                                 dict(b.get("files") or {}),
                                 tuple(int(x) for x in frame_bytes) if frame_bytes is not None else None)
            if bundle.version == 2:
                settings = EncodeSettings(**meta["settings"])
        epoch = meta.get("epoch", source.get("epoch"))
        return cls(model, kind, path, ModelSpec(**meta["model"]), int(meta.get("image_size", 128)),
                   int(meta.get("pixel_bit_depth", 0)), meta.get("label_map"),
                   epoch if isinstance(epoch, int) else None,
                   dict(meta.get("metrics") or source.get("metrics") or {}), meta.get("train_config"),
                   settings, bundle, meta)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes


__all__ = ["BundleFacts", "CheckpointMeta", "LoadedModel"]
