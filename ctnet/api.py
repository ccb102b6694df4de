"""The one door into the library for the CLI and the app: load any model source, evaluate
it, encode/decode it, export it, sweep it; and the tables and errors their forms and flags
are built from. ``ctnet.inspect`` and ``ctnet.runs`` are the read-only views beside it; the
CLI and the app import nothing else of ctnet (``tests/test_structure.py`` holds them to it).

A *model source* is a checkpoint file (safetensors or a weights-only ``.pt``) or a bundle
directory written by ``ctnet encode``; loaded, it is a typed :class:`LoadedModel`.
Importing this module loads no PyAV: the codec's streams import it when they code.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .baselines import nncodec_status
from .bitalloc import CANDIDATES as AUTO_BITS
from .bitalloc import DEFAULT_BUDGET, DEFAULT_IMAGES, find_profile, read_layer_map
from .bitalloc import Profile as SensitivityProfile
from .bitalloc import allocate as allocate_layer_bits
from .codec.manifest import BN_MODES, EncodeSettings
from .codec.plan import FRAME_SIZES, ORDERS
from .codec.registry import CODECS, PIX_FMTS, PRESETS, default_codec
from .data import (IMAGENETTE_URLS, class_folders, class_names, dataset_label_map, download_imagenette, label_map,
                   list_images, load_split, split_dir)
from .errors import (AllocationError, BundleError, CheckpointError, ConfigError, CtnetError, DatasetError, DeviceError,
                     PlainExportError, RDError, RunError, TrainingError, UnverifiedWarning, VideoError)
from .evaluate import evaluate, resolve_device
from .limits import BIT_DEPTHS, MAX_BATCH_SIZE, MAX_DITHER, MAX_WORKERS, PIXEL_BIT_DEPTHS
from .models import ARCHITECTURES, ModelSpec, build_model, parameter_summary
from .models import refusal as architecture_refusal
from .plain import check_destination, evaluate_exported, is_exported
from . import __version__ as VERSION
from .rate import RATE_GRIDS
from .rd import DEFAULT_BITS, INT_BITS, LOSSY_CRFS, NNCODEC_QPS, TOLERANCE, Sweep, baseline_jobs, best_at_floor, bundle_jobs
from .rd import Job as RDJob
from .rd import codec_names, data_id, default_cache, full_split_points, matching_points, missing_jobs, reference_point
from .rd import source_hash, sweep
from .rd import frontier as rd_frontier
from .sources import decode_files, is_bundle, load_any, read_bundle
from .train import OPTIMIZERS, TrainConfig, fit
from .types import BundleFacts, LoadedModel

if TYPE_CHECKING:
    from .codec.bundle import EncodeResult


def evaluate_path(path, data, *, limit: int | None = None, device: str = "auto", batch_size: int | None = None,
                  workers: int = 4, progress=None, confusion: bool = False, hits: bool = False) -> dict:
    return evaluate_model(load_any(path), data, limit=limit, device=device, batch_size=batch_size,
                          workers=workers, progress=progress, confusion=confusion, hits=hits)


def evaluate_model(loaded: LoadedModel, data, *, limit: int | None = None, device: str = "auto",
                   batch_size: int | None = None, workers: int = 4, progress=None, confusion: bool = False,
                   hits: bool = False) -> dict:
    """Top-1/top-5 on ``data``'s val split with the labels the model was trained with
    (``batch_size`` None: ``ctnet.evaluate.eval_batch_size`` of the model's image size;
    ``hits``: also each image's top-1 hit, in the split's order, for a paired comparison)."""
    dev = resolve_device(device)
    split = load_split(data, "val", labels=loaded.label_map, num_classes=loaded.num_classes,
                       size=loaded.image_size, limit=limit)
    model = loaded.model.to(dev)
    with torch.no_grad():
        result = evaluate(model, split, device=dev, batch_size=batch_size, workers=workers,
                          progress=progress, confusion=confusion, hits=hits)
    _check_against_recorded(loaded.metrics, result)
    return result


def evaluate_against(path, reference, data, *, limit: int | None = None, device: str = "auto",
                     batch_size: int | None = None, workers: int = 4) -> dict:
    """:func:`evaluate_path` of ``path``, plus ``"against"``: the reference model's top-1 on the
    same images and the change image by image (``ctnet.inspect.paired_delta``: points and its
    95 % interval), which is far tighter than two independent intervals. The two models must
    read the data with the same label map and image size, so that they see the same images
    in the same order."""
    from .inspect import paired_delta
    model, ref = load_any(path), load_any(reference)
    if model.label_map != ref.label_map or model.num_classes != ref.num_classes:
        raise ValueError(f"{reference} reads the data with another label map than {path}: a paired comparison "
                         "needs the same images and labels")
    if model.image_size != ref.image_size:
        raise ValueError(f"{reference} takes {ref.image_size}-px images and {path} {model.image_size}-px ones: a paired "
                         "comparison needs the same images")
    def run(loaded: LoadedModel) -> dict:
        return evaluate_model(loaded, data, limit=limit, device=device, batch_size=batch_size, workers=workers,
                              hits=True)
    result, base = run(model), run(ref)
    d = paired_delta(base.pop("hits"), result.pop("hits"))
    result["against"] = {"reference": str(reference), "acc1": base["acc1"], "acc5": base["acc5"],
                         "delta": d.delta, "low": d.low, "high": d.high, "gained": d.gained, "lost": d.lost}
    return result


def _check_against_recorded(metrics: dict, result: dict) -> None:
    """Warn when top-1 is far below what the model's training recorded for it (a checkpoint's
    ``metrics``, a bundle's ``source.metrics``): a file edited in a way its own checks cannot
    see (a format-v1 manifest, a bundle written before the model check relabelled with its
    digest rewritten) shows here. Far: 15 points, or 4 standard errors on few images."""
    recorded = metrics.get("acc1")
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

def encode(loaded: LoadedModel, settings: EncodeSettings | None = None, *, progress=None, laid_out=None,
           quick: bool = False, **overrides) -> EncodeResult:
    """Encode a loaded model as a format-v2 bundle (H.265 by default) in memory and decode it back.

    ``settings``: an :class:`EncodeSettings` (default: its defaults); keyword overrides
    (``crf=20``, ``bit_depth=10``, ``preset="fast"`` …) replace fields; ``progress(frames
    done, frames in all)`` is called as frames are coded. A decoded bundle carries its grid, so
    re-encoding it codes exactly the same levels.
    Returns a :class:`ctnet.codec.bundle.EncodeResult`: ``files`` (name → bytes, what
    ``write_encoded`` puts on disk), ``manifest``, ``model`` (decoded, eval mode), ``layers``
    [{name, kind, shape, frames, coded_frames, bytes, nonzero, entropy_bits, bits_per_nonzero,
    entropy_bits_per_nonzero, max_abs_error, max_half_step}], ``streams`` [{file, kind, height,
    width, frames, bytes, frame_bytes, params, options, workaround}], ``frames`` (the coded
    frames' pixels, (n, S, S)), ``frame_info`` (per plan frame: layer, coded, bytes, parts:
    which planes, frequencies, rows and columns it holds), ``seconds``; and ``total_bytes``,
    ``ratio``, ``digest``, ``bits_per_nonzero``, ``entropy_bits_per_nonzero``,
    ``metadata_bytes`` …; ``summary()`` is its JSON form. ``laid_out``: :func:`lay_out` of
    this model at settings with the same grid and frame fields, made earlier (the app's worker
    does it on checkpoint selection, and codes a preview and the exact encode from one).
    ``quick``: a lossless HEVC encode codes its frames with x265's own short GOP (the same
    levels, 2.5–3× sooner, a few per cent more bytes: the app's preview; the manifest says so).
    """
    from .codec.bundle import encode_model
    settings = settings if settings is not None else EncodeSettings()
    settings = replace(settings, **overrides) if overrides else settings
    return encode_model(loaded.model, loaded.meta, settings, progress=progress, laid_out=laid_out, quick=quick)


def lay_out(loaded: LoadedModel, settings: EncodeSettings):
    """The model quantised on ``settings``' grid and arranged as its frames, before any coding
    (``ctnet.codec.bundle.layout``), with what every encode of it at ``settings``' codec depth
    and BN mode computes alike made ahead (``bundle.prepare_encode``: its pixels and tables and,
    lossless, the model the stream decodes to and its errors), so that :func:`encode` with
    ``laid_out=`` codes and checks the stream and little else; ``layout_key(settings)`` says
    which encodes can use it. The encodes' bytes and tensors are those of an encode without it."""
    from .codec.bundle import layout, prepare_encode
    settings = settings.validate()
    lay = layout(loaded.model, loaded.meta, settings)
    prepare_encode(loaded.model, loaded.meta, settings, lay)
    return lay


