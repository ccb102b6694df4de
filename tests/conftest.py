"""Shared fixtures: a small real ImageNette folder built from the shared copy."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "imagenette2-128"
SHARED_RESNET18 = REPO.parent / "shared" / "models" / "resnet18-imagenette128-scratch.pt"


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
