"""What every ``ctnet`` command shares: one-line errors (exit 2 for what the user can fix,
1 for a bug, argparse's own errors included), warnings as one line, and the evaluation flags."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Callable, NoReturn

from ..api import ARCHITECTURES, MAX_BATCH_SIZE, MAX_WORKERS, CtnetError, UnverifiedWarning, architecture_refusal

BUG_EXIT = 1  # anything is_user_error does not accept is a bug


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``ctnet eval: error: …``, exit 2) instead of the
    usage block before them; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(ValueError(message))} (--help lists the options)\n")


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``lo..hi`` (no upper bound when ``hi`` is None)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text[:40]!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value if abs(value) < 10**12 else 'a huge number'} is outside "
                                             f"{lo}..{hi if hi is not None else ''}".rstrip("."))
        return value
    parse.__name__ = "integer"
    return parse


def add_eval_args(p: argparse.ArgumentParser, *, workers: int | None = None, workers_help: str | None = None) -> None:
    """The flags of every command that evaluates on a val split: --limit, --device,
    --batch-size, --workers (default: up to 4, no more than the cores), --json."""
    p.add_argument("--limit", type=int_in(1), default=None, help="evaluate N class-balanced val images (default all)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE), default=None,
                   help="images per batch (default 256 at 128 px, as many pixels at other image sizes)")
    p.add_argument("--workers", type=int_in(0, MAX_WORKERS),
                   default=min(4, os.cpu_count() or 1) if workers is None else workers,
                   help=(workers_help or "data loader workers") + f" (0..{MAX_WORKERS})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_arch_arg(p: argparse.ArgumentParser, *, default: str | None, help: str) -> None:
    """``--arch NAME``: a registered architecture (``ctnet.api.ARCHITECTURES``); any other
    name is refused with the reason (a vision transformer, an unregistered CNN, a typo)."""
    def architecture(name: str) -> str:
        if name not in ARCHITECTURES:
            raise argparse.ArgumentTypeError(architecture_refusal(name))
        return name
    p.add_argument("--arch", default=default, type=architecture, metavar="NAME",
                   help=f"{help}: {', '.join(ARCHITECTURES)}")


_PACKAGE = str(Path(__file__).resolve().parents[1])  # ctnet/


def _one_line(exc: BaseException) -> str:
    """The message on one line (a worker's traceback or torch's advice must not flood the
    terminal); long messages are cut."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines) if len(lines) <= 3 else lines[0]
    return (text[:500] + "…") if len(text) > 500 else (text or type(exc).__name__)


def _fail(prog: str, exc: BaseException) -> int:
    print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
    return 2


def _raised_by_ctnet(exc: BaseException) -> bool:
    """Whether the innermost Python frame that raised ``exc`` is ctnet's own code."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and os.path.abspath(last.tb_frame.f_code.co_filename).startswith(_PACKAGE + os.sep)


def is_user_error(exc: BaseException) -> bool:
    """A CtnetError, an OSError (missing file, permission, disk full) or a ValueError that
    ctnet raised itself about its input; not a ValueError from deep inside torch or PIL."""
    if isinstance(exc, (CtnetError, OSError)):
        return True
    return isinstance(exc, ValueError) and _raised_by_ctnet(exc)


def _bug(prog: str, exc: BaseException) -> int:
    if os.environ.get("CTNET_DEBUG"):
        traceback.print_exception(exc)
    what = "out of memory" if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower() else "internal error"
    hint = " (a smaller --batch-size or --device cpu may fit)" if what == "out of memory" else ""
    print(f"{prog}: {what}: {type(exc).__name__}: {_one_line(exc)}{hint} — this is a bug or a limit ctnet does "
          f"not check; please report it with the command line (CTNET_DEBUG=1 prints the traceback)", file=sys.stderr)
    return BUG_EXIT


def _warn(prog: str, shown):
    """warnings.showwarning for a command: ctnet's own warnings as one line (others as before)."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UnverifiedWarning) or os.path.abspath(filename).startswith(_PACKAGE + os.sep):
            print(f"{prog}: warning: {_one_line(Exception(str(message)))}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)
    return show


def _guarded(prog: str, fn: Callable[[], int]) -> int:
    """Run a command: a user error prints one line and exits 2, a bug one line and exits 1;
    a warning is one line on stderr, printed when it is raised."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warn(prog, warnings.showwarning)
            warnings.simplefilter("always", UnverifiedWarning)
            return fn()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every exception ends here: a one-line error or a bug report
        if is_user_error(exc):
            return _fail(prog, exc)
        return _bug(prog, exc)
