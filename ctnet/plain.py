"""From a decoded CTNet to a model that ships without ctnet: a torchvision state dict
(safetensors) or an ONNX graph.

A bundle needs ctnet and PyAV to decode, and a CTNet re-derives its spatial weights from DCT
coefficients; what a deployment wants is the ordinary torchvision network. :func:`to_torchvision`
materialises every stored tensor the way the CTNet's eval forward uses it (inverse DCT of
``DCTConv2d``, channel-DCT blocks cropped back to the 1×1 matrix, the export simulation of
``Quant*`` layers, biases, LayerNorm and layer scale when it is on) and loads the result,
strictly, into the torchvision network
of the same architecture, so the plain model computes the CTNet's logits (checked in float64
by the tests, as :func:`ctnet.models.replace_with_dct_convs` checks its conversion).

What a user needs besides the weights travels with them as string metadata (safetensors
header, ONNX ``metadata_props``): architecture, classes, label map, image size and the
normalisation ``ctnet.data`` applies. The header deliberately has no ``ctnet`` key, which
would mark it as a CTNet checkpoint; ``ctnet eval`` reads it as the plain model it is.

``ctnet eval FILE --data DIR`` (:func:`evaluate_exported`) evaluates such a file the way a user would load it
(torchvision for safetensors, onnxruntime for ONNX).
"""
from __future__ import annotations

import copy
import io
import json
import os
import warnings
from pathlib import Path

import torch
import torchvision
from torch import nn

from .checkpoint import infer_spec, save_checkpoint
from .data import IMAGENET_MEAN, IMAGENET_STD, label_map
from .errors import CheckpointError, DatasetError, PlainExportError
from .fileio import atomic_path, write_reason
from .layers import DCT_LAYERS, EXPORT_AWARE, QuantConv2d, QuantLinear, SideTensorLayer
from .models import ARCHITECTURES, head, meta_model, refusal, swap_modules

FORMATS = ("safetensors", "ctnet", "onnx")
PLAIN_FORMAT = "torchvision-state-dict"
# a ResNet needs nothing newer than opset 17, which every onnxruntime since 1.13 (2022) runs
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4  # onnxruntime vs PyTorch, relative to max(1, max |logit|): float32 kernels differ
PREPROCESS = ("RGB; shorter side resized to {size} px (bilinear), centre crop {size}x{size}; "
              "x / 255, then (x - mean) / std per channel; NCHW float32")


# --- conversion ------------------------------------------------------------------------------

@torch.no_grad()
def _plain_layer(layer: nn.Module) -> nn.Module | None:
    """The ordinary conv/linear computing what ``layer`` (eval mode) computes, or None."""
    if isinstance(layer, DCT_LAYERS):
        # the export simulation in the layer's dtype (as its forward does), the inverse DCT in
        # float64 so the float32 weights are the closest to the exact ones
        stored = layer.stored_value(layer.weight_dct.detach())
        plain: nn.Conv2d = layer._empty_conv()
        plain.weight.copy_(layer._weight_from_stored(stored.double()))
        if layer.bias is not None:
            assert plain.bias is not None  # _empty_conv has a bias exactly when the layer has
            plain.bias.copy_(layer.stored_side(layer.bias.detach()))
        return plain  # CPU float32, whatever the CTNet's device and dtype
    if isinstance(layer, (QuantConv2d, QuantLinear)):
        return layer.plain()
    return None


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The torchvision state dict of ``model`` (a CTNet or a plain network): CPU, float32."""
    twin = copy.deepcopy(model).eval()
    for m in twin.modules():  # LayerNorm, layer scale: back to torchvision's classes, values as stored
        if isinstance(m, SideTensorLayer):
            m.plain()
    swap_modules(twin, _plain_layer)
    leftover = sorted({type(m).__name__ for m in twin.modules() if isinstance(m, EXPORT_AWARE)})
    if leftover:
        raise PlainExportError(f"no plain equivalent of layer type(s) {', '.join(leftover)}")
    return {k: v.detach().cpu().contiguous() for k, v in twin.state_dict().items()}


def to_torchvision(model: nn.Module, arch: str | None = None) -> nn.Module:
    """The torchvision network (eval mode, CPU) with ``model``'s materialised weights.
    ``arch`` (a registered architecture, e.g. from the metadata) defaults to the one whose
    tensors the model's have (``ctnet.checkpoint.infer_spec``)."""
    return _to_torchvision(model, arch)[0]


