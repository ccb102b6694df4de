"""Issue 23 item 5, measured: could a well-kept schema library (pydantic v2 strict models with
``extra="forbid"`` and field bounds, or msgspec Structs with ``Meta`` bounds and
``forbid_unknown_fields``) replace ctnet's hand-written manifest, checkpoint-metadata and
rd-point validators? Every hostile input the tests use (and a seeded fuzz of the manifest, as
tests/test_codec_errors.py mutates it) goes through ctnet's parsers and both libraries' models
of the same schemas; per input: refused or accepted, the library's error as a one-line message
and whether it names the field, parse time, and (for the large inputs) the parse's peak memory.

    nice -n 19 env OMP_NUM_THREADS=1 PYTHONPATH=$PWD:/tmp/jsonlibs .venv/bin/python bench/strict_json.py [--fuzz N]

The libraries are not ctnet dependencies: install them apart first,
``.venv/bin/pip install --target /tmp/jsonlibs pydantic msgspec``. Nothing in the suite imports this.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

try:
    import msgspec
    import pydantic
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as exc:  # not ctnet dependencies: installed apart
    sys.exit(f"bench/strict_json.py: {exc.name} is not importable; install it apart "
             "(.venv/bin/pip install --target /tmp/jsonlibs pydantic msgspec) and run with PYTHONPATH=$PWD:/tmp/jsonlibs")

from ctnet import rd as RD  # noqa: E402
from ctnet.codec import manifest as M  # noqa: E402
from ctnet.codec import plan as PL  # noqa: E402
from ctnet.codec.registry import CODECS, PIX_FMTS, PRESETS  # noqa: E402
from ctnet.data import IMAGENETTE_CLASSES  # noqa: E402
from ctnet.errors import CtnetError  # noqa: E402
from ctnet.limits import BIT_DEPTHS, IMAGE_SIZE_RANGE, MAX_CLASS_NAME_CHARS, MAX_DITHER, MAX_INT, MAX_NUM_CLASSES  # noqa: E402
from ctnet.models import ARCHITECTURES, MAX_DCT_BLOCK_SIZE, ModelSpec  # noqa: E402
from ctnet.types import CheckpointMeta  # noqa: E402

GOOD = REPO / "tests" / "assets" / "v2" / "lam1e-6-smallest" / M.MANIFEST
CLASS_NAME = r"^[^\x00-\x1f/\x7f]+$"  # ctnet.data.class_name_problem: no control characters, no '/'
SHA = r"^[0-9a-f]{64}$"
TENSOR = M._TENSOR.pattern
RD_FILE = Path(tempfile.gettempdir()) / f"ctnet-strict-json-{os.getpid()}.json"  # read_cache reads a file
PLANES = next(n for n, c in CODECS.items() if c.family == "planes")  # a lossless plane coder


# --- (a) pydantic v2: strict models, extra="forbid", field bounds ---------------------------------------

def _pint(lo: int, hi: int):
    return Annotated[int, Field(ge=lo, le=hi)]


class _P(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class PModel(_P):
    arch: Literal[tuple(ARCHITECTURES)]
    num_classes: _pint(1, MAX_NUM_CLASSES)
    ctnet: bool = True
    dct_block_size: _pint(0, MAX_DCT_BLOCK_SIZE) = 16
    plain_1x1: bool = False


PClassName = Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME_CHARS, pattern=CLASS_NAME)]
PLabelMap = Annotated[dict[PClassName, _pint(0, MAX_NUM_CLASSES - 1)], Field(min_length=1, max_length=MAX_NUM_CLASSES)]
PBits = Literal[tuple(BIT_DEPTHS)]


class PSettings(_P):
    codec: Literal[tuple(CODECS)]
    crf: _pint(0, 63)
    bit_depth: PBits
    pix_fmt: Literal[PIX_FMTS]
    preset: Literal[PRESETS]
    frame: Literal[PL.FRAME_SIZES]
    order: Literal[PL.ORDERS]
    bn_mode: Literal[M.BN_MODES]
    dither: Annotated[float, Field(ge=0.0, le=MAX_DITHER, allow_inf_nan=False)]
    seed: _pint(0, 2**63 - 1)
    tile: _pint(16, M.MAX_TILE)
    layer_bits: Optional[Annotated[dict[Annotated[str, Field(pattern=TENSOR)], PBits],
                                   Field(min_length=1, max_length=M.MAX_LAYERS)]] = None


class PCoding(_P):
    planes: Optional[Annotated[str, Field(max_length=4096)]] = None
    frames: _pint(1, 1 << 24)
    coded_frames: _pint(0, 1 << 24)
    container_bits: _pint(1, 16)
    level_offset: Optional[_pint(0, 1 << 16)] = None
    escapes: _pint(0, 1 << 28)
    codec: Optional[Annotated[str, Field(max_length=64)]] = None
    encoder: Optional[Annotated[str, Field(max_length=64)]] = None
    container: Optional[Annotated[str, Field(max_length=64)]] = None
    options: dict[str, Annotated[str, Field(max_length=2047)]]
    workaround: Annotated[str, Field(max_length=4096)]


class PTables(_P):
    file: Optional[str] = None
    raw_bytes: _pint(1, 1 << 30)
    compression: Optional[Annotated[str, Field(max_length=4096)]] = None


class PMember(_P):
    file: Annotated[str, Field(pattern=M._NAME.pattern)]
    role: Literal[M.ROLES]
    bytes: _pint(0, M.MAX_FILE_BYTES)
    sha256: Annotated[str, Field(pattern=SHA)]


class PModelCheck(_P):
    channel_dct: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


class PManifest(_P):
    format: Literal["ctnet-bundle"]
    version: Literal[2]
    model: PModel
    label_map: Optional[PLabelMap]
    image_size: _pint(*IMAGE_SIZE_RANGE)
    pixel_bit_depth: _pint(0, max(BIT_DEPTHS))
    source: dict[str, Any]
    fp32_bytes: _pint(1, 1 << 40)
    ctnet_version: Optional[Annotated[str, Field(max_length=64)]] = None
    settings: PSettings
    coding: PCoding
    tables: PTables
    members: Annotated[list[PMember], Field(min_length=1, max_length=4)]
    digest: Annotated[str, Field(pattern=SHA)]
    model_check: Optional[PModelCheck] = None


PNum = Annotated[float, Field(allow_inf_nan=False)]


class PMetrics(_P):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)  # training records more than these
    acc1: Optional[Annotated[PNum, Field(ge=0, le=100)]] = None
    acc5: Optional[Annotated[PNum, Field(ge=0, le=100)]] = None
    fp32_bytes: Optional[Annotated[PNum, Field(ge=0, le=MAX_INT)]] = None
    est_bytes_export: Optional[Annotated[PNum, Field(ge=0, le=MAX_INT)]] = None
    epoch: Optional[_pint(0, 1_000_000)] = None
    ratio: Optional[Annotated[float, Field(ge=0)]] = None
    est_bytes: Optional[dict[str, Annotated[PNum, Field(ge=0, le=MAX_INT)]]] = None


class PParetoEntry(_P):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    epoch: _pint(0, 1_000_000)
    acc1: Annotated[PNum, Field(ge=0, le=100)]
    est_bytes_export: Annotated[PNum, Field(ge=0, le=MAX_INT)]


class PResume(_P):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    epoch: _pint(0, 1_000_000)
    scheduler_step: _pint(0, 1 << 40)
    pareto: dict[str, PParetoEntry]


class POptimizer(_P):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    param_groups: list[dict[str, Any]]
    scalars: dict[Annotated[str, Field(pattern=r"^[0-9]{1,9}\..+$")], Any]


class PCheckpointMeta(_P):
    # extra="allow": a checkpoint keeps the fields a newer writer stored (CheckpointMeta.other)
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    format: Literal["ctnet-checkpoint"]
    version: _pint(1, 1) = 1
    model: PModel
    label_map: Optional[PLabelMap] = None
    image_size: _pint(*IMAGE_SIZE_RANGE) = 128
    pixel_bit_depth: Literal[(0, *BIT_DEPTHS)] = 0
    train_config: Optional[dict[str, Any]] = None
    epoch: Optional[_pint(0, 1_000_000)] = None
    metrics: Optional[PMetrics] = None
    resume_state: Optional[PResume] = None
    optimizer: Optional[POptimizer] = None
    digest: Optional[Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]] = None


PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"  # str.isprintable, approximately (it also refuses U+2028 and unassigned)
PText = Annotated[str, Field(max_length=512, pattern=PRINTABLE)]
PShort = Annotated[str, Field(max_length=64, pattern=PRINTABLE)]
PNonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PScalar = Union[bool, Annotated[int, Field(ge=1 - 2**63, le=2**63 - 1)], Annotated[float, Field(allow_inf_nan=False)],
                PShort, None]


class PPoint(_P):
    method: Literal[RD.METHODS]
    codec: PShort
    settings: Annotated[dict[PText, PScalar], Field(max_length=64)]
    label: PText
    bytes: _pint(1, MAX_INT)
    ratio: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    acc1: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
    acc5: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
    images: _pint(0, MAX_INT)
    device: PText
    encode_seconds: PNonNeg
    decode_seconds: PNonNeg
    source_sha256: Annotated[str, Field(pattern=SHA)]
    data: PText
    limit: Optional[_pint(1, MAX_INT)]
    measured: PShort
    load_average: Optional[PNonNeg]
    files: Optional[Annotated[dict[PText, _pint(0, MAX_INT)], Field(max_length=256)]] = None
    streams: Optional[Annotated[list[dict[str, Any]], Field(max_length=256)]] = None
    notes: Optional[dict[str, Any]] = None


class PCache(_P):
    format: Literal["ctnet-rd-cache"]
    version: Literal[1]
    points: dict[Annotated[str, Field(pattern=SHA)], PPoint]


# --- (b) msgspec: Structs, Meta bounds, forbid_unknown_fields -----------------------------------------

def _mint(lo: int, hi: int):
    return Annotated[int, msgspec.Meta(ge=lo, le=hi)]


class _S(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class SModel(_S):
    arch: Literal[tuple(ARCHITECTURES)]
    num_classes: _mint(1, MAX_NUM_CLASSES)
    ctnet: bool = True
    dct_block_size: _mint(0, MAX_DCT_BLOCK_SIZE) = 16
    plain_1x1: bool = False


SClassName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CLASS_NAME_CHARS, pattern=CLASS_NAME)]
SLabelMap = Annotated[dict[SClassName, _mint(0, MAX_NUM_CLASSES - 1)],
                      msgspec.Meta(min_length=1, max_length=MAX_NUM_CLASSES)]
SBits = Literal[tuple(BIT_DEPTHS)]


class SSettings(_S):
    codec: Literal[tuple(CODECS)]
    crf: _mint(0, 63)
    bit_depth: SBits
    pix_fmt: Literal[PIX_FMTS]
    preset: Literal[PRESETS]
    frame: Literal[PL.FRAME_SIZES]
    order: Literal[PL.ORDERS]
    bn_mode: Literal[M.BN_MODES]
    dither: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_DITHER)]
    seed: _mint(0, 2**63 - 1)
    tile: _mint(16, M.MAX_TILE)
    layer_bits: Optional[Annotated[dict[Annotated[str, msgspec.Meta(pattern=TENSOR)], SBits],
                                   msgspec.Meta(min_length=1, max_length=M.MAX_LAYERS)]] = None


class SCoding(_S):
    frames: _mint(1, 1 << 24)
    coded_frames: _mint(0, 1 << 24)
    container_bits: _mint(1, 16)
    escapes: _mint(0, 1 << 28)
    options: dict[str, Annotated[str, msgspec.Meta(max_length=2047)]]
    workaround: Annotated[str, msgspec.Meta(max_length=4096)]
    planes: Optional[Annotated[str, msgspec.Meta(max_length=4096)]] = None
    level_offset: Optional[_mint(0, 1 << 16)] = None
    codec: Optional[Annotated[str, msgspec.Meta(max_length=64)]] = None
    encoder: Optional[Annotated[str, msgspec.Meta(max_length=64)]] = None
    container: Optional[Annotated[str, msgspec.Meta(max_length=64)]] = None


class STables(_S):
    raw_bytes: _mint(1, 1 << 30)
    file: Optional[str] = None
    compression: Optional[Annotated[str, msgspec.Meta(max_length=4096)]] = None


class SMember(_S):
    file: Annotated[str, msgspec.Meta(pattern=M._NAME.pattern)]
    role: Literal[M.ROLES]
    bytes: _mint(0, M.MAX_FILE_BYTES)
    sha256: Annotated[str, msgspec.Meta(pattern=SHA)]


class SModelCheck(_S):
    channel_dct: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}$")]


class SManifest(_S):
    format: Literal["ctnet-bundle"]
    version: Literal[2]
    model: SModel
    label_map: Optional[SLabelMap]
    image_size: _mint(*IMAGE_SIZE_RANGE)
    pixel_bit_depth: _mint(0, max(BIT_DEPTHS))
    source: dict[str, Any]
    fp32_bytes: _mint(1, 1 << 40)
    settings: SSettings
    coding: SCoding
    tables: STables
    members: Annotated[list[SMember], msgspec.Meta(min_length=1, max_length=4)]
    digest: Annotated[str, msgspec.Meta(pattern=SHA)]
    ctnet_version: Optional[Annotated[str, msgspec.Meta(max_length=64)]] = None
    model_check: Optional[SModelCheck] = None


class _Open(msgspec.Struct, frozen=True):  # unknown fields ignored (msgspec cannot keep them)
    pass


class SMetrics(_Open):
    acc1: Optional[Annotated[float, msgspec.Meta(ge=0, le=100)]] = None
    acc5: Optional[Annotated[float, msgspec.Meta(ge=0, le=100)]] = None
    fp32_bytes: Optional[Annotated[float, msgspec.Meta(ge=0, le=MAX_INT)]] = None
    est_bytes_export: Optional[Annotated[float, msgspec.Meta(ge=0, le=MAX_INT)]] = None
    epoch: Optional[_mint(0, 1_000_000)] = None
    ratio: Optional[Annotated[float, msgspec.Meta(ge=0)]] = None
    est_bytes: Optional[dict[str, Annotated[float, msgspec.Meta(ge=0, le=MAX_INT)]]] = None


class SParetoEntry(_Open):
    epoch: _mint(0, 1_000_000)
    acc1: Annotated[float, msgspec.Meta(ge=0, le=100)]
    est_bytes_export: Annotated[float, msgspec.Meta(ge=0, le=MAX_INT)]


class SResume(_Open):
    epoch: _mint(0, 1_000_000)
    scheduler_step: _mint(0, 1 << 40)
    pareto: dict[str, SParetoEntry]


class SOptimizer(_Open):
    param_groups: list[dict[str, Any]]
    scalars: dict[Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,9}\..+$")], Any]


class SCheckpointMeta(_Open):
    format: Literal["ctnet-checkpoint"]
    model: SModel
    version: _mint(1, 1) = 1
    label_map: Optional[SLabelMap] = None
    image_size: _mint(*IMAGE_SIZE_RANGE) = 128
    pixel_bit_depth: Literal[(0, *BIT_DEPTHS)] = 0
    train_config: Optional[dict[str, Any]] = None
    epoch: Optional[_mint(0, 1_000_000)] = None
    metrics: Optional[SMetrics] = None
    resume_state: Optional[SResume] = None
    optimizer: Optional[SOptimizer] = None
    digest: Optional[Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")]] = None


SText = Annotated[str, msgspec.Meta(max_length=512, pattern=PRINTABLE)]
SShort = Annotated[str, msgspec.Meta(max_length=64, pattern=PRINTABLE)]
SNonNeg = Annotated[float, msgspec.Meta(ge=0)]
SScalar = Union[bool, Annotated[int, msgspec.Meta(ge=1 - 2**63, le=2**63 - 1)], float, SShort, None]


class SPoint(_S):
    method: Literal[RD.METHODS]
    codec: SShort
    settings: Annotated[dict[SText, SScalar], msgspec.Meta(max_length=64)]
    label: SText
    bytes: _mint(1, MAX_INT)
    ratio: Annotated[float, msgspec.Meta(gt=0)]
    acc1: Annotated[float, msgspec.Meta(ge=0, le=100)]
    acc5: Annotated[float, msgspec.Meta(ge=0, le=100)]
    images: _mint(0, MAX_INT)
    device: SText
    encode_seconds: SNonNeg
    decode_seconds: SNonNeg
    source_sha256: Annotated[str, msgspec.Meta(pattern=SHA)]
    data: SText
    limit: Optional[_mint(1, MAX_INT)]
    measured: SShort
    load_average: Optional[SNonNeg]
    files: Optional[Annotated[dict[SText, _mint(0, MAX_INT)], msgspec.Meta(max_length=256)]] = None
    streams: Optional[Annotated[list[dict[str, Any]], msgspec.Meta(max_length=256)]] = None
    notes: Optional[dict[str, Any]] = None


class SCache(_S):
    format: Literal["ctnet-rd-cache"]
    version: Literal[1]
    points: dict[Annotated[str, msgspec.Meta(pattern=SHA)], SPoint]


# --- the parsers, each returning (refused, one-line message, field named) ----------------------------

def _ctnet(kind: str, text: bytes):
    try:
        if kind == "manifest":
            M.Manifest.from_json(text)
        elif kind == "rd-cache":
            RD_FILE.write_bytes(text)
            RD.read_cache(RD_FILE)
        else:
            CheckpointMeta.from_json(text.decode("utf-8", "surrogateescape"))
    except CtnetError as exc:
        msg = str(exc)
        return True, msg, "\n" not in msg
    return False, "", True


def _pydantic(kind: str, text: bytes):
    model = {"manifest": PManifest, "rd-cache": PCache}.get(kind, PCheckpointMeta)
    try:
        model.model_validate_json(text)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(map(str, err["loc"]))
        # json_invalid and a top-level type error have no field: the document is what failed
        named = bool(loc) or err["type"] in ("json_invalid", "model_type", "model_attributes_type")
        return True, f"{kind} field '{loc or '(document)'}': {err['msg']}", named
    return False, "", True


def _msgspec(kind: str, text: bytes):
    model = {"manifest": SManifest, "rd-cache": SCache}.get(kind, SCheckpointMeta)
    try:
        msgspec.json.decode(text, type=model)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        # "… - at `$.settings.crf`", "… - at `key` in `$.label_map`", a top-level "… field `x`"; "[...]" stands
        # for a dict key msgspec does not say (which point, which layer)
        return True, f"{kind}: {msg}", "[...]" not in msg and (
            " - at `" in msg or "field `" in msg or msg.startswith("Expected `object`"))
    except msgspec.DecodeError as exc:
        # a syntax error names no field; that loses one only where Python's json reads the text (NaN, Infinity)
        try:
            json.loads(text)
        except ValueError:
            return True, f"{kind}: {exc}", True
        return True, f"{kind}: {exc}", False
    return False, "", True


def _ctnet_reader(kind: str, text: bytes):
    """ctnet's bundle reader past the parser: the manifest checked against the model it
    describes (sizes from the network's shapes on torch's meta device), no member read."""
    from ctnet.codec import bundle as B
    try:
        B.reader(text)
    except CtnetError as exc:
        return True, str(exc), "\n" not in str(exc)
    return False, "", True


PARSERS = {"ctnet": _ctnet, "pydantic": _pydantic, "msgspec": _msgspec}
ALL = {**PARSERS, "ctnet reader": _ctnet_reader}


# --- the inputs -----------------------------------------------------------------------------------------

def _good() -> dict:
    return json.loads(GOOD.read_text())


def _dump(m: dict, *, rehash: bool = True) -> bytes:
    """A manifest's text; ``rehash``: the digest rewritten, as a tool that 'fixes' it would
    (so ctnet's field checks, not its digest, meet the edit)."""
    if rehash:
        m["digest"] = M.digest_of(m)
    return json.dumps(m).encode()


def _edit(fn, rehash: bool = True) -> bytes:
    m = _good()
    fn(m)
    return _dump(m, rehash=rehash)


def _text_edit(fn) -> bytes:
    """An edit of the manifest's text itself (what json.dumps cannot write)."""
    return fn(json.dumps(_good())).encode()


def _duplicate(old: str, new: str) -> bytes:
    """The manifest text with a key written twice, its digest that of what json.loads keeps
    (the last), so that the digest does not decide."""
    text = json.dumps(_good()).replace(old, new, 1)
    kept = json.loads(text)
    return text.replace(kept["digest"], M.digest_of(kept)).encode()


def manifest_inputs() -> list[tuple[str, bytes]]:
    good = GOOD.read_bytes()
    huge = int("9" * 401)
    cases: list[tuple[str, bytes]] = [
        ("good manifest", good),
        ("truncated in half", good[: len(good) // 2]),
        ("not JSON '[1, 2'", b"[1, 2"),
        ("not UTF-8", b"\xff\xfe" + good),
        ("a list, not an object", b"[]"),
        ("format 'other'", _edit(lambda m: m.update(format="other"))),
        ("version 3", _edit(lambda m: m.update(version=3))),
        ("version '2' (string)", _edit(lambda m: m.update(version="2"))),
        ("version true", _edit(lambda m: m.update(version=True))),
        ("edit, digest not rewritten", _edit(lambda m: m["model"].update(dct_block_size=8), rehash=False)),
        ("digest malformed", _edit(lambda m: m.update(digest="x" * 64), rehash=False)),
        ("missing settings", _edit(lambda m: m.pop("settings"))),
        ("num_classes 401 digits", _edit(lambda m: m["model"].update(num_classes=huge))),
        ("fp32_bytes 401 digits", _edit(lambda m: m.update(fp32_bytes=huge))),
        ("source.metrics.fp32_bytes of 5000 digits", _text_edit(  # the first fp32_bytes is source.metrics'
            lambda t: t.replace('"fp32_bytes": 44764968', '"fp32_bytes": ' + "9" * 5000, 1))),
        ("model.arch unknown", _edit(lambda m: m["model"].update(arch="vgg"))),
        ("model.ctnet 'yes'", _edit(lambda m: m["model"].update(ctnet="yes"))),
        ("model unknown key", _edit(lambda m: m["model"].update(extra=1))),
        ("dct_block_size 4096", _edit(lambda m: m["model"].update(dct_block_size=4096))),
        ("settings.dither 'x'", _edit(lambda m: m["settings"].update(dither="x"))),
        ("settings.dither 9.0", _edit(lambda m: m["settings"].update(dither=9.0))),
        ("settings.dither NaN literal", _text_edit(lambda t: t.replace('"dither": 0.0', '"dither": NaN'))),
        ("settings.dither 1e309 (inf)", _text_edit(lambda t: t.replace('"dither": 0.0', '"dither": 1e309'))),
        ("settings.crf true", _edit(lambda m: m["settings"].update(crf=True))),
        ("settings.crf 1.0", _edit(lambda m: m["settings"].update(crf=1.0))),
        ("settings.crf 99", _edit(lambda m: m["settings"].update(crf=99))),
        ("settings.crf 5 (x265 lossy, container ok)", _edit(lambda m: m["settings"].update(crf=5))),
        ("settings.bit_depth 13", _edit(lambda m: m["settings"].update(bit_depth=13))),
        ("settings.bit_depth 10 (container_bits 10 now wrong)", _edit(lambda m: m["settings"].update(bit_depth=10))),
        ("settings.frame 100", _edit(lambda m: m["settings"].update(frame=100))),
        ("settings.tile 8", _edit(lambda m: m["settings"].update(tile=8))),
        ("settings unknown key", _edit(lambda m: m["settings"].update(speed=1))),
        ("settings.codec h264 + crf 0 + gray (h264 ok)", _edit(lambda m: m["settings"].update(codec="h264"))),
        (f"settings.codec {PLANES} (lossless only) with crf 5", _edit(lambda m: m["settings"].update(codec=PLANES, crf=5))),
        ("layer_bits 13 bits", _edit(lambda m: m["settings"].update(layer_bits={"conv1.weight_dct": 13}))),
        ("layer_bits max != bit_depth", _edit(lambda m: m["settings"].update(layer_bits={"conv1.weight_dct": 6}))),
        ("layer_bits 5000 names", _edit(lambda m: m["settings"].update(
            layer_bits={f"l{i}.weight": 8 for i in range(5000)}))),
        ("image_size 4096", _edit(lambda m: m.update(image_size=4096))),
        ("pixel_bit_depth 13", _edit(lambda m: m.update(pixel_bit_depth=13))),
        ("coded_frames > frames", _edit(lambda m: m["coding"].update(coded_frames=m["coding"]["frames"] + 1))),
        ("coding.container_bits 8", _edit(lambda m: m["coding"].update(container_bits=8))),
        ("coding.options value a list", _edit(lambda m: m["coding"]["options"].update(preset=["x"]))),
        ("coding.workaround 8 kB", _edit(lambda m: m["coding"].update(workaround="x" * 8192))),
        ("tables.raw_bytes 2^31", _edit(lambda m: m["tables"].update(raw_bytes=1 << 31))),
        ("members []", _edit(lambda m: m.update(members=[]))),
        ("members same file twice", _edit(lambda m: m["members"].append(dict(m["members"][0])))),
        ("members roles: two tables", _edit(lambda m: m["members"][1].update(role="tables"))),
        ("member file '../x'", _edit(lambda m: m["members"][0].update(file="../x"))),
        ("member file '..'", _edit(lambda m: m["members"][0].update(file=".."))),
        ("label_map index 10 (>= num_classes)", _edit(lambda m: m["label_map"].update(n01440764=10))),
        ("label_map two classes one index", _edit(lambda m: m["label_map"].update(nXX=3))),
        ("label_map class with '/'", _edit(lambda m: m["label_map"].update({"a/b": 3}))),
        ("label_map a list", _edit(lambda m: m.update(label_map=[]))),
        ("model_check extra key", _edit(lambda m: m.update(model_check={"channel_dct": "0" * 16, "x": "y"}))),
        ("top-level unknown key", _edit(lambda m: m.update(comment="hi"))),
        ("source nested 20 deep", _edit(lambda m: m.update(source={"a": json.loads("[" * 20 + "]" * 20)}))),
        ("source nested 981 deep", _text_edit(lambda t: t.replace('"source": {', '"source": {"deep": ' + "[" * 981
                                                                   + "]" * 981 + ', ', 1))),
        ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
        ("duplicate key crf 0 then 51", _duplicate('"crf": 0', '"crf": 0, "crf": 51')),
        ("duplicate key crf 99 then 0", _duplicate('"crf": 0', '"crf": 99, "crf": 0')),
        ("duplicate key format 'x' then right", _duplicate('"format": "ctnet-bundle"',
                                                           '"format": "x", "format": "ctnet-bundle"')),
    ]
    return cases


def large_inputs() -> list[tuple[str, bytes]]:
    """Inputs under the 32 MB manifest cap whose one field is far past its bound, every item
    of it valid on its own: does the parser refuse before it builds the whole value?"""
    out = []
    m = _good()
    m["members"] = [m["members"][0]] * 200_000
    out.append(("members: 200,000 valid entries (bound 4)", _dump(m)))
    m = _good()
    m["label_map"] = {f"c{i}": i % 10 for i in range(1_000_000)}
    out.append(("label_map: 1,000,000 classes (bound 100,000)", _dump(m)))
    m = _good()
    m["settings"]["layer_bits"] = {f"layer{i}.weight": 8 for i in range(1_000_000)}
    out.append(("settings.layer_bits: 1,000,000 names (bound 4096)", _dump(m)))
    m = _good()
    m["coding"]["workaround"] = "x" * 30_000_000
    out.append(("coding.workaround: 30 MB string (bound 4096)", _dump(m)))
    assert all(len(t) <= M.MAX_MANIFEST_BYTES for _, t in out), [len(t) for _, t in out]
    return out


def model_sized_inputs() -> list[tuple[str, bytes]]:
    """Sizes in range for their fields that the described model cannot have: what would be
    allocated (decompressed tables, a read member, decoded frames) is bounded by the
    network's shapes, a cross-field check no field schema holds."""
    return [("tables.raw_bytes 2^30 (1 GiB to decompress)", _edit(lambda m: m["tables"].update(raw_bytes=1 << 30))),
            ("w.mp4 bytes 3 GiB (3 GiB to read)", _edit(lambda m: m["members"][1].update(bytes=3 << 30))),
            ("coding.frames 2^24 (1 TB of 256² frames)", _edit(
                lambda m: m["coding"].update(frames=1 << 24, coded_frames=1 << 24)))]


def fuzz_inputs(n: int) -> list[tuple[str, bytes]]:
    """tests/test_codec_errors.py's manifest mutations (a random section field set to a random
    value, digest rewritten or not) and byte-level damage of the manifest text."""
    rng = random.Random(20261130)
    out = []
    for i in range(n):
        kind = rng.choice(["field", "field-rehash", "truncate", "flip", "zero"])
        if kind.startswith("field"):
            m = _good()
            section = rng.choice(["model", "settings", "coding", "source", "tables"])
            key = rng.choice(sorted(m[section]))
            m[section][key] = rng.choice([0, 1, -1, 8, 16, 10**12, "x", None, [], 1.5, True])
            out.append((f"fuzz {kind} {section}.{key}", _dump(m, rehash=kind == "field-rehash")))
            continue
        data = bytearray(GOOD.read_bytes())
        if kind == "truncate":
            data = data[: rng.randrange(len(data))]
        elif kind == "flip":
            j = rng.randrange(len(data))
            data[j] ^= 1 << rng.randrange(8)
        else:
            j, k = rng.randrange(len(data)), rng.randrange(1, 64)
            data[j:j + k] = bytes(len(data[j:j + k]))
        out.append((f"fuzz {kind}", bytes(data)))
    return out


GOOD_META = json.dumps({"format": "ctnet-checkpoint", "version": 1, "model": ModelSpec("resnet18", 10).to_dict(),
                        "image_size": 16})


def meta_inputs() -> list[tuple[str, bytes]]:
    """tests/test_checkpoint.py's MALFORMED headers, and the bounded-JSON cases of types.py."""
    spec = ModelSpec("resnet18", 10, True, 16).to_dict()
    huge = int("9" * 401)

    def meta(**changes) -> bytes:
        d = {"format": "ctnet-checkpoint", "version": 1, "model": spec, "image_size": 16, "pixel_bit_depth": 0,
             "label_map": {w: i for i, w in enumerate(IMAGENETTE_CLASSES)}}
        d.update(changes)
        return json.dumps(d).encode()
    return [
        ("good metadata", meta()),
        ("good, unknown field kept", meta(note="kept")),
        ("[]", b"[]"), ("null", b"null"), ("{not json", b"{not json"),
        ("no model", json.dumps({"format": "ctnet-checkpoint", "version": 1}).encode()),
        ("version '9'", meta(version="9")), ("version 1.0", meta(version=1.0)), ("version 99 (newer)", meta(version=99)),
        ("format other", meta(format="other")),
        ("num_classes 401 digits", meta(model={**spec, "num_classes": huge})),
        ("num_classes 10^9", meta(model={**spec, "num_classes": 10 ** 9})),
        ("num_classes '10'", meta(model={**spec, "num_classes": "10"})),
        ("ctnet 'yes'", meta(model={**spec, "ctnet": "yes"})),
        ("arch a list", meta(model={**spec, "arch": ["resnet18"]})),
        ("model unknown field", meta(model={**spec, "extra": 1})),
        ("model incomplete", meta(model={"arch": "resnet18"})),
        ("model null", meta(model=None)),
        ("metrics.fp32_bytes 401 digits", meta(metrics={"fp32_bytes": huge})),
        ("metrics.acc1 'high'", meta(metrics={"acc1": "high"})),
        ("metrics.acc1 NaN literal", meta(metrics={"acc1": 1.5}).replace(b"1.5", b"NaN")),
        ("image_size 401 digits", meta(image_size=huge)),
        ("image_size 10^9", meta(image_size=10 ** 9)), ("image_size '128'", meta(image_size="128")),
        ("pixel_bit_depth 13", meta(pixel_bit_depth=13)),
        ("label_map index 10", meta(label_map={"n01440764": 10})), ("label_map []", meta(label_map=[])),
        ("epoch -1", meta(epoch=-1)),
        ("resume_state without keys", meta(resume_state={"epoch": 1})),
        ("optimizer.param_groups 3", meta(optimizer={"param_groups": 3, "scalars": {}})),
        ("unknown field nested 10 deep", meta(other=[[[[[[[[[[1]]]]]]]]]])),
        ("unknown field 401 digits", meta(other=huge)),
        ("unknown field 200,000 items", meta(other=list(range(200_000)))),
        ("train_config 401-digit int", meta(train_config={"lr": huge})),
        ("digest md5:0", meta(digest="md5:0")),
        ("dct_block_size 4096", meta(model={**spec, "dct_block_size": 4096})),
        ("dct_block_size -1", meta(model={**spec, "dct_block_size": -1})),
        ("block size disagrees with train_config", meta(train_config={"dct_block_size": 8})),
        ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
    ]


def rd_inputs() -> list[tuple[str, bytes]]:
    """tests/test_rd.py's tampered points and corrupted cache files."""
    point = {"method": "bundle", "codec": "hevc", "label": "hevc 8-bit lossless medium",
             "settings": {"codec": "hevc", "crf": 0, "bit_depth": 8, "pix_fmt": "gray", "preset": "medium",
                          "frame": 256, "order": "count", "bn_mode": "affine", "dither": 0.0, "seed": 0, "tile": 128},
             "bytes": 371455, "ratio": 120.5, "acc1": 88.4, "acc5": 98.4, "images": 500, "device": "cpu",
             "encode_seconds": 1.25, "decode_seconds": 0.5, "source_sha256": "b3" * 32, "data": "sample/val:10f9785b",
             "limit": None, "measured": "2026-11-30T09:01:11", "load_average": 5.11,
             "files": {"manifest.json": 1456, "tables.bin": 31914, "w.mp4": 338085},
             "streams": [{"file": "w.mp4", "bytes": 338085, "frames": 90, "params": "lossless=1"}]}
    key = "3f2a" + "0" * 60

    def cache(p) -> bytes:
        return json.dumps({"format": RD.CACHE_FORMAT, "version": RD.CACHE_VERSION,
                           "points": {"ab" * 32: point, key: p}}).encode()
    edits = [("good point", {}), ("acc1 'abc'", {"acc1": "abc"}), ("bytes -5", {"bytes": -5}),
             ("bytes 401 digits", {"bytes": 10**400}), ("ratio NaN", {"ratio": float("nan")}),
             ("settings a string", {"settings": "crf 0"}), ("acc1 true", {"acc1": True}),
             ("acc5 1e309", {"acc5": 1e309}), ("bytes 1.5e6", {"bytes": 1.5e6}), ("method 'zip'", {"method": "zip"}),
             ("label two lines", {"label": "x\nFAKE ROW"}), ("settings.crf a list", {"settings": {"crf": [0]}}),
             ("limit 0", {"limit": 0}), ("source_sha256 upper case", {"source_sha256": "B3" * 32}),
             ("files value a string", {"files": {"w.mp4": "big"}}),
             ("streams[0].bytes inf", {"streams": [{"bytes": float("inf")}]}),
             ("notes nested 10 deep", {"notes": {"deep": [[[[[[[[[[1]]]]]]]]]]}}),
             ("notes 20,000 values", {"notes": {"v": list(range(20_000))}}),
             ("notes 401-digit int", {"notes": {"v": 10**400}}),
             ("label with U+2028", {"label": "a\u2028b"}), ("unknown field", {"cached": True})]
    out = [(f"point: {name}", cache({**point, **change})) for name, change in edits]
    out += [("point: acc5 missing", cache({k: v for k, v in point.items() if k != "acc5"})),
            ("point: a list", cache(list(point))),
            ("int of 5000 digits", ('{"format": "ctnet-rd-cache", "version": 1, "points": {"%s": {"bytes": %s}}}'
                                    % (key, "9" * 5000)).encode()),
            ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
            ("version true", b'{"format": "ctnet-rd-cache", "version": true, "points": {}}'),
            ("point key 'a-0'", b'{"format": "ctnet-rd-cache", "version": 1, "points": {"a-0": {}}}')]
    return out


# --- measuring ------------------------------------------------------------------------------------------

WORDING = ("image_size 4096", "fp32_bytes 401 digits", "settings.dither NaN literal", "member file '../x'",
           "settings unknown key", "version 99 (newer)", "point: acc1 'abc'", "point: label two lines")


def _time(fn, kind: str, text: bytes, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(kind, text)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def peak_memory(parser: str, kind: str, text: bytes) -> float:
    """MB the parse adds to the resident set at its peak, in a fresh child (pydantic-core
    allocates outside tracemalloc's view): the kernel's peak (VmHWM) is reset just before
    the parse (``/proc/self/clear_refs``) and compared with the resident set then."""
    code = ("import sys\nsys.argv = ['x']\nimport bench.strict_json as S\n"
            "text = sys.stdin.buffer.read()\n"
            f"S.ALL[{parser!r}]({kind!r}, text[:1])\n"  # warm the parser's code paths
            "def status(key):\n"
            "    line = next(x for x in open('/proc/self/status') if x.startswith(key))\n"
            "    return int(line.split()[1]) / 1024\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "before = status('VmRSS')\n"
            f"S.ALL[{parser!r}]({kind!r}, text)\n"
            "print(status('VmHWM') - before)\n")
    r = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, cwd=REPO, check=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])})
    return float(r.stdout.decode().split()[-1])


