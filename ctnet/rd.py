"""Rate–distortion curves: every way of storing one model's weights, measured on the same
weights — bytes against decoded top-1 (``ctnet rd``, the app's Rate–distortion page).

For a checkpoint or a bundle directory (``ctnet.api.load_any``) and an ImageNette folder,
each *point* encodes the model one way, decodes the bytes back and evaluates the decoded
model:

* ``bundle``: a CTNet bundle in each codec (``ctnet.codec``): the video codecs hevc, h264,
  av1, ffv1 and the plane codecs xz, zstd, swept over bit depth and (for codecs with a
  lossy mode) CRF; CRF 0 is true lossless;
* ``nncodec``: NNCodec at several QPs (when it is importable; never faked otherwise);
* ``int``: per-tensor INT8 / INT4 + zstd; ``fp16``: half precision + zstd (optional);
* ``fp32``: the weights as loaded, the accuracy reference (bytes = fp32 size of the model).

Bytes are everything needed to rebuild the model (for bundles, every file; see
the README's *What a bundle holds*); ``ratio`` = fp32 bytes / bytes. ``encode_seconds`` is the whole encode
as the library does it (bundles: quantise, order, encode, verify lossless streams by
decoding them, rebuild); ``decode_seconds`` rebuilds the model from the bytes in memory.

Results are cached in a JSON file keyed by the source's content hash, the method, its full
settings, the data folder and the image limit, so a re-run computes only new points.
Default file: ``$CTNET_RD_CACHE`` or ``$XDG_CACHE_HOME/ctnet/rd`` or ``~/.cache/ctnet/rd``,
``<source hash>.json``; each point is written (atomically) as soon as it is measured, under an
exclusive lock on ``.<file>.lock`` beside it, so the app and ``ctnet rd`` writing the same
file at once lose no point (readers need no lock: the file is replaced atomically).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from torch import nn

from .errors import CtnetError

CACHE_FORMAT = "ctnet-rd-cache"
CACHE_VERSION = 1
TOLERANCE = 0.3  # "equal decoded top-1": within 0.3 points of the reference
METHODS = ("bundle", "nncodec", "int", "fp16", "fp32")
LOSSY_CRFS = {"hevc": (4, 8, 12, 16, 20), "h264": (4, 8, 12, 16, 20), "av1": (10, 20, 30, 40, 50)}
DEFAULT_BITS = (8, 10)
NNCODEC_QPS = (-38, -32, -30, -29, -28, -27)
INT_BITS = (8, 4)
REFERENCE = "fp32"


class RDError(CtnetError, ValueError):
    """A sweep that cannot run as asked; the message names the problem."""


# --- what to measure ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One point to measure: a method, the curve it belongs to (``codec``) and its settings."""

    method: str
    codec: str
    settings: tuple  # sorted (key, value) pairs, so jobs hash and compare

    @property
    def settings_dict(self) -> dict:
        return dict(self.settings)

    def label(self) -> str:
        s = self.settings_dict
        if self.method == "bundle":
            rate = "lossless" if s["crf"] == 0 else f"CRF {s['crf']}"
            extra = f" {s['pix_fmt']}" if s["pix_fmt"] != "gray" else ""
            preset = f" {s['preset']}" if _uses_preset(self.codec) else ""
            return f"{self.codec} {s['bit_depth']}-bit{extra} {rate}{preset}"
        if self.method == "nncodec":
            return f"NNCodec qp {s['qp']}"
        if self.method == "int":
            return f"INT{s['bits']} per-tensor + zstd-{s['zstd']}"
        if self.method == "fp16":
            return f"fp16 + zstd-{s['zstd']}"
        return "fp32 (weights as loaded)"


def _job(method: str, codec: str, settings: dict) -> Job:
    return Job(method, codec, tuple(sorted(settings.items())))


def _uses_preset(codec: str) -> bool:
    from .codec.video import CODECS
    return CODECS[codec].uses_preset


def codec_names() -> tuple[str, ...]:
    from .codec.video import CODECS
    return tuple(CODECS)


