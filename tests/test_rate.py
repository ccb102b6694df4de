import math

import pytest
import torch
from torch import nn

from ctnet.layers import DCTConv2d
from ctnet.quant import export_step
from ctnet.models import plain_model, replace_with_dct_convs
from ctnet.rate import group_count, l2_penalty, layer_rate, rate_proxy, rate_terms, rate_weight_at, regularisers


def hand_rate(values, q, s, weights):
    total = 0.0
    for v, w in zip(values, weights):
        level = abs(v) / q
        sig = 1 / (1 + math.exp(-s * (level - 0.5)))
        total += sig * (1 + math.log2(1 + level)) * w
    return total


def test_rate_matches_hand_computation():
    values = [0.0, 0.05, -0.1, 0.3]
    weights = [1.0, 2.0, 3.0, 4.0]
    c = torch.tensor(values, dtype=torch.float64)
    got = layer_rate(c, torch.tensor(weights, dtype=torch.float64), 0.1, 10.0)
    # c=0: σ=sigmoid(-5)=0.006693, cost 1 → 0.006693; c=0.05: σ=0.5, cost 1+log2(1.5) → ×2
    assert got.item() == pytest.approx(hand_rate(values, 0.1, 10.0, weights), rel=1e-12)
    assert hand_rate([0.0], 0.1, 10.0, [1]) == pytest.approx(0.0066928509, rel=1e-6)
    assert hand_rate([0.05], 0.1, 10.0, [2]) == pytest.approx(2 * 0.5 * (1 + math.log2(1.5)), rel=1e-12)


def test_rate_gradient_matches_analytic_derivative():
    q, s, w = 0.1, 10.0, 3.0
    c = torch.tensor([0.07], dtype=torch.float64, requires_grad=True)
    layer_rate(c, torch.tensor([w], dtype=torch.float64), q, s).backward()
    level = 0.7
    sig = 1 / (1 + math.exp(-s * (level - 0.5)))
    d_sig = s * sig * (1 - sig) / q
    d_cost = 1 / ((1 + level) * math.log(2) * q)
    expected = w * (d_sig * (1 + math.log2(1 + level)) + sig * d_cost)
    assert c.grad.item() == pytest.approx(expected, rel=1e-10)
    c2 = torch.tensor([-0.07], dtype=torch.float64, requires_grad=True)
    layer_rate(c2, torch.tensor([w], dtype=torch.float64), q, s).backward()
    assert c2.grad.item() == pytest.approx(-expected, rel=1e-10)  # |c| is symmetric


def test_rate_proxy_uses_scan_weights_per_layer():
    net = nn.Sequential(DCTConv2d.from_conv(nn.Conv2d(2, 2, 3)))
    with torch.no_grad():
        net[0].weight_dct.zero_()
        net[0].weight_dct[0, 0, 2, 2] = 1.0  # last position of the scan: weight 9
    r = rate_proxy(net, qstep=0.1, steepness=10.0)
    zero_cost = 1 / (1 + math.exp(5))
    expected = hand_rate([1.0], 0.1, 10.0, [9.0]) + zero_cost * (net[0].rate_weight.sum().item() * 4 - 9.0)
    assert r["total"].item() == pytest.approx(expected, rel=1e-5)
    assert list(r["per_layer"]) == ["0"]


def test_export_grid_measures_levels_in_tile_steps():
    c = torch.zeros(4, 4, 3, 3)
    c[0, 0, 0, 0] = 2.55  # one tile, range [0, 2.55] → step 0.01 at 8 bit
    step = export_step(c, 8)
    assert torch.allclose(step, torch.full_like(c, 0.01))
    net = nn.Sequential(DCTConv2d.from_conv(nn.Conv2d(4, 4, 3)))
    with torch.no_grad():
        net[0].weight_dct.copy_(c)
    r_export = rate_proxy(net, grid="export", bits=8)["total"]
    r_fixed = rate_proxy(net, qstep=0.01)["total"]
    assert r_export.item() == pytest.approx(r_fixed.item(), rel=1e-5)
    with pytest.raises(ValueError):
        rate_proxy(net, grid="nope")


def test_l2_and_warmup():
    net = nn.Sequential(DCTConv2d.from_conv(nn.Conv2d(1, 1, 3)))
    with torch.no_grad():
        net[0].weight_dct.fill_(2.0)
    assert l2_penalty(net).item() == pytest.approx(9 * 4.0)
    assert rate_weight_at(0.0, 1e-5, 5) == 0.0
    assert rate_weight_at(2.5, 1e-5, 5) == pytest.approx(5e-6)
    assert rate_weight_at(7.0, 1e-5, 5) == 1e-5
    assert rate_weight_at(0.0, 1e-5, 0) == 1e-5


def _small_ctnet():
    from ctnet.layers import ChannelDCTConv1x1, QuantConv2d
    torch.manual_seed(0)
    net = nn.Sequential(DCTConv2d.from_conv(nn.Conv2d(20, 50, 3)), ChannelDCTConv1x1.from_conv(nn.Conv2d(50, 40, 1)),
                        QuantConv2d.from_conv(nn.Conv2d(40, 30, 1)), DCTConv2d.from_conv(nn.Conv2d(30, 140, 5)))
    with torch.no_grad():
        net[0].weight_dct[0, 0] = 0.0  # exact zeros: no rate gradient (|c| has none at 0)
    return net


