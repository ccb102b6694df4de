"""A bundle's manifest as typed values, with one strict parser.

``Manifest.from_json`` is the only way a v2 manifest is read: every field is type- and
range-checked (integers bounded before any arithmetic), the *digest* is recomputed and
compared, and anything wrong is a :class:`BundleError` whose one-line message names the
field. What the decoder uses afterwards is the checked dataclass, never the raw JSON.

The digest is the SHA-256 of the manifest's canonical JSON without its ``digest`` field.
The manifest lists every member file with its size and SHA-256, so the digest covers every
byte of the bundle: ``ctnet verify DIR`` prints it, and any edit of the manifest (a scale, a
block size, an order) or of a member that does not also rewrite the digest is detected
before decoding. It detects corruption and careless edits; it is not a signature — whoever
can write the bundle can write a new digest.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from ..data import label_map_problem
from ..errors import BundleError
from ..limits import BIT_DEPTHS, IMAGE_SIZE_RANGE, MAX_DITHER, MAX_INT
from ..models import ModelSpec
from ..strict import JSONInvalid, parse_json
from . import plan as PL
from .registry import CODECS, PIX_FMTS, PRESETS

FORMAT = "ctnet-bundle"
VERSION = 2
READS = (1, 2)
MANIFEST = "manifest.json"
TABLES = "tables.bin"
MAX_MANIFEST_BYTES = 32 << 20  # a few kB, plus the label map: up to 100,000 class names
MAX_FILE_BYTES = 4 << 30
MAX_DEPTH = 16  # a manifest nests 4 levels deep
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_CHECK = re.compile(r"^[0-9a-f]{16}$")
BN_MODES = ("affine", "raw")
MAX_TILE = 1024
MAX_LAYERS = 4096  # stored tensors a per-layer bit-depth map may name
_TENSOR = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,255}$")  # a state-dict name
ROLES = ("weights", "tables")



def check_name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise BundleError(f"file name {name!r} is not a plain file name inside the bundle")
    return name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def digest_of(manifest: dict) -> str:
    return sha256(canonical({k: v for k, v in manifest.items() if k != "digest"}))


# --- strict field readers ----------------------------------------------------------------------

def _get(d, key: str, where: str):
    if not isinstance(d, dict):
        raise BundleError(f"manifest field '{where.rstrip('.') or '(top)'}' is not an object")
    if key not in d:
        raise BundleError(f"manifest is missing field '{where}{key}'")
    return d[key]


def get_int(d, key: str, where: str, lo: int, hi: int) -> int:
    v = _get(d, key, where)
    if not isinstance(v, int) or isinstance(v, bool):
        raise BundleError(f"manifest field '{where}{key}' must be an integer, not {type(v).__name__}")
    if not -MAX_INT <= v <= MAX_INT or not lo <= v <= hi:
        text = str(v) if abs(v) < 10**12 else f"a {len(str(abs(v)))}-digit number"
        raise BundleError(f"manifest field '{where}{key}' is {text}, outside {lo}..{hi}")
    return v


def get_float(d, key: str, where: str, lo: float, hi: float) -> float:
    v = _get(d, key, where)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise BundleError(f"manifest field '{where}{key}' must be a number, not {type(v).__name__}")
    if isinstance(v, int) and not -MAX_INT <= v <= MAX_INT:
        raise BundleError(f"manifest field '{where}{key}' is out of range")
    v = float(v)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise BundleError(f"manifest field '{where}{key}' is {v}, outside {lo:g}..{hi:g}")
    return v


def get_str(d, key: str, where: str, choices=None, pattern=None) -> str:
    v = _get(d, key, where)
    if not isinstance(v, str) or len(v) > 4096:
        raise BundleError(f"manifest field '{where}{key}' must be a string")
    if choices is not None and v not in choices:
        raise BundleError(f"manifest field '{where}{key}' is {v!r}, not one of {', '.join(map(str, choices))}")
    if pattern is not None and not pattern.match(v):
        raise BundleError(f"manifest field '{where}{key}' is malformed ({v[:40]!r})")
    return v


def get_obj(d, key: str, where: str) -> dict:
    v = _get(d, key, where)
    if not isinstance(v, dict):
        raise BundleError(f"manifest field '{where}{key}' must be an object")
    return v


# --- the settings that decide a bundle's bytes --------------------------------------------------

@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides a v2 bundle's bytes; the one place their defaults live.

    ``bit_depth`` is the export grid's (what export-aware training simulates); the frames are
    coded at :func:`container_bits` of it. ``crf`` 0 = true lossless. ``frame``: side of the
    coded frames (256 measured smallest on the demo's CTNet-18s, see ``ctnet.codec.plan``).
    ``order``: rows/columns of each layer by non-zero-count class, or natural. ``bn_mode``:
    BatchNorm as its eval-mode affine (scale, shift) as 24-bit floats, or the four float32
    vectors (``raw``, exact). ``tile``: the grid's tile (the one training used: 128).
    ``layer_bits``: a grid per stored tensor (name → bits, every tensor named; given as a
    mapping or pairs, kept as sorted pairs), ``bit_depth`` then being the largest of them;
    empty: ``bit_depth`` for every tensor. It is written only when set, so a uniform
    bundle's manifest is what it was before per-layer grids existed."""

    codec: str = "hevc"
    crf: int = 0
    bit_depth: int = 8
    pix_fmt: str = "gray"
    preset: str = "medium"
    frame: int = 256
    order: str = "count"
    bn_mode: str = "affine"
    dither: float = 0.0  # subtractive dither amplitude in pixel steps (0 = off)
    seed: int = 0
    tile: int = 128
    layer_bits: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if isinstance(self.layer_bits, Mapping):  # convert at the door: hashable, one order
            object.__setattr__(self, "layer_bits", tuple(sorted(self.layer_bits.items())))

    def bits_of(self, name: str) -> int:
        """The grid bits of stored tensor ``name``."""
        return dict(self.layer_bits).get(name, self.bit_depth) if self.layer_bits else self.bit_depth

    @property
    def family(self) -> str:
        return CODECS[self.codec].family if self.codec in CODECS else ""

    @property
    def container_bits(self) -> int:
        return container_bits(self.codec, self.bit_depth)

    def video(self):
        """The stream's settings (video codecs): the container depth, not the grid's."""
        from .registry import VideoSettings
        return VideoSettings(self.codec, self.container_bits, self.pix_fmt, self.crf, self.preset)

    def validate(self) -> "EncodeSettings":
        try:
            return _validated(self)
        except BundleError:
            raise
        except (ValueError, TypeError) as exc:
            raise BundleError(str(exc)) from exc

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["layer_bits"]
        if self.layer_bits:
            d["layer_bits"] = dict(self.layer_bits)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "settings.") -> "EncodeSettings":
        """Strict: every field present with its type (manifests and the app's saved state)."""
        if not isinstance(d, dict):
            raise BundleError(f"manifest field '{where.rstrip('.')}' must be an object")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise BundleError(f"manifest field '{where}{unknown[0]}' is not a setting of this ctnet")
        layer_bits = _layer_bits(get_obj(d, "layer_bits", where), where) if "layer_bits" in d else ()
        s = cls(codec=get_str(d, "codec", where, CODECS), crf=get_int(d, "crf", where, 0, 63),
                bit_depth=get_int(d, "bit_depth", where, BIT_DEPTHS[0], BIT_DEPTHS[-1]),
                pix_fmt=get_str(d, "pix_fmt", where, PIX_FMTS),
                preset=get_str(d, "preset", where, PRESETS), frame=get_int(d, "frame", where, 1, 4096),
                order=get_str(d, "order", where, PL.ORDERS), bn_mode=get_str(d, "bn_mode", where, BN_MODES),
                dither=get_float(d, "dither", where, 0.0, MAX_DITHER), seed=get_int(d, "seed", where, 0, 2**63 - 1),
                tile=get_int(d, "tile", where, 1, MAX_TILE), layer_bits=layer_bits)
        return s.validate()