def run(cases, kind: str, repeats: int) -> list[dict]:
    rows = []
    for name, text in cases:
        row: dict = {"input": name, "kind": kind, "bytes": len(text)}
        for p, fn in PARSERS.items():
            refused, msg, named = fn(kind, text)
            row[p] = {"refused": refused, "message": msg[:160], "one_line": "\n" not in msg, "named": named,
                      "seconds": _time(fn, kind, text, repeats)}
        rows.append(row)
    return rows


def _mark(c: dict) -> str:
    return "refused" if c["refused"] else "ACCEPTED"


def summarise(rows: list[dict], title: str) -> dict:
    print(f"\n## {title}: {len(rows)} inputs")
    libs = ("pydantic", "msgspec")
    out = {}
    for lib in libs:
        missed = [r["input"] for r in rows if r["ctnet"]["refused"] and not r[lib]["refused"]]
        extra = [r["input"] for r in rows if not r["ctnet"]["refused"] and r[lib]["refused"]]
        unnamed = [r["input"] for r in rows if r[lib]["refused"] and not (r[lib]["one_line"] and r[lib]["named"])]
        ratio = statistics.median(r[lib]["seconds"] / r["ctnet"]["seconds"] for r in rows)
        out[lib] = {"accepted_where_ctnet_refuses": missed, "refused_where_ctnet_accepts": extra,
                    "refusal_not_named_one_line": unnamed, "median_time_vs_ctnet": ratio}
        print(f"{lib}: accepts {len(missed)} that ctnet refuses, refuses {len(extra)} that ctnet accepts, "
              f"{len(unnamed)} refusals not a named one-line error{' (' + '; '.join(unnamed) + ')' if unnamed else ''}; "
              f"parse time vs ctnet (median ratio) {ratio:.2f}×"
              + (" (ctnet's includes writing the file read_cache reads)" if rows[0]["kind"] == "rd-cache" else ""))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=300, help="fuzzed manifests (default 300)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    print(f"pydantic {pydantic.VERSION}, msgspec {msgspec.__version__}; the machine is loaded (training), "
          "so times are ratios measured in this run")

    named = (run(manifest_inputs(), "manifest", args.repeats) + run(meta_inputs(), "checkpoint-meta", args.repeats)
             + run(rd_inputs(), "rd-cache", args.repeats))
    print(f"\n{'input':52} {'ctnet':9} {'pydantic':9} {'msgspec':9}  the library's error, when ctnet's differs in outcome")
    for r in named:
        cells = [_mark(r[p]) for p in PARSERS]
        odd = [f"{p}: {r[p]['message'][:90] or '(accepted)'}" for p in ("pydantic", "msgspec")
               if r[p]["refused"] != r["ctnet"]["refused"]]
        print(f"{r['input'][:52]:52} {cells[0]:9} {cells[1]:9} {cells[2]:9}  {' | '.join(odd)}")
    print("\nthe one-line errors, side by side:")
    for r in named:
        if r["input"] in WORDING:
            print(f"  {r['input']}:\n" + "\n".join(f"    {p:8} {r[p]['message'][:150]}" for p in PARSERS))
    fuzz = run(fuzz_inputs(args.fuzz), "manifest", 1)
    summary = {"named": summarise([r for r in named if r["kind"] == "manifest"], "manifest, named hostile inputs"),
               "meta": summarise([r for r in named if r["kind"] == "checkpoint-meta"], "checkpoint metadata"),
               "rd": summarise([r for r in named if r["kind"] == "rd-cache"], "rate–distortion cache points"),
               "fuzz": summarise(fuzz, f"manifest, fuzzed ({args.fuzz})")}
    digest_only = [r for r in fuzz if r["ctnet"]["refused"] and "digest" in r["ctnet"]["message"]]
    print(f"  of the fuzzed manifests ctnet refuses, {len(digest_only)} are refused by the digest "
          f"(a whole-document check no field schema has)")

    print("\n## large inputs (under the 32 MiB cap, one field far past its bound): peak memory the parse adds")
    large = []
    for name, text in large_inputs():
        row = {"input": name, "bytes": len(text)}
        for p, fn in PARSERS.items():
            refused, msg, _ = fn("manifest", text)
            row[p] = {"refused": refused, "message": msg[:120], "seconds": _time(fn, "manifest", text, 1),
                      "peak_mb": peak_memory(p, "manifest", text)}
        large.append(row)
        print(f"{name} ({len(text) / 1e6:.1f} MB of text): " + "; ".join(
            f"{p} {_mark(row[p])} in {row[p]['seconds']:.2f} s, +{row[p]['peak_mb']:.0f} MB" for p in PARSERS))

    print("\n## sizes bounded by the model (every parser accepts the field; ctnet's reader bounds it by the "
          "network's shapes)")
    sized = []
    for name, text in model_sized_inputs():
        row = {"input": name}
        for p in ("ctnet", "pydantic", "msgspec", "ctnet reader"):
            refused, msg, _ = ALL[p]("manifest", text)
            row[p] = {"refused": refused, "message": msg[:120]}
        row["ctnet reader"]["peak_mb"] = peak_memory("ctnet reader", "manifest", text)
        sized.append(row)
        print(f"{name}: " + "; ".join(f"{p} {_mark(row[p])}" for p in ("ctnet", "pydantic", "msgspec"))
              + f"; ctnet reader {_mark(row['ctnet reader'])} (+{row['ctnet reader']['peak_mb']:.0f} MB): "
              f"{row['ctnet reader']['message'][:90]}")

    kept = json.dumps({**json.loads(GOOD_META), "note": "kept"}).encode()
    keeps = {"ctnet": CheckpointMeta.from_json(kept).other.get("note") == "kept",
             "pydantic": (PCheckpointMeta.model_validate_json(kept).model_extra or {}).get("note") == "kept",
             "msgspec": "note" in msgspec.structs.asdict(msgspec.json.decode(kept, type=SCheckpointMeta))}
    print("\na checkpoint's unknown top-level field kept (CheckpointMeta.other): "
          + ", ".join(f"{p} {'yes' if v else 'NO'}" for p, v in keeps.items()))

    print("\n## verdict (adopt a library only if it refuses all ctnet refuses, in named one-line errors, "
          "bounding a container before it builds it)")
    adopt = []
    for lib in ("pydantic", "msgspec"):
        missed = [f"{part}: {name}" for part in ("named", "meta", "rd")
                  for name in summary[part][lib]["accepted_where_ctnet_refuses"]]
        unnamed = [name for part in ("named", "meta", "rd") for name in summary[part][lib]["refusal_not_named_one_line"]]
        # a parser that stops at the bound holds little beyond the text; one that builds the value first, more
        early = all(r[lib]["peak_mb"] < 0.25 * r["bytes"] / 2**20 for r in large)
        peaks = ", ".join(f"+{r[lib]['peak_mb']:.0f}" for r in large)
        ours = ", ".join(f"+{r['ctnet']['peak_mb']:.0f}" for r in large)
        print(f"{lib}: accepts {len(missed)} named input(s) ctnet refuses{': ' + '; '.join(missed) if missed else ''}; "
              f"{len(unnamed)} refusal(s) not a named one-line error; a container's bound checked before it is "
              f"built: {'yes' if early else 'no'} (peak {peaks} MB against ctnet's {ours} MB)")
        if not missed and not unnamed and early:
            adopt.append(lib)
    print("=> " + (f"adopt {adopt[0]}" if adopt else "keep ctnet's validators: neither library meets all three"))
    RD_FILE.unlink(missing_ok=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"named": named, "fuzz": fuzz, "large": large, "sized": sized,
                                             "unknown_field_kept": keeps, "summary": summary},
                                            indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
