"""ctnet.rd's point checks on msgspec (Structs, ``Meta`` bounds, ``forbid_unknown_fields``), with
ctnet's messages: a prototype bench/strict_readers.py measures; nothing in ctnet imports it."""
import math
import re
from typing import Annotated, Any, Literal, Optional, Union

import msgspec
from rd_points_lib import KEY_WHAT, ORDER, WHAT, Refusal, at_of, free_form, message, nested_what, point_level, printable

from ctnet import rd as RD
from ctnet.errors import RDError
from ctnet.limits import MAX_INT

SHORT, TEXT = RD._SHORT, RD._TEXT


def _mi(lo: int, hi: int = MAX_INT):
    return Annotated[int, msgspec.Meta(ge=lo, le=hi)]


MShort = Annotated[str, msgspec.Meta(max_length=SHORT)]
MText = Annotated[str, msgspec.Meta(max_length=TEXT)]
MNonNeg = Annotated[float, msgspec.Meta(ge=0)]
MScalar = Union[bool, Annotated[int, msgspec.Meta(ge=1 - 2**63, le=2**63 - 1)], float, MShort, None]


class MPoint(msgspec.Struct, forbid_unknown_fields=True):
    method: Literal[RD.METHODS]  # type: ignore[valid-type]
    codec: MShort
    settings: Annotated[dict[MText, MScalar], msgspec.Meta(max_length=64)]
    label: MText
    bytes: _mi(1)  # type: ignore[valid-type]
    ratio: Annotated[float, msgspec.Meta(gt=0)]
    acc1: Annotated[float, msgspec.Meta(ge=0, le=100)]
    acc5: Annotated[float, msgspec.Meta(ge=0, le=100)]
    images: _mi(0)  # type: ignore[valid-type]
    device: MText
    encode_seconds: MNonNeg
    decode_seconds: MNonNeg
    source_sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    data: MText
    limit: Optional[_mi(1)]  # type: ignore[valid-type]
    measured: MShort
    load_average: Optional[MNonNeg]
    files: Optional[Annotated[dict[MText, _mi(0)], msgspec.Meta(max_length=256)]] = None  # type: ignore[valid-type]
    streams: Optional[Annotated[list[dict[str, Any]], msgspec.Meta(max_length=256)]] = None
    notes: Optional[dict[str, Any]] = None

    def __post_init__(self):  # what Meta cannot say: one-line text, finite floats, bounded free-form JSON
        for name in ("codec", "label", "device", "data", "measured"):
            if not printable(getattr(self, name)):
                raise Refusal(message(name, "", WHAT[name], getattr(self, name)))
        for name in ("ratio", "acc1", "acc5", "encode_seconds", "decode_seconds", "load_average"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise Refusal(message(name, "", WHAT[name], v))
        for k, v in self.settings.items():
            if not printable(k):
                raise Refusal(message("settings", "", KEY_WHAT, k))
            if (isinstance(v, str) and not printable(v)) or (isinstance(v, float) and not math.isfinite(v)):
                raise Refusal(message("settings", f".{k}", nested_what("settings", v), v))
        for k in self.files or {}:
            if not printable(k):
                raise Refusal(message("files", "", KEY_WHAT, k))
        for name in ("streams", "notes"):
            if getattr(self, name) is not None:
                setattr(self, name, free_form(name, getattr(self, name)))


_PATH = re.compile(r" - at `\$(.*)`$")


def _m_translate(exc: msgspec.ValidationError, d: dict) -> RDError:
    """msgspec's message has a path (a dict key as '[...]') and no value: find both in ``d``."""
    text = str(exc)
    unknown = re.match(r"Object contains unknown field `(.*)`", text)
    if unknown:
        return RDError(f"{RD._show(unknown.group(1))} is not a field of an rd point")
    missing = re.match(r"Object missing required field `(.*)`", text)
    if missing:
        return RDError(f"'{missing.group(1)}' is missing")
    path = _PATH.search(text)
    steps = re.findall(r"\.(\w+)|\[(\d+|\.\.\.)\]", path.group(1) if path else "")
    name = steps[0][0]
    if len(steps) == 1:
        return message(name, "", WHAT[name], d[name])
    container, step = d[name], steps[1][1]
    if step == "...":  # which key? each entry of the dict checked alone
        entry = MPoint.__annotations__[name]
        types = {"settings": MScalar, "files": _mi(0)}
        if name in types and isinstance(container, dict):
            for k, v in container.items():
                try:
                    msgspec.convert(v, types[name], strict=True)
                except msgspec.ValidationError:
                    return message(name, at_of(name, k), nested_what(name, v), v)
        return message(name, "", WHAT[name] if entry else KEY_WHAT, container)
    return message(name, at_of(name, int(step)), nested_what(name, container[int(step)]), container[int(step)])


def check(d: Any) -> dict:
    point_level(d)
    try:
        p = msgspec.convert(d, MPoint, strict=True)
    except msgspec.ValidationError as exc:
        raise _m_translate(exc, d) from None
    except Refusal as r:
        raise r.error from None
    return {name: getattr(p, name) for name in ORDER}
