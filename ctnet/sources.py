"""Model sources — a checkpoint file (safetensors or a weights-only ``.pt``) or a bundle
directory written by ``ctnet encode`` — loaded as one typed :class:`ctnet.types.LoadedModel`.

The one loader below the door (``ctnet.api`` re-exports it): training's ``--init-from`` and
the rate–distortion sweeps load through it too, so what a source is is decided in one place.
"""
from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import check_expected, load_model
from .types import LoadedModel


def is_bundle(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


def load_any(path: str | os.PathLike, *, expected_arch: str | None = None,
             expected_block_size: int | None = None) -> LoadedModel:
    """A checkpoint file or a bundle directory, loaded (model in eval mode). ``expected_arch``
    / ``expected_block_size``: refuse a model of another architecture or DCT block size (a
    checkpoint before its weights are built)."""
    if not is_bundle(path):
        model, meta = load_model(path, expected_arch=expected_arch, expected_block_size=expected_block_size)
        return LoadedModel.of(model, meta, "checkpoint", Path(path))
    loaded = read_bundle(path)
    check_expected(loaded.spec, str(path), expected_arch=expected_arch, expected_block_size=expected_block_size)
    return loaded


def read_bundle(path: str | os.PathLike) -> LoadedModel:
    """A bundle directory, decoded (PyAV is imported when a video stream is decoded)."""
    from .codec.bundle import read_bundle as decode
    model, meta = decode(path)
    return LoadedModel.of(model, meta, "bundle", Path(path))


def decode_files(files: dict[str, bytes]) -> LoadedModel:
    """A bundle held in memory (file name → bytes, e.g. an encode's ``files``), decoded."""
    from .codec.bundle import decode_files as decode
    model, meta = decode(files)
    return LoadedModel.of(model, meta, "bundle", None)


__all__ = ["decode_files", "is_bundle", "load_any", "read_bundle"]
