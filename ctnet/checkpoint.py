"""Safe, self-describing checkpoints.

Our format is safetensors: ``model.*`` tensors, optional ``optim.*`` / ``state.*`` tensors for
resuming, and a JSON metadata header (model description, label map, image size, training
config, epoch, metrics). Nothing is ever unpickled; torchvision-style ``.pt`` state dicts are
read with ``torch.load(weights_only=True)``, which refuses pickles that would run code.
Every write goes to a temporary file in the destination folder and is renamed into place.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .layers import configure_export_training
from .models import ModelSpec, build_model

FORMAT = "ctnet-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message names the problem."""


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    meta: dict
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # optimizer / resume state

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.meta["model"])


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result should look like any file
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_state(ckpt: Checkpoint) -> dict | None:
    """Rebuild an optimizer state dict saved by :func:`save_checkpoint`."""
    info = ckpt.meta.get("optimizer")
    if info is None:
        return None
    state: dict[int, dict] = {}
    for name, value in ckpt.extra.items():
        if name.startswith("optim.state."):
            idx, key = name[len("optim.state."):].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for name, value in info["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(path: str | os.PathLike, model: nn.Module | dict, meta: dict, *,
                    optimizer: torch.optim.Optimizer | None = None,
                    extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint atomically. ``meta`` must hold ``model`` (a ModelSpec dict)."""
    ModelSpec.from_dict(meta["model"])  # refuse to write something we could not load
    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": FORMAT, "version": VERSION, **meta}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    for k, v in (extra or {}).items():
        tensors[f"state.{k}"] = v.detach().cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"ctnet": json.dumps(meta)})
    return Path(path)


def infer_spec(state: dict[str, torch.Tensor]) -> ModelSpec:
    """Model description of a bare state dict (e.g. a torchvision ``.pt``)."""
    if "fc.weight" not in state:
        raise CheckpointError("state dict has no 'fc.weight': not a ResNet checkpoint")
    arch = "resnet50" if "layer1.0.conv3.weight" in state or "layer1.0.conv3.weight_dct" in state else "resnet18"
    ctnet = any(k.endswith("weight_dct") for k in state)
    if ctnet:
        raise CheckpointError("CTNet state dict without metadata: its DCT block size is unknown; "
                              "save it with ctnet.checkpoint.save_checkpoint")
    return ModelSpec(arch=arch, num_classes=int(state["fc.weight"].shape[0]), ctnet=False)


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if "ctnet" in header:
        try:
            meta = json.loads(header["ctnet"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: metadata format {meta.get('format')!r} is not {FORMAT!r}")
        if meta.get("version", 0) > VERSION:
            raise CheckpointError(f"{path}: checkpoint version {meta.get('version')} is newer than this ctnet ({VERSION})")
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        extra = {k: v for k, v in tensors.items() if not k.startswith("model.")}
        extra = {(k[len("state."):] if k.startswith("state.") else k): v for k, v in extra.items()}
        return Checkpoint(state, meta, extra)
    return Checkpoint(tensors, {"model": infer_spec(tensors).to_dict()})


def _read_torch(path: Path) -> Checkpoint:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe pickle"
        raise CheckpointError(f"{path}: refused to load: the file contains objects other than tensors "
                              f"and plain containers, which could run code ({first})") from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    return Checkpoint(state, {"model": infer_spec(state).to_dict()})


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint file without executing anything it contains."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # zip (torch.save) or legacy pickle
        return _read_torch(path)
    return _read_safetensors(path)


def model_from_checkpoint(ckpt: Checkpoint, *, expected_arch: str | None = None,
                          expected_block_size: int | None = None) -> nn.Module:
    """Build the described network and load the weights, strictly."""
    spec = ckpt.spec
    if expected_arch is not None and spec.arch != expected_arch:
        raise CheckpointError(f"checkpoint is a {spec.arch}, not a {expected_arch}")
    if expected_block_size is not None and spec.ctnet and spec.dct_block_size != expected_block_size:
        raise CheckpointError(f"checkpoint was trained with DCT block size {spec.dct_block_size}, "
                              f"not {expected_block_size}; the weights would decode wrongly")
    model = build_model(spec)
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise CheckpointError(f"weights do not fit a {spec.arch} "
                              f"({'CTNet' if spec.ctnet else 'plain'}, {spec.num_classes} classes): "
                              + " ".join(l.strip() for l in lines[1:3])) from exc
    # an export-aware model is evaluated as it will be exported, as during training
    return configure_export_training(model, pixel_bit_depth=int(ckpt.meta.get("pixel_bit_depth", 0)))


def load_model(path: str | os.PathLike, **kwargs) -> tuple[nn.Module, dict]:
    """Checkpoint file → (model in eval mode, metadata)."""
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, **kwargs).eval()
    return model, ckpt.meta
