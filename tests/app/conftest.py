"""Fixtures of the app tests: the demo the app opens (``assets/demo`` once it exists, else a
small one built here from a real CPU training run) and a training output folder."""
from __future__ import annotations

import os
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

from demo_fixture import REPO, build_demo

ASSETS_DEMO = REPO / "assets" / "demo"


@pytest.fixture(scope="session")
def training_run(tmp_path_factory, shared_data, shared_resnet18) -> Path:
    """What ``ctnet train`` writes: CTNet-18 fine-tuned from the shared ResNet-18 for one
    epoch on 20 real images (CPU), evaluated on 20 (so its numbers are real, if rough)."""
    out = tmp_path_factory.mktemp("train") / "ctnet18-cpu-smoke"
    cmd = [sys.executable, "-m", "ctnet", "train", str(shared_data), "--output-dir", str(out), "--arch", "resnet18",
           "--init-from", str(shared_resnet18), "--epochs", "1", "--limit-train", "20", "--limit-val", "20",
           "--batch-size", "20", "--pixel-bit-depth", "8", "--lambda-rate", "1e-6", "--rate-grid", "export",
           "--rate-warmup-epochs", "0", "--lr", "1e-4", "--device", "cpu", "--workers", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def demo_dir(request, tmp_path_factory, shared_data) -> Path:
    """``assets/demo`` when it exists (what CI and users get); until then the same layout
    built from :func:`training_run` (one bundle at ultrafast, a 3-per-class sample)."""
    if ASSETS_DEMO.is_dir():
        return ASSETS_DEMO
    training_run = request.getfixturevalue("training_run")
    dest = tmp_path_factory.mktemp("demo") / "demo"
    return build_demo(dest, {training_run.name: (training_run, ["best"])}, shared_data, per_class=3,
                      preset="ultrafast", note="Built by the app tests: assets/demo does not exist yet.",
                      log=lambda *_: None)


@pytest.fixture
def demo_env(demo_dir, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("CTNET_DEMO_DIR", str(demo_dir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # uploads land in pytest's tmp, not /tmp
    return demo_dir
