"""Per-layer grid bit depths chosen by measured sensitivity (``ctnet encode --bit-depth auto``).

A *sensitivity profile* of a model says, for every stored tensor and every candidate grid
(4…8 bits), how far the model's predictions move on a class-balanced slice of the **train**
split (never the val split results are reported on) when that tensor alone is re-quantised
to that grid and every other tensor sits on the finest candidate grid: the mean KL
divergence of the predicted class distribution from the reference's (all tensors on the
finest grid), with the cross-entropy and top-1 beside it; and each tensor's estimated
bundle bytes at each grid (``ctnet.export.tensor_bytes``, the calibrated estimate training
logs). The KL divergence, not the label loss, is what decides: on images the model was
trained on, its labels are fitted (top-1 ~100 %), so the cross-entropy hardly moves and its
changes drown in noise (measured on the demo's λ = 5e-7 CTNet-18: docs/bit-depth.md), while
the KL divergence is never negative and counts every change of the predictions.

:func:`allocate` then picks one grid per tensor: the fewest estimated bytes whose summed
single-tensor divergences stay within a budget (a Lagrangian sweep: for a multiplier μ
every tensor takes the grid minimising bytes + μ·KL; μ is bisected to the smallest that
meets the budget). Single-tensor changes do not add up exactly, so :func:`measure_combined`
reports what the chosen grids really give on the same slice.

Profiles are cached per source (its content hash, as ``ctnet.rd`` keys its sweeps) under
``$CTNET_SENSITIVITY_CACHE`` or ``$XDG_CACHE_HOME/ctnet/sensitivity``; the app's Codec lab
reads that cache and ``assets/demo/sensitivity/`` (profiles shipped with the demo, so it can
offer ``auto`` without the train split).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import quant
from .errors import AllocationError
from .export import tensor_bytes, video_tensors
from .limits import BIT_DEPTHS
from .strict import JSONInvalid, parse_json

CANDIDATES = (4, 5, 6, 7, 8)
DEFAULT_IMAGES = 256
DEFAULT_BUDGET = 0.02  # summed single-tensor KL divergences from the reference predictions (nats) on the slice
FORMAT = "ctnet-sensitivity"
VERSION = 1
MAX_FILE_BYTES = 4 << 20
CACHE_ENV = "CTNET_SENSITIVITY_CACHE"


@dataclass(frozen=True)
class Profile:
    """What :func:`measure` found (JSON form: :meth:`to_json`, read back strictly by :meth:`from_json`)."""

    source_sha256: str
    data: str  # which images: the train folder's name and a hash of its file list
    images: int
    candidates: tuple[int, ...]
    base_loss: float  # mean cross-entropy with every tensor on the finest candidate grid (the reference)
    base_acc1: float
    kl: dict[str, dict[int, float]]  # tensor → grid bits → mean KL(reference ‖ it alone on that grid), nats
    loss: dict[str, dict[int, float]]  # … mean cross-entropy
    acc1: dict[str, dict[int, float]]
    est_bytes: dict[str, dict[int, float]]  # tensor → grid bits → estimated bytes

    @property
    def top(self) -> int:
        return max(self.candidates)

    @property
    def tensors(self) -> list[str]:
        return list(self.loss)

    def delta(self, name: str, bits: int) -> float:
        """How far the predictions move when ``name`` alone goes from the finest grid to ``bits``."""
        return self.kl[name][bits]

    def to_json(self) -> dict:
        def keyed(d):
            return {n: {str(b): v for b, v in per.items()} for n, per in d.items()}
        return {"format": FORMAT, "version": VERSION, "source_sha256": self.source_sha256, "data": self.data,
                "split": "train", "images": self.images, "candidates": list(self.candidates),
                "base_loss": self.base_loss, "base_acc1": self.base_acc1, "kl": keyed(self.kl),
                "loss": keyed(self.loss), "acc1": keyed(self.acc1), "est_bytes": keyed(self.est_bytes)}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> "Profile":
        """The one strict reader of a profile file (``where`` names it in messages)."""
        def fail(msg: str):
            raise AllocationError(f"{where}: {msg}")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            fail(f"not a ctnet sensitivity profile (format must be {FORMAT!r})")
        if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
            fail(f"sensitivity profile version {str(doc.get('version'))[:20]} (this ctnet reads {VERSION})")
        sha, data, images, cands = doc.get("source_sha256"), doc.get("data"), doc.get("images"), doc.get("candidates")
        if not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= set("0123456789abcdef")):
            fail("'source_sha256' must be 64 hex digits")
        if not isinstance(data, str) or len(data) > 512:
            fail("'data' must be a short string")
        if isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= 1 << 24:
            fail("'images' must be a positive integer")
        if not isinstance(cands, list) or not 2 <= len(cands) <= len(BIT_DEPTHS) or len(set(cands)) != len(
                cands) or not all(isinstance(b, int) and not isinstance(b, bool) and b in BIT_DEPTHS
                                  for b in cands):
            fail(f"'candidates' must list distinct grid bit depths {BIT_DEPTHS[0]}..{BIT_DEPTHS[-1]}")

        def number(v, what: str, lo: float = 0.0, hi: float = math.inf) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                fail(f"{what} must be a finite number in {lo:g}..{hi:g}")
            return float(v)

        def table(key: str, hi: float) -> dict[str, dict[int, float]]:
            d = doc.get(key)
            if not isinstance(d, dict) or not 1 <= len(d) <= 4096:
                fail(f"'{key}' must map tensor names to per-grid values")
            out = {}
            for name, per in d.items():
                if not isinstance(name, str) or len(name) > 256 or not isinstance(per, dict) or \
                        sorted(per) != sorted(str(b) for b in cands):
                    fail(f"'{key}.{str(name)[:40]}' must give one value per candidate grid")
                out[name] = {b: number(per[str(b)], f"'{key}.{name}.{b}'", 0.0, hi) for b in cands}
            return out
        kl, loss = table("kl", 1e6), table("loss", 1e6)
        acc1, est = table("acc1", 100.0), table("est_bytes", 1e12)
        if not set(kl) == set(loss) == set(acc1) == set(est):
            fail("'kl', 'loss', 'acc1' and 'est_bytes' must name the same tensors")
        return cls(sha, data, images, tuple(sorted(cands)), number(doc.get("base_loss"), "'base_loss'", 0.0, 1e6),
                   number(doc.get("base_acc1"), "'base_acc1'", 0.0, 100.0), kl, loss, acc1, est)


# --- measuring ---------------------------------------------------------------------------------

def data_id(data: str | os.PathLike) -> str:
    """The train images a profile was measured on, wherever the folder lives: its name and a
    hash of its files' relative paths and sizes."""
    from .data import split_dir
    folder = split_dir(data, "train")
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder).as_posix()}\0{f.stat().st_size}\0".encode())
    return f"{Path(data).expanduser().resolve().name}/train:{h.hexdigest()[:16]}"


