"""Layers whose parameters are what the bundle stores.

``DCTConv2d`` holds a k×k convolution as per-filter 2-D DCT coefficients and
``ChannelDCTConv1x1`` a 1×1 convolution as the (block-)DCT of its (C_out, C_in) matrix.
``QuantConv2d`` / ``QuantLinear`` are plain layers that only add the export simulation, and
``QuantLayerNorm`` / ``QuantLayerNorm2d`` / ``QuantCNBlock`` do the same for the other tensors
a bundle stores on the grid (LayerNorm's affine, ConvNeXt's layer scale).

Every one of them carries the same training-time switches (set by
:func:`configure_export_training`): uniform noise of width ``noise_q`` and DCT dropout on the
coefficients, and the straight-through N-bit export simulation (``pixel_bit_depth``), dithered
with ``export_dither`` > 0 (a fresh offset at every forward pass: ``quant.fake_quantize``).
"""
from __future__ import annotations

from typing import overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchvision.models.convnext import CNBlock, LayerNorm2d

from .dct import block_dct2, dct2, dct_matrix, padded_size, radial_weights, zigzag_weights
from .quant import TILE, fake_quantize
from .limits import MAX_DITHER, PIXEL_BIT_DEPTHS


class ExportAware:
    """Mixin: training-time transforms of the stored tensor before it is used."""

    noise_q: float = 0.0
    dct_dropout: float = 0.0
    pixel_bit_depth: int = 0
    export_dither: float = 0.0  # pixel steps of the simulated subtractive dither (0 = off)
    tile: int = TILE
    coefficient_noise = False  # noise and dropout only make sense on DCT coefficients
    training: bool  # nn.Module's, on every class that mixes this in

    def stored_value(self, t: torch.Tensor) -> torch.Tensor:
        # float32 whatever autocast says: the export simulation must match the codec bit for bit
        with torch.autocast(t.device.type, enabled=False):
            return self._stored_value(t)

    def _stored_value(self, t: torch.Tensor) -> torch.Tensor:
        if self.training and self.coefficient_noise and self.noise_q > 0:
            t = t + (torch.rand_like(t) - 0.5) * self.noise_q
        if self.pixel_bit_depth:
            t = fake_quantize(t, self.pixel_bit_depth, self.tile, self.export_dither)
        if self.training and self.coefficient_noise and self.dct_dropout > 0:
            t = F.dropout(t, self.dct_dropout)  # survivors rescaled by 1/(1−p)
        return t

    @overload
    def stored_side(self, t: torch.Tensor) -> torch.Tensor: ...

    @overload
    def stored_side(self, t: None) -> None: ...

    def stored_side(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """A tensor stored beside the coefficients (a bias, a LayerNorm's affine, a layer
        scale) as the bundle stores it: the export grid only, no coefficient noise or dropout."""
        if t is None or not self.pixel_bit_depth:
            return t
        with torch.autocast(t.device.type, enabled=False):
            return fake_quantize(t, self.pixel_bit_depth, self.tile, self.export_dither)


class _CachedWeight(ExportAware):
    """Eval-mode cache of the materialised weight, so a decoded model infers like a plain
    one. Keyed on the stored tensor's version counter: any in-place update invalidates it."""

    weight_dct: nn.Parameter
    bias: nn.Parameter | None

    def _weight_from_stored(self, stored: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _empty_conv(self) -> nn.Conv2d:
        raise NotImplementedError

    def materialized_weight(self) -> torch.Tensor:
        stored = self.stored_tensor()
        cacheable = not self.training and not torch.is_grad_enabled()
        if cacheable:
            key = (stored._version, stored.data_ptr(), stored.dtype, stored.device, self.pixel_bit_depth,
                   self.export_dither)
            cache = self.__dict__.get("_weight_cache")
            if cache is not None and cache[0] == key:
                return cache[1]
        with torch.autocast(stored.device.type, enabled=False):  # the inverse DCT in float32 (conv casts after)
            weight = self._weight_from_stored(self.stored_value(stored))
        if cacheable:
            self.__dict__["_weight_cache"] = (key, weight)
        else:
            self.__dict__.pop("_weight_cache", None)
        return weight

    def stored_tensor(self) -> torch.Tensor:
        return self.weight_dct

    def to_conv(self) -> nn.Conv2d:
        """The plain convolution with the exact (unquantised) weights."""
        conv = self._empty_conv()
        with torch.no_grad():
            conv.weight.copy_(self._weight_from_stored(self.weight_dct))
            if self.bias is not None:
                assert conv.bias is not None  # built with bias=self.bias is not None
                conv.bias.copy_(self.bias)
        return conv


class DCTConv2d(_CachedWeight, nn.Module):
    """k×k convolution parametrised by ``weight_dct`` (C_out, C_in/groups, K_h, K_w)."""

    coefficient_noise = True
    c_h: torch.Tensor  # buffers
    c_w: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, init: bool = True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if kh * kw <= 1:
            raise ValueError("DCTConv2d is for kernels larger than 1×1; use ChannelDCTConv1x1")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight_dct = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("c_h", dct_matrix(kh), persistent=False)
        self.register_buffer("c_w", dct_matrix(kw), persistent=False)
        self.register_buffer("rate_weight", zigzag_weights(kh, kw), persistent=False)
        if init:  # skipped when weights are about to be loaded
            nn.init.kaiming_normal_(self.weight_dct, mode="fan_out", nonlinearity="relu")

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, copy_weights: bool = True) -> "DCTConv2d":
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, conv.bias is not None, init=False)
        layer.to(conv.weight.device)
        if not copy_weights:
            return layer
        with torch.no_grad():
            w = conv.weight.double()
            coeffs = dct2(w, layer.c_h.double(), layer.c_w.double())
            layer.weight_dct.copy_(coeffs.to(conv.weight.dtype))
            if conv.bias is not None:
                assert layer.bias is not None  # built with bias=conv.bias is not None
                layer.bias.copy_(conv.bias)
        return layer

    def _weight_from_stored(self, stored):
        # W = C_hᵀ Ŵ C_w for every filter at once: one (O·I, K_h·K_w) × (K_h·K_w)² product with
        # kron(C_h, C_w) instead of O·I batched K×K products (twice as fast, forward and backward)
        kh, kw = self.kernel_size
        basis = torch.kron(self.c_h.to(stored.dtype), self.c_w.to(stored.dtype))
        return (stored.reshape(-1, kh * kw) @ basis).view(stored.shape[0], stored.shape[1], kh, kw)

    def forward(self, x):
        return F.conv2d(x, self.materialized_weight(), self.stored_side(self.bias), self.stride, self.padding,
                        self.dilation, self.groups)

    def _empty_conv(self) -> nn.Conv2d:
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                         self.padding, self.dilation, self.groups, self.bias is not None)

    def plain_numel(self) -> int:
        return self.weight_dct.numel() + (self.bias.numel() if self.bias is not None else 0)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class ChannelDCTConv1x1(_CachedWeight, nn.Module):
    """1×1 convolution whose (C_out, C_in) matrix is stored as its 2-D DCT over the channel
    axes, in B×B blocks (zero-padded to a multiple of B, cropped after the inverse) or whole
    (``block_size`` 0). The block size must travel with the weights: the shapes do not
    reveal it, and a mismatch silently costs accuracy."""

    coefficient_noise = True

    def __init__(self, in_channels: int, out_channels: int, stride=1, block_size: int = 16,
                 bias: bool = False):
        super().__init__()
        if block_size < 0:
            raise ValueError(f"block size must be ≥ 0, got {block_size}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.block_size = stride, block_size
        rows, cols = padded_size(out_channels, block_size), padded_size(in_channels, block_size)
        self.weight_dct = nn.Parameter(torch.zeros(rows, cols))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        if block_size:
            radial = radial_weights(block_size, block_size).repeat(rows // block_size, cols // block_size)
        else:
            radial = radial_weights(rows, cols)
        self.register_buffer("rate_weight", radial, persistent=False)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, block_size: int = 16, copy_weights: bool = True) -> "ChannelDCTConv1x1":
        if conv.kernel_size != (1, 1) or conv.groups != 1:
            raise ValueError("ChannelDCTConv1x1 converts ungrouped 1×1 convolutions only")
        layer = cls(conv.in_channels, conv.out_channels, conv.stride, block_size, conv.bias is not None)
        layer.to(conv.weight.device)
        if not copy_weights:
            return layer
        with torch.no_grad():
            m = torch.zeros(layer.weight_dct.shape, dtype=torch.float64, device=conv.weight.device)
            m[: conv.out_channels, : conv.in_channels] = conv.weight[:, :, 0, 0].double()
            layer.weight_dct.copy_(block_dct2(m, block_size).to(conv.weight.dtype))
            if conv.bias is not None:
                assert layer.bias is not None  # built with bias=conv.bias is not None
                layer.bias.copy_(conv.bias)
        return layer

    def _weight_from_stored(self, stored):
        m = block_dct2(stored, self.block_size, inverse=True)
        return m[: self.out_channels, : self.in_channels, None, None]

    def forward(self, x):
        return F.conv2d(x, self.materialized_weight(), self.stored_side(self.bias), self.stride)

    def _empty_conv(self) -> nn.Conv2d:
        return nn.Conv2d(self.in_channels, self.out_channels, 1, self.stride, bias=self.bias is not None)

    def plain_numel(self) -> int:
        return self.out_channels * self.in_channels + (self.bias.numel() if self.bias is not None else 0)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, block_size={self.block_size}"


class QuantConv2d(ExportAware, nn.Conv2d):
    """Plain convolution (kept in the pixel domain) with the export simulation."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "QuantConv2d":
        # torch types Conv2d's kernel_size, stride, padding and dilation as _ConvNd's tuple[int, ...]; they are pairs here
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                    conv.padding, conv.dilation, conv.groups, conv.bias is not None)  # type: ignore[arg-type]
        layer.load_state_dict(conv.state_dict())
        return layer.to(conv.weight.device)

    def forward(self, x):
        bias = self.stored_value(self.bias) if self.bias is not None else None
        return self._conv_forward(x, self.stored_value(self.weight), bias)

    def plain(self) -> nn.Conv2d:
        """The ordinary convolution with the weights as stored."""
        # torch types Conv2d's kernel_size, stride, padding and dilation as _ConvNd's tuple[int, ...]; they are pairs here
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,  # type: ignore[arg-type]
                         self.padding, self.dilation, self.groups, self.bias is not None,  # type: ignore[arg-type]
                         self.padding_mode)
        with torch.no_grad():
            conv.weight.copy_(self.stored_value(self.weight.detach()))
            if self.bias is not None:
                assert conv.bias is not None  # built with bias=self.bias is not None
                conv.bias.copy_(self.stored_value(self.bias.detach()))
        return conv


class QuantLinear(ExportAware, nn.Linear):
    """The classifier head with the export simulation."""

    @classmethod
    def from_linear(cls, fc: nn.Linear) -> "QuantLinear":
        layer = cls(fc.in_features, fc.out_features, fc.bias is not None)
        layer.load_state_dict(fc.state_dict())
        return layer.to(fc.weight.device)

    def forward(self, x):
        bias = self.stored_value(self.bias) if self.bias is not None else None
        return F.linear(x, self.stored_value(self.weight), bias)

    def plain(self) -> nn.Linear:
        """The ordinary linear layer with the weights as stored."""
        fc = nn.Linear(self.in_features, self.out_features, self.bias is not None)
        with torch.no_grad():
            fc.weight.copy_(self.stored_value(self.weight.detach()))
            if self.bias is not None:
                fc.bias.copy_(self.stored_value(self.bias.detach()))
        return fc


# --- modules holding tensors of their own that the bundle stores on the grid ------------------
# Converted in place (``__class__`` swapped: same tensors, same state-dict names, children
# kept); their forward computes with the stored values, so an export-aware model trains on
# what its bundle decodes to. ``plain()`` gives back the torchvision module.

class SideTensorLayer(ExportAware):
    """Base of the export-aware versions of torchvision modules with tensors of their own."""

    plain_class: type[nn.Module]

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        module.__class__ = cls  # type: ignore[assignment]  # a subclass of the module's own class (SIDE_TENSOR_LAYERS)
        return module

    def plain(self) -> nn.Module:
        """This module as its torchvision class, its own tensors replaced by their stored values."""
        assert isinstance(self, nn.Module)  # every subclass is one
        with torch.no_grad():
            for p in self.parameters(recurse=False):
                p.copy_(self.stored_side(p.detach()))
        self.__class__ = self.plain_class  # type: ignore[assignment]  # the torchvision class it was converted from
        return self


class QuantLayerNorm(SideTensorLayer, nn.LayerNorm):
    """``nn.LayerNorm`` with its affine as stored."""

    plain_class = nn.LayerNorm

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.stored_side(self.weight), self.stored_side(self.bias),
                            self.eps)


class QuantLayerNorm2d(SideTensorLayer, LayerNorm2d):
    """torchvision's channels-first ``LayerNorm2d`` (ConvNeXt) with its affine as stored."""

    plain_class = LayerNorm2d

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.stored_side(self.weight), self.stored_side(self.bias),
                         self.eps)
        return x.permute(0, 3, 1, 2)


