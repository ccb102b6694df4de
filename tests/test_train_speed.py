"""Issue 13 part 3: the full recipe's step shares tile statistics, fuses the regularisers and
never waits on the device."""
import os
import subprocess
import sys

import pytest
import torch

from ctnet import quant
from ctnet.cli import main
from ctnet.layers import DCT_LAYERS
from ctnet.layers import configure_export_training
from ctnet.models import plain_model, replace_with_dct_convs
from ctnet.rate import l2_penalty, rate_proxy
from ctnet.train import TrainConfig, step_loss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def recipe(monkeypatch):
    monkeypatch.setenv("CTNET_COMPILE", "0")  # the eager path; the compiled one is in test_rate
    torch.manual_seed(0)
    model = configure_export_training(replace_with_dct_convs(plain_model("resnet18", num_classes=10)), pixel_bit_depth=8)
    config = TrainConfig(data="", rate_grid="export", pixel_bit_depth=8, lambda_alpha=0.5)
    return model.train(), config, torch.randn(2, 3, 32, 32), torch.tensor([1, 7])


@pytest.mark.parametrize("dither", [0.0, 1.0])
def test_step_computes_each_tile_grid_once(recipe, monkeypatch, dither):
    model, config, x, y = recipe
    if dither:  # --export-dither: the STE and the rate proxy share the dithered grid
        configure_export_training(model, pixel_bit_depth=6, export_dither=dither)
        config = TrainConfig(data="", rate_grid="export", pixel_bit_depth=6, lambda_alpha=0.5, export_dither=dither)
    seen = []
    real = quant._grid_params
    monkeypatch.setattr(quant, "_grid_params", lambda tiles, bits, *a: seen.append((bits, *a)) or real(tiles, bits, *a))
    loss, rate = step_loss(model, x, y, config, 1e-6, regularise=True)
    stored = [p for m in model.modules() if hasattr(m, "pixel_bit_depth")
              for p in (getattr(m, "weight_dct", None), getattr(m, "weight", None), getattr(m, "bias", None))
              if isinstance(p, torch.nn.Parameter)]
    assert len(seen) == len(stored)  # the STE's statistics serve the rate proxy too
    assert set(seen) == {(config.pixel_bit_depth, dither)}
    loss.backward()
    assert not rate.requires_grad and all(p.grad is not None for p in stored)  # the rate is for the log


def test_step_loss_is_the_recipe(recipe):
    model, config, x, y = recipe
    loss, rate = step_loss(model, x, y, config, 1e-6, regularise=True)
    plain, _ = step_loss(model, x, y, config, 1e-6, regularise=False)
    ref_rate = rate_proxy(model, grid="export", bits=8)["total"]
    expected = plain + 1e-6 * (ref_rate + 0.5 * l2_penalty(model))
    assert rate.item() == pytest.approx(ref_rate.item(), rel=1e-5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_step_never_reads_a_tensor_back(recipe):
    model, config, x, y = recipe
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def refuse(*_a, **_k):
        raise AssertionError("host sync inside the training step")
    for _ in range(2):
        with pytest.MonkeyPatch.context() as mp:  # forward, regularisers, backward (AdamW's own
            for name in ("item", "__float__", "__int__", "__bool__", "tolist", "cpu"):  # step count is a CPU tensor)
                mp.setattr(torch.Tensor, name, refuse)
            loss, _ = step_loss(model, x, y, config, 1e-6, regularise=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()


def test_bench_runs_and_prints_ratios():
    out = subprocess.run([sys.executable, "bench/train_step.py", "--device", "cpu", "--size", "32", "--batch", "2",
                          "--repeats", "1"], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "CTNET_COMPILE": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("x\n") == 8 and "full recipe, bf16 + channels-last against fp32" in out.stdout


def test_amp_keeps_the_export_simulation_float32_and_exact(recipe):
    """Under bf16 autocast (``--amp``) the STE and the inverse DCT still run in float32, bit for
    bit as without it: only the convolutions themselves see bf16."""
    model, config, x, y = recipe
    layers = [m for m in model.modules() if isinstance(m, DCT_LAYERS)]
    plain_weights = [m.materialized_weight().detach() for m in layers]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for m, ref in zip(layers, plain_weights):
            stored = m.stored_value(m.weight_dct)
            assert stored.dtype == torch.float32
            assert torch.equal(stored, quant.fake_quantize(m.weight_dct, 8))
            w = m.materialized_weight()
            assert w.dtype == torch.float32 and torch.equal(w.detach(), ref)


def test_amp_step_has_the_same_regularisers(recipe):
    model, config, x, y = recipe
    _, rate = step_loss(model, x, y, config, 1e-6, regularise=True)
    amp = TrainConfig(**{**config.to_dict(), "amp": True})
    loss, rate_amp = step_loss(model, x, y, amp, 1e-6, regularise=True)
    assert torch.equal(rate, rate_amp) and loss.dtype == torch.float32 and torch.isfinite(loss)


def test_amp_refused_where_bf16_is_emulated(tiny_imagenette, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    run = tmp_path / "run"
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), "--device", "cpu", "--amp"]) == 2
    err = capsys.readouterr().err
    assert "no native bfloat16" in err and err.count("\n") == 1
    assert not run.exists()
