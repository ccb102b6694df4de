"""Architecture registry, keyword-only builders and the verified conversion to CTNet."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .errors import ConfigError
from .layers import EXPORT_AWARE, SIDE_TENSOR_LAYERS, ChannelDCTConv1x1, DCTConv2d, QuantConv2d, QuantLinear
from .limits import MAX_NUM_CLASSES


@dataclass(frozen=True)
class Architecture:
    """A torchvision CNN CTNet holds: its builder's name in ``torchvision.models``, where its
    classifier is (the ``nn.Linear`` whose rows are the classes) and what sets it apart."""

    name: str
    head: str  # module path of the classifier Linear: its weight's rows give the class count
    layers: str  # what the conversion meets in it


# The one registry of architectures (CLI choices, checks, tests loop over it), in the order
# the documentation lists them. Every entry converts, trains, encodes, decodes exactly and
# exports in tests/test_registry.py.
REGISTRY = (
    Architecture("resnet18", "fc", "3×3 and 7×7 convs, 1×1 downsample, BN"),
    Architecture("resnet34", "fc", "3×3 and 7×7 convs, 1×1 downsample, BN"),
    Architecture("resnet50", "fc", "bottlenecks: 1×1 / 3×3 / 1×1, BN"),
    Architecture("resnet101", "fc", "bottlenecks: 1×1 / 3×3 / 1×1, BN"),
    Architecture("resnext50_32x4d", "fc", "grouped 3×3 (32 groups), 1×1, BN"),
    Architecture("wide_resnet50_2", "fc", "bottlenecks twice as wide, BN"),
    Architecture("mobilenet_v2", "classifier.1", "depthwise 3×3, pointwise 1×1, BN"),
    Architecture("mobilenet_v3_small", "classifier.3", "depthwise 3×3/5×5, 1×1, SE (1×1 with biases), BN, two Linear"),
    Architecture("mobilenet_v3_large", "classifier.3", "depthwise 3×3/5×5, 1×1, SE (1×1 with biases), BN, two Linear"),
    Architecture("efficientnet_b0", "classifier.1", "depthwise 3×3/5×5, 1×1, SE (1×1 with biases), BN"),
    Architecture("regnet_y_400mf", "fc", "grouped 3×3 (group width 8), 1×1, SE (1×1 with biases), BN"),
    Architecture("vgg11_bn", "classifier.6", "3×3 convs with biases, BN, three large Linear"),
    Architecture("convnext_tiny", "classifier.2",
                 "depthwise 7×7, pointwise Linear, LayerNorm, layer scale, 4×4 and 2×2 convs with biases"),
    Architecture("densenet121", "classifier", "1×1 / 3×3 convs on concatenated features, BN"),
)
ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in REGISTRY}
# torchvision models CTNet refuses, and why (any other name it does not register is refused too)
_REFUSED = {
    ("vit_", "swin_", "maxvit_"): "a vision transformer: its weights are attention and MLP projections and "
                                  "position embeddings, not the convolutions CTNet stores as DCT coefficients",
    ("googlenet", "inception_v3"): "it returns auxiliary classifier logits while training, so it trains "
                                   "with another loss than one head's cross-entropy",
}
CONVERSION_TOLERANCE = 1e-5


class ConversionError(RuntimeError):
    """The converted model does not reproduce the original's outputs."""


class PretrainedWeightsError(RuntimeError):
    """torchvision's pretrained weights could not be loaded (not in its cache, no network)."""


def refusal(arch: object) -> str:
    """Why ``arch`` is not an architecture CTNet holds (one line)."""
    held = ", ".join(ARCHITECTURES)
    name = str(arch)[:40]
    if not isinstance(arch, str) or arch not in torchvision.models.list_models(module=torchvision.models):
        return f"unknown architecture {name!r}; CTNet holds these torchvision CNNs: {held}"
    reason = next((why for prefixes, why in _REFUSED.items() if arch.startswith(prefixes)),
                  "CTNet does not register it (each registered CNN is tested end to end)")
    return f"CTNet cannot hold torchvision's {arch}: {reason}. It holds: {held}"


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise ConfigError(refusal(arch))


