"""Issue 11, everything but the bundle codec: crafted checkpoints become one named error,
weights that are not finite are refused, the CLI tells a user error from a bug, runs are
never lost, temporary files are cleaned, the rd cache loses no point under concurrent
writers, and bad images are one line naming the file. Self-contained: the images and the
checkpoints are made here."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import struct
import time
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import save_file

import ctnet.checkpoint as ckpt_io
from ctnet import api, fileio, rd
from ctnet.checkpoint import (
    CheckpointError,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from ctnet.cli import main
from ctnet.data import IMAGENETTE_CLASSES, DatasetError, load_image
from ctnet.errors import CtnetError
from ctnet.models import ModelSpec, build_model, plain_model
from ctnet.train import TrainConfig, TrainingError, fit, recover_replace
from ctnet.types import CheckpointMeta

SPEC = ModelSpec("resnet18", 10, True, 16)
HUGE = int("9" * 401)
TINY = ["--image-size", "16", "--batch-size", "10", "--workers", "0", "--device", "cpu", "--limit-train", "10",
        "--limit-val", "10", "--lambda-rate", "0"]


# --- fixtures: a few generated images, a CTNet-18 state -----------------------------------------

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


def _meta(**changes) -> dict:
    meta = {"format": "ctnet-checkpoint", "version": 1, "model": SPEC.to_dict(), "image_size": 16,
            "pixel_bit_depth": 0, "label_map": {w: i for i, w in enumerate(IMAGENETTE_CLASSES)}}
    meta.update(changes)
    return meta


def _craft(path: Path, state: dict, header) -> Path:
    """A safetensors file with ``state`` as model.* tensors and ``header`` (a JSON string
    or any value, dumped) as its ctnet metadata — what save_checkpoint would refuse."""
    text = header if isinstance(header, str) else json.dumps(header)
    save_file({f"model.{k}": v for k, v in state.items()}, str(path), metadata={"ctnet": text})
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# --- 1. typed checkpoint metadata ---------------------------------------------------------------

MALFORMED = [
    ("[]", "must be a JSON object, not list"),
    ("null", "must be a JSON object, not null"),
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "ctnet-checkpoint", "version": 1}), "no 'model'"),
    (_meta(version="9"), "'version' must be an integer, not str"),
    (_meta(version=1.0), "'version' must be an integer"),
    (_meta(format="other"), "format 'other'"),
    (_meta(model={**SPEC.to_dict(), "num_classes": HUGE}), "'model.num_classes' holds an integer out of range"),
    (_meta(model={**SPEC.to_dict(), "num_classes": 10 ** 9}), "num_classes out of range [1, 100000]"),
    (_meta(model={**SPEC.to_dict(), "num_classes": "10"}), "num_classes must be an integer"),
    (_meta(model={**SPEC.to_dict(), "ctnet": "yes"}), "ctnet must be true or false"),
    (_meta(model={**SPEC.to_dict(), "arch": ["resnet18"]}), "unknown architecture"),
    (_meta(model={**SPEC.to_dict(), "extra": 1}), "unknown field"),
    (_meta(model={"arch": "resnet18"}), "incomplete"),
    (_meta(model=None), "must be a JSON object"),
    (_meta(metrics={"fp32_bytes": HUGE}), "metrics.fp32_bytes"),
    (_meta(metrics={"acc1": "high"}), "metrics.acc1"),
    (_meta(image_size=HUGE), "'image_size' holds an integer out of range"),
    (_meta(image_size=10 ** 9), "'image_size' out of range [16, 1024]: 1000000000"),
    (_meta(image_size="128"), "'image_size' must be an integer"),
    (_meta(pixel_bit_depth=7), "pixel_bit_depth"),
    (_meta(label_map={"n01440764": 10}), "label_map"),
    (_meta(label_map=[]), "'label_map' must be a JSON object"),
    (_meta(epoch=-1), "'epoch' out of range"),
    (_meta(resume_state={"epoch": 1}), "resume_state"),
    (_meta(optimizer={"param_groups": 3, "scalars": {}}), "optimizer.param_groups"),
    (_meta(other=[[[[[[[[[[1]]]]]]]]]]), "nested deeper"),
    (_meta(other=HUGE), "out of range"),
    (_meta(digest="md5:0"), "'digest'"),
    (_meta(model={**SPEC.to_dict(), "dct_block_size": 4096}), "block size out of range [0, 512]: 4096"),
    (_meta(model={**SPEC.to_dict(), "dct_block_size": -1}), "block size out of range"),
]


@pytest.mark.parametrize("header, message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_metadata_is_one_named_error(tmp_path, state, header, message):
    path = _craft(tmp_path / "m.safetensors", state, header)
    with pytest.raises(CheckpointError, match=None) as info:
        read_checkpoint(path)
    text = str(info.value)
    assert message in text and "\n" not in text and str(path) in text
    assert isinstance(info.value, CtnetError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("header, message", [MALFORMED[0], MALFORMED[3], MALFORMED[4], MALFORMED[7], MALFORMED[17]])
def test_malformed_metadata_in_every_command(tmp_path, state, images, header, message, capsys):
    path = _craft(tmp_path / "m.safetensors", state, header)
    assert main(["eval", str(path), "--data", str(images), "--device", "cpu", "--workers", "0"]) == 2
    assert message in _one_line_error(capsys)
    out = tmp_path / "run"
    assert main(["train", str(images), "--output-dir", str(out), "--init-from", str(path), *TINY]) == 2
    assert message in _one_line_error(capsys)
    assert main(["train", str(images), "--output-dir", str(out), "--resume", str(path), *TINY]) == 2
    assert message in _one_line_error(capsys)
    assert not out.exists()


def test_malformed_metadata_in_encode(tmp_path, state, capsys):
    pytest.importorskip("av")
    path = _craft(tmp_path / "m.safetensors", state, _meta(version="9"))
    assert main(["encode", str(path), "--out", str(tmp_path / "b")]) == 2
    assert "'version' must be an integer" in _one_line_error(capsys)
    assert not (tmp_path / "b").exists()


def test_typed_meta_round_trips_and_keeps_unknown_fields():
    meta = _meta(epoch=3, metrics={"acc1": 50.0, "fp32_bytes": 44_764_968, "est_bytes": {"8": 10}},
                 note="kept", train_config={"lr": 0.1, "dct_block_size": 16})
    typed = CheckpointMeta.from_json(json.dumps(meta))
    assert typed.model == SPEC and typed.image_size == 16 and typed.epoch == 3 and typed.other == {"note": "kept"}
    assert CheckpointMeta.from_json(typed.to_json()) == typed


def test_loaded_model_describes_its_source(tmp_path, state):
    path = save_checkpoint(tmp_path / "a.safetensors", state, {"model": SPEC.to_dict(), "image_size": 16})
    loaded = api.load_any(path)
    assert loaded.kind == "checkpoint" and loaded.path == path and loaded.num_classes == 10 and loaded.spec == SPEC
    assert loaded.image_size == 16 and not loaded.model.training and loaded.bundle is None and loaded.settings is None


# --- the block size: bounded, and tied to the weights -------------------------------------------

def test_block_size_the_shapes_cannot_hold_is_refused_before_building(tmp_path, state, monkeypatch):
    def no_build(spec):
        raise AssertionError("build_model must not run for weights that do not fit")
    monkeypatch.setattr(ckpt_io, "build_model", no_build)
    path = _craft(tmp_path / "m.safetensors", state, _meta(model={**SPEC.to_dict(), "dct_block_size": 48}))
    with pytest.raises(CheckpointError, match=r"layer2\.0\.downsample\.0\.weight_dct has shape \[128, 64\], "
                                              r"expected \[144, 96\].*block size in the metadata does not fit"):
        load_model(path)
    path = _craft(tmp_path / "n.safetensors", state, _meta(model={**SPEC.to_dict(), "dct_block_size": 512}))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)
    assert time.perf_counter() - t0 < 5


def test_block_size_edit_the_shapes_hide_is_refused(tmp_path, state):
    # 8 and 0 give the same shapes as 16 in a ResNet-18 (channels are multiples of 16);
    # a checkpoint saved by ctnet carries a digest over its metadata and tensors ...
    path = save_checkpoint(tmp_path / "a.safetensors", state, {"model": SPEC.to_dict(), "image_size": 16})
    header = read_checkpoint(path).meta
    for block in (0, 8):
        edited = _craft(tmp_path / f"b{block}.safetensors", state,
                        {**header, "model": {**SPEC.to_dict(), "dct_block_size": block}})
        with pytest.raises(CheckpointError, match="does not match its digest"):
            read_checkpoint(edited)
    # ... and a training checkpoint records the block size twice
    no_digest = {k: v for k, v in header.items() if k != "digest"}
    crafted = _craft(tmp_path / "c.safetensors", state, {**no_digest, "train_config": {"dct_block_size": 16},
                                                         "model": {**SPEC.to_dict(), "dct_block_size": 8}})
    with pytest.raises(CheckpointError, match="disagrees with the block size the weights were trained with"):
        read_checkpoint(crafted)


def test_damaged_weights_do_not_match_the_digest(tmp_path, state):
    path = save_checkpoint(tmp_path / "a.safetensors", state, {"model": SPEC.to_dict()})
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="digest"):
        read_checkpoint(path)


def test_summary_refuses_a_huge_block_size_fast(capsys):
    t0 = time.perf_counter()
    assert main(["summary", "--arch", "resnet50", "--dct-block-size", "4096"]) == 2
    assert time.perf_counter() - t0 < 2
    assert "block size out of range [0, 512]: 4096" in _one_line_error(capsys)
    with pytest.raises(ValueError, match="block size"):
        build_model(ModelSpec("resnet50", 10, True, 4096))


# --- 2. non-finite weights, hostile pickles -----------------------------------------------------

@pytest.mark.parametrize("name, value, message", [
    ("layer1.0.conv1.weight_dct", float("nan"), "non-finite"),
    ("fc.weight", float("inf"), "non-finite"),
    ("bn1.running_var", -1.0, "negative batch-norm variance"),
])
def test_non_finite_weights_are_refused(tmp_path, state, images, name, value, message, capsys):
    bad = dict(state)
    bad[name] = state[name].clone()
    bad[name].view(-1)[0] = value
    path = _craft(tmp_path / "m.safetensors", bad, _meta())
    with pytest.raises(CheckpointError, match=message) as info:
        read_checkpoint(path)
    assert repr(name) in str(info.value)
    assert main(["eval", str(path), "--data", str(images), "--device", "cpu", "--workers", "0"]) == 2
    assert name in _one_line_error(capsys)
    plain = plain_model("resnet18", num_classes=10).state_dict()
    plain[name.replace("_dct", "")].view(-1)[0] = value
    torch.save(plain, tmp_path / "m.pt")  # a torchvision .pt state dict is checked as well
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(tmp_path / "m.pt")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_refusal_does_not_advise_unpickling(tmp_path, capsys, images):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "x": _Evil(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    text = str(info.value)
    assert "could run code" in text and "nothing in it was executed" in text
    assert "weights_only" not in text and "likely succeed" not in text and "\n" not in text
    assert main(["eval", str(path), "--data", str(images)]) == 2
    err = _one_line_error(capsys)
    assert "weights_only" not in err and "refused" in err
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError, match="nothing in it was executed"):
        read_checkpoint(tmp_path / "raw.pkl")
    assert not marker.exists()


# --- 3. one root; user errors exit 2, bugs exit 1 -----------------------------------------------

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
    err = _one_line_error(capsys)
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
    assert "device must be" in _one_line_error(capsys)


# --- 4. runs are never lost; temporary files; modes; disk full ----------------------------------

def _log_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_existing_run_is_refused_and_replaced_atomically_with_force(tmp_path, images, capsys):
    run = tmp_path / "run"
    assert main(["train", str(images), "--output-dir", str(run), "--epochs", "2", *TINY]) == 0
    before = (run / "train_log.jsonl").read_bytes()
    last = (run / "checkpoints" / "last.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", str(images), "--output-dir", str(run), "--epochs", "1", *TINY]) == 2
    err = _one_line_error(capsys)
    assert "already holds a run" in err and "--resume" in err and "--force" in err
    assert (run / "train_log.jsonl").read_bytes() == before
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == last
    assert main(["train", str(images), "--output-dir", str(run), "--force", "--resume", "x", *TINY]) == 2
    assert "--force" in _one_line_error(capsys)

    seen = []

    def log(msg):  # while the new run trains, the old one is whole at its path
        if msg.startswith("epoch"):
            seen.append((run / "train_log.jsonl").read_bytes() == before
                        and (run / "checkpoints" / "last.safetensors").read_bytes() == last)
    cfg = TrainConfig(data=str(images), output_dir=str(run), epochs=1, force=True, image_size=16, batch_size=10,
                      workers=0, device="cpu", limit_train=10, limit_val=10, lambda_rate=0.0)
    fit(cfg, log=log)
    assert seen == [True]
    assert [r["epoch"] for r in _log_rows(run)] == [1]
    assert json.loads((run / "config.json").read_text())["output_dir"] == str(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or old folder left
    assert not (run / ".ctnet-replace-complete").exists()


def test_interrupted_replace_is_recovered_or_reported(tmp_path):
    run, new, old = tmp_path / "run", tmp_path / ".run.new", tmp_path / ".run.old"
    # killed between the two renames: the old run aside, the complete new one beside it
    old.mkdir()
    (old / "train_log.jsonl").write_text("old\n")
    new.mkdir()
    (new / "train_log.jsonl").write_text("new\n")
    (new / ".ctnet-replace-complete").touch()
    messages = []
    recover_replace(run, log=messages.append)
    assert (run / "train_log.jsonl").read_text() == "new\n" and not old.exists() and not new.exists()
    assert not (run / ".ctnet-replace-complete").exists() and "finished replacing" in messages[0]
    # killed while the new run trained: the old one stays, the incomplete one is not put in place
    new.mkdir()
    (new / "train_log.jsonl").write_text("partial\n")
    recover_replace(run, log=messages.append)
    assert (run / "train_log.jsonl").read_text() == "new\n" and new.exists()
    # the old run moved aside, nothing complete: it is put back
    os.replace(run, old)
    recover_replace(run, log=messages.append)
    assert (run / "train_log.jsonl").read_text() == "new\n" and "restored" in messages[-1]


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
    assert main(["train", str(images), "--output-dir", str(tmp_path / "run"), "--epochs", "1", *TINY]) == 2
    assert "no space left on device" in _one_line_error(capsys)


# --- 5. the rd cache under concurrent writers -----------------------------------------------------

def _write_points(cache: str, tag: str, n: int) -> None:
    for i in range(n):
        point = rd.RDPoint(method="fp32", codec="fp32", settings={}, label=tag, bytes=1000 + i, ratio=1.0,
                           acc1=float(i), acc5=float(i), images=10, device="cpu", encode_seconds=0.0,
                           decode_seconds=0.0, source_sha256="0" * 64, data="d/val:0", limit=None,
                           measured="2026-01-01T00:00:00", load_average=None)
        rd.write_point(cache, hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(), point)


def test_rd_cache_loses_no_point_with_two_writing_processes(tmp_path):
    cache = tmp_path / "rd" / "c.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_points, args=(str(cache), tag, 40)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    points = rd.read_cache(cache)
    assert len(points) == 80 and {p["label"] for p in points.values()} == {"a", "b"}
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]


def test_rd_cache_reads_the_shipped_single_file_caches():
    shipped = sorted((Path(__file__).resolve().parents[1] / "assets" / "demo" / "rd").glob("*.json"))
    if not shipped:
        pytest.skip("no shipped rd cache")
    for f in shipped:
        assert rd.read_cache(f)


# --- 6. data: decompression bombs, worker errors --------------------------------------------------

def _bomb(path: Path, side: int = 30000) -> Path:
    """A PNG whose header says side×side pixels (a few hundred bytes on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def bad_images(tmp_path, images):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(images, root)
    return root


def test_decompression_bomb_is_one_line_naming_the_file(tmp_path, bad_images, state, capsys):
    bomb = _bomb(bad_images / "val" / "n01440764" / "b.png")
    with pytest.raises(DatasetError, match="too large to decode safely") as info:
        load_image(bomb, 16)
    assert str(bomb) in str(info.value)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", state, {"model": SPEC.to_dict(), "image_size": 16})
    assert main(["eval", str(ckpt), "--data", str(bad_images), "--device", "cpu", "--workers", "0"]) == 2
    assert str(bomb) in _one_line_error(capsys)
    _bomb(bad_images / "train" / "n01440764" / "b.png")
    for extra in ([], ["--cache-dataset"]):
        assert main(["train", str(bad_images), "--output-dir", str(tmp_path / "run"), "--epochs", "1",
                     "--image-size", "16", "--batch-size", "10", "--workers", "0", "--device", "cpu", *extra]) == 2
        assert "b.png" in _one_line_error(capsys)


def test_worker_error_is_the_original_one_line(tmp_path, bad_images, state, capsys):
    broken = bad_images / "val" / "n01440764" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", state, {"model": SPEC.to_dict(), "image_size": 16})
    assert main(["eval", str(ckpt), "--data", str(bad_images), "--device", "cpu", "--workers", "2",
                 "--batch-size", "4"]) == 2
    err = _one_line_error(capsys)
    assert str(broken) in err and "Traceback" not in err and "DataLoader" not in err