def layout_key(settings: EncodeSettings) -> tuple:
    """The fields of ``settings`` that decide :func:`lay_out` (not codec, preset, rate or BN mode)."""
    from .codec.bundle import layout_key as key
    return key(settings)


def encode_result(report: dict) -> EncodeResult:
    """An :func:`encode` result rebuilt from its ``report()`` (sent by another process)."""
    from .codec.bundle import EncodeResult
    return EncodeResult.from_report(report)


def encoded_model(result: EncodeResult) -> LoadedModel:
    """An :func:`encode` result's decoded model as a loaded bundle (its manifest, files, frames)."""
    facts = {"version": result.manifest["version"], "digest": result.digest, "total_bytes": result.total_bytes,
             "fp32_bytes": result.fp32_bytes, "files": {k: len(v) for k, v in sorted(result.files.items())},
             "frame_bytes": [f["bytes"] or 0 for f in result.frame_info]}
    return LoadedModel.of(result.model, {**result.manifest, "bundle": facts}, "bundle", None)


def check_encode_destination(dest: str | os.PathLike, source: str | os.PathLike) -> None:
    """Refuse, before encoding, a bundle destination that overlaps the bundle ``source`` being
    re-encoded (is it, lies inside it or holds it): replacing it would destroy the input."""
    from .plain import inside
    if os.path.isdir(source) and (inside(dest, source) or inside(source, dest)):
        raise BundleError(f"--out {dest} and the bundle {source} being encoded overlap; write the new bundle beside "
                          f"it, not in it (or over it)")


