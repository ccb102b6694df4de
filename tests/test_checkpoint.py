import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from ctnet.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from ctnet.models import ModelSpec, build_model, ctnet18


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
