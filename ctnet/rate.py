"""Differentiable proxy of the H.265 rate of the stored coefficients, and its companions.

For coefficients ``c`` and step ``q``, ``l = |c|/q``:
significance ``σ = sigmoid(s·(l − 0.5))`` (0.5 mimics HEVC's rounding), level cost
``1 + log2(1 + l)`` bits, scan weight ``w`` (zig-zag position for spatial kernels, bounded
radial weight for channel-DCT matrices, 1 for plain 1×1 weights kept in the pixel domain):
``R_layer = Σ σ·(1 + log2(1 + l))·w``.

``grid="export"`` measures ``l`` in each tile's own export step at ``bits`` bits instead of a
fixed ``q`` (see ``ctnet.quant``): the proxy then counts the levels the bundle really codes.
With ``dither`` > 0 (``ctnet train --export-dither``) that step is the dithered grid's (its
margin of free levels makes it larger); the offset itself is not modelled.

Speed (``docs/training-speed.md``): :func:`regularisers` computes the rate and the L2 term of
a tensor in one elementwise pass with the analytic gradient (no autograd graph of a dozen
11 M-element temporaries), on the export grid straight from the tile statistics the
straight-through forward already computed (``quant.export_grid``, shared within
``quant.shared_export_grids()``). :func:`layer_rate` is the plain autograd reference.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DCT_LAYERS, QuantConv2d
from .quant import TILE, export_grid, export_step

RATE_GRIDS = ("qstep", "export")
_INV_LN2 = 1.0 / math.log(2.0)
_CPU_CHUNK = 1 << 18  # elements per chunk of the eager CPU path: its temporaries stay in cache


def rate_terms(model: nn.Module):
    """(name, coefficients, scan weight) of every tensor the rate proxy regularises."""
    for name, module in model.named_modules():
        if isinstance(module, DCT_LAYERS):
            yield name, module.weight_dct, module.rate_weight
        elif isinstance(module, QuantConv2d) and module.kernel_size == (1, 1):
            yield name, module.weight, None


def layer_rate(c: torch.Tensor, weight: torch.Tensor | None, qstep, steepness: float) -> torch.Tensor:
    """Rate of one tensor; ``qstep`` is a float or a tensor of per-element steps."""
    level = c.abs() / qstep
    significance = torch.sigmoid(steepness * (level - 0.5))
    bits = significance * (1.0 + torch.log2(1.0 + level))
    if weight is not None:
        bits = bits * weight.to(bits.dtype)
    return bits.sum()


# --- the fused pass --------------------------------------------------------------------------

def _rate_l2_math(x, q, w, s: float, alpha: float, with_grad: bool):
    """Σ rate, Σ x² and (``with_grad``) ∂(rate + α·Σ x²)/∂x of values ``x`` at steps ``q``
    (tensor or float) with scan weights ``w`` (tensor or None), all broadcasting against ``x``."""
    level = x.abs() / q
    sig = torch.sigmoid(s * (level - 0.5))
    one_plus = level + 1.0
    cost = torch.log2(one_plus) + 1.0
    bits = sig * cost
    if w is not None:
        bits = bits * w
    rate, l2 = bits.sum(), (x * x).sum()
    if not with_grad:
        return rate, l2, None
    # d/dl [σ·cost] = σ·(s·(1 − σ)·cost + 1/((1 + l)·ln 2)); dl/dx = sign(x)/q (0 at x = 0)
    grad = sig * (s * (1.0 - sig) * cost + _INV_LN2 / one_plus) / q
    if w is not None:
        grad = grad * w
    return rate, l2, grad * torch.sign(x) + (2.0 * alpha) * x


# the compiled _rate_l2_math, False once compiling failed or is off
_COMPILED: Callable[[torch.Tensor, torch.Tensor | float, torch.Tensor | None, float, float, bool],
                    tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] | Literal[False] | None = None


def _compile_wanted(x: torch.Tensor, numel: int) -> bool:
    """torch.compile fuses the ~20 elementwise operations into one loop (CPU: C++, CUDA:
    Triton). Off with CTNET_COMPILE=0, forced with 1; by default on where it pays: models of at
    least a million coefficients (one compile of ~15 s per process, then ~6× faster)."""
    flag = os.environ.get("CTNET_COMPILE", "")
    if flag == "0" or _COMPILED is False or not hasattr(torch, "compile"):
        return False
    return flag == "1" or (numel >= 1 << 20 and x.device.type in ("cpu", "cuda"))


def _math(x, q, w, s, alpha, with_grad, compiled: bool):
    global _COMPILED
    if compiled and _COMPILED is not False:  # False: compiling failed on an earlier tensor; eager from then on
        try:
            if _COMPILED is None:
                _COMPILED = torch.compile(_rate_l2_math, dynamic=True)
            return _COMPILED(x, q, w, s, alpha, with_grad)
        except Exception as e:  # no compiler, no Triton, an unsupported build: eager is exact too
            _COMPILED = False
            warnings.warn(f"torch.compile of the rate proxy failed, running it eagerly: {e!s:.200}")
    if x.device.type != "cpu" or x.numel() <= _CPU_CHUNK or x.dim() == 0:
        return _rate_l2_math(x, q, w, s, alpha, with_grad)
    # eager on the CPU: the same pass in chunks along dim 0, so its temporaries stay in cache
    step = max(1, _CPU_CHUNK // max(1, x[0].numel()))

    def part(v, a, b):
        return v[a:b] if isinstance(v, torch.Tensor) and v.dim() == x.dim() and v.shape[0] == x.shape[0] else v
    grad = torch.empty_like(x) if with_grad else None
    rates, l2s = [], []
    for a in range(0, x.shape[0], step):
        b = a + step
        r, l2, g = _rate_l2_math(x[a:b], part(q, a, b), part(w, a, b), s, alpha, with_grad)
        rates.append(r)
        l2s.append(l2)
        if grad is not None:  # with_grad
            grad[a:b] = g
    return torch.stack(rates).sum(), torch.stack(l2s).sum(), grad


class _RateL2(torch.autograd.Function):
    """``(R + α·Σ c², R)`` of one coefficient tensor ``c`` from its values ``x`` in some layout
    (``to_c(values, out, factor)`` writes that layout back in ``c``'s). The gradient of the
    first is computed in the forward pass, in the same fused loop, so the backward pass is one
    multiply; the second (the rate alone, for the log) is not differentiable."""

    @staticmethod
    def forward(ctx, c, x, q, w, s, alpha, to_c, compiled):
        with_grad = ctx.needs_input_grad[0]
        rate, l2, grad = _math(x, q, w, s, alpha, with_grad, compiled)
        ctx.set_materialize_grads(False)
        if with_grad:
            ctx.save_for_backward(grad)
            ctx.to_c, ctx.like = to_c, (c.shape, c.stride(), c.dtype, c.device)
        rate = rate.to(c.dtype)
        ctx.mark_non_differentiable(rate)
        return rate + alpha * l2.to(c.dtype), rate

    @staticmethod
    def backward(ctx, g_penalty, _g_rate):
        if g_penalty is None:
            return (None,) * 8
        grad, = ctx.saved_tensors
        shape, stride, dtype, device = ctx.like
        out = torch.empty_strided(shape, stride, dtype=dtype, device=device)  # c's layout (channels-last on CUDA)
        ctx.to_c(grad, out, g_penalty)
        return out, None, None, None, None, None, None, None


def _identity(x, out, factor):
    return torch.mul(x, factor, out=out)


_WEIGHT_TILES: dict = {}


def _weight_tiles(w: torch.Tensor | None, grid, device) -> torch.Tensor:
    """Scan weights laid out like ``grid.tiles`` (0 on the padding, so it costs nothing);
    constant, hence cached per (weight, shape)."""
    key = (None if w is None else (id(w), w._version), tuple(grid.shape), tuple(grid.tiles.shape), str(device))
    hit = _WEIGHT_TILES.get(key)
    if hit is not None and (w is None or hit[0] is w):
        return hit[1]
    shape = grid.shape
    full = torch.ones(shape, device=device) if w is None else w.to(device=device, dtype=torch.float32).expand(shape)
    rows, tile, cols, _ = grid.tiles.shape
    buf = torch.zeros(rows * tile, cols * tile, device=device)
    grid.to_tensor(buf).copy_(full)  # to_tensor is a view into buf
    if len(_WEIGHT_TILES) > 512:
        _WEIGHT_TILES.clear()
    _WEIGHT_TILES[key] = (w, buf.view(rows, tile, cols, tile))
    return _WEIGHT_TILES[key][1]


def _terms(model, qstep, steepness, grid, bits, alpha, dither=0.0):
    if qstep <= 0:
        raise ValueError(f"quantisation step must be > 0, got {qstep}")
    if grid not in RATE_GRIDS:
        raise ValueError(f"rate grid must be one of {RATE_GRIDS}, got {grid!r}")
    terms = list(rate_terms(model))
    compiled = bool(terms) and _compile_wanted(terms[0][1], sum(c.numel() for _, c, _ in terms))
    for name, c, w in terms:
        if grid == "export":
            g = export_grid(c, bits, TILE, dither)
            x, q, w, to_c = g.tiles, g.scale, _weight_tiles(w, g, c.device), g.write_tensor
        else:
            x, q, w, to_c = c.detach(), qstep, None if w is None else w.to(c.dtype), _identity
        yield name, _RateL2.apply(c, x, q, w, float(steepness), float(alpha), to_c, compiled)


def group_count(c: torch.Tensor, step: torch.Tensor | float, steepness: float) -> torch.Tensor:
    """Soft count of the non-empty rows and columns of every frequency plane of ``c`` (a 4-D
    kernel's K_h·K_w planes of O×I, a matrix's one plane): what format v2 pays ~16 bytes for
    and codes almost for free when empty (docs/method.md). A row is non-empty with the
    probability that one of its levels is significant, ``1 − Π(1 − σ)``, with each σ's floor at
    level 0 removed, so an all-zero row counts 0 (the sigmoid's tail over 512 zeros would
    otherwise count it 0.97)."""
    if c.dim() not in (2, 4):
        return c.new_zeros(())
    s = float(steepness)
    level = c.abs() / step
    hits = F.softplus(s * (level - 0.5)) - math.log1p(math.exp(-0.5 * s))  # −log(1 − σ), 0 at level 0
    return (1 - torch.exp(-hits.sum(1))).sum() + (1 - torch.exp(-hits.sum(0))).sum()


def regularisers(model: nn.Module, *, alpha: float, qstep: float = 0.1, steepness: float = 10.0,
                 grid: str = "qstep", bits: int = 8, group: float = 0.0,
                 dither: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ R_layer + α·Σ c² + group·Σ G_layer, Σ R_layer)``: the differentiable penalty the
    loss weights by λ (without ``group``, what ``rate_proxy(...)["total"] + alpha *
    l2_penalty(model)`` gives, up to float rounding) and the rate alone, detached, for the
    log. ``group`` prices each non-empty plane row/column (:func:`group_count`) in the
    proxy's bits. ``dither`` (pixel steps) puts the export grid's steps on the dithered grid.
    One fused pass per tensor, gradient included; call it inside the step's
    ``quant.shared_export_grids()`` scope to reuse the forward pass's tile statistics on the
    export grid."""
    penalties, rates = [], []
    for _, (p, r) in _terms(model, qstep, steepness, grid, bits, alpha, dither):
        penalties.append(p)
        rates.append(r)
    if not rates:
        return torch.zeros(()), torch.zeros(())
    if group > 0:
        for _, c, _ in rate_terms(model):
            step = export_step(c, bits, dither=dither) if grid == "export" else qstep
            penalties.append(group * group_count(c, step, steepness))
    return torch.stack(penalties).sum(), torch.stack(rates).sum()


def rate_proxy(model: nn.Module, *, qstep: float = 0.1, steepness: float = 10.0, grid: str = "qstep",
               bits: int = 8, dither: float = 0.0) -> dict:
    """``{"total": Σ R_layer, "per_layer": {name: R_layer}}`` (differentiable tensors, bits)."""
    per_layer = {name: r for name, (r, _) in _terms(model, qstep, steepness, grid, bits, 0.0, dither)}
    total = torch.stack(list(per_layer.values())).sum() if per_layer else torch.zeros(())
    return {"total": total, "per_layer": per_layer}


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """Σ c² over the rate-regularised coefficients (weighted by λ2 = α·λ in the loss)."""
    terms = [c.pow(2).sum() for _, c, _ in rate_terms(model)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def rate_weight_at(epoch_progress: float, lambda_rate: float, warmup_epochs: float) -> float:
    """λ ramped linearly from 0 over the first ``warmup_epochs`` (progress in epochs)."""
    if warmup_epochs <= 0:
        return lambda_rate
    return lambda_rate * min(1.0, epoch_progress / warmup_epochs)


__all__ = ["rate_terms", "layer_rate", "group_count", "rate_proxy", "regularisers", "l2_penalty", "rate_weight_at"]
