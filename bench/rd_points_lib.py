"""bench/strict_readers.py's prototypes, the part they share: ctnet.rd's point messages, which
neither library's errors carry (the words of each bound, the value quoted, a dict key named),
and how tests/test_rd.py runs on a prototype (:class:`Swap`, a pytest plugin that swaps
``RDPoint``'s checks). Nothing in ctnet imports this.
"""

from __future__ import annotations

from typing import Any

from ctnet import rd as RD
from ctnet.errors import RDError

SHORT, TEXT = RD._SHORT, RD._TEXT
ORDER = ("method", "codec", "settings", "label", "bytes", "ratio", "acc1", "acc5", "images", "device",
         "encode_seconds", "decode_seconds", "source_sha256", "data", "limit", "measured", "load_average",
         "files", "streams", "notes")
OPTIONAL = ("files", "streams", "notes")


# --- the messages (both prototypes': the library errors carry no such words)
WHAT = {"method": f"one of {', '.join(RD.METHODS)}", "codec": f"a one-line string of at most {SHORT} characters",
        "settings": "an object of at most 64 entries", "label": f"a one-line string of at most {TEXT} characters",
        "bytes": "an integer in 1..2**53", "ratio": "a finite number > 0", "acc1": "a number in 0..100",
        "acc5": "a number in 0..100", "images": "an integer in 0..2**53",
        "device": f"a one-line string of at most {TEXT} characters", "encode_seconds": "a finite number ≥ 0",
        "decode_seconds": "a finite number ≥ 0", "source_sha256": "64 lowercase hex digits (a SHA-256)",
        "data": f"a one-line string of at most {TEXT} characters", "limit": "an integer in 1..2**53 or null",
        "measured": f"a one-line string of at most {SHORT} characters",
        "load_average": "a finite number ≥ 0 or null", "files": "an object of at most 256 entries",
        "streams": "a list of at most 256 objects", "notes": "an object"}
KEY_WHAT = f"named by one-line strings of at most {TEXT} characters"


def nested_what(name: str, value: Any) -> str:
    """What an entry of a container field must be."""
    if name == "settings":
        return "a string, number, boolean or null" + (f" of at most {SHORT} characters" if isinstance(value, str) else "")
    return "a byte count in 0..2**53" if name == "files" else "an object"


def message(name: str, at: str, what: str, value: Any) -> RDError:
    return RDError(f"'{name}{at}' must be {what}, not {RD._show(value)}")


def at_of(name: str, key: Any) -> str:
    return f"[{RD.json.dumps(key)}]" if name == "files" else f"[{key}]" if name == "streams" else f".{key}"


class Refusal(Exception):
    """ctnet's error from inside a library's validation: not a ValueError, so neither wraps it."""

    def __init__(self, error: RDError):
        super().__init__(str(error))
        self.error = error


def point_level(d: Any) -> None:
    """What ctnet.rd refuses before any field (and the library's order would change)."""
    if not isinstance(d, dict):
        raise RDError(f"a point must be an object, not {RD._show(d)}")


def free_form(name: str, v: Any) -> Any:
    """streams / notes: ctnet.rd's bounded-JSON walk (depth, node count, finite numbers)."""
    try:
        return RD._CHECKS[name](v)
    except RD._Invalid as exc:
        raise Refusal(message(name, exc.at, exc.what, exc.value)) from None


def printable(v: str) -> bool:
    return v.isprintable()




# --- how tests/test_rd.py runs on a prototype: RDPoint's checks swapped (a pytest plugin)
class Swap:
    def __init__(self, check):
        self.check = check

    def pytest_sessionstart(self, session):
        check = self.check

        def post_init(point):
            values = check({k: v for k, v in vars(point).items() if not (k in OPTIONAL and v is None)})
            for k, v in values.items():
                object.__setattr__(point, k, v)

        def from_dict(cls, d, where):
            try:
                values = check(d)
            except RDError as exc:
                raise RDError(f"{where}: {exc}") from None
            return cls(**{k: v for k, v in values.items() if not (k in OPTIONAL and v is None)})

        RD.RDPoint.__post_init__ = post_init  # type: ignore[method-assign]
        RD.RDPoint.from_dict = classmethod(from_dict)  # type: ignore[method-assign,assignment]




def check(reader: str):
    """The point check of prototype ``reader`` ("msgspec" or "pydantic")."""
    import importlib
    return importlib.import_module(f"rd_points_{reader}").check