def train_slice(data: str | os.PathLike, meta: dict, images: int = DEFAULT_IMAGES):
    """The class-balanced slice of ``data``'s train split a profile is measured on (decoded once)."""
    from .data import load_split
    return load_split(data, "train", num_classes=int(meta["model"]["num_classes"]),
                      size=int(meta.get("image_size", 128)), limit=images, cache=True)


def _on_grid(t: torch.Tensor, bits: int) -> torch.Tensor:
    """``t`` on its ``bits``-bit export grid: what ``quant.fake_quantize`` gives, through the
    eager quantiser (torch.compile would specialise the compiled export simulation on every
    grid it meets here)."""
    img = quant.tensor_to_image(t.detach().float())
    return quant.image_to_tensor(quant.dequantize_image(*quant.quantize_image(img, bits)), t.shape).to(t.dtype)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             reference: torch.Tensor | None = None) -> tuple[torch.Tensor, float, float, float]:
    """(log-probabilities, mean cross-entropy, top-1 %, mean KL(reference ‖ these) in nats)."""
    logp = torch.cat([F.log_softmax(model(x[i:i + batch_size]).float(), dim=1) for i in range(0, len(x), batch_size)])
    loss = float(F.nll_loss(logp, y))
    acc1 = 100.0 * float((logp.argmax(1) == y).double().mean())
    kl = 0.0 if reference is None else float(F.kl_div(logp, reference, log_target=True, reduction="batchmean"))
    return logp, loss, acc1, max(kl, 0.0)


def _prepared(model: nn.Module, split, device) -> tuple[nn.Module, dict, torch.Tensor, torch.Tensor]:
    from .data import normalize
    from .layers import configure_export_training
    work = configure_export_training(copy.deepcopy(model), pixel_bit_depth=0).to(device).eval()
    work.requires_grad_(False)
    x = normalize(split.images.to(device)).contiguous(memory_format=torch.channels_last)
    return work, video_tensors(work), x, split.labels.to(device)


