"""The one strict JSON reader that the checkpoint, manifest and rate–distortion parsers share:
text → value, where every way JSON text can fail (bad syntax or encoding, a NaN where a format
refuses constants, an integer of thousands of digits, nesting deep enough to overflow the
stack) becomes one :class:`JSONInvalid` the parser words as its own named one-line error. Sizes are
bounded by the callers before any text is read or parsed; their field checks bound every
integer before arithmetic touches it. Part of the floor: it imports nothing from ctnet.
"""
from __future__ import annotations

import json
from typing import Any


class JSONInvalid(ValueError):
    """Why a JSON text cannot be used: ``reason`` is "syntax" (not JSON, not UTF-8, a refused
    constant), "unusable" (valid JSON Python will not hold, e.g. an integer of more than 4300
    digits) or "nested" (too deep to parse); ``cause`` names the underlying exception and
    ``detail`` is its message's first line, at most 120 characters."""

    def __init__(self, reason: str, cause: BaseException):
        lines = str(cause).strip().splitlines()
        self.reason, self.cause, self.detail = reason, type(cause).__name__, (lines[0] if lines else "")[:120]
        super().__init__(f"{reason}: {self.cause}: {self.detail}")


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, *, constants: bool = True) -> Any:
    """Parse ``text`` (bytes: UTF-8). ``constants=False`` refuses NaN, Infinity and -Infinity,
    which JSON does not have. Raises :class:`JSONInvalid`, nothing else."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text) if constants else json.loads(text, parse_constant=_no_constants)
    except RecursionError as exc:
        raise JSONInvalid("nested", exc) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JSONInvalid("syntax", exc) from None
    except ValueError as exc:  # an integer of more than 4300 digits; a refused constant
        raise JSONInvalid("syntax" if not constants and "is not a JSON number" in str(exc) else "unusable", exc) from None


__all__ = ["JSONInvalid", "parse_json"]
