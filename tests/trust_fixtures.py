"""What the tests of hostile and broken inputs share: a small CTNet-18 description, an
integer of 401 digits, the flags of a tiny training run, checkpoint metadata to edit, a crafted
checkpoint, the one-line error a command prints, and a decompression-bomb PNG."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from safetensors.torch import save_file

from ctnet.data import IMAGENETTE_CLASSES
from ctnet.models import ModelSpec

SPEC = ModelSpec("resnet18", 10, True, 16)
HUGE = int("9" * 401)
TINY_TRAIN = ["--image-size", "16", "--batch-size", "10", "--workers", "0", "--device", "cpu", "--limit-train", "10",
              "--limit-val", "10", "--lambda-rate", "0"]


def meta_dict(**changes) -> dict:
    meta = {"format": "ctnet-checkpoint", "version": 1, "model": SPEC.to_dict(), "image_size": 16,
            "pixel_bit_depth": 0, "label_map": {w: i for i, w in enumerate(IMAGENETTE_CLASSES)}}
    meta.update(changes)
    return meta


def craft(path: Path, state: dict, header) -> Path:
    """A safetensors file with ``state`` as model.* tensors and ``header`` (a JSON string
    or any value, dumped) as its ctnet metadata — what save_checkpoint would refuse."""
    text = header if isinstance(header, str) else json.dumps(header)
    save_file({f"model.{k}": v for k, v in state.items()}, str(path), metadata={"ctnet": text})
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def bomb(path: Path, side: int = 30000) -> Path:
    """A PNG whose header says side×side pixels (a few hundred bytes on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))
    return path
