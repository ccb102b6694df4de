"""What the app shows about a model's coefficients, frames and encodes: pure computations on
tensors and arrays, drawn by the app's pages (no Streamlit, no plotting here).

Coefficients are the tensors a bundle stores as video (``ctnet.export.video_tensors``): the
DCT coefficients of every k×k convolution, the channel-DCT matrices of 1×1 convolutions,
the classifier. A coefficient counts as non-zero when ``|c| ≥ q/2`` (HEVC-style rounding at
step ``q`` keeps it), as in training's log.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from . import export, quant
from .codec.manifest import EncodeSettings
from .layers import ChannelDCTConv1x1, DCTConv2d
from .types import LoadedModel

KIND_SPATIAL = "spatial DCT"
KIND_CHANNEL = "channel DCT"
KIND_PLAIN = "plain"


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    """video tensor name → the module holding it."""
    out = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            out[f"{mod_name}.{p_name}" if mod_name else p_name] = module
    return out


def coefficient_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """name → detached float32 CPU copy of every tensor the bundle stores as video."""
    return {n: t.detach().float().cpu() for n, t in export.video_tensors(model).items()}


def layer_kind(module: nn.Module, name: str) -> str:
    if name.endswith("weight_dct"):
        return KIND_SPATIAL if isinstance(module, DCTConv2d) else KIND_CHANNEL
    return KIND_PLAIN


def layer_structure(module: nn.Module, name: str) -> str:
    """What a stored tensor is, for display: "depthwise 3×3", "3×3, 32 groups", "1×1, blocks
    16", "Linear 384→1536", "bias", "LayerNorm", "layer scale" …"""
    param = name.rsplit(".", 1)[-1]
    if param == "bias":
        return "bias"
    if isinstance(module, DCTConv2d):
        k = "×".join(map(str, module.kernel_size))
        if module.groups == 1:
            return k
        return f"depthwise {k}" if module.groups == module.in_channels == module.out_channels else \
            f"{k}, {module.groups} groups"
    if isinstance(module, ChannelDCTConv1x1):
        return f"1×1, blocks {module.block_size}" if module.block_size else "1×1, whole matrix"
    if isinstance(module, nn.Conv2d):
        k = "×".join(map(str, module.kernel_size))
        return k + (f", {module.groups} groups" if module.groups > 1 else "")
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}→{module.out_features}"
    if isinstance(module, nn.LayerNorm):
        return "LayerNorm"
    if param == "layer_scale":
        return "layer scale"
    return type(module).__name__


