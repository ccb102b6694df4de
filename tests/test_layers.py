import copy

import pytest
import torch
from torch import nn

from ctnet.layers import ChannelDCTConv1x1, DCTConv2d, QuantLinear, configure_export_training
from ctnet.quant import fake_quantize


def test_dct_conv_matches_conv_and_back():
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=True)
    layer = DCTConv2d.from_conv(conv)
    x = torch.randn(2, 8, 9, 9)
    assert (layer(x) - conv(x)).abs().max() < 1e-5
    assert torch.allclose(layer.to_conv().weight, conv.weight, atol=1e-6)
    # coefficients are the forward DCT, not a re-initialisation
    c = layer.c_h
    assert torch.allclose(layer.weight_dct[0, 0], c @ conv.weight[0, 0] @ c.T, atol=1e-6)


def test_dct_conv_rejects_1x1():
    with pytest.raises(ValueError, match="1×1"):
        DCTConv2d(4, 4, 1)


@pytest.mark.parametrize("block", [0, 8, 16])
def test_channel_dct_matches_conv_with_padding(block):
    conv = nn.Conv2d(20, 36, 1, stride=2, bias=False)  # not multiples of 16: padded then cropped
    layer = ChannelDCTConv1x1.from_conv(conv, block)
    if block:
        assert layer.weight_dct.shape == (-(-36 // block) * block, -(-20 // block) * block)
    x = torch.randn(2, 20, 6, 6)
    assert (layer(x) - conv(x)).abs().max() < 1e-5


def test_block_size_changes_meaning_of_same_shaped_weights():
    conv = nn.Conv2d(32, 32, 1, bias=False)
    a = ChannelDCTConv1x1.from_conv(conv, 16)
    b = ChannelDCTConv1x1(32, 32, block_size=8)
    b.load_state_dict(a.state_dict())  # same shapes: nothing stops the wrong block size...
    x = torch.randn(1, 32, 2, 2)
    assert (a(x) - b(x)).abs().max() > 1e-3  # ...which is why it travels in the metadata


def test_eval_caches_weight_and_invalidates_on_update():
    layer = DCTConv2d.from_conv(nn.Conv2d(4, 4, 3, padding=1)).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        w1 = layer.materialized_weight()
        assert layer.materialized_weight() is w1
        layer.weight_dct.mul_(2)
        w2 = layer.materialized_weight()
    assert w2 is not w1 and torch.allclose(w2, 2 * w1, atol=1e-6)
    layer.train()
    assert layer.materialized_weight() is not layer.materialized_weight()  # no cache in training
    assert layer(x).requires_grad


def test_export_aware_forward_uses_quantised_values_and_passes_gradient():
    layer = DCTConv2d.from_conv(nn.Conv2d(3, 5, 3))
    configure_export_training(layer, pixel_bit_depth=8)
    layer.eval()
    with torch.no_grad():
        expected = layer._weight_from_stored(fake_quantize(layer.weight_dct, 8))
        assert torch.equal(layer.materialized_weight(), expected)
    layer.train()
    layer(torch.randn(1, 3, 6, 6)).sum().backward()
    assert layer.weight_dct.grad is not None and layer.weight_dct.grad.abs().sum() > 0


def test_noise_and_dropout_only_in_training():
    layer = DCTConv2d.from_conv(nn.Conv2d(3, 5, 3))
    configure_export_training(layer, noise_q=0.1, dct_dropout=0.5)
    with torch.no_grad():
        layer.eval()
        assert torch.equal(layer.materialized_weight(), layer._weight_from_stored(layer.weight_dct))
        layer.train()
        assert not torch.allclose(layer.materialized_weight(), layer._weight_from_stored(layer.weight_dct))


def test_configure_rejects_out_of_range():
    with pytest.raises(ValueError):
        configure_export_training(nn.Sequential(), pixel_bit_depth=13)
    with pytest.raises(ValueError):
        configure_export_training(nn.Sequential(), dct_dropout=1.0)


def test_quant_linear_is_a_linear():
    fc = nn.Linear(6, 3)
    q = QuantLinear.from_linear(copy.deepcopy(fc))
    x = torch.randn(2, 6)
    assert torch.equal(q(x), fc(x))


def test_materialised_weight_is_the_inverse_dct_of_each_filter():
    from ctnet import dct
    for k in (3, (1, 3), 7):
        layer = DCTConv2d.from_conv(nn.Conv2d(6, 4, k))
        expected = dct.idct2(layer.weight_dct.double(), layer.c_h.double(), layer.c_w.double())
        got = layer._weight_from_stored(layer.weight_dct)
        assert got.shape == layer.weight_dct.shape and got.is_contiguous()
        assert torch.allclose(got.double(), expected, atol=1e-6)
        assert torch.allclose(layer.to_conv().weight.double(), expected, atol=1e-6)
