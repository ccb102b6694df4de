"""`ctnet eval A --against B`: the top-1 change image by image, with its 95 % interval."""
from __future__ import annotations

import json

import pytest

from demo_fixture import REPO
from ctnet.cli import main

RUNS = REPO / "assets/demo/runs"
A = RUNS / "cpu18-lam5e-7-distill/bundles/best"
B = RUNS / "cpu18-lam5e-7/bundles/best"
SAMPLE = REPO / "assets/demo/sample"
FLAGS = ["--data", str(SAMPLE), "--limit", "80", "--device", "cpu", "--workers", "0", "--json"]


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module", autouse=True)
def _demo_bundles():
    if not (A.is_dir() and B.is_dir()):
        pytest.skip("the demo's λ = 5e-7 bundles are not in assets/")


def test_a_model_against_itself_changes_nothing(capsys):
    assert main(["eval", str(B), "--against", str(B), *FLAGS]) == 0
    r = _json(capsys)
    a = r["against"]
    assert a["acc1"] == r["acc1"] and a["gained"] == a["lost"] == 0 and a["delta"] == a["low"] == a["high"] == 0


def test_the_change_is_the_difference_of_the_two_top1s_on_the_same_images(capsys):
    assert main(["eval", str(A), "--against", str(B), *FLAGS]) == 0
    r = _json(capsys)
    assert main(["eval", str(B), *FLAGS]) == 0
    alone = _json(capsys)
    a = r["against"]
    assert a["acc1"] == pytest.approx(alone["acc1"]) and r["images"] == alone["images"] == 80
    assert a["delta"] == pytest.approx(r["acc1"] - a["acc1"])
    assert a["delta"] == pytest.approx(100 * (a["gained"] - a["lost"]) / 80)
    assert a["low"] <= a["delta"] <= a["high"] and "hits" not in r
    assert main(["eval", str(A), "--against", str(B), *FLAGS[:-1]]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith(f"against {B} (top-1 ") and "95 % interval" in line and "paired on the same images" in line


def test_what_cannot_be_paired_is_one_line_exit_2(tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read")
    assert main(["eval", str(A), "--against", str(onnx), *FLAGS]) == 2
    err = capsys.readouterr().err.strip()
    assert "--against compares checkpoints and bundles" in err and len(err.splitlines()) == 1
    assert main(["eval", str(A), "--against", str(tmp_path / "missing"), *FLAGS]) == 2
    err = capsys.readouterr().err.strip()
    assert str(tmp_path / "missing") in err and len(err.splitlines()) == 1
