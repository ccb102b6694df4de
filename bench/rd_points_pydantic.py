"""ctnet.rd's point checks on pydantic v2 (strict, ``extra="forbid"``, ``Field`` bounds), with
ctnet's messages: a prototype bench/strict_readers.py measures; nothing in ctnet imports it."""
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from rd_points_lib import KEY_WHAT, ORDER, WHAT, Refusal, at_of, free_form, message, nested_what, point_level, printable

from ctnet import rd as RD
from ctnet.errors import RDError
from ctnet.limits import MAX_INT

SHORT, TEXT = RD._SHORT, RD._TEXT


def _line(v: str) -> str:
    if not printable(v):
        raise ValueError("not printable")
    return v


def _pi(lo: int, hi: int = MAX_INT):
    return Annotated[int, Field(ge=lo, le=hi)]


PShort = Annotated[str, Field(max_length=SHORT), AfterValidator(_line)]
PText = Annotated[str, Field(max_length=TEXT), AfterValidator(_line)]
PNonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PScalar = Union[bool, Annotated[int, Field(gt=-2**63, lt=2**63)], Annotated[float, Field(allow_inf_nan=False)],
                PShort, None]


class PPoint(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    method: Literal[RD.METHODS]  # type: ignore[valid-type]
    codec: PShort
    settings: Annotated[dict[PText, PScalar], Field(max_length=64)]
    label: PText
    bytes: _pi(1)  # type: ignore[valid-type]
    ratio: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    acc1: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
    acc5: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
    images: _pi(0)  # type: ignore[valid-type]
    device: PText
    encode_seconds: PNonNeg
    decode_seconds: PNonNeg
    source_sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
    data: PText
    limit: Optional[_pi(1)]  # type: ignore[valid-type]
    measured: PShort
    load_average: Optional[PNonNeg]
    files: Optional[Annotated[dict[PText, _pi(0)], Field(max_length=256)]] = None  # type: ignore[valid-type]
    streams: Annotated[Optional[Annotated[list[dict[str, Any]], Field(max_length=256)]],
                       AfterValidator(lambda v: free_form("streams", v))] = None
    notes: Annotated[Optional[dict[str, Any]], AfterValidator(lambda v: free_form("notes", v))] = None


def _p_translate(exc: ValidationError, d: dict) -> RDError:
    e = exc.errors(include_url=False)[0]
    loc, kind = e["loc"], e["type"]
    if kind == "extra_forbidden":
        return RDError(f"{RD._show(loc[0])} is not a field of an rd point")
    if kind == "missing":
        return RDError(f"'{loc[0]}' is missing")
    name = str(loc[0])
    if len(loc) == 1:
        return message(name, "", WHAT[name], d[name])
    key = loc[1]
    if "[key]" in loc:  # a dict key failed (pydantic: (field, key, '[key]'))
        return message(name, "", KEY_WHAT, key)
    value = d[name][key]
    return message(name, at_of(name, key), nested_what(name, value), value)


def check(d: Any) -> dict:
    point_level(d)
    try:
        p = PPoint.model_validate(d)
    except ValidationError as exc:
        raise _p_translate(exc, d) from None
    except Refusal as r:
        raise r.error from None
    return {name: getattr(p, name) for name in ORDER}
