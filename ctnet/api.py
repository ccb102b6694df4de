"""What the app and the CLI call: load any model source, evaluate it, encode/decode it.

A *model source* is a checkpoint file (safetensors or a weights-only ``.pt``) or a bundle
directory written by ``ctnet encode``.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .checkpoint import load_model
from .data import load_split
from .errors import UnverifiedWarning
from .evaluate import evaluate, resolve_device
from .types import LoadedModel

if TYPE_CHECKING:  # the codec imports PyAV; loading and training must not need it
    from .codec.bundle import EncodeResult


def is_bundle(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


def load_any(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(model in eval mode, metadata) of a checkpoint file or a bundle directory."""
    if is_bundle(path):
        from .codec.bundle import read_bundle  # the codec needs PyAV; training does not
        return read_bundle(path)
    return load_model(path)


def load(path: str | os.PathLike) -> LoadedModel:
    """A checkpoint file or a bundle directory, loaded: model, metadata, kind of source, path."""
    model, meta = load_any(path)
    return LoadedModel(model, meta, "bundle" if is_bundle(path) else "checkpoint", Path(path))


def evaluate_path(path, data, *, limit: int | None = None, device: str = "auto", batch_size: int | None = None,
                  workers: int = 4, progress=None, confusion: bool = False) -> dict:
    model, meta = load_any(path)
    return evaluate_model(model, meta, data, limit=limit, device=device, batch_size=batch_size,
                          workers=workers, progress=progress, confusion=confusion)


def evaluate_model(model: nn.Module, meta: dict, data, *, limit: int | None = None, device: str = "auto",
                   batch_size: int | None = None, workers: int = 4, progress=None, confusion: bool = False) -> dict:
    """Top-1/top-5 on ``data``'s val split with the labels the model was trained with
    (``batch_size`` None: ``ctnet.evaluate.eval_batch_size`` of the model's image size)."""
    dev = resolve_device(device)
    split = load_split(data, "val", num_classes=int(meta["model"]["num_classes"]),
                       size=int(meta.get("image_size", 128)), limit=limit)
    model = model.to(dev)
    with torch.no_grad():
        result = evaluate(model, split, device=dev, batch_size=batch_size, workers=workers,
                          progress=progress, confusion=confusion)
    _check_against_recorded(meta, result)
    return result


def _check_against_recorded(meta: dict, result: dict) -> None:
    """Warn when top-1 is far below what the model's training recorded for it (a checkpoint's
    ``metrics``, a bundle's ``source.metrics``): a file edited in a way its own checks cannot
    see (a format-v1 manifest, a bundle written before the model check relabelled with its
    digest rewritten) shows here. Far: 15 points, or 4 standard errors on few images."""
    source = meta.get("source")
    metrics = meta.get("metrics")
    if not isinstance(metrics, dict) and isinstance(source, dict):
        metrics = source.get("metrics")
    recorded = metrics.get("acc1") if isinstance(metrics, dict) else None
    n = int(result.get("images", 0))
    if not isinstance(recorded, (int, float)) or isinstance(recorded, bool) or not 0 < recorded <= 100 or n < 20:
        return
    p = recorded / 100
    margin = max(15.0, 400 * math.sqrt(max(p * (1 - p), 0.01) / n))
    if result["acc1"] < recorded - margin:
        warnings.warn(UnverifiedWarning(
            f"top-1 {result['acc1']:.2f} % on {n} images is {recorded - result['acc1']:.1f} points below the "
            f"{recorded:.2f} % its training recorded: on the data it was trained on, that means the model is not "
            f"the one its file describes (edited or damaged)"), stacklevel=2)


# --- codec: encode/decode without touching files ------------------------------------------------

def encode(model: nn.Module, meta: dict, settings=None, *, progress=None, **overrides) -> EncodeResult:
    """Encode a loaded model as a format-v2 bundle (H.265 by default) in memory and decode it back.

    ``settings`` is a :class:`ctnet.codec.manifest.EncodeSettings` (or a dict of its fields);
    keyword overrides (``crf=20``, ``bit_depth=10``, ``preset="fast"`` …) replace fields;
    ``progress(frames done, frames in all)`` is called as frames are coded. ``meta`` of a
    decoded bundle carries its grid, so re-encoding it codes exactly the same levels.
    Returns a :class:`ctnet.codec.bundle.EncodeResult`: ``files`` (name → bytes, what
    ``write_encoded`` puts on disk), ``manifest``, ``model`` (decoded, eval mode), ``layers``
    [{name, kind, shape, frames, coded_frames, bytes, nonzero, entropy_bits, bits_per_nonzero,
    entropy_bits_per_nonzero, max_abs_error, max_half_step}], ``streams`` [{file, kind, height,
    width, frames, bytes, frame_bytes, params, options, workaround}], ``frames`` (the coded
    frames' pixels, (n, S, S)), ``frame_info`` (per plan frame: layer, coded, bytes, parts:
    which planes, frequencies, rows and columns it holds), ``seconds``; and ``total_bytes``,
    ``ratio``, ``digest``, ``bits_per_nonzero``, ``entropy_bits_per_nonzero``,
    ``metadata_bytes`` …; ``summary()`` is its JSON form.
    """
    from dataclasses import replace

    from .codec.manifest import EncodeSettings
    from .codec.bundle import encode_model
    if settings is None:
        settings = EncodeSettings()
    elif isinstance(settings, dict):
        settings = EncodeSettings(**settings)
    settings = replace(settings, **overrides) if overrides else settings
    return encode_model(model, meta, settings, progress=progress)


def write_encoded(result: EncodeResult, dest: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write an :func:`encode` result as a bundle directory (atomically)."""
    from .codec.bundle import write_bundle
    return write_bundle(result.files, dest, overwrite=overwrite)


def decode(source) -> dict:
    """Decode a bundle directory, or the ``files`` of an :func:`encode` result →
    ``model``, ``meta`` (the manifest), ``total_bytes``, ``fp32_bytes``, ``ratio``, ``seconds``."""
    import time

    from .codec.bundle import decode_files, read_bundle
    t0 = time.perf_counter()
    model, meta = decode_files(source) if isinstance(source, dict) else read_bundle(source)
    b = meta["bundle"]
    return {"model": model, "meta": meta, "total_bytes": b["total_bytes"], "fp32_bytes": b["fp32_bytes"],
            "ratio": b["ratio"], "seconds": time.perf_counter() - t0}


# --- plain export: a decoded model as the torchvision network it computes ------------------------

def decode_plain(source) -> nn.Module:
    """A bundle directory, the ``files`` of an :func:`encode` result or a checkpoint file →
    the plain torchvision ResNet (eval mode, CPU) with the materialised weights; it needs
    no ctnet to run (see ``ctnet.plain``)."""
    from .plain import to_torchvision
    model, meta = (decode(source)[k] for k in ("model", "meta")) if isinstance(source, dict) else load_any(source)
    return to_torchvision(model, meta.get("model", {}).get("arch"))