class QuantCNBlock(SideTensorLayer, CNBlock):
    """ConvNeXt's block with its layer scale as stored (torchvision's forward otherwise)."""

    plain_class = CNBlock

    def forward(self, input):
        result = self.stored_side(self.layer_scale) * self.block(input)
        result = self.stochastic_depth(result)
        result += input
        return result


# exact torchvision type → its export-aware version
SIDE_TENSOR_LAYERS: dict[type[nn.Module], type[SideTensorLayer]] = {
    nn.LayerNorm: QuantLayerNorm, LayerNorm2d: QuantLayerNorm2d, CNBlock: QuantCNBlock}
DCT_LAYERS = (DCTConv2d, ChannelDCTConv1x1)
EXPORT_AWARE = (DCTConv2d, ChannelDCTConv1x1, QuantConv2d, QuantLinear, SideTensorLayer)


def configure_export_training(model: nn.Module, *, noise_q: float = 0.0, dct_dropout: float = 0.0,
                              pixel_bit_depth: int = 0, export_dither: float = 0.0) -> nn.Module:
    """Set the training-time switches on every export-aware layer of ``model``. In eval mode a
    dithered simulation still draws its offsets (the cached weight of a DCT layer keeps one
    draw until the weights change): the model is evaluated as one dithered bundle would be."""
    if not 0.0 <= dct_dropout < 1.0:
        raise ValueError(f"DCT dropout must be in [0, 1), got {dct_dropout}")
    if pixel_bit_depth not in PIXEL_BIT_DEPTHS:
        raise ValueError(f"pixel bit depth must be 0 (off) or {PIXEL_BIT_DEPTHS[1]}..{PIXEL_BIT_DEPTHS[-1]}, "
                         f"got {pixel_bit_depth}")
    if not 0.0 <= export_dither <= MAX_DITHER:  # NaN fails it too
        raise ValueError(f"export dither must be in [0, {MAX_DITHER:g}] pixel steps, got {export_dither}")
    if export_dither and not pixel_bit_depth:
        raise ValueError("an export dither needs the export simulation (a pixel bit depth)")
    for m in model.modules():
        if isinstance(m, EXPORT_AWARE):
            m.noise_q, m.dct_dropout, m.pixel_bit_depth = noise_q, dct_dropout, pixel_bit_depth
            m.export_dither = float(export_dither)
            m.__dict__.pop("_weight_cache", None)
    return model


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of a floating-point tensor is finite (through numpy: several times
    faster than ``torch.isfinite`` on the CPU)."""
    if not (t.is_floating_point() or t.is_complex()):
        return True
    t = t.detach().cpu()
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype not in (torch.float32, torch.float64, torch.float16):
        t = t.float()
    return bool(np.isfinite(t.numpy()).all())


@torch.no_grad()
def non_finite_part(model: nn.Module) -> str | None:
    """What of ``model`` computes with non-finite numbers, or None: the first DCT layer whose
    materialised weight (what its forward uses) is not finite — finite coefficients can still
    overflow float32 through the inverse DCT — or "its outputs" when one seeded 32×32 probe
    image gives non-finite logits (finite weights of 3e38 would). In eval mode the weights stay
    cached for the forward passes that follow; the probe runs in eval mode, training restored."""
    for name, m in model.named_modules():
        if isinstance(m, DCT_LAYERS):
            w = m._weight_from_stored(m.weight_dct) if m.training else m.materialized_weight()
            if not all_finite(w):
                return name
    was_training = model.training
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        probe = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
        if not all_finite(model(probe)):
            return "its outputs"
    finally:
        model.train(was_training)
    return None
