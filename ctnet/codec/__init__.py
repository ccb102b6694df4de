"""The H.265 codec: tensors → frames (``frames``), frames → HEVC streams (``video``, the only
module that imports PyAV), streams + manifest → a bundle directory (``bundle``), and the
``ctnet encode/decode/profile/export`` commands (``cli``).

Importing this package does not import PyAV: training machines without it can still import
``ctnet`` and its CLI.
"""
from __future__ import annotations

from typing import Callable


def command(name: str) -> Callable[[list[str] | None], int]:
    """A ``main(argv)`` that imports ``ctnet.codec.cli`` (and so PyAV) only when run."""
    def main(argv: list[str] | None = None) -> int:
        from . import cli
        return getattr(cli, name)(argv)
    main.__name__ = name
    return main


def __getattr__(name: str):
    if name in ("encode_model", "read_bundle", "write_bundle", "decode_files", "EncodeSettings", "BundleError"):
        from . import bundle
        return getattr(bundle, name)
    raise AttributeError(name)


__all__ = ["BundleError", "EncodeSettings", "command", "decode_files", "encode_model", "read_bundle", "write_bundle"]
