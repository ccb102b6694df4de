"""ctnet.errors and the CLI's guard: one root for every error ctnet raises on purpose; user errors
exit 2 in one line, bugs exit 1."""
from __future__ import annotations
import json

import pytest
import torch

from ctnet.checkpoint import CheckpointError
from ctnet.cli import main
from ctnet.errors import CtnetError
from ctnet.train import TrainingError
from trust_fixtures import one_line_error


# --- one root; user errors exit 2, bugs exit 1 -----------------------------------------------

def test_error_classes_share_one_root():
    from ctnet.data import DatasetError as D
    from ctnet.evaluate import DeviceError
    from ctnet.rd import RDError
    for cls in (CheckpointError, TrainingError, RDError, D, DeviceError):
        assert issubclass(cls, CtnetError)
    assert issubclass(TrainingError, RuntimeError) and issubclass(DeviceError, RuntimeError)
    assert issubclass(CheckpointError, ValueError) and issubclass(D, ValueError)


@pytest.mark.parametrize("exc, code, words", [
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore details"), 1, "out of memory"),
    (KeyError("boom"), 1, "this is a bug"),
    (AttributeError("'NoneType' object has no attribute 'x'"), 1, "this is a bug"),
    (CheckpointError("x.safetensors: bad"), 2, "error: x.safetensors: bad"),
    (FileNotFoundError(2, "No such file or directory", "x"), 2, "error:"),
    (OSError(28, "No space left on device"), 2, "No space left"),
])
def test_cli_tells_user_errors_from_bugs(monkeypatch, capsys, tmp_path, exc, code, words):
    import ctnet.api

    def fail(*args, **kwargs):
        raise exc
    monkeypatch.setattr(ctnet.api, "evaluate_path", fail)
    assert main(["eval", "x", "--data", str(tmp_path)]) == code
    err = one_line_error(capsys)
    assert words in err and err.startswith("ctnet eval: ")
    assert ("bug" in err) == (code == 1)


def test_value_errors_from_deep_inside_a_library_are_bugs(monkeypatch, capsys, tmp_path):
    import ctnet.api

    def fail(*args, **kwargs):
        torch.zeros(2).view(3)  # RuntimeError from torch
    monkeypatch.setattr(ctnet.api, "evaluate_path", fail)
    assert main(["eval", "x", "--data", str(tmp_path)]) == 1

    def fail_value(*args, **kwargs):
        json.loads("{", cls=None)  # a ValueError raised inside the json module
    monkeypatch.setattr(ctnet.api, "evaluate_path", fail_value)
    assert main(["eval", "x", "--data", str(tmp_path)]) == 1
    assert "this is a bug" in capsys.readouterr().err
    from ctnet.cli import _guarded
    from ctnet.evaluate import resolve_device
    assert _guarded("p", lambda: resolve_device("tpu")) == 2  # ctnet's own ValueError: a user error
    assert "device must be" in one_line_error(capsys)