def _to_torchvision(model: nn.Module, arch: str | None) -> tuple[nn.Module, str]:
    state = plain_state_dict(model)
    if arch is None:
        try:
            arch = infer_spec(state).arch
        except CheckpointError as exc:
            raise PlainExportError(f"{type(model).__name__} is not a torchvision CNN ctnet can rebuild: {exc}") from None
    if arch not in ARCHITECTURES:
        raise PlainExportError(f"torchvision cannot build architecture {str(arch)[:40]!r} here: {refusal(arch)}")
    fc = state.get(f"{ARCHITECTURES[arch].head}.weight")
    if fc is None or fc.dim() != 2:
        raise PlainExportError(f"the model has no classifier {ARCHITECTURES[arch].head}: not a torchvision {arch}")
    net = meta_model(arch, int(fc.shape[0]))  # no time spent initialising weights that are replaced
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        lines = [l.strip() for l in str(exc).splitlines()[1:3]]
        raise PlainExportError(f"the weights do not fit torchvision's {arch} ({fc.shape[0]} classes): "
                               + " ".join(lines)) from None
    return net.eval(), arch


def _torchvision_of(model: nn.Module, meta: dict) -> tuple[nn.Module, str]:
    """(the torchvision network, its architecture) of a model and its metadata."""
    return _to_torchvision(model, (meta.get("model") or {}).get("arch"))


def plain_metadata(meta: dict, num_classes: int, arch: str) -> dict[str, str]:
    """The string metadata that travels with the plain weights: the label map is the
    model's own (a model without one: ImageNette's for a 10- or 1000-class head, else none)."""
    labels = meta.get("label_map")
    if labels is None:
        try:
            labels = label_map(num_classes)
        except DatasetError:
            labels = {}
    size = int(meta.get("image_size", 128))
    given = meta.get("source")
    source = given if isinstance(given, dict) else meta
    from . import __version__
    return {"format": PLAIN_FORMAT, "arch": arch, "num_classes": str(num_classes),
            "label_map": json.dumps(labels), "image_size": str(size),
            "mean": json.dumps(list(IMAGENET_MEAN)), "std": json.dumps(list(IMAGENET_STD)),
            "preprocess": PREPROCESS.format(size=size),
            "source": json.dumps({"producer": f"ctnet {__version__}", "from": meta.get("format", "checkpoint"),
                                  "epoch": source.get("epoch"), "metrics": source.get("metrics")})}


# --- writers ---------------------------------------------------------------------------------

def save_plain(model: nn.Module, meta: dict, path: str | os.PathLike) -> Path:
    """Write the torchvision state dict as safetensors (atomically), metadata in the header."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file
    net, arch = _torchvision_of(model, meta)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    try:
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=plain_metadata(meta, head(net, arch).out_features, arch))
    except (SafetensorError, OSError) as exc:
        raise PlainExportError(f"{path}: could not write the model ({write_reason(exc)}); any previous file there "
                               f"is unchanged") from None
    return Path(path)


def save_ctnet(model: nn.Module, meta: dict, path: str | os.PathLike, *, origin: str | None = None) -> Path:
    """Write a decoded model as a CTNet checkpoint (DCT coefficients), so training can resume
    from it; the bundle's manifest is reduced to what a checkpoint carries."""
    given = meta.get("source")
    source = given if isinstance(given, dict) else {}
    ckpt_meta = {"model": meta["model"], "image_size": int(meta.get("image_size", 128)),
                 "pixel_bit_depth": int(meta.get("pixel_bit_depth", 0))}
    for key in ("label_map", "epoch", "metrics"):
        value = meta.get(key, source.get(key))
        if value is not None:
            ckpt_meta[key] = value
    if meta.get("format") == "ctnet-bundle":
        b = meta.get("bundle", {})
        ckpt_meta["decoded_from"] = {"bundle": origin, "settings": meta.get("settings"),
                                     "total_bytes": b.get("total_bytes"), "ratio": b.get("ratio")}
    return save_checkpoint(path, model, ckpt_meta)