def _torchvision_model(arch: str, num_classes: int) -> nn.Module:
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def meta_model(arch: str, num_classes: int) -> nn.Module:
    """The plain network on the meta device (shapes, no memory). RegNet computes its widths
    with tensor ops, which the meta device cannot run: it is built on the CPU and moved."""
    _check_arch(arch)
    try:
        with torch.device("meta"):
            return _torchvision_model(arch, num_classes)
    except NotImplementedError:
        return _torchvision_model(arch, num_classes).to("meta")


def head(model: nn.Module, arch: str) -> nn.Linear:
    """The classifier of a registered architecture's network (plain or CTNet)."""
    _check_arch(arch)
    layer = model.get_submodule(ARCHITECTURES[arch].head)
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"{arch}: {ARCHITECTURES[arch].head} is a {type(layer).__name__}, not the linear classifier")
    return layer


def plain_model(arch: str, *, num_classes: int = 10, pretrained: bool = False) -> nn.Module:
    """A torchvision network of a registered architecture. ``pretrained`` takes torchvision's
    ImageNet weights (its default ones) from its cache (1000 classes); these machines cannot
    download them."""
    _check_arch(arch)
    if pretrained:
        if num_classes != 1000:
            raise ValueError("--pretrained uses the 1000-class ImageNet head; pass --num-classes 1000")
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        try:
            return torchvision.models.get_model(arch, weights=weights)
        except Exception as exc:  # network or cache failure: say what to do
            raise PretrainedWeightsError(
                f"could not load torchvision's pretrained {arch} weights ({exc}); put them in "
                f"torchvision's cache ($TORCH_HOME/hub/checkpoints) or use --init-from") from exc
    return _torchvision_model(arch, num_classes)


def _converted(module: nn.Module, block_size: int, plain_1x1: bool, copy_weights: bool) -> nn.Module | None:
    if isinstance(module, nn.Conv2d) and not isinstance(module, QuantConv2d):
        if module.kernel_size[0] * module.kernel_size[1] > 1:
            return DCTConv2d.from_conv(module, copy_weights)
        if plain_1x1 or module.groups != 1:
            return QuantConv2d.from_conv(module)
        return ChannelDCTConv1x1.from_conv(module, block_size, copy_weights)
    if isinstance(module, nn.Linear) and not isinstance(module, QuantLinear):
        return QuantLinear.from_linear(module)
    return None


def swap_modules(parent: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> None:
    """Replace, in place and at any depth, every submodule ``convert`` returns a module for;
    the children of a replaced module are not visited."""
    for name, child in parent.named_children():
        new = convert(child)
        if new is not None:
            setattr(parent, name, new)
        else:
            swap_modules(child, convert)


def _unheld(model: nn.Module) -> list[str]:
    """Modules that hold tensors of their own no CTNet layer stores (none in a registered
    architecture): 'name (Type)'."""
    return [f"{name} ({type(m).__name__})" for name, m in model.named_modules()
            if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, (*EXPORT_AWARE, _BatchNorm))]


