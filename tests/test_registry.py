"""Every registered architecture, end to end on random weights and small images: it converts
(verified), trains one export-aware step under the rate proxy, encodes to a bundle whose
every stored tensor decodes exactly to its export grid (the non-conv tensors — biases,
LayerNorm, layer scale, SE blocks — included), and exports to torchvision, safetensors and
ONNX computing the decoded model's logits; ``ctnet summary`` gives its parameter shares.
Names CTNet does not hold are refused by name."""
import copy
import json

import pytest
import torch

from ctnet import api, plain, quant
from ctnet.cli import main
from ctnet.export import bn_layers, video_tensors
from ctnet.layers import EXPORT_AWARE, SideTensorLayer, configure_export_training
from ctnet.models import (ARCHITECTURES, SUMMARY_GROUPS, ModelSpec, fp32_bytes, head, meta_model,
                          plain_model, replace_with_dct_convs)
from ctnet.train import TrainConfig, step_loss

CLASSES = 5
SIZE = 32  # px: every registered network takes it (VGG and DenseNet pool adaptively)
# the largest (VGG-11-BN: 129 M parameters, 103 M of them in one Linear; Wide ResNet-50: 67 M)
# take most of the loop's time on 2 cores; the rest run in every suite
SLOW = {"vgg11_bn", "wide_resnet50_2"}
PARAMS = [pytest.param(a, marks=pytest.mark.slow) if a in SLOW else a for a in ARCHITECTURES]


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    """The eager rate proxy and export simulation (test_rate and test_quant check the compiled
    ones): no compile of a few seconds for each new layout."""
    monkeypatch.setenv("CTNET_COMPILE", "0")


def _rate_trained_looking(model: torch.nn.Module, seed: int) -> None:
    """Random weights as rate training leaves them: 2 % of every stored tensor non-zero (so a
    bundle of a 40 M-parameter model codes in seconds), BN statistics non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in video_tensors(model).values():
            keep = torch.rand(t.shape, generator=g) < 0.02
            t.copy_(torch.randn(t.shape, generator=g) * 0.1 * keep + (t.dim() == 1) * 0.01)
        for m in bn_layers(model).values():
            c = m.num_features
            m.weight.copy_(1 + 0.1 * torch.randn(c, generator=g))
            m.bias.copy_(0.1 * torch.randn(c, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("arch", PARAMS)
def test_architecture_end_to_end(arch, tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    # conversion from a plain network, verified in float64 (ConversionError otherwise)
    reference = plain_model(arch, num_classes=CLASSES).eval()
    model = replace_with_dct_convs(copy.deepcopy(reference)).eval()
    ref = _logits(reference, x)
    assert float((_logits(model, x) - ref).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))  # float32
    assert head(model, arch).out_features == CLASSES and fp32_bytes(model) == fp32_bytes(reference)
    held = {type(m) for m in model.modules() if any(True for _ in m.parameters(recurse=False))}
    assert all(issubclass(t, (*EXPORT_AWARE, torch.nn.modules.batchnorm._BatchNorm)) for t in held), held

    # one export-aware training step under the rate proxy on the export grid
    configure_export_training(model, pixel_bit_depth=8)
    config = TrainConfig(data="", arch=arch, lambda_rate=1e-5, rate_grid="export", pixel_bit_depth=8)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    loss, rate = step_loss(model, x, torch.tensor([0, CLASSES - 1]), config, 1e-5, regularise=True)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and rate is not None and float(rate) > 0
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.endswith("weight_dct") for k in changed)

    # encode / decode: every stored tensor exactly on its 8-bit export grid, BN as its affine
    _rate_trained_looking(model, seed=2)
    model.eval()
    spec = ModelSpec(arch, CLASSES, True, 16)
    meta = {"model": spec.to_dict(), "label_map": {f"class {i}": i for i in range(CLASSES)}, "image_size": SIZE,
            "pixel_bit_depth": 8}
    enc = api.encode(api.LoadedModel.of(model, meta, "checkpoint", None), preset="ultrafast")
    decoded = api.decode(enc.files).model
    want, got = video_tensors(model), video_tensors(decoded)
    assert want.keys() == got.keys()
    for name, t in want.items():
        assert torch.equal(got[name], quant.fake_quantize(t, 8).detach()), name
    assert enc.manifest["label_map"] == meta["label_map"]
    # the decoded model computes what the export-aware model computes (BN: 24-bit floats)
    ref = _logits(model, x)
    assert float((_logits(decoded, x) - ref).abs().max()) < 1e-3 * max(1.0, float(ref.abs().max()))
    if any(isinstance(m, SideTensorLayer) for m in model.modules()):  # LayerNorm, layer scale: simulated too
        raw = _logits(configure_export_training(copy.deepcopy(model), pixel_bit_depth=0), x)
        assert not torch.allclose(raw, ref, rtol=0, atol=1e-6)

    # plain export: torchvision, safetensors and ONNX compute the decoded model's logits
    net = plain.to_torchvision(decoded, arch)
    assert type(net) is type(meta_model(arch, CLASSES))
    ref = _logits(decoded, x)  # float32 (test_plain_export checks a ResNet in float64)
    assert float((_logits(net, x) - ref).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))
    dmeta = api.decode(enc.files).meta
    report = plain.write_decoded(decoded, dmeta, tmp_path / "m.safetensors", "safetensors")
    loaded, info = plain.load_plain(report["out"])
    assert info["arch"] == arch and json.loads(info["label_map"]) == meta["label_map"]
    assert torch.allclose(_logits(loaded, x), _logits(net, x), rtol=0, atol=1e-5)
    _, diff = plain.export_onnx(decoded, dmeta, tmp_path / "m.onnx", check_batch=x)
    assert diff is not None  # onnxruntime ran it and agreed with PyTorch (export_onnx raises otherwise)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_summary_gives_every_architecture_s_parameter_shares(arch, capsys):
    assert main(["summary", "--arch", arch, "--num-classes", "1000", "--json"]) == 0
    rows = {r["group"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) - {"total"} <= set(SUMMARY_GROUPS) and "spatial DCT" in rows
    assert abs(sum(r["share"] for g, r in rows.items() if g != "total") - 1) < 1e-9
    assert rows["total"]["parameters"] == sum(r["parameters"] for g, r in rows.items() if g != "total")
    torchvision_net = meta_model(arch, 1000)  # what it counts: torchvision's parameters and BN statistics
    bn_stats = sum(2 * m.num_features for m in bn_layers(torchvision_net).values())
    assert rows["total"]["parameters"] == sum(p.numel() for p in torchvision_net.parameters()) + bn_stats


@pytest.mark.parametrize("name, reason", [
    ("vit_b_16", "vision transformer"),
    ("swin_t", "vision transformer"),
    ("googlenet", "auxiliary classifier"),
    ("resnet152", "does not register it"),
    ("resnet19", "unknown architecture"),
])
def test_architectures_ctnet_cannot_hold_are_refused_by_name(name, reason, capsys, tmp_path):
    for argv in (["summary", "--arch", name], ["train", str(tmp_path), "--arch", name],
                 ["encode", str(tmp_path / "x.pt"), "--out", str(tmp_path / "b"), "--arch", name]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        last = capsys.readouterr().err.strip().splitlines()[-1]  # argparse: usage, then the one-line error
        assert exit_.value.code == 2 and reason in last and name in last, last
    with pytest.raises(ValueError, match=reason):
        ModelSpec(name, 10).validate()
