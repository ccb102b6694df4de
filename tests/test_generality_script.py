"""The runs behind the README's "beyond ResNets" result, in small: scripts/relabel_dataset.py
makes a user-style dataset (other class names, fewer classes) from the shared ImageNette that
``ctnet train`` reads with no class count, and every stage of scripts/train_cpu_generality.sh
runs end to end on a few images (slow: it trains four networks and codes three bundles)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctnet.checkpoint import read_checkpoint
from ctnet.cli import main

REPO = Path(__file__).resolve().parents[1]
LABELS = {"dog": 0, "fish": 1, "horn": 2, "parachute": 3}  # relabel_dataset.py's default classes, sorted
TINY = ["--limit-train", "16", "--limit-val", "8", "--epochs", "1", "--image-size", "32"]


def _relabel(src: Path, dst: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "relabel_dataset.py"), str(src), str(dst), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_relabelled_imagenette_trains_with_its_own_class_names(shared_data, tmp_path):
    own = tmp_path / "own"
    proc = _relabel(shared_data, own)
    assert proc.returncode == 0, proc.stderr
    train_images = sum(len(list((shared_data / "train" / w).iterdir()))
                       for w in ("n01440764", "n02102040", "n03394916", "n03888257"))
    assert f"4 classes (fish, dog, horn, parachute), {train_images} train" in proc.stdout
    assert sorted(p.name for p in (own / "train").iterdir()) == sorted(LABELS)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # written beside, renamed into place
    again = _relabel(shared_data, own)
    assert again.returncode != 0 and "exists; pass --force" in again.stderr

    run = tmp_path / "run"
    assert main(["train", str(own), "--arch", "resnet18", "--plain", "--output-dir", str(run), *TINY,
                 "--batch-size", "8", "--workers", "0", "--device", "cpu"]) == 0
    meta = read_checkpoint(run / "checkpoints" / "best.safetensors").meta
    assert meta["model"]["num_classes"] == 4 and meta["label_map"] == LABELS  # the head: one output per folder
    row = json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])
    assert row["epoch"] == 1 and 0 <= row["acc1"] <= 100


@pytest.mark.slow
def test_every_stage_of_the_generality_script_runs(shared_data, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, "DATA": str(shared_data),
           "RELABELLED": str(tmp_path / "relabelled"), "AMP": "", "EXTRA": " ".join(TINY), "EVAL": "--limit 8"}
    for stage in ("baseline", "ctnet", "nncodec", "relabelled"):
        proc = subprocess.run(["bash", str(REPO / "scripts" / "train_cpu_generality.sh"), str(runs), stage],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, f"{stage}: {proc.stderr[-3000:]}"
    ctnet = runs / "ctnet-mobilenet_v2-lam5e-7"
    assert read_checkpoint(ctnet / "checkpoints" / "best.safetensors").meta["model"]["arch"] == "mobilenet_v2"
    for role in ("best", "smallest"):
        decoded = json.loads((ctnet / "bundles" / f"{role}.decode.json").read_text())
        assert decoded["images"] == 8 and 0 <= decoded["acc1"] <= 100
    rd = json.loads((runs / "mobilenet_v2-plain.rd.json").read_text())
    assert {p["method"] for p in rd["points"]} >= {"fp32", "int", "bundle"}
    relabelled = runs / "relabelled-ctnet18-lam5e-7"
    onnx = json.loads((relabelled / "best.onnx.eval.json").read_text())
    assert onnx["images"] == 8
    assert onnx["acc1"] == json.loads((relabelled / "bundles" / "best.decode.json").read_text())["acc1"]
    assert read_checkpoint(relabelled / "checkpoints" / "best.safetensors").meta["label_map"] == LABELS
