"""Safe, self-describing checkpoints.

Our format is safetensors: ``model.*`` tensors, optional ``optim.*`` / ``state.*`` tensors for
resuming, and a JSON metadata header (model description, label map, image size, training
config, epoch, metrics). Nothing is ever unpickled; torchvision-style ``.pt`` state dicts are
read with ``torch.load(weights_only=True)``, which refuses pickles that would run code.
Every write is atomic (temporary file + rename, :mod:`ctnet.fileio`).
Reading checks everything before building anything: the metadata (``ctnet.types.CheckpointMeta``),
that every tensor has the shape the described network needs (which ties the DCT block size to
the weights), and that every weight is finite.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError, UnverifiedWarning
from .fileio import atomic_path, write_reason
from .layers import all_finite, configure_export_training, non_finite_part
from .limits import MAX_NUM_CLASSES
from .models import ARCHITECTURES, ModelSpec, build_model
from .types import FORMAT, VERSION, CheckpointMeta


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    meta: dict
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # optimizer / resume state

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.meta["model"])


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
            idx, _, key = name[len("optim.state."):].partition(".")
            if not (idx.isdigit() and len(idx) <= 9 and key):
                raise CheckpointError(f"optimizer tensor {name[:80]!r} has a malformed name")
            state.setdefault(int(idx), {})[key] = value
    for name, value in info["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(path: str | os.PathLike, model: nn.Module | dict, meta: dict, *,
                    optimizer: torch.optim.Optimizer | None = None,
                    extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint atomically. ``meta`` must hold ``model`` (a ModelSpec dict).
    Metadata that :func:`read_checkpoint` would refuse is refused here (CheckpointError);
    a failed write (disk full, no permission) is a CheckpointError naming the file, and
    leaves the previous file at ``path`` as it was."""
    if not isinstance(meta, dict) or "model" not in meta:
        raise CheckpointError("checkpoint metadata needs 'model' (a ModelSpec dict)")
    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": FORMAT, "version": VERSION, **meta}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    for k, v in (extra or {}).items():
        tensors[f"state.{k}"] = v.detach().cpu().contiguous()
    meta.pop("digest", None)
    meta["digest"] = checkpoint_digest(meta, tensors)
    CheckpointMeta.from_json(meta, source=path)  # refuse to write something we could not load
    text = json.dumps(meta)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"ctnet": text})
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: could not write the checkpoint ({write_reason(exc)}); "
                              f"any previous file there is unchanged") from exc
    return Path(path)


