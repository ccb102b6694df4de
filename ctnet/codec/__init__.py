"""The H.265 codec: the export grid as frames (``plan``, ``frames``), the side tables
(``tables``), the typed manifest (``manifest``), the codec registry (``registry``), frames →
streams (``video``, the only module that imports PyAV; ``planes`` for xz/zstd), and bundles
(``bundle``; format v1 is read by ``v1``). Its commands live in :mod:`ctnet.cli.codec`.

Importing this package does not import PyAV: training machines without it can still import
``ctnet`` and its CLI.
"""
from __future__ import annotations


def __getattr__(name: str):
    if name in ("encode_model", "read_bundle", "write_bundle", "decode_files", "EncodeSettings", "BundleError"):
        from . import bundle
        return getattr(bundle, name)
    raise AttributeError(name)


__all__ = ["BundleError", "EncodeSettings", "decode_files", "encode_model", "read_bundle", "write_bundle"]