@torch.no_grad()
def measure(model: nn.Module, split, *, source_sha256: str, data: str, candidates=None,
            device: str | torch.device = "cpu", batch_size: int = 128,
            progress: Callable[[int, int], None] | None = None) -> Profile:
    """The sensitivity profile of ``model`` on ``split`` (images decoded, e.g. :func:`train_slice`)
    over the ``candidates`` grids (default :data:`CANDIDATES`)."""
    candidates = tuple(sorted(set(CANDIDATES if candidates is None else candidates)))
    if len(candidates) < 2 or any(b not in BIT_DEPTHS for b in candidates):
        raise AllocationError(f"candidate grids must be two or more of {BIT_DEPTHS[0]}.."
                              f"{BIT_DEPTHS[-1]} bits, got {candidates}")
    top = max(candidates)
    work, tensors, x, y = _prepared(model, split, torch.device(device))
    source = {n: t.detach().clone() for n, t in tensors.items()}
    for n, t in tensors.items():
        t.copy_(_on_grid(source[n], top))
    reference, base_loss, base_acc1, _ = _predict(work, x, y, batch_size)
    kl: dict[str, dict[int, float]] = {}
    loss: dict[str, dict[int, float]] = {}
    acc1: dict[str, dict[int, float]] = {}
    est: dict[str, dict[int, float]] = {}
    total, done = len(tensors) * (len(candidates) - 1), 0
    for n, t in tensors.items():
        kl[n], loss[n], acc1[n] = {top: 0.0}, {top: base_loss}, {top: base_acc1}
        est[n] = {b: round(tensor_bytes(source[n], b), 1) for b in candidates}
        for b in candidates[:-1]:
            t.copy_(_on_grid(source[n], b))
            _, loss[n][b], acc1[n][b], kl[n][b] = _predict(work, x, y, batch_size, reference)
            done += 1
            if progress:
                progress(done, total)
        t.copy_(_on_grid(source[n], top))
    return Profile(source_sha256, data, len(x), candidates, base_loss, base_acc1, kl, loss, acc1, est)


@torch.no_grad()
def measure_combined(model: nn.Module, split, layer_bits: dict[str, int], *, top: int | None = None,
                     device: str | torch.device = "cpu", batch_size: int = 128) -> dict:
    """What every tensor on its own grid ``layer_bits`` gives on ``split``: mean KL divergence
    from the reference (every tensor on the ``top``-bit grid, default the finest in the map),
    cross-entropy and top-1."""
    work, tensors, x, y = _prepared(model, split, torch.device(device))
    source = {n: t.detach().clone() for n, t in tensors.items()}
    top = top or max(layer_bits.values())
    for n, t in tensors.items():
        t.copy_(_on_grid(source[n], top))
    reference, *_ = _predict(work, x, y, batch_size)
    for n, t in tensors.items():
        t.copy_(_on_grid(source[n], layer_bits[n]))
    _, loss, acc1, kl = _predict(work, x, y, batch_size, reference)
    return {"kl": kl, "loss": loss, "acc1": acc1}


# --- choosing -----------------------------------------------------------------------------------

def allocate(profile: Profile, budget: float = DEFAULT_BUDGET) -> dict[str, int]:
    """One grid per tensor: the fewest estimated bytes whose summed single-tensor KL
    divergences stay within ``budget`` (nats, ≥ 0; 0 gives every tensor the finest candidate
    grid unless a coarser one changed nothing)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget < 0:
        raise AllocationError(f"the budget must be a finite number of nats ≥ 0, got {budget!r}")

    def pick(mu: float) -> dict[str, int]:
        return {n: min(profile.candidates, key=lambda b: (profile.est_bytes[n][b] + mu * profile.delta(n, b), -b))
                for n in profile.tensors}

    def spent(choice: dict[str, int]) -> float:
        return sum(profile.delta(n, b) for n, b in choice.items())

    lo, hi = 0.0, 1.0
    if spent(pick(lo)) <= budget:
        return pick(lo)
    while spent(pick(hi)) > budget and hi < 1e18:
        hi *= 4.0
    for _ in range(100):  # bisect μ to the smallest multiplier that meets the budget
        mid = (lo + hi) / 2
        if spent(pick(mid)) > budget:
            lo = mid
        else:
            hi = mid
    return pick(hi)


def summary(profile: Profile, layer_bits: dict[str, int]) -> dict:
    """What a choice costs and saves by the profile's own figures."""
    return {"est_bytes": round(sum(profile.est_bytes[n][b] for n, b in layer_bits.items())),
            "est_bytes_top": round(sum(profile.est_bytes[n][profile.top] for n in layer_bits)),
            "summed_kl": sum(profile.delta(n, b) for n, b in layer_bits.items()),
            "bits": {b: sum(1 for v in layer_bits.values() if v == b) for b in profile.candidates}}