def checkpoint_digest(meta: dict, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the metadata (all but ``digest``, canonical JSON) and every ``model.*``
    tensor (name, dtype, shape, bytes; in name order): what decides the model's outputs.
    Stored in the metadata: an edited header (say a block size changed from 16 to 8, which
    the shapes cannot reveal) or damaged weights no longer match it. Optimizer and resume
    tensors are not covered (they are checked to be finite). It detects changes; it is not
    a signature (whoever edits a file can recompute it)."""
    h = hashlib.sha256(b"ctnet-checkpoint-digest-1\0")
    body = {k: v for k, v in meta.items() if k != "digest"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(k for k in tensors if k.startswith("model.")):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"\0{name}\0{t.dtype!s}\0{tuple(tensors[name].shape)}\0".encode())
        if t.numel():
            # numpy's stubs give ndarray __buffer__ (the Buffer protocol) only for Python >= 3.12
            h.update(t.view(torch.uint8).numpy())  # type: ignore[arg-type]
    return "sha256:" + h.hexdigest()


def infer_spec(state: dict[str, torch.Tensor]) -> ModelSpec:
    """Model description of a bare state dict (a torchvision ``.pt`` or ``.pth``): the
    registered architecture whose every tensor name and shape it holds, with the class
    count read from its classifier's rows. The shapes tell every registered architecture
    from the others (ResNet-50, ResNeXt-50 and Wide ResNet-50 share their names)."""
    if any(k.endswith("weight_dct") for k in state):
        raise CheckpointError("CTNet state dict without metadata: its DCT block size is unknown; "
                              "save it with ctnet.checkpoint.save_checkpoint")
    closest: tuple[int, ModelSpec] | None = None
    for arch in ARCHITECTURES.values():
        w = state.get(f"{arch.head}.weight")
        if not torch.is_tensor(w) or w.dim() != 2 or not 1 <= w.shape[0] <= MAX_NUM_CLASSES:
            continue
        spec = ModelSpec(arch=arch.name, num_classes=int(w.shape[0]), ctnet=False)
        expected = spec.state_shapes()
        if expected.keys() == state.keys() and all(tuple(state[k].shape) == v for k, v in expected.items()):
            return spec
        overlap = len(expected.keys() & state.keys())
        if closest is None or overlap > closest[0]:
            closest = (overlap, spec)
    if closest is None:
        heads = ", ".join(sorted({f"'{a.head}.weight'" for a in ARCHITECTURES.values()}))
        raise CheckpointError(f"state dict has no classifier matrix ({heads}): not a state dict of a "
                              f"torchvision CNN CTNet holds ({', '.join(ARCHITECTURES)})")
    try:
        check_shapes(closest[1], state)
    except CheckpointError as exc:
        raise CheckpointError(f"state dict fits no architecture CTNet holds; the closest: {exc}") from None
    return closest[1]  # check_shapes accepts what the exact comparison above accepts: not reached


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if "ctnet" in header:  # the metadata first: a crafted header fails before any tensor is read
                typed = CheckpointMeta.from_json(header["ctnet"], source=path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from exc
    if "ctnet" in header:
        if typed.digest is not None and checkpoint_digest(json.loads(header["ctnet"]), tensors) != typed.digest:
            raise CheckpointError(f"{path}: the checkpoint does not match its digest: its metadata or weights were "
                                  f"changed or damaged after it was written")
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        extra = {k: v for k, v in tensors.items() if not k.startswith("model.")}
        extra = {(k[len("state."):] if k.startswith("state.") else k): v for k, v in extra.items()}
        return Checkpoint(state, typed.to_json(), extra)
    return Checkpoint(tensors, CheckpointMeta.for_spec(infer_spec(tensors)).to_json())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")


MAX_PT_INFLATION = 4  # torch.save stores its records uncompressed: a deflated one may expand this much, no more


def _check_torch_zip(path: Path) -> None:
    """Refuse a zip checkpoint whose records would inflate past what the file can hold
    (a deflate bomb) before torch reads any: from the sizes in its central directory, and
    with every deflated record inflated (streaming, a MiB at a time) to check that it is
    the size it declares."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            declared = sum(i.file_size for i in infos)
            if declared > MAX_PT_INFLATION * size + (1 << 20):
                raise CheckpointError(f"{path}: its records declare {declared:,} bytes, {declared / max(size, 1):.0f}x "
                                      f"the file; torch.save writes them uncompressed (a deflate bomb?)")
            for info in infos:
                if info.compress_type == zipfile.ZIP_STORED:
                    continue
                left = info.file_size
                with zf.open(info) as f:  # never more than a MiB inflated at once
                    while chunk := f.read(1 << 20):
                        left -= len(chunk)
                        if left < 0:
                            break
                if left != 0:
                    raise CheckpointError(f"{path}: record {info.filename[:80]!r} does not inflate to the size it "
                                          f"declares (a deflate bomb or a damaged file)")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{_one_line(exc)})") from None


def _read_torch(path: Path) -> Checkpoint:
    if zipfile.is_zipfile(path):
        _check_torch_zip(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises weights_only=False; for a hostile file that is the one
        # thing not to do, so only the offending object is quoted
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it references {found.group(1)[:80]})" if found else ""
        raise CheckpointError(f"{path}: refused to load: the file contains objects other than tensors and "
                              f"plain containers{what}, which could run code when unpickled; nothing in it "
                              f"was executed. Load only checkpoints from a source you trust, "
                              f"or ask for a safetensors file") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{_one_line(exc)})") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if (not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj)
            or not all(torch.is_tensor(v) for v in obj.values())):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    return Checkpoint(state, CheckpointMeta.for_spec(infer_spec(state)).to_json())