def write_encoded(result: EncodeResult, dest: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write an :func:`encode` result as a bundle directory (atomically)."""
    from .codec.bundle import write_bundle
    return write_bundle(result.files, dest, overwrite=overwrite)


def decode(source: str | os.PathLike | dict[str, bytes]) -> LoadedModel:
    """Decode a bundle directory, or the ``files`` of an :func:`encode` result: the model
    (eval mode) with its ``bundle`` facts (total bytes, fp32 bytes, ratio, digest)."""
    return decode_files(source) if isinstance(source, dict) else read_bundle(source)


def verify(path: str | os.PathLike) -> dict:
    """Check a bundle directory without decoding its frames (``ctnet verify``)."""
    from .codec.bundle import verify as verify_bundle
    return verify_bundle(path)


def warm_codec() -> None:
    """Import the codec and PyAV now (a worker process does, so its first encode need not)."""
    from .codec import bundle, video  # noqa: F401


def preview_mp4(frames: list, fps: int) -> bytes:
    """8-bit frames as a short H.264 MP4 a browser plays (the app's Frames page)."""
    from .codec import video
    return video.preview_mp4(frames, fps)


# --- per-layer grids: a grid per stored tensor by measured sensitivity (ctnet.bitalloc) ----------

def auto_layer_bits(loaded: LoadedModel, data, *, budget: float = DEFAULT_BUDGET, images: int = DEFAULT_IMAGES,
                    device: str = "cpu", log=None) -> tuple[dict[str, int], dict]:
    """``ctnet encode --bit-depth auto``: a grid per stored tensor of ``loaded`` (a checkpoint
    file or bundle directory) from its sensitivity profile on ``images`` of ``data``'s train
    split (cached per source, measured when missing), the fewest estimated bytes within
    ``budget``; and what was chosen (budget, images, estimated bytes, tensors per grid)."""
    from . import bitalloc
    if loaded.path is None:
        raise ValueError("a per-layer grid by sensitivity needs a model source on disk (its content hash keys "
                         "the profile)")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"the sensitivity is measured on ≥ 1 train images, got {images!r}")
    prof = bitalloc.profile_for(loaded.path, loaded.model, loaded.meta, data, images=images, device=device, log=log)
    layer_bits = bitalloc.allocate(prof, budget)
    return layer_bits, {"budget": budget, "images": prof.images, "data": prof.data,
                        **bitalloc.summary(prof, layer_bits)}


# --- plain export: a decoded model as the torchvision network it computes ------------------------

def decode_plain(source) -> nn.Module:
    """A bundle directory, the ``files`` of an :func:`encode` result or a checkpoint file →
    the plain torchvision network (eval mode, CPU) with the materialised weights; it needs
    no ctnet to run (see ``ctnet.plain``)."""
    from .plain import to_torchvision
    loaded = decode(source) if isinstance(source, dict) else load_any(source)
    return to_torchvision(loaded.model, loaded.spec.arch)


def write_decoded(loaded: LoadedModel, path: str | os.PathLike, fmt: str, *, origin: str | None = None,
                  data=None) -> dict:
    """``ctnet decode --out``: the model as ``fmt`` (safetensors, ctnet or onnx; ``ctnet.plain``)."""
    from .plain import write_decoded as write
    return write(loaded.model.cpu(), loaded.meta, path, fmt, origin=origin, data=data)


def model_file(loaded: LoadedModel, fmt: str) -> tuple[bytes, str]:
    """(bytes, file name suffix) of the model written as ``fmt``, for a download."""
    from .plain import model_file as to_file
    return to_file(loaded.model, loaded.meta, fmt)


__all__ = [
    # loading, evaluating, training
    "LoadedModel", "BundleFacts", "ModelSpec", "TrainConfig", "load_any", "is_bundle", "evaluate_path",
    "evaluate_against", "evaluate_model", "evaluate", "resolve_device", "fit", "build_model", "parameter_summary",
    # data
    "load_split", "split_dir", "list_images", "label_map", "dataset_label_map", "class_folders", "class_names",
    "download_imagenette",
    # the codec and plain export
    "EncodeSettings", "encode", "lay_out", "layout_key",
    "encode_result", "encoded_model", "check_encode_destination", "write_encoded",
    "decode", "decode_files", "verify", "warm_codec", "preview_mp4", "decode_plain", "write_decoded", "model_file",
    "check_destination", "evaluate_exported", "is_exported", "VERSION",
    # per-layer grids
    "auto_layer_bits", "allocate_layer_bits", "find_profile", "read_layer_map", "SensitivityProfile", "AUTO_BITS",
    "DEFAULT_BUDGET", "DEFAULT_IMAGES",
    # rate-distortion sweeps
    "RDJob", "Sweep", "sweep", "bundle_jobs", "baseline_jobs", "codec_names", "best_at_floor", "rd_frontier",
    "reference_point", "missing_jobs", "matching_points", "full_split_points", "default_cache", "data_id", "source_hash",
    "nncodec_status",
    "DEFAULT_BITS", "INT_BITS", "LOSSY_CRFS", "NNCODEC_QPS", "TOLERANCE",
    # the tables flags and forms are built from
    "ARCHITECTURES", "architecture_refusal", "BIT_DEPTHS", "PIXEL_BIT_DEPTHS", "MAX_DITHER", "MAX_BATCH_SIZE",
    "MAX_WORKERS", "BN_MODES", "CODECS", "PIX_FMTS", "PRESETS", "FRAME_SIZES", "ORDERS", "RATE_GRIDS", "OPTIMIZERS",
    "IMAGENETTE_URLS", "default_codec",
    # errors
    "CtnetError", "AllocationError", "ConfigError", "CheckpointError", "DatasetError", "DeviceError", "TrainingError",
    "BundleError", "VideoError", "PlainExportError", "RunError", "RDError", "UnverifiedWarning",
]