def replace_with_dct_convs(model: nn.Module, *, block_size: int = 16, plain_1x1: bool = False,
                           verify: bool = True, tolerance: float = CONVERSION_TOLERANCE,
                           copy_weights: bool = True) -> nn.Module:
    """Convert a trained network in place: k×k convs (grouped and depthwise too) → DCTConv2d,
    ungrouped 1×1 → ChannelDCTConv1x1 (or plain with ``plain_1x1``; grouped 1×1 stay plain),
    every Linear → QuantLinear, LayerNorm and ConvNeXt's layer-scale blocks → their
    export-aware versions (``ctnet.layers.SIDE_TENSOR_LAYERS``); BatchNorm stays. Coefficients
    are the forward DCT of the existing weights (``copy_weights=False``: left uninitialised,
    for weights about to be loaded). With ``verify`` the outputs of both models on a random batch must
    agree: max abs error < ``tolerance`` × max(1, max |output|), computed in float64 so only
    the conversion is judged (float32 coefficients carry ~1e-7 relative rounding, which an
    untrained ResNet-50 with logits of ~30 amplifies past an absolute 1e-5)."""
    reference = copy.deepcopy(model) if verify else None
    for m in model.modules():
        side = SIDE_TENSOR_LAYERS.get(type(m))
        if side is not None:
            side.convert(m)
    swap_modules(model, lambda child: _converted(child, block_size, plain_1x1, copy_weights))
    unheld = _unheld(model)
    if unheld:
        raise ConversionError(f"no CTNet layer stores the tensors of {', '.join(unheld[:3])}"
                              + (f" (+{len(unheld) - 3} more)" if len(unheld) > 3 else ""))
    if verify:
        device = next(model.parameters()).device
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(device)
        was_training = model.training
        assert reference is not None  # copied above when verify
        with torch.no_grad():
            ref_out = reference.double().eval()(x)
            new_out = copy.deepcopy(model).double().eval()(x)
        model.train(was_training)
        err = float((ref_out - new_out).abs().max())
        bound = tolerance * max(1.0, float(ref_out.abs().max()))
        if not err < bound:
            raise ConversionError(f"converted model differs from the original: max abs error {err:.3g} ≥ {bound:.3g}")
    return model


MAX_DCT_BLOCK_SIZE = 512  # TrainConfig's bound too; larger blocks only cost memory
_SPEC_FIELDS = ("arch", "num_classes", "ctnet", "dct_block_size", "plain_1x1")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a network before loading its weights; travels in every
    checkpoint's metadata and every bundle's manifest."""

    arch: str = "resnet18"
    num_classes: int = 10
    ctnet: bool = True
    dct_block_size: int = 16
    plain_1x1: bool = False

    def to_dict(self) -> dict:
        return {"arch": self.arch, "num_classes": self.num_classes, "ctnet": self.ctnet,
                "dct_block_size": self.dct_block_size, "plain_1x1": self.plain_1x1}

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        """The strict parser of a stored model description: every field of its JSON type
        (no strings for numbers, no numbers for booleans), every integer in range, no
        unknown field. Raises :class:`ctnet.errors.ConfigError` (a ``ValueError``)."""
        if not isinstance(d, dict):
            raise ConfigError(f"model description must be a JSON object, not {type(d).__name__}")
        unknown = sorted(str(k) for k in d if k not in _SPEC_FIELDS)
        if unknown:
            raise ConfigError(f"model description has unknown field(s) {', '.join(unknown)[:200]}")
        if "arch" not in d or "num_classes" not in d:
            raise ConfigError("model description is incomplete: it needs 'arch' and 'num_classes'")
        spec = cls(arch=d["arch"], num_classes=d["num_classes"], ctnet=d.get("ctnet", True),
                   dct_block_size=d.get("dct_block_size", 16), plain_1x1=d.get("plain_1x1", False))
        spec.validate()
        return spec

    def validate(self) -> None:
        """Types and ranges, checked before anything is built (a block size of 4096 would
        take gigabytes before failing elsewhere)."""
        if not isinstance(self.arch, str) or self.arch not in ARCHITECTURES:
            raise ConfigError(refusal(self.arch))
        if not _is_int(self.num_classes):
            raise ConfigError(f"num_classes must be an integer, not {type(self.num_classes).__name__}")
        if not 1 <= self.num_classes <= MAX_NUM_CLASSES:
            raise ConfigError(f"num_classes out of range [1, {MAX_NUM_CLASSES}]: {str(self.num_classes)[:20]}")
        for name in ("ctnet", "plain_1x1"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {type(getattr(self, name)).__name__}")
        if not _is_int(self.dct_block_size):
            raise ConfigError(f"DCT block size must be an integer, not {type(self.dct_block_size).__name__}")
        if not 0 <= self.dct_block_size <= MAX_DCT_BLOCK_SIZE:
            raise ConfigError(f"DCT block size out of range [0, {MAX_DCT_BLOCK_SIZE}]: {str(self.dct_block_size)[:20]}")

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name → shape of every tensor in this network's state dict, computed on the meta
        device (no memory): what a checkpoint must hold, checked before building. The
        padded channel-DCT shapes (multiples of the block size) tie the block size to the
        weights wherever a channel count is not a multiple of it."""
        self.validate()
        model = meta_model(self.arch, self.num_classes)
        if self.ctnet:
            with torch.device("meta"):
                replace_with_dct_convs(model, block_size=self.dct_block_size, plain_1x1=self.plain_1x1,
                                       verify=False, copy_weights=False)
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def build_model(spec: ModelSpec) -> nn.Module:
    """A network of the given description with UNINITIALISED weights, to be loaded (decoding
    must not spend time initialising and transforming weights it then replaces)."""
    spec.validate()
    model = meta_model(spec.arch, spec.num_classes).to_empty(device="cpu")
    if spec.ctnet:
        replace_with_dct_convs(model, block_size=spec.dct_block_size, plain_1x1=spec.plain_1x1, verify=False,
                               copy_weights=False)
    return model