def bundle_jobs(codecs: Iterable[str], *, bits: Iterable[int] = DEFAULT_BITS, crfs: dict | None = None,
                preset: str = "medium", base: dict | None = None) -> list[Job]:
    """Every (bit depth, CRF) of each codec that it supports: CRF 0 (lossless) always,
    ``crfs[codec]`` (default :data:`LOSSY_CRFS`) for codecs with a lossy mode; bit depths a
    codec lacks are skipped (AV1 and H.264 have no 12-bit). Each settings combination is
    validated here, so a bad request fails before anything runs."""
    from .codec.bundle import BundleError, EncodeSettings
    from .codec.video import CODECS
    crfs = {**LOSSY_CRFS, **(crfs or {})}
    jobs = []
    for codec in codecs:
        if codec not in CODECS:
            raise RDError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
        spec = CODECS[codec]
        depths = [b for b in bits if b in spec.bit_depths]
        if not depths:
            raise RDError(f"{codec} codes {'/'.join(map(str, spec.bit_depths))}-bit pixels only; "
                          f"none of the bit depths asked for ({', '.join(map(str, bits))})")
        rates = [0] + ([c for c in crfs.get(codec, ()) if c != 0] if spec.lossy else [])
        for b in depths:
            for crf in rates:
                # a codec without presets codes the same whatever the preset: one cache entry
                values = {**(base or {}), "codec": codec, "bit_depth": b, "crf": crf,
                          "preset": preset if spec.uses_preset else "medium",
                          "pix_fmt": (base or {}).get("pix_fmt") or spec.pix_fmts[0]}
                try:
                    s = EncodeSettings(**values).validate()
                except (BundleError, TypeError) as exc:
                    raise RDError(f"{codec} {b}-bit CRF {crf}: {exc}") from exc
                jobs.append(_job("bundle", codec, s.to_dict()))
    return jobs


def baseline_jobs(*, nncodec_qps: Iterable[int] = NNCODEC_QPS, int_bits: Iterable[int] = INT_BITS,
                  fp16: bool = False) -> list[Job]:
    from .baselines import INT_BITS as OK_BITS, ZSTD_LEVEL
    jobs = [_job("fp32", REFERENCE, {})]
    for b in int_bits:
        if b not in OK_BITS:
            raise RDError(f"integer baselines take {'/'.join(map(str, OK_BITS))} bits, not {b}")
        jobs.append(_job("int", f"int{b}+zstd", {"bits": b, "granularity": "per-tensor", "zstd": ZSTD_LEVEL}))
    if fp16:
        jobs.append(_job("fp16", "fp16+zstd", {"zstd": ZSTD_LEVEL}))
    for qp in nncodec_qps:
        jobs.append(_job("nncodec", "nncodec", {"qp": int(qp), "nonweight_qp": -75, "use_dq": True}))
    return jobs


# --- sources, data and the cache -----------------------------------------------------------------

def source_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint file, or of a bundle directory's file names and contents."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        h.update(b"ctnet-bundle-dir\0")
        for f in sorted(p.iterdir()):
            st = os.lstat(f)
            if stat.S_ISREG(st.st_mode):
                h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file or bundle directory")
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    if os.environ.get("CTNET_RD_CACHE"):
        return Path(os.environ["CTNET_RD_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ctnet" / "rd"


def default_cache(source_digest: str) -> Path:
    return cache_dir() / f"{source_digest[:32]}.json"


def data_id(data: str | os.PathLike) -> str:
    """What identifies the images a point was measured on, wherever the folder lives: the
    val split's folder name and a hash of its files' relative paths and sizes (so a cache
    made on one machine, e.g. the demo's, is valid on another; a changed file is not)."""
    from .data import split_dir
    folder = split_dir(data, "val")
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder).as_posix()}\0{f.stat().st_size}\0".encode())
    return f"{Path(data).expanduser().resolve().name}/val:{h.hexdigest()[:16]}"