def _export_onnx_bytes(net: nn.Module, size: int, opset: int) -> bytes:
    # The TorchScript exporter (dynamo=False): a plain ResNet traces completely, it needs no
    # onnxscript, and the same model gives the same graph every time; the torch.export one
    # adds a dependency and a slower, version-sensitive path for no gain here.
    buf = io.BytesIO()
    x = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose
        # torch types f as a path, but its TorchScript exporter writes to a file-like object as well
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=opset, input_names=["input"],  # type: ignore[arg-type]
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


def export_onnx(model: nn.Module, meta: dict, path: str | os.PathLike, *, opset: int = ONNX_OPSET,
                check_batch: torch.Tensor | None = None) -> tuple[Path, float | None]:
    """Write the plain model as an ONNX graph (input ``input`` N×3×S×S, output ``logits``,
    dynamic batch), checked with ``onnx.checker``, the metadata in ``metadata_props``. With
    ``check_batch`` and onnxruntime importable, the graph is run on it before it is renamed
    into place: → (path, max |onnxruntime − PyTorch logits|, or None when not run)."""
    try:
        import onnx
    except ImportError as exc:
        raise PlainExportError(f"ONNX export needs the onnx package ({exc}); pip install -r requirements.txt") from None
    net, arch = _torchvision_of(model, meta)
    info = plain_metadata(meta, head(net, arch).out_features, arch)
    proto = onnx.load_from_string(_export_onnx_bytes(net, int(info["image_size"]), opset))
    for key, value in info.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "ctnet"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise PlainExportError(f"the exported ONNX graph does not validate: {str(exc).splitlines()[0]}") from None
    diff = None
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        if check_batch is not None:
            diff = onnx_max_abs_diff(tmp, net, check_batch)
    return Path(path), diff


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session of ``path`` (``threads`` intra-op threads, default its own
    choice), or None when onnxruntime does not import."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_max_abs_diff(path: str | os.PathLike, net: nn.Module, x: torch.Tensor) -> float | None:
    """max |onnxruntime logits − PyTorch logits| of the plain ``net`` on ``x``; None without
    onnxruntime. Raises when the difference is beyond float32 kernel noise."""
    session = onnx_session(path)
    if session is None:
        return None
    got = torch.from_numpy(session.run(None, {"input": x.float().cpu().numpy()})[0])
    with torch.no_grad():
        want = net(x.float().cpu())
    diff = float((got - want).abs().max())
    if not diff <= ONNX_TOLERANCE * max(1.0, float(want.abs().max())):
        raise PlainExportError(f"onnxruntime's logits differ from PyTorch's by {diff:.3g}")
    return diff


def write_model(model: nn.Module, meta: dict, path: str | os.PathLike, fmt: str, *, origin: str | None = None) -> Path:
    """Write a decoded model in one of :data:`FORMATS` (atomically)."""
    return Path(write_decoded(model, meta, path, fmt, origin=origin, check=False)["out"])


def write_decoded(model: nn.Module, meta: dict, path: str | os.PathLike, fmt: str, *, origin: str | None = None,
                  data=None, check: bool = True) -> dict:
    """``ctnet decode --out``: write ``model`` as ``fmt``; an ONNX graph is first run once in
    onnxruntime (when it imports) on one val image per class of ``data`` (else seeded noise).
    → report {out, format, out_bytes[, onnx_opset, onnx_check_batch, onnx_max_abs_diff]}."""
    report: dict[str, object] = {"format": fmt}
    if fmt == "safetensors":
        out = save_plain(model, meta, path)
    elif fmt == "ctnet":
        out = save_ctnet(model, meta, path, origin=origin)
    elif fmt == "onnx":
        x, what = _check_batch(data, meta) if check else (None, None)
        out, diff = export_onnx(model, meta, path, check_batch=x)
        report.update(onnx_opset=ONNX_OPSET, onnx_check_batch=what if diff is not None else None,
                      onnx_max_abs_diff=diff)
    else:
        raise PlainExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return {"out": str(out), **report, "out_bytes": os.path.getsize(out)}