def filter_grid(model: nn.Module, name: str) -> tuple[np.ndarray, int] | None:
    """A depthwise (or any one-input-channel) spatial layer's coefficients (C, 1, Kh, Kw) as a
    near-square grid of its C filters, each a Kh×Kw block (the exported image, C·Kh × Kw, is
    too thin to look at); unused cells 0. → (image, filters per grid row), or None for other
    tensors."""
    t = export.video_tensors(model)[name]
    if t.dim() != 4 or t.shape[1] != 1 or t.shape[0] < 4:
        return None
    c, _, kh, kw = t.shape
    cols = math.ceil(math.sqrt(c * kh / kw))
    rows = -(-c // cols)
    grid = torch.zeros(rows * cols, kh, kw)
    grid[:c] = t.detach().float().cpu()[:, 0]
    return grid.reshape(rows, cols, kh, kw).permute(0, 2, 1, 3).reshape(rows * kh, cols * kw).numpy(), cols


def nonzero(t: torch.Tensor, q: float) -> int:
    return int((t.abs() >= q / 2).sum())


def layer_stats(model: nn.Module, q: float) -> list[dict]:
    """Per stored tensor: kind, shape, its image's size, values, non-zero count at q/2 and
    fraction, largest |c| and energy Σc²."""
    owners = _owners(model)
    rows = []
    for name, t in coefficient_tensors(model).items():
        a = t.abs()
        n = t.numel()
        nz = int((a >= q / 2).sum())
        h, w = quant.image_shape(tuple(t.shape))
        rows.append({"layer": name, "kind": layer_kind(owners[name], name), "structure": layer_structure(owners[name], name),
                     "shape": "×".join(map(str, t.shape)), "image": f"{h}×{w}", "values": n, "non-zero": nz,
                     "non-zero %": 100.0 * nz / n,
                     "sparsity %": 100.0 * (n - nz) / n, "max |c|": float(a.max()) if n else 0.0,
                     "energy": float((t.double() ** 2).sum())})
    return rows


def coefficient_image(t: torch.Tensor) -> np.ndarray:
    """The tensor laid out as the exported image: (O, I, Kh, Kw) → (O·Kh, I·Kw)."""
    return quant.tensor_to_image(t.detach().float().cpu()).numpy()


def log_magnitude(img: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """log10 |c|, with exact zeros (and anything below ``floor``) shown at log10(floor)."""
    return np.log10(np.maximum(np.abs(img), floor)).astype(np.float32)


def max_pool(img: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """``img`` shrunk by the smallest integer factor that fits ``max_side``, keeping each
    block's largest value (so a lone large coefficient stays visible); the factor."""
    h, w = img.shape
    k = max(1, math.ceil(max(h, w) / max_side))
    if k == 1:
        return img, 1
    ph, pw = -h % k, -w % k
    padded = np.pad(img, ((0, ph), (0, pw)), constant_values=-np.inf)
    return padded.reshape((h + ph) // k, k, (w + pw) // k, k).max(axis=(1, 3)), k


@dataclass
class FrequencyMaps:
    """Per-frequency statistics of one layer, aggregated over its filters (spatial DCT) or
    over its B×B blocks (channel DCT): mean energy and fraction non-zero per (k_h, k_w)."""

    energy: np.ndarray
    nonzero: np.ndarray
    axes: tuple[str, str]


def frequency_maps(model: nn.Module, name: str, q: float) -> FrequencyMaps | None:
    """None for tensors that are not in a transform domain (the classifier, biases) and for
    a channel-DCT over the whole matrix (one frequency plane, nothing to aggregate)."""
    module = _owners(model)[name]
    t = export.video_tensors(model)[name].detach().float().cpu()
    if isinstance(module, DCTConv2d) and name.endswith("weight_dct"):
        c = t.reshape(-1, t.shape[-2], t.shape[-1])
        return FrequencyMaps((c.double() ** 2).mean(0).numpy(), (c.abs() >= q / 2).double().mean(0).numpy(),
                             ("k_h", "k_w"))
    if isinstance(module, ChannelDCTConv1x1) and name.endswith("weight_dct") and module.block_size:
        b = module.block_size
        rows, cols = t.shape
        blocks = t.reshape(rows // b, b, cols // b, b).permute(0, 2, 1, 3).reshape(-1, b, b)
        return FrequencyMaps((blocks.double() ** 2).mean(0).numpy(), (blocks.abs() >= q / 2).double().mean(0).numpy(),
                             ("u (output channels)", "v (input channels)"))
    return None


@dataclass
class Histogram:
    """Histogram of log10 |c| over the non-zero coefficients, and how many are exactly 0."""

    edges: np.ndarray
    counts: np.ndarray
    zeros: int
    threshold: float  # log10(q/2)
    below: int  # 0 < |c| < q/2 (what rounding at q removes)
    above: int  # |c| ≥ q/2


def magnitude_histogram(t: torch.Tensor, q: float, bins: int = 80) -> Histogram:
    a = t.detach().abs().double().flatten().numpy()
    nz = a[a > 0]
    zeros = int(a.size - nz.size)
    logs = np.log10(nz) if nz.size else np.zeros(0)
    lo = min(float(logs.min()) if logs.size else -6.0, math.log10(q / 2)) - 0.1
    hi = max(float(logs.max()) if logs.size else 0.0, math.log10(q / 2)) + 0.1
    counts, edges = np.histogram(logs, bins=bins, range=(lo, hi))
    above = int((a >= q / 2).sum())
    return Histogram(edges, counts, zeros, math.log10(q / 2), int(a.size - zeros - above), above)


# --- frames -----------------------------------------------------------------------------------

@dataclass
class CodedFrames:
    """The frames a format-v2 bundle codes for a model under some settings (one stream):
    the pixels of the coded frames and, for every frame of the plan, what it holds."""

    frame: int  # side
    container_bits: int  # pixel depth; level 0 is pixel 2^(bits−1)
    pixels: np.ndarray  # (coded frames, S, S) uint16, in stream order
    ids: list[int]  # plan frame number of each coded frame
    labels: list[str]  # "layer · frequency (kh, kw) · rows a–b · cols c–d" of each coded frame
    info: list[dict]  # per plan frame: layer, coded, parts (planes, frequencies, rows, cols)

    @property
    def plan_frames(self) -> int:
        return len(self.info)


def frame_label(info: dict) -> str:
    parts = info.get("parts") or []
    if not parts:
        return f"{info['layer']} · padding"
    freqs = [p["frequency"] for p in parts if p["frequency"] is not None]
    where = f"{info['layer']}"
    if freqs:
        f0, f1 = freqs[0], freqs[-1]
        where += f" · freq ({f0[0]},{f0[1]})" + (f"…({f1[0]},{f1[1]})" if f1 != f0 else "")
    r, c = parts[0]["rows"], parts[0]["cols"]
    return where + f" · rows {r[0]}–{r[1] - 1} · cols {c[0]}–{c[1] - 1}"


def coded_frames(model: nn.Module, meta: dict, settings: EncodeSettings | None = None) -> CodedFrames:
    """Lay ``model`` out exactly as ``ctnet encode`` would with ``settings`` (default:
    ``EncodeSettings()``), without coding it."""
    from .codec import bundle as B
    from .codec import plan as PL
    settings = _settings(settings).validate()
    lay = B.layout(model, meta, settings)
    ids = [int(i) for i in np.nonzero(lay.coded)[0]]
    pixels, _ = PL.to_pixels(lay.levels[ids], settings.container_bits)
    info = lay.info()
    return CodedFrames(settings.frame, settings.container_bits, pixels, ids, [frame_label(info[i]) for i in ids], info)


def level_view(pixels: np.ndarray, container_bits: int) -> np.ndarray:
    """8-bit view of |level| (pixel − the container's level 0), square-root stretched so the
    99.9th percentile of non-zero levels is white: sparse levels become visible."""
    dev = np.abs(np.asarray(pixels, np.int64) - (1 << (container_bits - 1))).astype(np.float64)
    nz = dev[dev > 0]
    top = float(np.percentile(nz, 99.9)) if nz.size else 1.0
    return np.round(255 * np.sqrt(np.clip(dev / max(top, 1.0), 0, 1))).astype(np.uint8)


def adjacent_mse(frames: np.ndarray, order: list[int] | None = None) -> np.ndarray:
    """Mean squared pixel difference between consecutive frames of ``order``."""
    x = frames if order is None else frames[order]
    if len(x) < 2:
        return np.zeros(0)
    d = x[1:].astype(np.float64) - x[:-1].astype(np.float64)
    return (d * d).reshape(len(d), -1).mean(1)


def to_uint8(frames: np.ndarray, bit_depth: int) -> np.ndarray:
    """Pixels of any depth shown on 8 bits (the top 8 bits)."""
    return (np.asarray(frames, np.uint16) >> (bit_depth - 8)).astype(np.uint8)


def zero_levels(frames: np.ndarray) -> np.ndarray:
    """Each frame's most common pixel value: the zero point of a sparse coefficient tile."""
    return np.array([np.bincount(f.ravel()).argmax() for f in np.asarray(frames, np.int64)], np.int64)


def magnitude_view(frames: np.ndarray) -> np.ndarray:
    """8-bit view of |pixel − the frame's zero level|, square-root stretched so that the
    99.9th percentile of non-zero deviations is white: sparse coefficients become visible
    where the coded frames are almost uniformly grey."""
    x = np.asarray(frames, np.int64)
    dev = np.abs(x - zero_levels(x)[:, None, None]).astype(np.float64)
    nz = dev[dev > 0]
    top = float(np.percentile(nz, 99.9)) if nz.size else 1.0
    return np.round(255 * np.sqrt(np.clip(dev / max(top, 1.0), 0, 1))).astype(np.uint8)


def thumbnail_grid(frames: np.ndarray, order: list[int] | None = None, *, thumb: int = 32, columns: int = 24,
                   gap: int = 2, max_frames: int | None = None, pool: str = "mean") -> np.ndarray:
    """One image of frames as thumbnails (row-major in ``order``), each shrunk to at most
    ``thumb`` pixels a side by averaging (``pool="mean"``) or keeping each block's largest
    value (``"max"``, so isolated pixels survive); gaps are white. ``frames`` are 8-bit."""
    idx = list(range(len(frames))) if order is None else list(order)
    if max_frames is not None:
        idx = idx[:max_frames]
    h, w = frames.shape[1:]
    k = max(1, math.ceil(max(h, w) / thumb))
    th, tw = -(-h // k), -(-w // k)
    cols = max(1, min(columns, len(idx)))
    rows = max(1, -(-len(idx) // cols))
    out = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap), 255, np.uint8)
    for j, i in enumerate(idx):
        f = frames[i].astype(np.float32)
        f = np.pad(f, ((0, th * k - h), (0, tw * k - w)), mode="edge")
        blocks = f.reshape(th, k, tw, k)
        small = blocks.max(axis=(1, 3)) if pool == "max" else blocks.mean(axis=(1, 3))
        r, c = divmod(j, cols)
        out[r * (th + gap): r * (th + gap) + th, c * (tw + gap): c * (tw + gap) + tw] = np.round(small).astype(np.uint8)
    return out


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement (n, H, W) → (n, H·f, W·f), so a player does not blur pixels."""
    if factor <= 1:
        return frames
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def reconstruction_errors(reference: nn.Module, decoded: nn.Module) -> dict[str, dict]:
    """Per stored tensor: max |error|, RMS error and RMS error relative to the tensor's RMS."""
    ref = export.video_tensors(reference)
    dec = export.video_tensors(decoded)
    out = {}
    for name, r in ref.items():
        d = (dec[name].detach().double().cpu() - r.detach().double().cpu())
        rms_ref = float(r.detach().double().pow(2).mean().sqrt())
        rms = float(d.pow(2).mean().sqrt())
        out[name] = {"max_abs": float(d.abs().max()), "rms": rms, "rel_rms": rms / rms_ref if rms_ref else 0.0}
    return out


def layer_errors(layers: list[dict]) -> dict[str, dict]:
    """:func:`reconstruction_errors` of an encode as its encoder measured them (its weight
    layers' rows), without comparing the two models again."""
    return {x["name"]: {"max_abs": x["max_abs_error"], "rms": x["rms_error"], "rel_rms": x["rel_rms_error"]}
            for x in layers if x["kind"] == "weight"}


def encode_layer_table(layers: list[dict], errors: dict[str, dict] | None = None) -> list[dict]:
    """Rows per layer of an encode: bytes, bits per coefficient, errors (the encode's max
    |error| against half a quantisation step, and RMS errors when ``errors`` is given)."""
    rows = []
    for layer in layers:
        n = int(np.prod(layer["shape"])) if layer.get("shape") else 0
        row = {"layer": layer["name"], "kind": layer["kind"], "grid bits": layer.get("bits"), "bytes": layer["bytes"],
               "frames": layer["frames"], "bits/coeff": 8.0 * layer["bytes"] / n if n else None}
        if "nonzero" in layer:  # v2 encodes: bits per non-zero level next to the zero-order entropy
            row.update({"coded frames": layer.get("coded_frames"), "non-zero": layer["nonzero"],
                        "bits/nz": layer.get("bits_per_nonzero"), "H0 bits/nz": layer.get("entropy_bits_per_nonzero")})
        row.update({"max |err|": layer["max_abs_error"], "half step": layer.get("max_half_step")})
        if errors and layer["name"] in errors:
            row["rms err"] = errors[layer["name"]]["rms"]
            row["rel. rms err"] = errors[layer["name"]]["rel_rms"]
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Fidelity:
    """Whether an encode decodes to the weights it was given: ``exact`` (every weight layer
    bit for bit: lossless, on the grid the weights already sit on), else how far it moves
    them — ``changed`` of ``layers`` weight layers, the largest |error| ``max_error`` in layer
    ``worst``, whose largest half quantisation step is ``half_step``. ``lossless``: the codec
    kept the levels (CRF 0), so any error is the grid's (re-quantisation), not the codec's."""

    exact: bool
    lossless: bool
    changed: int
    layers: int
    worst: str | None
    max_error: float
    half_step: float


def encode_fidelity(layers: list[dict], crf: int) -> Fidelity:
    """:class:`Fidelity` of an encode from its per-layer report (``EncodeResult.layers``)."""
    weights = [x for x in layers if x["kind"] == "weight"]
    moved = [x for x in weights if x["max_abs_error"] > 0]
    worst = max(moved, key=lambda x: x["max_abs_error"]) if moved else None
    return Fidelity(exact=not moved, lossless=crf == 0, changed=len(moved), layers=len(weights),
                    worst=worst["name"] if worst else None, max_error=worst["max_abs_error"] if worst else 0.0,
                    half_step=(worst.get("max_half_step") or 0.0) if worst else 0.0)


@dataclass(frozen=True)
class PairedDelta:
    """Top-1 of a model against a reference on the same images, image by image: ``lost``
    images the reference got right and the model wrong, ``gained`` the other way round;
    ``delta`` (points) and its 95 % interval ``low``..``high`` (the paired-proportion Wald
    interval: only images that changed prediction count)."""

    images: int
    lost: int
    gained: int
    delta: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def paired_delta(reference: list[bool], model: list[bool]) -> PairedDelta:
    """:class:`PairedDelta` of per-image top-1 hits ``model`` against ``reference`` (the
    same images in the same order). Raises ValueError when they differ in length."""
    if len(reference) != len(model) or not reference:
        raise ValueError(f"paired accuracy needs the same images: {len(reference)} against {len(model)}")
    n = len(reference)
    lost = sum(1 for r, m in zip(reference, model) if r and not m)
    gained = sum(1 for r, m in zip(reference, model) if m and not r)
    d = (gained - lost) / n
    se = math.sqrt(max((gained + lost) / n - d * d, 0.0) / n)
    return PairedDelta(n, lost, gained, 100 * d, 100 * (d - 1.96 * se), 100 * (d + 1.96 * se))


def encode_changes(previous: list[dict], current: list[dict]) -> list[dict]:
    """Per layer, bytes and max error of the previous and current encode and the change."""
    prev = {layer["name"]: layer for layer in previous}
    rows = []
    for layer in current:
        p = prev.get(layer["name"])
        if p is None:
            continue
        rows.append({"layer": layer["name"], "bytes before": p["bytes"], "bytes now": layer["bytes"],
                     "Δ bytes": layer["bytes"] - p["bytes"],
                     "Δ %": 100.0 * (layer["bytes"] - p["bytes"]) / p["bytes"] if p["bytes"] else None,
                     "max |err| before": p["max_abs_error"], "max |err| now": layer["max_abs_error"]})
    return rows


# --- the export grid (what a bundle codes) -----------------------------------------------------------

def _settings(settings: EncodeSettings | None) -> EncodeSettings:
    return EncodeSettings() if settings is None else settings


def grid_stats(model: nn.Module, meta: dict, settings: EncodeSettings | None = None) -> list[dict]:
    """Per stored tensor, its levels on the export grid ``settings`` asks for (default:
    ``EncodeSettings()``, the grid training simulated): values, non-zero levels (what the
    bundle codes and the results table counts), largest |level| and the largest half
    quantisation step. A decoded bundle's meta carries its grid, so its counts are exactly
    the bundle's."""
    from .codec import bundle as B
    return _grid_rows(model, B.layout(model, meta, _settings(settings).validate()))


def _grid_rows(model: nn.Module, lay) -> list[dict]:
    owners = _owners(model)
    rows = []
    for g in lay.grids:
        n = int(np.prod(g.shape))
        nz = int(np.count_nonzero(g.levels))
        h, w = quant.image_shape(tuple(g.shape))
        rows.append({"layer": g.name, "kind": layer_kind(owners[g.name], g.name),
                     "structure": layer_structure(owners[g.name], g.name), "shape": "×".join(map(str, g.shape)),
                     "image": f"{h}×{w}", "values": n, "non-zero": nz, "non-zero %": 100.0 * nz / n if n else 0.0,
                     "sparsity %": 100.0 * (n - nz) / n if n else 0.0,
                     "max |level|": int(np.abs(g.levels).max()) if n else 0,
                     "q (largest step)": float(g.scale.max()) if len(g.scale) else 0.0})
    return rows


def layer_bytes(info: list[dict], frame_bytes) -> dict[str, int]:
    """Bytes per layer from bytes per plan frame (``frame_info`` of an encode, or a v2
    bundle's ``meta["bundle"]["frame_bytes"]`` with the plan's ``info``)."""
    out: dict[str, int] = {}
    for f, b in zip(info, frame_bytes):
        out[f["layer"]] = out.get(f["layer"], 0) + int(b or 0)
    return out


def compare_layers(a: dict[str, dict], b: dict[str, dict]) -> list[dict]:
    """Side-by-side per-layer rows of two models' summaries (layer → {bytes, non-zero,
    values}): each side's bytes, non-zero levels and bits per non-zero, and B − A."""
    rows = []
    for name in list(a) + [n for n in b if n not in a]:
        x, y = a.get(name, {}), b.get(name, {})
        row: dict[str, Any] = {"layer": name}
        for tag, d in (("A", x), ("B", y)):
            row[f"bytes {tag}"] = d.get("bytes")
            row[f"non-zero {tag}"] = d.get("non-zero")
            nz, by = d.get("non-zero"), d.get("bytes")
            row[f"bits/nz {tag}"] = 8.0 * by / nz if nz and by is not None else None
        for what in ("bytes", "non-zero"):
            va, vb = row[f"{what} A"], row[f"{what} B"]
            row[f"Δ {what}"] = vb - va if va is not None and vb is not None else None
        rows.append(row)
    return rows


def layer_summary(loaded: LoadedModel) -> dict[str, dict]:
    """layer → {values, non-zero (levels on the export grid), bytes (None for a checkpoint
    file, which has no bundle)} of a loaded checkpoint or bundle (v1 or v2)."""
    from .codec import bundle as B
    model, meta, b = loaded.model, loaded.meta, loaded.bundle
    lay = B.layout(model, meta, _settings(loaded.settings).validate())
    out = {r["layer"]: {"values": r["values"], "non-zero": r["non-zero"], "bytes": None} for r in _grid_rows(model, lay)}
    if loaded.settings is not None and b is not None and b.frame_bytes is not None:
        for name, nbytes in layer_bytes(lay.info(), b.frame_bytes).items():
            if name in out:
                out[name]["bytes"] = nbytes
    elif b is not None and isinstance(meta.get("layers"), list):  # v1: bytes per layer in its manifest
        for layer in meta["layers"]:
            if layer.get("name") in out:
                out[layer["name"]]["bytes"] = int(layer.get("bytes") or 0)
    return out


def level_frequency_map(model: nn.Module, meta: dict, name: str,
                        settings: EncodeSettings | None = None) -> np.ndarray | None:
    """Fraction of non-zero levels on the export grid per frequency (k_h, k_w) of one spatial
    DCT layer, over all its filters (a sparsity map of the layer); None for other tensors."""
    from .codec import bundle as B
    module = _owners(model).get(name)
    if not (isinstance(module, DCTConv2d) and name.endswith("weight_dct")):
        return None
    s = _settings(settings).validate()
    t = export.video_tensors(model)[name]
    g = B.grid_of(name, t, s, 0, B.known_grid(meta, s).get(name))
    lv = np.asarray(g.levels)
    return (lv.reshape(-1, lv.shape[-2], lv.shape[-1]) != 0).mean(0)


__all__ = ["CodedFrames", "FrequencyMaps", "Histogram", "KIND_CHANNEL", "KIND_PLAIN", "KIND_SPATIAL",
           "adjacent_mse", "coded_frames", "coefficient_image", "coefficient_tensors", "compare_layers",
           "encode_changes", "encode_layer_table",
           "filter_grid", "frame_label", "frequency_maps", "grid_stats", "layer_bytes", "level_frequency_map", "layer_kind",
           "layer_stats", "layer_structure", "layer_summary", "level_view", "log_magnitude", "magnitude_histogram",
           "max_pool", "nonzero",
           "layer_errors", "reconstruction_errors", "thumbnail_grid", "to_uint8", "upscale",
           "zero_levels"]