def check_finite(tensors: dict[str, torch.Tensor], *, what: str = "tensor") -> None:
    """Refuse NaN/inf in any floating-point tensor, and a negative BN running variance."""
    for name, t in tensors.items():
        if not torch.is_tensor(t):
            continue
        if not all_finite(t):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{what} {name!r} holds {bad} non-finite value(s) (NaN or inf); "
                                  f"refusing weights that would give NaN outputs")
        if name.endswith("running_var") and t.is_floating_point() and bool((t < 0).any()):
            raise CheckpointError(f"{what} {name!r} holds a negative batch-norm variance")


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint file without executing anything it contains; its
    metadata is parsed strictly and every tensor must be finite."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header; its first byte
    # may well be 0x80 or 'P', so that is tested first
    size = path.stat().st_size
    safetensors = len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size
    if not safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):  # zip (torch.save) or legacy pickle
        ckpt = _read_torch(path)
    elif not safetensors and head[8:9] != b"{":  # not even the start of a safetensors header
        raise CheckpointError(f"{path}: not a checkpoint: neither a safetensors file (an 8-byte header length, then "
                              f"JSON) nor a torch.save file (a zip archive or a pickle)")
    else:
        ckpt = _read_safetensors(path)
    try:
        check_finite(ckpt.state_dict)
        check_finite(ckpt.extra, what="stored tensor")
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    spec = ckpt.spec
    if spec.ctnet and ckpt.meta.get("digest") is None and any(
            k.endswith("weight_dct") and v.dim() == 2 for k, v in ckpt.state_dict.items()):
        warnings.warn(UnverifiedWarning(
            f"{path} has no digest, so its DCT block size ({spec.dct_block_size}) cannot be confirmed: the weights' "
            f"shapes fit other block sizes too, and a file relabelled after it was written would load as another "
            f"model (files written by ctnet since the digest exists carry one)"), stacklevel=2)
    return ckpt


def check_shapes(spec: ModelSpec, state: dict[str, torch.Tensor]) -> None:
    """Every tensor the described network needs, with its shape, and nothing else; checked
    on the meta device before anything is allocated. A channel-DCT weight's padded shape
    must match the block size (padded sizes are multiples of it)."""
    expected = spec.state_shapes()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [(k, tuple(state[k].shape), shape) for k, shape in expected.items()
             if k in state and tuple(state[k].shape) != shape]
    kind = f"{spec.arch} ({'CTNet, DCT block size ' + str(spec.dct_block_size) if spec.ctnet else 'plain'}, " \
           f"{spec.num_classes} classes)"
    if wrong:
        k, got, want = wrong[0]
        hint = ""
        if spec.ctnet and k.endswith("weight_dct") and len(want) == 2:
            hint = "; the block size in the metadata does not fit the stored weights"
        raise CheckpointError(f"weights do not fit a {kind}: {k} has shape {list(got)}, expected {list(want)}"
                              f"{' (and ' + str(len(wrong) - 1) + ' more)' if len(wrong) > 1 else ''}{hint}")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}"
                         + (f" (+{len(unexpected) - 3})" if len(unexpected) > 3 else ""))
        raise CheckpointError(f"weights do not fit a {kind}: {'; '.join(parts)}")


def check_expected(spec: ModelSpec, what: str, *, expected_arch: str | None = None,
                   expected_block_size: int | None = None) -> None:
    """Refuse a model (``what`` names it) of another architecture or DCT block size."""
    if expected_arch is not None and spec.arch != expected_arch:
        raise CheckpointError(f"{what} is a {spec.arch}, not a {expected_arch}")
    if expected_block_size is not None and spec.ctnet and spec.dct_block_size != expected_block_size:
        raise CheckpointError(f"{what} was trained with DCT block size {spec.dct_block_size}, "
                              f"not {expected_block_size}; the weights would decode wrongly")


def model_from_checkpoint(ckpt: Checkpoint, *, expected_arch: str | None = None,
                          expected_block_size: int | None = None) -> nn.Module:
    """Build the described network and load the weights, strictly."""
    spec = ckpt.spec
    check_expected(spec, "checkpoint", expected_arch=expected_arch, expected_block_size=expected_block_size)
    check_shapes(spec, ckpt.state_dict)  # before build_model allocates anything
    model = build_model(spec)
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise CheckpointError(f"weights do not fit a {spec.arch} "
                              f"({'CTNet' if spec.ctnet else 'plain'}, {spec.num_classes} classes): "
                              + " ".join(l.strip() for l in lines[1:3])) from exc
    bad = non_finite_part(model)
    if bad:
        raise CheckpointError(f"the model is not usable: {_what_is_not_finite(bad)} (weights out of range)")
    # an export-aware model is evaluated as it will be exported, as during training
    return configure_export_training(model, pixel_bit_depth=ckpt.meta.get("pixel_bit_depth", 0))


def _what_is_not_finite(part: str) -> str:
    return "its outputs on a probe image are not finite" if part == "its outputs" else \
        f"{part} computes with weights that are not finite"


def load_model(path: str | os.PathLike, **kwargs) -> tuple[nn.Module, dict]:
    """Checkpoint file → (model in eval mode, metadata)."""
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, **kwargs).eval()
    return model, ckpt.meta
