"""From a bundle to a model that ships: ``ctnet decode --out`` (safetensors / ctnet / onnx),
``ctnet.plain``, ``api.decode_plain`` and ``ctnet train --init-from BUNDLE``."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from safetensors.torch import load_file, save_file

from codec_fixtures import sparse_ctnet18
from ctnet import api, cli, plain
from ctnet.checkpoint import load_model
from ctnet.data import IMAGENET_MEAN, IMAGENET_STD, decode_images, load_split, normalize
from ctnet.layers import configure_export_training
from ctnet.models import CONVERSION_TOLERANCE, ctnet50
from ctnet.train import TrainConfig, TrainingError, _build, fit

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo" / "runs" / "ctnet18-export-lam5e-7" / "bundles" / "best"

# loads the safetensors with torchvision alone and proves ctnet was never imported
NO_CTNET = r"""
import json, sys
import torch, torchvision
from safetensors import safe_open
from safetensors.torch import load_file, save_file
path, inp, out = sys.argv[1:4]
with safe_open(path, "pt") as f:
    info = f.metadata()
net = getattr(torchvision.models, info["arch"])(num_classes=int(info["num_classes"]))
net.load_state_dict(load_file(path))
with torch.no_grad():
    save_file({"logits": net.eval()(load_file(inp)["x"])}, out)
