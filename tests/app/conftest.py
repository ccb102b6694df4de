"""Fixtures of the app tests: the demo the app opens as the app's environment (``demo_dir``
and ``training_run`` are in ``tests/conftest.py``: the library's tests use them too)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def demo_env(demo_dir, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("CTNET_DEMO_DIR", str(demo_dir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # uploads land in pytest's tmp, not /tmp
    return demo_dir
