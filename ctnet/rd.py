"""Rate–distortion curves: every way of storing one model's weights, measured on the same
weights — bytes against decoded top-1 (``ctnet rd``, the app's Rate–distortion page).

For a checkpoint or a bundle directory (``ctnet.api.load_any``) and a dataset folder,
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
import math
import os
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from torch import nn

from .errors import RDError
from .limits import MAX_INT
from .strict import JSONInvalid, parse_json
from .types import LoadedModel

CACHE_FORMAT = "ctnet-rd-cache"
CACHE_VERSION = 1
TOLERANCE = 0.3  # "equal decoded top-1": within 0.3 points of the reference
METHODS = ("bundle", "nncodec", "int", "fp16", "fp32")
LOSSY_CRFS = {"hevc": (4, 8, 12, 16, 20), "h264": (4, 8, 12, 16, 20), "av1": (10, 20, 30, 40, 50)}
DEFAULT_BITS = (8, 10)
NNCODEC_QPS = (-38, -32, -30, -29, -28, -27)
INT_BITS = (8, 4)
REFERENCE = "fp32"



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
    from .codec.registry import CODECS
    return CODECS[codec].uses_preset


def codec_names() -> tuple[str, ...]:
    from .codec.registry import CODECS
    return tuple(CODECS)


def bundle_jobs(codecs: Iterable[str], *, bits: Iterable[int] = DEFAULT_BITS, crfs: dict | None = None,
                preset: str = "medium", base: dict | None = None) -> list[Job]:
    """Every (grid bit depth, CRF) of each codec that it supports: CRF 0 (lossless) always,
    ``crfs[codec]`` (default :data:`LOSSY_CRFS`) for codecs with a lossy mode; grids deeper
    than a codec's deepest frames are skipped (AV1 and H.264 have no 12-bit). Each settings
    combination is validated here, so a bad request fails before anything runs."""
    from .codec.manifest import BundleError, EncodeSettings
    from .codec.registry import CODECS
    from .limits import BIT_DEPTHS
    crfs = {**LOSSY_CRFS, **(crfs or {})}
    bits = list(bits)
    bad = [b for b in bits if b not in BIT_DEPTHS]
    if bad:
        raise RDError(f"grid bit depths must be {BIT_DEPTHS[0]}..{BIT_DEPTHS[-1]}, not {', '.join(map(str, bad))}")
    jobs = []
    for codec in codecs:
        if codec not in CODECS:
            raise RDError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
        spec = CODECS[codec]
        depths = [b for b in bits if b <= max(spec.bit_depths)]
        if not depths:
            raise RDError(f"{codec} codes grids of up to {max(spec.bit_depths)} bits only; "
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


# --- a measured point ------------------------------------------------------------------------------

MAX_CACHE_BYTES = 64 << 20  # a cache of every point the default sweep measures is ~100 KiB
_SHORT, _TEXT = 64, 512  # characters of a name (codec, setting) and of a text (label, data id)
_JSON_DEPTH, _JSON_NODES = 8, 10_000  # of the free-form extras (streams, notes)


class _Invalid(Exception):
    """One field's problem: what it must be, and where inside the field (``.crf``, ``[2]``)."""

    def __init__(self, what: str, value: Any, at: str = ""):
        super().__init__(what)
        self.what, self.value, self.at = what, value, at


def _show(v: Any) -> str:
    """A value as an error message quotes it: short, on one line, in JSON's words."""
    if isinstance(v, str):
        return repr(v if len(v) <= 40 else v[:40] + "…")
    if isinstance(v, bool) or v is None or isinstance(v, float):
        return json.dumps(v)  # true, null, NaN, Infinity
    if isinstance(v, int):
        return str(v) if abs(v) < 10**16 else f"an integer of {v.bit_length()} bits"
    return "an object" if isinstance(v, dict) else "a list" if isinstance(v, list) else f"a {type(v).__name__}"


def _text(limit: int) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        # printable: a label is one line of the CLI's table and of the app's markdown
        if not isinstance(v, str) or len(v) > limit or not v.isprintable():
            raise _Invalid(f"a one-line string of at most {limit} characters", v)
        return v
    return check