assert not [m for m in sys.modules if m == "ctnet" or m.startswith("ctnet.")]
print(json.dumps(info))
"""


@pytest.fixture(scope="module")
def encoded():
    """A CTNet-18 encoded here (3 % of its coefficients non-zero; a few seconds)."""
    model, meta = sparse_ctnet18(seed=3, keep=0.03)
    return api.encode(api.LoadedModel.of(model, meta, "checkpoint", None), preset="ultrafast")


@pytest.fixture(scope="module")
def bundle(encoded, tmp_path_factory):
    return api.write_encoded(encoded, tmp_path_factory.mktemp("plain") / "bundle")


@pytest.fixture(scope="module")
def decoded(bundle):
    return api.decode(bundle)


@pytest.fixture(scope="module")
def real_batch(shared_data):
    """One ImageNette val image per class, at 128 px, normalised as ctnet.data does."""
    split = load_split(shared_data, "val", num_classes=10, size=128, limit=10)
    return normalize(decode_images(split.paths, 128, workers=1))


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _close64(reference, candidate, x):
    """Float64 logits agree within the conversion tolerance (as models.replace_with_dct_convs checks)."""
    ref = _logits(copy.deepcopy(reference).double(), x.double())
    got = _logits(copy.deepcopy(candidate).double(), x.double())
    err = float((ref - got).abs().max())
    assert err < CONVERSION_TOLERANCE * max(1.0, float(ref.abs().max())), err
    return ref


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err
    assert err.startswith("ctnet decode: error: ") and err.count("\n") == 1 and needle in err, err


# --- the conversion --------------------------------------------------------------------------

def test_plain_model_matches_the_decoded_ctnet_on_real_images(real_batch):
    d = api.decode(DEMO)  # a trained CTNet-18 (8-bit lossless bundle)
    net = api.decode_plain(DEMO)
    assert type(net).__module__ == "torchvision.models.resnet" and not net.training
    assert not any(hasattr(m, "weight_dct") for m in net.modules())
    ref = _close64(d.model, net, real_batch)
    assert (ref.argmax(1) == torch.arange(10)).float().mean() >= 0.7  # trained: most of the ten are right
    # float32, as deployed: the same predictions
    assert torch.equal(_logits(d.model, real_batch).argmax(1), _logits(net, real_batch).argmax(1))


def test_decode_plain_takes_encoded_files_and_bundles(encoded, bundle, decoded, real_batch):
    _close64(encoded.model, api.decode_plain(encoded.files), real_batch)
    _close64(decoded.model, api.decode_plain(bundle), real_batch)


def test_export_simulation_and_plain_1x1_are_materialised():
    """Quant layers (plain 1×1, head) and an 8-bit export simulation: the plain model uses the
    values the CTNet computes with, not the raw ones."""
    model = configure_export_training(ctnet50(num_classes=10, plain_1x1=True), pixel_bit_depth=8).eval()
    net = plain.to_torchvision(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref, got = _logits(model, x), _logits(net, x)
    assert float((ref - got).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))
    raw = _logits(plain.to_torchvision(configure_export_training(copy.deepcopy(model), pixel_bit_depth=0)), x)
    assert not torch.allclose(raw, ref, rtol=0, atol=1e-6)  # the simulation did change the logits


def test_to_torchvision_refuses_what_it_cannot_build(decoded):
    with pytest.raises(plain.PlainExportError, match="not a torchvision CNN ctnet can rebuild"):
        plain.to_torchvision(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(plain.PlainExportError, match="torchvision cannot build architecture 'ctnet99'"):
        plain.to_torchvision(decoded.model, "ctnet99")
    with pytest.raises(plain.PlainExportError, match="do not fit torchvision's resnet34"):
        plain.to_torchvision(decoded.model, "resnet34")


# --- ctnet decode --out ----------------------------------------------------------------------

def test_safetensors_loads_in_plain_torchvision_without_ctnet(bundle, decoded, real_batch, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert cli.main(["decode", str(bundle), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["out"] == str(out) and report["format"] == "safetensors" and report["out_bytes"] == out.stat().st_size
    save_file({"x": real_batch.contiguous()}, str(tmp_path / "x.safetensors"))
    run = subprocess.run([sys.executable, "-c", NO_CTNET, str(out), str(tmp_path / "x.safetensors"),
                          str(tmp_path / "y.safetensors")], check=False, capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["format"] == "torchvision-state-dict" and info["arch"] == "resnet18" and info["num_classes"] == "10"
    assert json.loads(info["label_map"]) == decoded.meta["label_map"] and info["image_size"] == "128"
    assert json.loads(info["mean"]) == list(IMAGENET_MEAN) and json.loads(info["std"]) == list(IMAGENET_STD)
    ref = _logits(decoded.model, real_batch)
    got = load_file(str(tmp_path / "y.safetensors"))["logits"]
    assert float((ref - got).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))
    # in float64 the written weights reproduce the CTNet within the conversion tolerance
    net, _ = plain.load_plain(out)
    _close64(decoded.model, net, real_batch)
    # ctnet's own reader takes it as the plain model it is (no "ctnet" header key)
    model, meta = load_model(out)
    assert meta["model"]["ctnet"] is False and torch.allclose(_logits(model, real_batch), got)


def test_ctnet_format_round_trips_the_coefficients(bundle, decoded, tmp_path, capsys):
    out = tmp_path / "resume.safetensors"
    assert cli.main(["decode", str(bundle), "--out", str(out), "--format", "ctnet"]) == 0
    assert f"wrote {out} (ctnet, " in capsys.readouterr().out
    model, meta = load_model(out)
    assert meta["model"] == decoded.meta["model"] and meta["decoded_from"]["bundle"] == str(bundle)
    assert meta["label_map"] == decoded.meta["label_map"] and meta["epoch"] == 1
    want = decoded.model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items()) and len(want) == len(model.state_dict())


def test_train_init_from_a_bundle_directory(bundle, decoded, tiny_imagenette, tmp_path):
    model, spec, _labels = _build(TrainConfig(data="", init_from=str(bundle)))
    assert spec.ctnet and spec.arch == "resnet18"
    want = decoded.model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    with pytest.raises(TrainingError, match="is a resnet18, but --arch is resnet50"):
        _build(TrainConfig(data="", init_from=str(bundle), arch="resnet50"))
    # a trained bundle: its accuracy survives into the training run
    result = fit(TrainConfig(data=str(tiny_imagenette), output_dir=str(tmp_path / "run"), init_from=str(DEMO),
                             evaluate_only=True, workers=0, device="cpu"), log=lambda *_: None)
    assert result["images"] == 20 and result["acc1"] >= 60


def test_onnx_checks_and_matches_pytorch(real_batch, shared_data, tmp_path, capsys):
    out = tmp_path / "model.onnx"  # the suffix selects the format
    assert cli.main(["decode", str(DEMO), "--out", str(out), "--data", str(shared_data), "--limit", "10",
                     "--workers", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "onnx" and report["onnx_opset"] == plain.ONNX_OPSET == 17
    assert report["onnx_check_batch"] == "10 val images" and report["onnx_max_abs_diff"] < 1e-3
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17
    info = {p.key: p.value for p in proto.metadata_props}
    assert info["arch"] == "resnet18" and json.loads(info["label_map"])["n03888257"] == 9
    net = api.decode_plain(DEMO)
    session = plain.onnx_session(out)
    for x in (real_batch, real_batch[:1]):  # dynamic batch
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        ref = _logits(net, x)
        assert float((got - ref).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))
    # the same model gives the same file
    again = tmp_path / "again.onnx"
    assert cli.main(["decode", str(DEMO), "--out", str(again), "--format", "onnx"]) == 0
    assert "opset 17" in capsys.readouterr().out and again.read_bytes() == out.read_bytes()


def test_evaluating_exported_files(tmp_path, shared_data, capsys):
    for name in ("m.safetensors", "m.onnx"):
        assert cli.main(["decode", str(DEMO), "--out", str(tmp_path / name)]) == 0
        capsys.readouterr()
        assert cli.main(["eval", str(tmp_path / name), "--data", str(shared_data), "--limit", "20", "--workers", "0",
                         "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["images"] == 20 and result["acc1"] >= 60
        assert result["runtime"].startswith("onnxruntime" if name.endswith(".onnx") else "torchvision")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    assert cli.main(["eval", str(tmp_path / "junk.safetensors"), "--data", str(shared_data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ctnet eval: error: ") and "\n" not in err.strip()


# --- bad input: one line, exit 2, nothing written --------------------------------------------

def test_existing_file_needs_force(bundle, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"keep me")
    assert cli.main(["decode", str(bundle), "--out", str(out)]) == 2
    _one_line_error(capsys, "exists; pass --force to replace it")
    assert out.read_bytes() == b"keep me"
    assert cli.main(["decode", str(bundle), "--out", str(out), "--force"]) == 0
    assert plain.load_plain(out)[1]["arch"] == "resnet18"
    assert cli.main(["decode", str(bundle), "--out", str(tmp_path), "--force"]) == 2
    _one_line_error(capsys, "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_unknown_format_and_format_without_out(bundle, tmp_path, capsys):
    assert cli.main(["decode", str(bundle), "--out", str(tmp_path / "m.pt"), "--format", "pickle"]) == 2
    _one_line_error(capsys, "unknown format 'pickle'; choose one of safetensors, ctnet, onnx")
    assert cli.main(["decode", str(bundle), "--format", "onnx"]) == 2
    _one_line_error(capsys, "--format needs --out FILE")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arch,needle", [("vgg_dct", "torchvision cannot build architecture 'vgg_dct'"),
                                         ("resnet34", "do not fit torchvision's resnet34")])
def test_architecture_torchvision_cannot_build(bundle, tmp_path, capsys, monkeypatch, arch, needle):
    """A manifest naming another architecture (what a newer ctnet might write)."""
    from ctnet.codec import bundle as B
    read = B.read_bundle

    def relabelled(path):
        model, meta = read(path)
        return model, {**meta, "model": {**meta["model"], "arch": arch}}
    monkeypatch.setattr(B, "read_bundle", relabelled)
    for fmt in ("safetensors", "onnx"):
        assert cli.main(["decode", str(bundle), "--out", str(tmp_path / f"m.{fmt}"), "--format", fmt]) == 2
        _one_line_error(capsys, needle)
    assert list(tmp_path.iterdir()) == []


def test_failed_onnx_check_leaves_nothing(bundle, tmp_path, capsys, monkeypatch):
    def wrong(path, net, x):
        assert Path(path).is_file()  # the graph is run before it is renamed into place
        raise plain.PlainExportError("onnxruntime's logits differ from PyTorch's by 1")
    monkeypatch.setattr(plain, "onnx_max_abs_diff", wrong)
    assert cli.main(["decode", str(bundle), "--out", str(tmp_path / "m.onnx")]) == 2
    _one_line_error(capsys, "differ from PyTorch's")
    assert list(tmp_path.iterdir()) == []