def _check_batch(data, meta: dict) -> tuple[torch.Tensor, str]:
    size = int(meta.get("image_size", 128))
    if data:
        from .data import decode_images, load_split, normalize
        split = load_split(data, "val", labels=meta.get("label_map"), num_classes=int(meta["model"]["num_classes"]),
                           size=size, limit=10)
        return normalize(decode_images(split.paths, size, workers=2)), f"{len(split)} val images"
    return torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0)), "4 images of seeded noise"


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (links resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def check_destination(path: str | os.PathLike, fmt: str, force: bool, source: str | os.PathLike | None = None) -> None:
    """Refuse before any work is done: an unknown format, an existing file without
    ``force``, a directory, a path inside the bundle ``source`` being decoded."""
    if fmt not in FORMATS:
        raise PlainExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if source is not None and Path(source).is_dir() and inside(path, source):
        raise PlainExportError(f"{path} is inside the bundle {source} being decoded; write the model elsewhere")
    p = Path(path)
    if p.is_dir():
        raise PlainExportError(f"{p} is a directory; --out names the file to write")
    if p.exists() and not force:
        raise PlainExportError(f"{p} exists; pass --force to replace it")


# --- reading back (what a user does, without ctnet's model classes) ----------------------------

def load_plain(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(torchvision model in eval mode, metadata) of a file written by :func:`save_plain`."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file
    try:
        with safe_open(str(path), framework="pt") as f:
            info = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PlainExportError(f"{path}: not a readable safetensors file ({exc})") from None
    if info.get("format") != PLAIN_FORMAT:
        raise PlainExportError(f"{path}: not a plain model written by ctnet decode (format {info.get('format')!r})")
    net = torchvision.models.get_model(info["arch"], weights=None, num_classes=int(info["num_classes"]))
    net.load_state_dict(state, strict=True)
    return net.eval(), info


class OnnxModule(nn.Module):
    """An onnxruntime session behind ``nn.Module``'s call, so ``ctnet.evaluate`` runs it."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def forward(self, x):
        return torch.from_numpy(self.session.run(None, {"input": x.float().cpu().numpy()})[0])


def load_exported(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """An exported file (``.onnx`` via onnxruntime, else safetensors via torchvision) and its metadata."""
    if Path(path).suffix.lower() != ".onnx":
        return load_plain(path)
    import onnx
    info = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    session = onnx_session(path)
    if session is None:
        raise PlainExportError("evaluating an ONNX file needs onnxruntime; pip install -r requirements.txt")
    return OnnxModule(session), info


def is_exported(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file written by ``ctnet decode --out`` in the safetensors (plain
    torchvision) or ONNX format, rather than a ctnet checkpoint."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        return True
    if p.suffix.lower() != ".safetensors" or not p.is_file():
        return False
    try:
        from safetensors import safe_open
        with safe_open(str(p), framework="pt") as f:
            return (f.metadata() or {}).get("format") == PLAIN_FORMAT
    except Exception:  # not readable here: the checkpoint reader will say why
        return False


def evaluate_exported(path: str | os.PathLike, data, *, limit=None, device="auto", batch_size=None, workers=2) -> dict:
    """Top-1/top-5 of an exported file the way a user runs it: a safetensors file in
    ``torchvision.models.get_model(arch)`` (no CTNet layer anywhere), an ``.onnx`` file in
    onnxruntime's CPU provider; the images read exactly as ``ctnet eval`` reads them."""
    from .data import load_split
    from .evaluate import evaluate, resolve_device
    net, info = load_exported(path)
    onnx = isinstance(net, OnnxModule)
    dev = torch.device("cpu") if onnx else resolve_device(device)
    split = load_split(data, "val", labels=json.loads(info.get("label_map") or "{}") or None,
                       num_classes=int(info["num_classes"]), size=int(info["image_size"]), limit=limit)
    result = evaluate(net.to(dev), split, device=dev, batch_size=batch_size, workers=workers)
    result["runtime"] = "onnxruntime" if onnx else f"torchvision {torchvision.__version__}"
    return result


def model_file(model: nn.Module, meta: dict, fmt: str) -> tuple[bytes, str]:
    """(bytes, file name suffix) of ``model`` written as ``fmt`` — what ``ctnet decode --out``
    writes, for a download (the app): written to a temporary folder and read back."""
    import tempfile
    suffix = {"safetensors": ".safetensors", "onnx": ".onnx", "ctnet": ".ctnet.safetensors"}.get(fmt)
    if suffix is None:
        raise PlainExportError(f"unknown format {fmt!r}; choose one of safetensors, ctnet, onnx")
    with tempfile.TemporaryDirectory(prefix="ctnet-export-") as tmp:
        out = write_model(model, meta, Path(tmp) / f"model{suffix}", fmt)
        return out.read_bytes(), suffix
