"""Differentiable proxy of the H.265 rate of the stored coefficients, and its companions.

For coefficients ``c`` and step ``q``, ``l = |c|/q``:
significance ``σ = sigmoid(s·(l − 0.5))`` (0.5 mimics HEVC's rounding), level cost
``1 + log2(1 + l)`` bits, scan weight ``w`` (zig-zag position for spatial kernels, bounded
radial weight for channel-DCT matrices, 1 for plain 1×1 weights kept in the pixel domain):
``R_layer = Σ σ·(1 + log2(1 + l))·w``.

``grid="export"`` measures ``l`` in each tile's own export step at ``bits`` bits instead of a
fixed ``q`` (see ``ctnet.quant``): the proxy then counts the levels the bundle really codes.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import DCT_LAYERS, QuantConv2d
from .quant import export_step

RATE_GRIDS = ("qstep", "export")


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


def rate_proxy(model: nn.Module, *, qstep: float = 0.1, steepness: float = 10.0, grid: str = "qstep",
               bits: int = 8) -> dict:
    """``{"total": Σ R_layer, "per_layer": {name: R_layer}}`` (differentiable tensors, bits)."""
    if qstep <= 0:
        raise ValueError(f"quantisation step must be > 0, got {qstep}")
    if grid not in RATE_GRIDS:
        raise ValueError(f"rate grid must be one of {RATE_GRIDS}, got {grid!r}")
    per_layer = {name: layer_rate(c, w, export_step(c, bits) if grid == "export" else qstep, steepness)
                 for name, c, w in rate_terms(model)}
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


__all__ = ["rate_terms", "layer_rate", "rate_proxy", "l2_penalty", "rate_weight_at"]
