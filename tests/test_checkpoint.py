import json
import os
import pickle
import time

import pytest
from safetensors.torch import save_file
import torch

import ctnet.checkpoint as ckpt_io
from ctnet.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from ctnet.cli import main
from ctnet.errors import CtnetError
from ctnet.models import ModelSpec, build_model, ctnet18, plain_model
from trust_fixtures import HUGE, SPEC, TINY_TRAIN, craft, meta_dict, one_line_error


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # would create the marker file when unpickled
        return (os.system, (f"touch {self.marker}",))


def test_roundtrip_keeps_weights_and_metadata(tmp_path):
    model = ctnet18(dct_block_size=8).eval()
    meta = {"model": ModelSpec("resnet18", 10, True, 8).to_dict(), "label_map": {"n01440764": 0},
            "image_size": 128, "epoch": 3, "metrics": {"acc1": 50.0}, "train_config": {"lr": 0.1}}
    path = save_checkpoint(tmp_path / "a.safetensors", model, meta)
    ckpt = read_checkpoint(path)
    assert ckpt.meta["epoch"] == 3 and ckpt.meta["model"]["dct_block_size"] == 8
    loaded, _ = load_model(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_crafted_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "x": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError):
        read_checkpoint(raw)
    assert not marker.exists()


def test_plain_torchvision_state_dict_is_read(shared_resnet18):
    ckpt = read_checkpoint(shared_resnet18)
    assert ckpt.spec == ModelSpec("resnet18", 10, ctnet=False)


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\x80\x04garbage"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", ctnet18(), {"model": ModelSpec().to_dict()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        read_checkpoint(tmp_path / "nope.safetensors")


def test_wrong_architecture_and_block_size(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", ctnet18(), {"model": ModelSpec().to_dict()})
    with pytest.raises(CheckpointError, match="resnet18, not a resnet50"):
        load_model(path, expected_arch="resnet50")
    with pytest.raises(CheckpointError, match="block size 16"):
        load_model(path, expected_block_size=8)
    # weights of one architecture under another's description
    bad = save_checkpoint(tmp_path / "b.safetensors", ctnet18(),
                          {"model": ModelSpec("resnet50", 10, True, 16).to_dict()})
    with pytest.raises(CheckpointError, match="do not fit a resnet50"):
        load_model(bad)


def test_newer_version_refused(tmp_path):
    with pytest.raises(CheckpointError, match="newer"):  # not even written
        save_checkpoint(tmp_path / "a.safetensors", build_model(ModelSpec()),
                        {"model": ModelSpec().to_dict(), "version": 99})
    path = tmp_path / "b.safetensors"
    state = {f"model.{k}": v.contiguous() for k, v in build_model(ModelSpec()).state_dict().items()}
    save_file(state, str(path), metadata={"ctnet": json.dumps({"format": "ctnet-checkpoint", "version": 99,
                                                               "model": ModelSpec().to_dict()})})
    with pytest.raises(CheckpointError, match="newer"):
        read_checkpoint(path)


# --- typed checkpoint metadata ---------------------------------------------------------------

MALFORMED = [
    ("[]", "must be a JSON object, not list"),
    ("null", "must be a JSON object, not null"),
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "ctnet-checkpoint", "version": 1}), "no 'model'"),
    (meta_dict(version="9"), "'version' must be an integer, not str"),
    (meta_dict(version=1.0), "'version' must be an integer"),
    (meta_dict(format="other"), "format 'other'"),
    (meta_dict(model={**SPEC.to_dict(), "num_classes": HUGE}), "'model.num_classes' holds an integer out of range"),
    (meta_dict(model={**SPEC.to_dict(), "num_classes": 10 ** 9}), "num_classes out of range [1, 100000]"),
    (meta_dict(model={**SPEC.to_dict(), "num_classes": "10"}), "num_classes must be an integer"),
    (meta_dict(model={**SPEC.to_dict(), "ctnet": "yes"}), "ctnet must be true or false"),
    (meta_dict(model={**SPEC.to_dict(), "arch": ["resnet18"]}), "unknown architecture"),
    (meta_dict(model={**SPEC.to_dict(), "extra": 1}), "unknown field"),
    (meta_dict(model={"arch": "resnet18"}), "incomplete"),
    (meta_dict(model=None), "must be a JSON object"),
    (meta_dict(metrics={"fp32_bytes": HUGE}), "metrics.fp32_bytes"),
    (meta_dict(metrics={"acc1": "high"}), "metrics.acc1"),
    (meta_dict(image_size=HUGE), "'image_size' holds an integer out of range"),
    (meta_dict(image_size=10 ** 9), "'image_size' out of range [16, 1024]: 1000000000"),
    (meta_dict(image_size="128"), "'image_size' must be an integer"),
    (meta_dict(pixel_bit_depth=13), "pixel_bit_depth"),
    (meta_dict(label_map={"n01440764": 10}), "label_map"),
    (meta_dict(label_map=[]), "'label_map' must be a JSON object"),
    (meta_dict(epoch=-1), "'epoch' out of range"),
    (meta_dict(resume_state={"epoch": 1}), "resume_state"),
    (meta_dict(optimizer={"param_groups": 3, "scalars": {}}), "optimizer.param_groups"),
    (meta_dict(other=[[[[[[[[[[1]]]]]]]]]]), "nested deeper"),
    (meta_dict(other=HUGE), "out of range"),
    (meta_dict(digest="md5:0"), "'digest'"),
    (meta_dict(model={**SPEC.to_dict(), "dct_block_size": 4096}), "block size out of range [0, 512]: 4096"),
    (meta_dict(model={**SPEC.to_dict(), "dct_block_size": -1}), "block size out of range"),
]