def point_key(source_digest: str, job: Job, data: str, limit: int | None) -> str:
    blob = json.dumps({"source": source_digest, "method": job.method, "codec": job.codec,
                       "settings": job.settings_dict, "data": data, "limit": limit}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_cache(path: str | os.PathLike) -> dict:
    """{key: point} from a cache file ({} when there is none). A file that is not an rd cache
    is an error (never overwritten)."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RDError(f"{p}: not a readable rd cache ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or not isinstance(doc.get("points"), dict):
        raise RDError(f"{p}: not a ctnet rd cache file; refusing to use or overwrite it")
    if doc.get("version") != CACHE_VERSION:
        raise RDError(f"{p}: rd cache version {doc.get('version')} (this ctnet writes {CACHE_VERSION})")
    return doc["points"]


@contextmanager
def cache_lock(path: str | os.PathLike):
    """Hold an exclusive lock for updating cache file ``path`` (``fcntl.flock`` on
    ``.<name>.lock`` beside it; released when the process dies, so a killed writer never
    blocks the next). Without fcntl (not POSIX) it does nothing."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(p.parent / f".{p.name}.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def write_point(path: str | os.PathLike, key: str, point: dict) -> None:
    """Add one point to the cache file, keeping whatever else is there: read, add and
    replace (atomically) under :func:`cache_lock`, so points that other processes add
    meanwhile are kept."""
    from .checkpoint import atomic_write_text
    with cache_lock(path):
        points = read_cache(path)
        points[key] = point
        atomic_write_text(path, json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "points": points},
                                           indent=1, sort_keys=True) + "\n")


# --- measuring ------------------------------------------------------------------------------------

@dataclass
class Source:
    """The model a sweep starts from: its stored weights, export simulation off."""

    path: str
    digest: str
    model: nn.Module
    meta: dict
    fp32_bytes: int

    @classmethod
    def load(cls, path: str | os.PathLike, loaded: tuple[nn.Module, dict] | None = None) -> "Source":
        from .api import load_any
        from .layers import configure_export_training
        from .models import fp32_bytes
        digest = source_hash(path)
        model, meta = loaded if loaded is not None else load_any(path)
        model = copy.deepcopy(model)  # a caller's (or the app's shared) model is never touched
        configure_export_training(model, pixel_bit_depth=0)
        model.requires_grad_(False).eval()
        return cls(str(path), digest, model, meta, fp32_bytes(model))


def _measure(job: Job, src: Source) -> tuple[nn.Module, int, float, float, dict]:
    """(decoded model, bytes, encode seconds, decode seconds, extra fields) of one job."""
    s = job.settings_dict
    if job.method == "bundle":
        from .codec.bundle import EncodeSettings, decode_files, encode_model
        enc = encode_model(src.model, src.meta, EncodeSettings(**s))
        t0 = time.perf_counter()
        model, _ = decode_files(enc.files)
        decode_seconds = time.perf_counter() - t0
        files = {k: len(v) for k, v in sorted(enc.files.items())}
        return model, enc.total_bytes, enc.seconds, decode_seconds, {
            "files": files, "streams": [{k: st[k] for k in ("file", "bytes", "frames", "params")}
                                        for st in enc.streams]}
    if job.method == "fp32":
        return src.model, src.fp32_bytes, 0.0, 0.0, {}
    from . import baselines
    if job.method == "int":
        c = baselines.int_zstd(src.model, s["bits"], s["zstd"])
    elif job.method == "fp16":
        c = baselines.fp16_zstd(src.model, s["zstd"])
    elif job.method == "nncodec":
        c = baselines.nncodec(src.model, s["qp"], nonweight_qp=s["nonweight_qp"], use_dq=s["use_dq"])
    else:
        raise RDError(f"unknown method {job.method!r}")
    return c.model, c.bytes, c.encode_seconds, c.decode_seconds, {"notes": c.notes} if c.notes else {}