def _integer(v: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:  # bounded before any arithmetic
        raise _Invalid(what, v)
    return v


def _int(lo: int, hi: int = MAX_INT, *, optional: bool = False) -> Callable[[Any], int | None]:
    what = f"an integer in {lo}..{'2**53' if hi == MAX_INT else hi}" + (" or null" if optional else "")

    def check(v: Any) -> int | None:
        return None if optional and v is None else _integer(v, lo, hi, what)
    return check


def _number(lo: float, hi: float = math.inf, *, above: bool = False,
            optional: bool = False) -> Callable[[Any], float | None]:
    what = ("a finite number " + (f"> {lo:g}" if above else f"≥ {lo:g}") if hi == math.inf else
            f"a number in {lo:g}..{hi:g}") + (" or null" if optional else "")

    def check(v: Any) -> float | None:
        if optional and v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, int) and abs(v) > MAX_INT):
            raise _Invalid(what, v)
        x = float(v)
        if not math.isfinite(x) or x < lo or x > hi or (above and x == lo):
            raise _Invalid(what, v)
        return x
    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options or not isinstance(v, str):
            raise _Invalid(f"one of {', '.join(options)}", v)
        return v
    return check


def _is_sha256(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and set(v) <= set("0123456789abcdef")


def _sha256(v: Any) -> str:
    if not _is_sha256(v):
        raise _Invalid("64 lowercase hex digits (a SHA-256)", v)
    return v


def _name(k: Any, at: str) -> str:
    if not isinstance(k, str) or len(k) > _TEXT or not k.isprintable():
        raise _Invalid(f"named by one-line strings of at most {_TEXT} characters", k, at)
    return k


def _object(v: Any, limit: int) -> dict:
    if not isinstance(v, dict) or len(v) > limit:
        raise _Invalid(f"an object of at most {limit} entries", v)
    for k in v:
        _name(k, "")
    return v


def _settings(v: Any) -> dict:
    """Flat, as :class:`Job` keeps them: a point's settings are compared as sorted pairs."""
    scalar = "a string, number, boolean or null"
    for k, x in _object(v, 64).items():
        if isinstance(x, str):
            ok = len(x) <= _SHORT and x.isprintable()
        elif isinstance(x, float):
            ok = math.isfinite(x)
        elif isinstance(x, int) and not isinstance(x, bool):
            ok = abs(x) < 2**63  # EncodeSettings.seed goes to 2**63 - 1
        else:
            ok = x is None or isinstance(x, bool)
        if not ok:
            raise _Invalid(scalar + (f" of at most {_SHORT} characters" if isinstance(x, str) else ""), x, f".{k}")
    return dict(v)


def _files(v: Any) -> dict[str, int]:
    for k, x in _object(v, 256).items():
        try:
            _integer(x, 0, MAX_INT, "a byte count in 0..2**53")
        except _Invalid as exc:
            raise _Invalid(exc.what, x, f"[{json.dumps(k)}]") from None
    return dict(v)


def _json(v: Any, depth: int = 0, count: list[int] | None = None, at: str = "") -> Any:
    """A copy of a bounded JSON value (finite numbers, bounded strings, depth and size)."""
    count = [0] if count is None else count
    count[0] += 1
    if count[0] > _JSON_NODES or depth > _JSON_DEPTH:
        raise _Invalid(f"JSON of at most {_JSON_NODES} values nested {_JSON_DEPTH} deep", v, at)
    if isinstance(v, dict):
        return {_name(k, at): _json(x, depth + 1, count, f"{at}.{k}") for k, x in v.items()}
    if isinstance(v, list):
        return [_json(x, depth + 1, count, f"{at}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, str) and len(v) <= 4096:
        return v
    if v is None or isinstance(v, bool) or (isinstance(v, float) and math.isfinite(v)) or \
            (isinstance(v, int) and abs(v) <= MAX_INT):
        return v
    raise _Invalid("a JSON value (finite numbers up to 2**53, strings up to 4096 characters)", v, at)


def _streams(v: Any) -> list:
    if not isinstance(v, list) or len(v) > 256:
        raise _Invalid("a list of at most 256 objects", v)
    for i, x in enumerate(v):
        if not isinstance(x, dict):
            raise _Invalid("an object", x, f"[{i}]")
    return _json(v)


def _notes(v: Any) -> dict:
    if not isinstance(v, dict):
        raise _Invalid("an object", v)
    return _json(v)


@dataclass(frozen=True)
class RDPoint:
    """One measured point, as the cache file and ``ctnet rd --json`` hold it (:meth:`to_dict`).
    Every field is checked when a point is made, by :func:`sweep` or by :meth:`from_dict`
    from a file any user may edit, so a point that exists is one the curves can use."""

    method: str
    codec: str
    settings: dict
    label: str
    bytes: int
    ratio: float
    acc1: float
    acc5: float
    images: int
    device: str
    encode_seconds: float
    decode_seconds: float
    source_sha256: str
    data: str
    limit: int | None
    measured: str
    load_average: float | None
    files: dict[str, int] | None = None  # bundles: file name → bytes
    streams: list | None = None  # bundles: each coded stream's file, bytes, frames, params
    notes: dict | None = None  # baselines: what the tool said (NNCodec's version, tensors it left out)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.name in _OPTIONAL:
                continue
            try:
                object.__setattr__(self, f.name, _CHECKS[f.name](v))
            except _Invalid as exc:
                raise RDError(f"'{f.name}{exc.at}' must be {exc.what}, not {_show(exc.value)}") from None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "RDPoint":
        """The one strict parser of a point (``where``: the file and point, for messages).
        Every field is type- and range-checked; a missing field, and a field this module
        never writes (a hand edit, or another ctnet's), is refused, not ignored: a cache is
        trusted only as a whole."""
        try:
            if not isinstance(d, dict):
                raise RDError(f"a point must be an object, not {_show(d)}")
            unknown = next((k for k in d if k not in _CHECKS), None)
            if unknown is not None:
                raise RDError(f"{_show(unknown)} is not a field of an rd point")
            missing = next((f.name for f in fields(cls) if f.name not in d and f.name not in _OPTIONAL), None)
            if missing is not None:
                raise RDError(f"'{missing}' is missing")
            return cls(**d)
        except RDError as exc:
            raise RDError(f"{where}: {exc}") from None

    def to_dict(self) -> dict:
        """The JSON form (extras that are None are left out)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                if not (f.name in _OPTIONAL and getattr(self, f.name) is None)}


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "method": _choice(METHODS), "codec": _text(_SHORT), "settings": _settings, "label": _text(_TEXT),
    "bytes": _int(1), "ratio": _number(0, above=True), "acc1": _number(0, 100), "acc5": _number(0, 100),
    "images": _int(0), "device": _text(_TEXT), "encode_seconds": _number(0), "decode_seconds": _number(0),
    "source_sha256": _sha256, "data": _text(_TEXT), "limit": _int(1, optional=True), "measured": _text(_SHORT),
    "load_average": _number(0, optional=True), "files": _files, "streams": _streams, "notes": _notes}
_OPTIONAL = ("files", "streams", "notes")


# --- sources, data and the cache -----------------------------------------------------------------

def source_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint file, or of a bundle directory's file names and contents."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        h.update(b"ctnet-bundle-dir\0")
        for member in sorted(p.iterdir()):
            st = os.lstat(member)
            if stat.S_ISREG(st.st_mode):
                h.update(member.name.encode() + b"\0" + hashlib.sha256(member.read_bytes()).digest())
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


def read_cache(path: str | os.PathLike) -> dict[str, dict]:
    """{key: point} from a cache file ({} when there is none), every point checked by
    :meth:`RDPoint.from_dict`. A file that is not an rd cache, or has one bad point, is an
    error (never overwritten): the curves never meet a field they cannot use."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        if p.stat().st_size > MAX_CACHE_BYTES:
            raise RDError(f"{p}: {p.stat().st_size:,} bytes is more than an rd cache holds "
                          f"({MAX_CACHE_BYTES:,}); refusing to read it")
        doc = parse_json(p.read_bytes())
    except JSONInvalid as exc:
        raise RDError(f"{p}: not a readable rd cache ({exc.cause}: {exc.detail})") from None
    except OSError as exc:
        raise RDError(f"{p}: not a readable rd cache ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or not isinstance(doc.get("points"), dict):
        raise RDError(f"{p}: not a ctnet rd cache file; refusing to use or overwrite it")
    if doc.get("version") != CACHE_VERSION or isinstance(doc.get("version"), bool):
        raise RDError(f"{p}: rd cache version {_show(doc.get('version'))} (this ctnet writes {CACHE_VERSION})")
    points = {}
    for key, d in doc["points"].items():
        if not _is_sha256(key):  # what point_key makes
            raise RDError(f"{p}: point key {_show(key)} is not a SHA-256 (64 lowercase hex digits)")
        points[key] = RDPoint.from_dict(d, f"{p}: point {key[:12]}…").to_dict()
    return points


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


def write_point(path: str | os.PathLike, key: str, point: RDPoint) -> None:
    """Add one point to the cache file, keeping whatever else is there: read, add and
    replace (atomically) under :func:`cache_lock`, so points that other processes add
    meanwhile are kept."""
    from .fileio import atomic_write_text
    if not isinstance(point, RDPoint) or not _is_sha256(key):  # only a checked point is ever written
        raise TypeError(f"write_point takes a point_key and an RDPoint, not {_show(key)} and {type(point).__name__}")
    with cache_lock(path):
        points = read_cache(path)
        points[key] = point.to_dict()
        atomic_write_text(path, json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "points": points},
                                           indent=1, sort_keys=True) + "\n")


# --- measuring ------------------------------------------------------------------------------------

@dataclass
class Source:
    """The model a sweep starts from: its stored weights, export simulation off."""

    path: str
    digest: str
    model: nn.Module
    meta: dict  # as stored: what encoding the model reads (a decoded bundle's grid)
    fp32_bytes: int
    num_classes: int
    image_size: int

    @classmethod
    def load(cls, path: str | os.PathLike, loaded: LoadedModel | None = None) -> "Source":
        from .layers import configure_export_training
        from .models import fp32_bytes
        from .sources import load_any
        digest = source_hash(path)
        loaded = loaded if loaded is not None else load_any(path)
        model = copy.deepcopy(loaded.model)  # a caller's (or the app's shared) model is never touched
        configure_export_training(model, pixel_bit_depth=0)
        model.requires_grad_(False).eval()
        return cls(str(path), digest, model, loaded.meta, fp32_bytes(model), loaded.num_classes, loaded.image_size)


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
          cache: str | os.PathLike | None = None, device: str = "auto", batch_size: int | None = None, workers: int = 0,
          loaded: LoadedModel | None = None, recompute: bool = False,
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
            split_cache[0] = load_split(data, "val", labels=src.meta.get("label_map"), num_classes=src.num_classes,
                                        size=src.image_size, limit=limit, cache=True)
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
                measured = RDPoint(
                    method=job.method, codec=job.codec, settings=job.settings_dict, label=job.label(),
                    bytes=int(nbytes), ratio=src.fp32_bytes / nbytes, acc1=acc["acc1"], acc5=acc["acc5"],
                    images=acc["images"], device=acc["device"], encode_seconds=round(enc_s, 3),
                    decode_seconds=round(dec_s, 3), source_sha256=src.digest, data=data_key, limit=limit,
                    measured=time.strftime("%Y-%m-%dT%H:%M:%S"), load_average=round(os.getloadavg()[0], 2),
                    **extra)
            except Exception as exc:  # one failing codec must not lose the rest of the sweep
                errors.append({"method": job.method, "codec": job.codec, "settings": job.settings_dict,
                               "label": job.label(), "error": f"{type(exc).__name__}: {exc}"})
                if progress:
                    progress(i + 1, len(todo), job, None)
                continue
            write_point(cache_file, key, measured)
            point = {**measured.to_dict(), "cached": False}
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


def full_split_points(cache: str | os.PathLike, digest: str, images: int) -> list[dict]:
    """The points of one cache file measured on the weights with SHA-256 ``digest`` on a whole
    val split of ``images`` images (no ``--limit`` subset): the points that may sit beside
    other numbers measured on that same split. [] without a file."""
    return [{**p, "cached": True} for p in read_cache(cache).values()
            if p["source_sha256"] == digest and p["limit"] is None and p["images"] == images]


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
    out: list[dict] = []
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
    per: dict[str, dict] = {}
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


__all__ = ["Job", "RDError", "RDPoint", "Sweep", "TOLERANCE", "baseline_jobs", "best_at_floor", "bundle_jobs", "cache_dir",
           "cached_points", "default_cache", "frontier", "full_split_points", "matching_points", "missing_jobs",
           "point_key", "read_cache", "source_hash", "sweep"]
