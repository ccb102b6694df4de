"""``ctnet <command>``: the command line, a layer of its own over the library (no library
module imports it). Every command is a ``main(argv)`` so tests call it in-process; a
command's module (and so PyAV, for the codec's) is imported only when that command runs.

Errors the user can fix (bad flags, bad files, bad data) print one line naming the problem
and exit with status 2; a bug prints one line and exits 1 (``CTNET_DEBUG=1``: traceback).
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable

from .common import _guarded  # noqa: F401  (the guard every command runs in)


def _command(module: str, name: str) -> Callable[[list[str] | None], int]:
    def main(argv: list[str] | None = None) -> int:
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)(argv)
    main.__name__ = name
    return main


COMMANDS: dict[str, Callable[[list[str] | None], int]] = {
    "summary": _command("core", "summary_main"),
    "train": _command("core", "train_main"),
    "eval": _command("core", "eval_main"),
    "download": _command("core", "download_main"),
    # the codec's commands (ctnet/cli/codec.py) import PyAV only when run
    "encode": _command("codec", "encode_main"),
    "decode": _command("codec", "decode_main"),
    "profile": _command("codec", "profile_main"),
    "export": _command("codec", "export_main"),
    "rd": _command("rd", "rd_main"),  # rate–distortion curves of every codec (ctnet/rd.py)
    "verify": _command("codec", "verify_main"),  # a bundle's digest and members, without decoding
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        from ..api import VERSION
        print(f"ctnet {VERSION}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(f"usage: ctnet <command> [options]\ncommands: {names}\n'ctnet <command> --help' for details",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])