@dataclass
class Sweep:
    """What :func:`sweep` returns (``to_json`` gives ``ctnet rd --json``)."""

    source: str
    digest: str
    data: str
    limit: int | None
    images: int
    fp32_bytes: int
    points: list[dict]
    errors: list[dict] = field(default_factory=list)
    nncodec: dict = field(default_factory=dict)
    cache: str = ""

    def best_at_floor(self, floor: float | None = None, tolerance: float = TOLERANCE) -> dict:
        return best_at_floor(self.points, floor, tolerance)

    def to_json(self, floor: float | None = None, tolerance: float = TOLERANCE) -> dict:
        return {"checkpoint": self.source, "source_sha256": self.digest, "data": self.data, "limit": self.limit,
                "images": self.images, "fp32_bytes": self.fp32_bytes, "cache": self.cache,
                "nncodec": self.nncodec, "points": self.points, "errors": self.errors,
                "best_at_floor": self.best_at_floor(floor, tolerance)}


def sweep(source: str | os.PathLike, data: str | os.PathLike, jobs: list[Job], *, limit: int | None = None,
          cache: str | os.PathLike | None = None, device: str = "auto", batch_size: int = 256, workers: int = 0,
          loaded: tuple[nn.Module, dict] | None = None, recompute: bool = False,
          progress: Callable[[int, int, Job, dict | None], None] | None = None, split=None) -> Sweep:
    """Measure ``jobs`` on ``source`` (a checkpoint file or bundle directory), evaluating
    each decoded model on ``limit`` class-balanced images of ``data``'s val split. Points
    already in the cache are not recomputed (unless ``recompute``); new ones are added to it
    as they are measured. ``progress(done, total, job, point)`` is called before each job
    (point None) and after it. A job that fails is reported in ``errors`` (and not cached);
    NNCodec jobs when NNCodec is not importable are skipped, and ``nncodec`` says why."""
    from .baselines import nncodec_status
    from .data import load_split
    from .evaluate import evaluate, resolve_device
    src = Source.load(source, loaded)
    data_key = data_id(data)
    cache_file = Path(cache) if cache else default_cache(src.digest)
    cached = read_cache(cache_file)
    ok, why = nncodec_status() if any(j.method == "nncodec" for j in jobs) else (False, "not asked for")
    nncodec = {"available": ok, "status": why}
    todo = [j for j in dict.fromkeys(jobs) if j.method != "nncodec" or ok]
    dev = resolve_device(device)
    split_cache = [split]

    def images():
        if split_cache[0] is None:
            split_cache[0] = load_split(data, "val", num_classes=int(src.meta["model"]["num_classes"]),
                                        size=int(src.meta.get("image_size", 128)), limit=limit, cache=True)
        return split_cache[0]

    points, errors = [], []
    for i, job in enumerate(todo):
        key = point_key(src.digest, job, data_key, limit)
        if progress:
            progress(i, len(todo), job, None)
        if key in cached and not recompute:
            point = {**cached[key], "cached": True}
        else:
            try:
                model, nbytes, enc_s, dec_s, extra = _measure(job, src)
                acc = evaluate(model.to(dev), images(), device=dev, batch_size=batch_size, workers=workers)
            except Exception as exc:  # one failing codec must not lose the rest of the sweep
                errors.append({"method": job.method, "codec": job.codec, "settings": job.settings_dict,
                               "label": job.label(), "error": f"{type(exc).__name__}: {exc}"})
                if progress:
                    progress(i + 1, len(todo), job, None)
                continue
            point = {"method": job.method, "codec": job.codec, "settings": job.settings_dict, "label": job.label(),
                     "bytes": int(nbytes), "ratio": src.fp32_bytes / nbytes, "acc1": acc["acc1"], "acc5": acc["acc5"],
                     "images": acc["images"], "device": acc["device"], "encode_seconds": round(enc_s, 3),
                     "decode_seconds": round(dec_s, 3), "source_sha256": src.digest, "data": data_key, "limit": limit,
                     "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average": round(os.getloadavg()[0], 2),
                     **extra}
            write_point(cache_file, key, point)
            point = {**point, "cached": False}
        points.append(point)
        if progress:
            progress(i + 1, len(todo), job, point)
    n_images = next((p["images"] for p in points), 0)
    return Sweep(str(source), src.digest, data_key, limit, n_images, src.fp32_bytes, points, errors, nncodec,
                 str(cache_file))