@pytest.mark.parametrize("header, message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_metadata_is_one_named_error(tmp_path, state, header, message):
    path = craft(tmp_path / "m.safetensors", state, header)
    with pytest.raises(CheckpointError, match=None) as info:
        read_checkpoint(path)
    text = str(info.value)
    assert message in text and "\n" not in text and str(path) in text
    assert isinstance(info.value, CtnetError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("header, message", [MALFORMED[0], MALFORMED[3], MALFORMED[4], MALFORMED[7], MALFORMED[17]])
def test_malformed_metadata_in_every_command(tmp_path, state, images, header, message, capsys):
    path = craft(tmp_path / "m.safetensors", state, header)
    assert main(["eval", str(path), "--data", str(images), "--device", "cpu", "--workers", "0"]) == 2
    assert message in one_line_error(capsys)
    out = tmp_path / "run"
    assert main(["train", str(images), "--output-dir", str(out), "--init-from", str(path), *TINY_TRAIN]) == 2
    assert message in one_line_error(capsys)
    assert main(["train", str(images), "--output-dir", str(out), "--resume", str(path), *TINY_TRAIN]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_malformed_metadata_in_encode(tmp_path, state, capsys):
    pytest.importorskip("av")
    path = craft(tmp_path / "m.safetensors", state, meta_dict(version="9"))
    assert main(["encode", str(path), "--out", str(tmp_path / "b")]) == 2
    assert "'version' must be an integer" in one_line_error(capsys)
    assert not (tmp_path / "b").exists()





# --- the block size: bounded, and tied to the weights -------------------------------------------

def test_block_size_the_shapes_cannot_hold_is_refused_before_building(tmp_path, state, monkeypatch):
    def no_build(spec):
        raise AssertionError("build_model must not run for weights that do not fit")
    monkeypatch.setattr(ckpt_io, "build_model", no_build)
    path = craft(tmp_path / "m.safetensors", state, meta_dict(model={**SPEC.to_dict(), "dct_block_size": 48}))
    with pytest.raises(CheckpointError, match=r"layer2\.0\.downsample\.0\.weight_dct has shape \[128, 64\], "
                                              r"expected \[144, 96\].*block size in the metadata does not fit"):
        load_model(path)
    path = craft(tmp_path / "n.safetensors", state, meta_dict(model={**SPEC.to_dict(), "dct_block_size": 512}))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)
    assert time.perf_counter() - t0 < 5


def test_block_size_edit_the_shapes_hide_is_refused(tmp_path, state):
    # 8 and 0 give the same shapes as 16 in a ResNet-18 (channels are multiples of 16);
    # a checkpoint saved by ctnet carries a digest over its metadata and tensors ...
    path = save_checkpoint(tmp_path / "a.safetensors", state, {"model": SPEC.to_dict(), "image_size": 16})
    header = read_checkpoint(path).meta
    for block in (0, 8):
        edited = craft(tmp_path / f"b{block}.safetensors", state,
                        {**header, "model": {**SPEC.to_dict(), "dct_block_size": block}})
        with pytest.raises(CheckpointError, match="does not match its digest"):
            read_checkpoint(edited)
    # ... and a training checkpoint records the block size twice
    no_digest = {k: v for k, v in header.items() if k != "digest"}
    crafted = craft(tmp_path / "c.safetensors", state, {**no_digest, "train_config": {"dct_block_size": 16},
                                                         "model": {**SPEC.to_dict(), "dct_block_size": 8}})
    with pytest.raises(CheckpointError, match="disagrees with the block size the weights were trained with"):
        read_checkpoint(crafted)


def test_damaged_weights_do_not_match_the_digest(tmp_path, state):
    path = save_checkpoint(tmp_path / "a.safetensors", state, {"model": SPEC.to_dict()})
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="digest"):
        read_checkpoint(path)


def test_summary_refuses_a_huge_block_size_fast(capsys):
    t0 = time.perf_counter()
    assert main(["summary", "--arch", "resnet50", "--dct-block-size", "4096"]) == 2
    assert time.perf_counter() - t0 < 2
    assert "block size out of range [0, 512]: 4096" in one_line_error(capsys)
    with pytest.raises(ValueError, match="block size"):
        build_model(ModelSpec("resnet50", 10, True, 4096))


# --- non-finite weights, hostile pickles -----------------------------------------------------

@pytest.mark.parametrize("name, value, message", [
    ("layer1.0.conv1.weight_dct", float("nan"), "non-finite"),
    ("fc.weight", float("inf"), "non-finite"),
    ("bn1.running_var", -1.0, "negative batch-norm variance"),
])
def test_non_finite_weights_are_refused(tmp_path, state, images, name, value, message, capsys):
    bad = dict(state)
    bad[name] = state[name].clone()
    bad[name].view(-1)[0] = value
    path = craft(tmp_path / "m.safetensors", bad, meta_dict())
    with pytest.raises(CheckpointError, match=message) as info:
        read_checkpoint(path)
    assert repr(name) in str(info.value)
    assert main(["eval", str(path), "--data", str(images), "--device", "cpu", "--workers", "0"]) == 2
    assert name in one_line_error(capsys)
    plain = plain_model("resnet18", num_classes=10).state_dict()
    plain[name.replace("_dct", "")].view(-1)[0] = value
    torch.save(plain, tmp_path / "m.pt")  # a torchvision .pt state dict is checked as well
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(tmp_path / "m.pt")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_refusal_does_not_advise_unpickling(tmp_path, capsys, images):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "x": _Evil(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    text = str(info.value)
    assert "could run code" in text and "nothing in it was executed" in text
    assert "weights_only" not in text and "likely succeed" not in text and "\n" not in text
    assert main(["eval", str(path), "--data", str(images)]) == 2
    err = one_line_error(capsys)
    assert "weights_only" not in err and "refused" in err
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError, match="nothing in it was executed"):
        read_checkpoint(tmp_path / "raw.pkl")
    assert not marker.exists()
