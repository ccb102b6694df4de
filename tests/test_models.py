import json
import urllib.error

import pytest
import torchvision

from ctnet import dct
from ctnet.cli import main
from ctnet.layers import ChannelDCTConv1x1, DCTConv2d
from ctnet.models import (ConversionError, ModelSpec, build_model, parameter_summary,
                          plain_model, replace_with_dct_convs)


def test_resnet18_counts():
    model = build_model(ModelSpec("resnet18", 1000, True, 16))
    assert sum(isinstance(m, DCTConv2d) for m in model.modules()) == 17
    assert sum(isinstance(m, ChannelDCTConv1x1) for m in model.modules()) == 3
    total = parameter_summary(model)[-1]
    assert total["parameters"] == 11_699_112 and total["fp32_bytes"] == 46_796_448


def test_resnet50_plain_1x1_flag():
    model = build_model(ModelSpec("resnet50", 10, True, 16, plain_1x1=True))
    assert sum(isinstance(m, DCTConv2d) for m in model.modules()) == 17
    assert not any(isinstance(m, ChannelDCTConv1x1) for m in model.modules())
    groups = {r["group"]: r for r in parameter_summary(model)}
    assert groups["plain"]["layers"] == 37  # the 36 1×1 convs and the head


def test_broken_conversion_fails_loudly(monkeypatch):
    real = dct.dct2
    monkeypatch.setattr(dct, "dct2", lambda x, ch, cw: real(x, ch, cw) * 1.01)
    with pytest.raises(ConversionError, match="max abs error"):
        replace_with_dct_convs(plain_model("resnet18", num_classes=10))


def test_summary_cli(capsys):
    assert main(["summary", "--arch", "resnet18", "--json"]) == 0
    rows = {r["group"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["spatial DCT"]["layers"] == 17 and rows["channel-DCT 1x1"]["layers"] == 3
    assert rows["plain"]["layers"] == 1 and rows["other"]["layers"] == 20  # the head; BN
    assert rows["total"]["parameters"] == 11_191_242  # the default is ImageNette's 10-class head
    assert rows["spatial DCT"]["share"] == pytest.approx(10_994_880 / 11_191_242)
    assert main(["summary", "--arch", "resnet50", "--num-classes", "10"]) == 0
    assert "spatial DCT" in capsys.readouterr().out


def test_pretrained_needs_imagenet_head_and_explains_missing_weights(monkeypatch):
    with pytest.raises(ValueError, match="--num-classes 1000"):
        plain_model("resnet18", num_classes=10, pretrained=True)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="--init-from"):
        plain_model("resnet18", num_classes=1000, pretrained=True)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'resnet19'"):
        plain_model("resnet19")
    with pytest.raises(ValueError, match="CTNet cannot hold torchvision's vgg16: CTNet does not register it"):
        plain_model("vgg16")