def ctnet18(*, num_classes: int = 10, dct_block_size: int = 16) -> nn.Module:
    """CTNet-18 (randomly initialised): ResNet-18 with 17 DCTConv2d, 3 channel-DCT 1×1
    (downsample), BN and FC."""
    model = plain_model("resnet18", num_classes=num_classes)
    return replace_with_dct_convs(model, block_size=dct_block_size, verify=False)


def ctnet50(*, num_classes: int = 10, dct_block_size: int = 16, plain_1x1: bool = False) -> nn.Module:
    """CTNet-50 (randomly initialised): ResNet-50 with its 3×3 convs and conv1 as DCTConv2d
    and its 36 1×1 convs as channel-DCT (or plain with ``plain_1x1``)."""
    model = plain_model("resnet50", num_classes=num_classes)
    return replace_with_dct_convs(model, block_size=dct_block_size, plain_1x1=plain_1x1, verify=False)


def fp32_bytes(model: nn.Module) -> int:
    """fp32 bytes of the whole plain-equivalent model: every parameter and the BN running
    statistics (padding of channel-DCT blocks not counted)."""
    total = 0
    for module in model.modules():
        if isinstance(module, (DCTConv2d, ChannelDCTConv1x1)):  # the layers with plain_numel
            total += module.plain_numel()
            continue
        total += sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert module.running_mean is not None and module.running_var is not None  # ResNet BNs track them
            total += module.running_mean.numel() + module.running_var.numel()
    return 4 * total


SUMMARY_GROUPS = ("spatial DCT", "channel-DCT 1x1", "plain", "other")


def parameter_summary(model: nn.Module) -> list[dict]:
    """Rows of the parameter breakdown — group, layers, parameters, share (of all), fp32 bytes
    — then a total row. Groups: ``spatial DCT`` (k×k convs, grouped and depthwise included),
    ``channel-DCT 1x1``, ``plain`` (convs kept in the pixel domain and every Linear, the head
    included), ``other`` (BatchNorm with its running statistics, LayerNorm, layer scale). A
    layer's bias counts with its layer; parameters are the plain model's (no block padding)."""
    groups = {g: [0, 0] for g in SUMMARY_GROUPS}
    for module in model.modules():
        if isinstance(module, (DCTConv2d, ChannelDCTConv1x1)):
            g, n = ("spatial DCT" if isinstance(module, DCTConv2d) else "channel-DCT 1x1"), module.plain_numel()
        else:
            n = sum(p.numel() for p in module.parameters(recurse=False))
            if isinstance(module, _BatchNorm):
                assert module.running_mean is not None and module.running_var is not None  # every registered BN tracks them
                n += module.running_mean.numel() + module.running_var.numel()
            if n == 0:
                continue
            g = "plain" if isinstance(module, (nn.Conv2d, nn.Linear)) else "other"
        groups[g][0] += 1
        groups[g][1] += n
    total = sum(n for _, n in groups.values())
    rows: list[dict[str, Any]] = [{"group": g, "layers": c, "parameters": n, "share": n / total, "fp32_bytes": 4 * n}
                                  for g, (c, n) in groups.items() if c]
    rows.append({"group": "total", "layers": sum(r["layers"] for r in rows), "parameters": total, "share": 1.0,
                 "fp32_bytes": 4 * total})
    return rows