def matching_points(cache: str | os.PathLike, digest: str, data_key: str, limit: int | None) -> dict[str, dict]:
    """{key: point} of one cache file that were measured on the weights with SHA-256
    ``digest``, the images ``data_key`` (:func:`data_id`) and ``limit``; {} without a file."""
    return {key: {**p, "cached": True} for key, p in read_cache(cache).items()
            if p.get("source_sha256") == digest and p.get("data") == data_key and p.get("limit") == limit}


def cached_points(source: str | os.PathLike, data: str | os.PathLike, limit: int | None,
                  cache: str | os.PathLike | None = None) -> list[dict]:
    """Every cached point of ``source`` on ``data``/``limit`` (whatever sweep made them)."""
    digest = source_hash(source)
    return list(matching_points(cache or default_cache(digest), digest, data_id(data), limit).values())


def missing_jobs(jobs: Iterable[Job], points: Iterable[dict]) -> list[Job]:
    """The ``jobs`` that no point in ``points`` already measured."""
    have = {(p["method"], p["codec"], tuple(sorted(p["settings"].items()))) for p in points}
    return [j for j in jobs if (j.method, j.codec, j.settings) not in have]


# --- reading the curves -----------------------------------------------------------------------------

def reference_point(points: list[dict]) -> dict | None:
    return next((p for p in points if p["method"] == "fp32"), None)


def frontier(points: list[dict]) -> list[dict]:
    """Pareto-optimal points (no other point is both smaller and at least as accurate),
    by increasing bytes."""
    out = []
    for p in sorted(points, key=lambda p: (p["bytes"], -p["acc1"])):
        if not out or p["acc1"] > out[-1]["acc1"]:
            out.append(p)
    return out


def best_at_floor(points: list[dict], floor: float | None = None, tolerance: float = TOLERANCE) -> dict:
    """Per curve (``codec``), the smallest point whose decoded top-1 is at least ``floor``
    (default: the fp32 reference's top-1 minus ``tolerance``, i.e. "equal accuracy"), with
    its size as a ratio of HEVC's smallest point at that floor; and the smallest overall."""
    ref = reference_point(points)
    if floor is None:
        if ref is None:
            return {"floor": None, "reason": "no fp32 reference point to set the floor from", "best": None,
                    "per_codec": []}
        floor = ref["acc1"] - tolerance
    eps = 1e-9  # percentages are floats: 86.6 must count as ≥ 86.9 − 0.3
    per = {}
    for p in points:
        if p["method"] == "fp32" or p["acc1"] + eps < floor:
            continue
        if p["codec"] not in per or p["bytes"] < per[p["codec"]]["bytes"]:
            per[p["codec"]] = p
    hevc = per.get("hevc")
    rows = [{"codec": c, "label": p["label"], "settings": p["settings"], "bytes": p["bytes"], "ratio": p["ratio"],
             "acc1": p["acc1"], "encode_seconds": p["encode_seconds"], "decode_seconds": p["decode_seconds"],
             "vs_hevc": p["bytes"] / hevc["bytes"] if hevc else None}
            for c, p in sorted(per.items(), key=lambda kv: kv[1]["bytes"])]
    return {"floor": floor, "tolerance": tolerance if ref is not None else None,
            "reference_acc1": ref["acc1"] if ref else None, "best": rows[0] if rows else None, "per_codec": rows,
            "missing": sorted({p["codec"] for p in points if p["method"] != "fp32"} - set(per))}


__all__ = ["Job", "RDError", "Sweep", "TOLERANCE", "baseline_jobs", "best_at_floor", "bundle_jobs", "cache_dir",
           "cached_points", "default_cache", "frontier", "matching_points", "missing_jobs", "point_key",
           "read_cache", "source_hash", "sweep"]