def _layer_bits(d: dict, where: str) -> tuple[tuple[str, int], ...]:
    if not 1 <= len(d) <= MAX_LAYERS:
        raise BundleError(f"manifest field '{where}layer_bits' must name 1..{MAX_LAYERS} tensors")
    for name in d:
        if not isinstance(name, str) or not _TENSOR.match(name):
            raise BundleError(f"manifest field '{where}layer_bits' names {str(name)[:40]!r}, not a tensor name")
    return tuple(sorted((name, get_int(d, name, f"{where}layer_bits.", BIT_DEPTHS[0], BIT_DEPTHS[-1]))
                        for name in d))


def check_layer_bits(settings: EncodeSettings, names) -> None:
    """A per-layer bit-depth map must name exactly the model's stored tensors ``names``."""
    if not settings.layer_bits:
        return
    given, want = {n for n, _ in settings.layer_bits}, set(names)
    unknown, missing = sorted(given - want), [n for n in names if n not in given]
    if unknown:
        raise BundleError(f"per-layer bit depths name {len(unknown)} tensor(s) the model does not have: "
                          f"{', '.join(unknown[:3])}{' …' if len(unknown) > 3 else ''}")
    if missing:
        raise BundleError(f"per-layer bit depths leave out {len(missing)} of the model's {len(want)} stored tensors: "
                          f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")


def container_bits(codec: str, bit_depth: int) -> int:
    """Pixel depth the levels are coded at. A level is ``pixel − zero_point`` with both in
    [0, 2^b − 1], so it needs b + 1 bits: video codecs take the smallest depth they have
    above b (8-bit grid → 10-bit frames: on the demo's λ = 5e-7 CTNet-18 the bundle is
    371,455 B against 371,224 B for 8-bit frames plus 1,428 escapes — even, with no escape
    list to grow on other weights; ``python bench/layout_study.py``); plane codecs store
    bytes, int8 for an 8-bit grid (escapes for the rest) and int16 above. Levels that still do not fit (12-bit
    grids in 12-bit frames, H.264/AV1 above 8 bits) are listed exactly in the tables."""
    c = CODECS[codec]
    if c.family == "planes":
        return 8 if bit_depth <= 8 else 16
    deeper = [d for d in c.bit_depths if d > bit_depth]
    return min(deeper) if deeper else max(c.bit_depths)


def _validated(s: EncodeSettings) -> EncodeSettings:
    for name, kind in (("crf", int), ("bit_depth", int), ("frame", int), ("seed", int), ("tile", int)):
        v = getattr(s, name)
        if not isinstance(v, kind) or isinstance(v, bool):
            raise BundleError(f"{name} must be an integer, got {v!r}")
    if s.codec not in CODECS:
        raise BundleError(f"codec must be one of {', '.join(CODECS)}, got {s.codec!r}")
    c = CODECS[s.codec]
    if s.bit_depth not in BIT_DEPTHS:
        raise BundleError(f"bit depth of the export grid must be {BIT_DEPTHS[0]}..{BIT_DEPTHS[-1]}, got {s.bit_depth}")
    if s.layer_bits:
        if not isinstance(s.layer_bits, tuple) or len(s.layer_bits) > MAX_LAYERS or not all(
                isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in s.layer_bits):
            raise BundleError("per-layer bit depths must map tensor names to bits")
        for name, bits in s.layer_bits:
            if not isinstance(bits, int) or isinstance(bits, bool) or bits not in BIT_DEPTHS:
                raise BundleError(f"per-layer bit depth of {name} must be {BIT_DEPTHS[0]}..{BIT_DEPTHS[-1]}, "
                                  f"got {bits!r}")
        top = max(bits for _, bits in s.layer_bits)
        if s.bit_depth != top:
            raise BundleError(f"bit_depth must be the largest per-layer bit depth ({top}) when layers have their "
                              f"own grids, got {s.bit_depth}")
    if s.frame not in PL.FRAME_SIZES:
        raise BundleError(f"frame size must be one of {PL.FRAME_SIZES}, got {s.frame}")
    if s.order not in PL.ORDERS:
        raise BundleError(f"order must be one of {PL.ORDERS}, got {s.order!r}")
    if s.bn_mode not in BN_MODES:
        raise BundleError(f"BN mode must be one of {BN_MODES}, got {s.bn_mode!r}")
    if not isinstance(s.dither, (int, float)) or isinstance(s.dither, bool) or not math.isfinite(float(s.dither)) \
            or not 0.0 <= float(s.dither) <= MAX_DITHER:
        raise BundleError(f"dither amplitude must be in [0, {MAX_DITHER:g}] pixel steps, got {s.dither!r}")
    if not 0 <= s.seed < 2**63:
        raise BundleError(f"dither seed must be an integer in [0, 2^63), got {s.seed}")
    if not 16 <= s.tile <= MAX_TILE:
        raise BundleError(f"tile size must be an integer in 16..{MAX_TILE}, got {s.tile}")
    if s.preset not in PRESETS:
        raise BundleError(f"preset must be one of {', '.join(PRESETS)}, got {s.preset!r}")
    if c.family == "planes":
        if s.crf != 0:
            raise BundleError(f"{s.codec} is lossless only: CRF must be 0, got {s.crf}")
        if s.pix_fmt != "gray":
            raise BundleError(f"{s.codec} codes levels, not pictures: pixel format gray only")
        return s
    s.video().validate()  # the codec's own rules (pixel formats, CRF range)
    return s


# --- the manifest ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    file: str
    role: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A checked v2 manifest. ``raw`` is the JSON object it came from (for display)."""

    model: ModelSpec
    label_map: dict[str, int] | None
    image_size: int
    pixel_bit_depth: int
    source: dict
    fp32_bytes: int
    settings: EncodeSettings
    frames: int  # frames in the plan
    coded_frames: int
    escapes: int
    tables_raw_bytes: int
    options: dict  # the encoder's options as used (video codecs) or the coder's (plane codecs)
    workaround: str
    members: tuple[Member, ...]
    digest: str
    raw: dict
    model_check: dict | None = None  # ctnet.codec.decoded.model_check of the decoded model (absent before it existed)

    def member(self, role: str) -> Member:
        return next(m for m in self.members if m.role == role)

    @staticmethod
    def parse(data: bytes) -> dict:
        """bytes → the JSON object, with format and version checked (v1 or v2)."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            obj = parse_json(data, constants=False)
        except JSONInvalid as exc:
            if exc.reason == "nested":  # too deep for the parser: deeper than any manifest, too
                raise BundleError(f"{MANIFEST} is nested deeper than {MAX_DEPTH} levels; no manifest is") from None
            raise BundleError(f"{MANIFEST} is not valid JSON ({exc.detail})") from None
        if not isinstance(obj, dict):
            raise BundleError(f"{MANIFEST} is not a JSON object")
        _check_depth(obj)
        if obj.get("format") != FORMAT:
            raise BundleError(f"{MANIFEST}: format is {str(obj.get('format'))[:40]!r}, not {FORMAT!r}")
        version = get_int(obj, "version", "", -MAX_INT, MAX_INT)
        if version not in READS:
            raise BundleError(f"unknown bundle format version {version} (this ctnet reads versions "
                              f"{', '.join(map(str, READS))})")
        return obj

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        obj = cls.parse(data)
        if obj["version"] != VERSION:
            raise BundleError(f"not a version {VERSION} manifest")
        return cls.from_obj(obj)

    @classmethod
    def from_obj(cls, m: dict) -> "Manifest":
        digest = get_str(m, "digest", "", pattern=_SHA)
        try:
            computed = digest_of(m)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{MANIFEST} cannot be canonicalised ({exc})") from None
        if computed != digest:
            raise BundleError(f"{MANIFEST} does not match its digest (edited or damaged): digest "
                              f"{digest[:16]}…, contents hash to {computed[:16]}…")
        try:
            spec = ModelSpec.from_dict(get_obj(m, "model", ""))
        except BundleError:
            raise
        except (ValueError, TypeError) as exc:
            raise BundleError(f"manifest field 'model': {exc}") from None
        labels = _get(m, "label_map", "")
        if labels is not None:
            problem = label_map_problem(labels, spec.num_classes)
            if problem:
                raise BundleError(f"manifest field 'label_map' {problem}")
            labels = dict(labels)
        source = get_obj(m, "source", "")
        settings = EncodeSettings.from_dict(get_obj(m, "settings", ""))
        coding = get_obj(m, "coding", "")
        frames = get_int(coding, "frames", "coding.", 1, 1 << 24)
        coded = get_int(coding, "coded_frames", "coding.", 0, frames)
        escapes = get_int(coding, "escapes", "coding.", 0, 1 << 28)
        if get_int(coding, "container_bits", "coding.", 1, 16) != settings.container_bits:
            raise BundleError(f"manifest field 'coding.container_bits' is not {settings.container_bits}, what "
                              f"this ctnet codes a {settings.bit_depth}-bit {settings.codec} bundle at")
        options = get_obj(coding, "options", "coding.")
        if not all(isinstance(k, str) and isinstance(v, str) and len(v) < 2048 for k, v in options.items()):
            raise BundleError("manifest field 'coding.options' must map names to strings")
        workaround = get_str(coding, "workaround", "coding.")
        raw_bytes = get_int(get_obj(m, "tables", ""), "raw_bytes", "tables.", 1, 1 << 30)
        members_raw = _get(m, "members", "")
        if not isinstance(members_raw, list) or not 1 <= len(members_raw) <= 4:
            raise BundleError("manifest field 'members' must list the bundle's files")
        members = []
        for i, e in enumerate(members_raw):
            where = f"members[{i}]."
            members.append(Member(check_name(get_str(e, "file", where)), get_str(e, "role", where, ROLES),
                                  get_int(e, "bytes", where, 0, MAX_FILE_BYTES),
                                  get_str(e, "sha256", where, pattern=_SHA)))
        names = [x.file for x in members]
        roles = sorted(x.role for x in members)
        if len(set(names)) != len(names) or MANIFEST in names:
            raise BundleError("manifest names the same file twice")
        want_roles = sorted(["tables"] + (["weights"] if coded else []))
        if roles != want_roles:
            raise BundleError(f"manifest lists members {roles}, a bundle with {coded} coded frames needs {want_roles}")
        check = None
        if "model_check" in m:
            found = get_obj(m, "model_check", "")
            if set(found) != {"channel_dct"}:
                raise BundleError("manifest field 'model_check' must hold 'channel_dct' only")
            check = {"channel_dct": get_str(found, "channel_dct", "model_check.", pattern=_CHECK)}
        return cls(spec, labels, get_int(m, "image_size", "", *IMAGE_SIZE_RANGE),
                   get_int(m, "pixel_bit_depth", "", 0, max(BIT_DEPTHS)),
                   source, get_int(m, "fp32_bytes", "", 1, 1 << 40), settings, frames, coded, escapes, raw_bytes,
                   dict(options), workaround, tuple(members), digest, m, check)


def _check_depth(obj) -> None:
    """Refuse JSON nested deeper than any manifest is (canonicalising it would recurse)."""
    stack = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BundleError(f"{MANIFEST} is nested deeper than {MAX_DEPTH} levels; no manifest is")
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]


__all__ = ["BN_MODES", "BundleError", "EncodeSettings", "FORMAT", "MANIFEST", "Manifest", "Member", "TABLES",
           "VERSION", "canonical", "check_layer_bits", "check_name", "container_bits", "digest_of", "get_float", "get_int",
           "get_obj", "get_str", "sha256"]
