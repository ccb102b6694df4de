"""ctnet.fileio: orphaned temporary files are cleaned, modes follow the umask, a full disk is
one line and keeps the previous file."""
from __future__ import annotations
import os
import time

import pytest
from safetensors import SafetensorError

from ctnet import fileio
import ctnet.checkpoint as ckpt_io
from ctnet.checkpoint import CheckpointError, save_checkpoint
from ctnet.cli import main
from trust_fixtures import SPEC, TINY_TRAIN, one_line_error


def test_orphan_temporary_files_are_cleaned_and_modes_follow_the_umask(tmp_path, state):
    dead = tmp_path / f".a.safetensors.~{fileio._HOST}~999999999~x.tmp"  # no such process
    stale = tmp_path / ".b.safetensors.tmp"
    fresh = tmp_path / ".c.safetensors.tmp"  # someone may be writing it
    live = tmp_path / f".d.safetensors.~{fileio._HOST}~{os.getpid()}~x.tmp"
    for p in (dead, stale, fresh, live):
        p.write_bytes(b"partial")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    old_mask = os.umask(0o002)
    try:
        path = save_checkpoint(tmp_path / "m.safetensors", state, {"model": SPEC.to_dict()})
        assert path.stat().st_mode & 0o777 == 0o664
        os.umask(0o027)
        path = save_checkpoint(tmp_path / "m.safetensors", state, {"model": SPEC.to_dict()})
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old_mask)
    assert not dead.exists() and not stale.exists() and fresh.exists() and live.exists()


def test_disk_full_is_one_line_and_keeps_the_previous_file(tmp_path, images, state, monkeypatch, capsys):
    path = save_checkpoint(tmp_path / "m.safetensors", state, {"model": SPEC.to_dict()})
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')
    monkeypatch.setattr(ckpt_io, "save_file", full)
    with pytest.raises(CheckpointError, match="no space left on device"):
        save_checkpoint(path, state, {"model": SPEC.to_dict()})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    assert main(["train", str(images), "--output-dir", str(tmp_path / "run"), "--epochs", "1", *TINY_TRAIN]) == 2
    assert "no space left on device" in one_line_error(capsys)