@pytest.mark.parametrize("grid", ["qstep", "export"])
@pytest.mark.parametrize("compiled", ["0", "1"])
def test_fused_regularisers_match_the_autograd_reference(grid, compiled, monkeypatch):
    monkeypatch.setenv("CTNET_COMPILE", compiled)
    if compiled == "1" and not hasattr(torch, "compile"):
        pytest.skip("no torch.compile")
    net = _small_ctnet()
    params = [c for _, c, _ in rate_terms(net)]
    ref = sum(layer_rate(c, w, export_step(c, 8) if grid == "export" else 0.1, 10.0) for _, c, w in rate_terms(net))
    l2_ref = l2_penalty(net)
    ref_grads = torch.autograd.grad(ref + 0.5 * l2_ref, params)
    penalty, rate = regularisers(net, alpha=0.5, grid=grid, bits=8)
    assert not rate.requires_grad  # the rate alone is for the log
    grads = torch.autograd.grad(penalty, params)
    assert rate.item() == pytest.approx(ref.item(), rel=1e-5)
    assert penalty.item() == pytest.approx((ref + 0.5 * l2_ref).item(), rel=1e-5)
    for a, b in zip(ref_grads, grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * a.abs().max().item())
    assert torch.all(grads[0][0, 0] == 0.0)
    per_layer = rate_proxy(net, grid=grid, bits=8)["per_layer"]
    assert list(per_layer) == ["0", "1", "2", "3"]
    with torch.no_grad():
        assert rate_proxy(net, grid=grid, bits=8)["total"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_export_dither_puts_the_rate_on_the_dithered_grid(monkeypatch):
    monkeypatch.setenv("CTNET_COMPILE", "0")
    net = _small_ctnet()
    params = [c for _, c, _ in rate_terms(net)]
    today = regularisers(net, alpha=0.5, grid="export", bits=6, group=3.0)
    same = regularisers(net, alpha=0.5, grid="export", bits=6, group=3.0, dither=0.0)
    assert all(torch.equal(a, b) for a, b in zip(today, same))  # A = 0: today's proxy, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(today[0], params),
                                                  torch.autograd.grad(same[0], params)))
    # A = 1: the levels are counted in the dithered grid's steps (61 usable levels at 6 bits instead of 63)
    for _, c, _ in rate_terms(net):
        assert torch.allclose(export_step(c, 6, dither=1.0), export_step(c, 6) * 63 / 61, rtol=1e-5)
    ref = sum(layer_rate(c, w, export_step(c, 6, dither=1.0), 10.0) for _, c, w in rate_terms(net))
    ref_grads = torch.autograd.grad(ref + 0.5 * l2_penalty(net), params)
    penalty, rate = regularisers(net, alpha=0.5, grid="export", bits=6, dither=1.0)
    assert rate.dtype == torch.float32 and rate.item() == pytest.approx(ref.item(), rel=1e-5)
    assert rate.item() < today[1].item()  # a larger step: fewer, smaller levels
    for a, b in zip(ref_grads, torch.autograd.grad(penalty, params)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * a.abs().max().item())
    assert rate_proxy(net, grid="export", bits=6, dither=1.0)["total"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_eager_cpu_chunks_add_up(monkeypatch):
    from ctnet import rate as rate_mod
    monkeypatch.setenv("CTNET_COMPILE", "0")
    net = _small_ctnet()
    whole = regularisers(net, alpha=0.5, grid="export")
    whole_grads = torch.autograd.grad(whole[0], [c for _, c, _ in rate_terms(net)])
    monkeypatch.setattr(rate_mod, "_CPU_CHUNK", 1000)  # many chunks
    parts = regularisers(net, alpha=0.5, grid="export")
    part_grads = torch.autograd.grad(parts[0], [c for _, c, _ in rate_terms(net)])
    assert all(a.item() == pytest.approx(b.item(), rel=1e-6) for a, b in zip(whole, parts))
    assert all(torch.equal(a, b) for a, b in zip(whole_grads, part_grads))


def test_group_count_counts_non_empty_plane_rows_and_columns():
    c = torch.zeros(4, 3, 3, 3)
    assert group_count(c, 0.1, 10.0).item() == 0.0  # all-zero rows cost nothing
    c[1, 2, 0, 0] = 1.0  # level 10 in plane (0, 0): one row and one column there
    assert group_count(c, 0.1, 10.0).item() == pytest.approx(2.0, abs=1e-6)
    c[1, 0, 0, 0] = 1.0  # same row, another column
    assert group_count(c, 0.1, 10.0).item() == pytest.approx(3.0, abs=1e-6)
    m = torch.zeros(5, 7, requires_grad=True)
    with torch.no_grad():
        m[2, 3] = 0.04  # level 0.4: a maybe
    g = group_count(m, 0.1, 10.0)
    assert 0 < g.item() < 2
    g.backward()
    assert torch.isfinite(m.grad).all() and m.grad[2, 3] > 0  # pushes the lone level to zero


def test_regularisers_add_the_priced_group_term():
    torch.manual_seed(0)
    model = replace_with_dct_convs(plain_model("resnet18", num_classes=10))
    base, rate = regularisers(model, alpha=0.5, grid="export", bits=8)
    with_group, rate2 = regularisers(model, alpha=0.5, grid="export", bits=8, group=420.0)
    g = sum(group_count(c, export_step(c, 8), 10.0) for _, c, _ in rate_terms(model))
    assert torch.equal(rate, rate2)  # the logged rate stays the proxy alone
    assert with_group.item() == pytest.approx(base.item() + 420.0 * g.item(), rel=1e-5)
