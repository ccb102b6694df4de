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


@pytest.fixture(scope="session")
def tiny_imagenette(tmp_path_factory, shared_data) -> Path:
    """train/ and val/ with 3 and 2 real images per class."""
    root = tmp_path_factory.mktemp("imagenette-tiny")
    for split, n in (("train", 3), ("val", 2)):
        for class_dir in sorted((shared_data / split).iterdir()):
            dest = root / split / class_dir.name
            dest.mkdir(parents=True)
            for img in sorted(class_dir.iterdir())[:n]:
                shutil.copy(img, dest / img.name)
    return root


@pytest.fixture(autouse=True)
def _default_codec(monkeypatch):
    """Tests expect the shipped defaults, whatever codec the shell asks for."""
    monkeypatch.delenv("CTNET_CODEC", raising=False)
