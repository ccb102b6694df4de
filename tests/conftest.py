"""Shared fixtures: a small real ImageNette folder built from the shared copy, a real
training run, the demo the app opens (``assets/demo`` once it exists, else a small one built
here from that run), and the expected-value files the GENERATE_EXPECTED=1 switch rewrites."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ctnet.data import IMAGENETTE_CLASSES
from ctnet.models import build_model
from demo_fixture import build_demo
from trust_fixtures import SPEC

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "imagenette2-128"
SHARED_RESNET18 = REPO.parent / "shared" / "models" / "resnet18-imagenette128-scratch.pt"
ASSETS_DEMO = REPO / "assets" / "demo"
EXPECTED = REPO / "tests" / "assets"  # expected-value files (golden digests …), rewritten by GENERATE_EXPECTED=1


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: tests read the shared ImageNette copy and ResNet-18 "
                    f"at ../shared (CI has them at the same relative path)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def shared_resnet18() -> Path:
    return _require(SHARED_RESNET18)


SAMPLE = REPO / "assets" / "demo" / "sample" / "val"  # 50 real val images per class, committed


@pytest.fixture(scope="session")
def tiny_imagenette(tmp_path_factory) -> Path:
    """train/ and val/ with 3 and 2 real images per class, from the committed demo sample (so
    the tests that use it need nothing outside the checkout)."""
    root = tmp_path_factory.mktemp("imagenette-tiny")
    for class_dir in sorted(SAMPLE.iterdir()):
        images = sorted(class_dir.iterdir())
        for split, chosen in (("train", images[:3]), ("val", images[3:5])):
            dest = root / split / class_dir.name
            dest.mkdir(parents=True)
            for img in chosen:
                shutil.copy(img, dest / img.name)
    return root


# four ImageNette classes under other names: a user's own image folder, made of real images
RELABELLED = {"n01440764": "fish", "n02102040": "dog", "n03394916": "horn", "n03888257": "parachute"}


@pytest.fixture(scope="session")
def relabelled_data(tmp_path_factory) -> Path:
    """A user's dataset: train/ and val/ with 4 classes of other names (3 and 2 real images
    each, from the committed demo sample)."""
    root = tmp_path_factory.mktemp("own-data")
    for wnid, name in RELABELLED.items():
        images = sorted((SAMPLE / wnid).iterdir())
        for split, chosen in (("train", images[:3]), ("val", images[3:5])):
            dest = root / split / name
            dest.mkdir(parents=True)
            for img in chosen:
                shutil.copy(img, dest / img.name)
    return root


@pytest.fixture(autouse=True)
def _default_codec(monkeypatch):
    """Tests expect the shipped defaults, whatever codec the shell asks for."""
    monkeypatch.delenv("CTNET_CODEC", raising=False)


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
def expected():
    """``expected(file, key, value)``: ``value`` must be what ``tests/assets/<file>`` (JSON)
    holds under ``key``. With ``GENERATE_EXPECTED=1`` in the environment it is written there
    instead (review the diff, then commit it): the switch for a deliberate format change."""
    def check(name: str, key: str, value) -> None:
        path = EXPECTED / name
        known = json.loads(path.read_text()) if path.exists() else {}
        if os.environ.get("GENERATE_EXPECTED") == "1":
            path.write_text(json.dumps({**known, key: value}, indent=1, sort_keys=True) + "\n")
            return
        assert key in known, f"{path} has no {key!r}: run this test once with GENERATE_EXPECTED=1"
        assert value == known[key], f"{key} differs from {path} (a deliberate change: rerun with GENERATE_EXPECTED=1)"
    return check


# --- generated inputs: a few images, a CTNet-18 state (tests of broken inputs, trust_fixtures.py) ---

@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """train/ and val/ with one 24×24 image per class (made here, no shared data)."""
    root = tmp_path_factory.mktemp("imgs")
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for wnid in IMAGENETTE_CLASSES:
            d = root / split / wnid
            d.mkdir(parents=True)
            pixels = torch.randint(0, 256, (24, 24, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(d / "a.png")
    return root


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(SPEC)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.01)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.fill_(1.0)
            elif name.endswith("running_mean"):
                b.zero_()
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@pytest.fixture
def bad_images(tmp_path, images):
    root = tmp_path / "data"
    shutil.copytree(images, root)
    return root