# --- the cache ------------------------------------------------------------------------------------

def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ctnet" / "sensitivity"


def profile_path(source_sha256: str, folder: str | os.PathLike | None = None) -> Path:
    return Path(folder or cache_dir()) / f"{source_sha256[:32]}.json"


def read_profile(path: str | os.PathLike) -> Profile | None:
    """The profile in ``path`` (None when there is none); a file that is not one is an error."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise AllocationError(f"{p}: larger than a sensitivity profile can be")
        doc = parse_json(p.read_bytes())  # a NaN or infinity is refused by the field it is in
    except OSError as exc:
        raise AllocationError(f"{p}: not a readable sensitivity profile ({type(exc).__name__})") from None
    except JSONInvalid as exc:
        raise AllocationError(f"{p}: not a readable sensitivity profile ({exc.cause})") from None
    return Profile.from_json(doc, str(p))


def write_profile(path: str | os.PathLike, profile: Profile) -> None:
    from .fileio import atomic_write_text
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(profile.to_json(), indent=1) + "\n")


def find_profile(source_sha256: str, folders=()) -> Profile | None:
    """The cached profile of a source: in ``folders`` (e.g. the demo's), then this machine's cache."""
    for folder in (*folders, cache_dir()):
        prof = read_profile(profile_path(source_sha256, folder))
        if prof is not None and prof.source_sha256 == source_sha256:
            return prof
    return None


def profile_for(source: str | os.PathLike, model: nn.Module, meta: dict, data: str | os.PathLike, *,
                images: int = DEFAULT_IMAGES, device: str = "cpu", progress=None, log=None) -> Profile:
    """The profile of ``source`` on ``images`` of ``data``'s train split: from the cache when
    one was measured on the same images, else measured now (and cached)."""
    from .rd import source_hash
    digest, did = source_hash(source), data_id(data)
    path = profile_path(digest)
    cached = read_profile(path)
    if cached is not None and cached.source_sha256 == digest and cached.data == did and cached.images == images \
            and cached.candidates == CANDIDATES:
        return cached
    if log:
        log(f"measuring the sensitivity of every stored tensor on {images} train images of {data} "
            f"({len(video_tensors(model)) * (len(CANDIDATES) - 1)} evaluations) …")
    prof = measure(model, train_slice(data, meta, images), source_sha256=digest, data=did, device=device,
                   progress=progress)
    write_profile(path, prof)
    return prof


def read_layer_map(path: str | os.PathLike) -> dict[str, int]:
    """A per-layer bit-depth map from a JSON file: ``{"tensor name": bits, …}`` (what a
    per-layer bundle's ``settings.layer_bits`` and ``ctnet encode --json`` hold)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise AllocationError(f"{p}: too large for a per-layer bit-depth map")
        doc = parse_json(p.read_bytes(), constants=False)
    except FileNotFoundError:
        raise AllocationError(f"--bit-depth {p}: not 4..12, 'auto' or an existing JSON file") from None
    except OSError as exc:
        raise AllocationError(f"{p}: not a JSON per-layer bit-depth map ({type(exc).__name__})") from None
    except JSONInvalid as exc:
        raise AllocationError(f"{p}: not a JSON per-layer bit-depth map ({exc.cause})") from None
    if isinstance(doc, dict) and isinstance(doc.get("settings"), dict) and "layer_bits" in doc["settings"]:
        doc = doc["settings"]["layer_bits"]  # a bundle's manifest.json, or an encode report
    if not isinstance(doc, dict) or not doc or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in doc.items()):
        raise AllocationError(f"{p}: a per-layer bit-depth map is a JSON object of tensor name → integer bits")
    bad = {k: v for k, v in doc.items() if v not in BIT_DEPTHS}
    if bad:
        k, v = next(iter(bad.items()))
        raise AllocationError(f"{p}: {k} asks for a {v}-bit grid; grids are {BIT_DEPTHS[0]}.."
                              f"{BIT_DEPTHS[-1]} bits")
    return dict(doc)


__all__ = ["AllocationError", "CANDIDATES", "DEFAULT_BUDGET", "DEFAULT_IMAGES", "Profile", "allocate", "cache_dir",
           "data_id", "find_profile", "measure", "measure_combined", "profile_for", "profile_path", "read_layer_map",
           "read_profile", "summary", "train_slice", "write_profile"]
