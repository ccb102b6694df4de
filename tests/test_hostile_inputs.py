"""Issue 21's adversarial audit, case by case: each input the audit broke ctnet with, built
small here, and what ctnet must do with it now — refuse it in one line (exit 2), say plainly
what it cannot vouch for, or read it correctly; never exit 1, hang, or give a silently wrong
result. The numbers in the test names are the issue's. Peak memory of the large crafted
inputs is measured by ``python bench/hostile_inputs.py`` (the table in docs/trust.md)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from codec_fixtures import sparse_ctnet18, state_hash
from demo_fixture import REPO  # it puts the checkout on sys.path, for bench
from bench.hostile_inputs import declare  # the audit's crafted zip headers, shared with its bench
from ctnet import cli, runs
from ctnet.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from ctnet.codec import bundle as B
from ctnet.codec import tables as T
from ctnet.codec.manifest import Manifest, digest_of
from ctnet.data import DatasetError, load_image
from ctnet.errors import UnverifiedWarning

ASSETS = Path(__file__).parent / "assets"
V2 = ASSETS / "v2" / "lam1e-6-smallest"
V1 = ASSETS / "v1" / "lam1e-6-smallest"
TINY = ["--image-size", "32", "--batch-size", "10", "--cache-dataset", "--workers", "0", "--device", "cpu"]


# --- helpers --------------------------------------------------------------------------------------

def _copy(src: Path, tmp_path: Path, name: str = "b") -> Path:
    dest = tmp_path / name
    shutil.copytree(src, dest)
    return dest


def _manifest(path: Path) -> dict:
    return json.loads((path / B.MANIFEST).read_text())


def _write(path: Path, m: dict, *, rehash: bool) -> None:
    """Write a manifest; ``rehash``: every member's size and SHA-256 and the digest rewritten,
    as a tool that 'fixes' them would."""
    if rehash:
        for e in m["members"]:
            data = (path / e["file"]).read_bytes()
            e["bytes"], e["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        m["digest"] = digest_of(m)
    (path / B.MANIFEST).write_text(json.dumps(m))


def _v1_rewrite(path: Path, fn) -> None:
    """Edit a v1 manifest (no digest to rewrite)."""
    m = _manifest(path)
    fn(m)
    (path / B.MANIFEST).write_text(json.dumps(m))


def _run(capsys, *argv) -> tuple[int, list[str], str]:
    """(exit status, stderr lines, stdout) of an in-process ``ctnet`` call."""
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: --help, or (as one line) a bad flag
        code = exc.code
    out = capsys.readouterr()
    return code, [line for line in out.err.splitlines() if line.strip()], out.out


def _one_line_error(capsys, *argv, pattern: str) -> str:
    code, err, _ = _run(capsys, *argv)
    assert code == 2, err
    assert len(err) == 1 and ": error: " in err[0], err
    assert pattern in err[0], err[0]
    return err[0]


def _cli_subprocess(*argv, limit_file_bytes: int | None = None, timeout: int = 600, env=None):
    """``python -m ctnet …`` in a child process (optionally with a file-size limit standing in
    for a full disk: writes past it fail with EFBIG, SIGXFSZ ignored)."""
    def limit():
        if limit_file_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))
    return subprocess.run([sys.executable, "-m", "ctnet", *map(str, argv)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A CTNet-18 bundle written by this ctnet (it carries the model check)."""
    model, meta = sparse_ctnet18(seed=5)
    ckpt = tmp_path_factory.mktemp("src") / "m.safetensors"
    save_checkpoint(ckpt, model, meta)
    out = tmp_path_factory.mktemp("fresh") / "bundle"
    assert cli.main(["encode", str(ckpt), "--out", str(out), "--preset", "ultrafast"]) == 0
    return out


# --- silently wrong ---------------------------------------------------------------------------------

def test_01_a_v1_bundle_says_it_cannot_be_verified_and_migrates_to_v2(tmp_path, capsys):
    """An edited v1 manifest (first tile scale ×2) still decodes — nothing in it can tell —
    but never silently: every read warns in one line, ``verify`` refuses it, and ``encode``
    makes a v2 bundle with a digest of it."""
    b = _copy(V1, tmp_path)
    _v1_rewrite(b, lambda m: m["layers"][0]["scale"].__setitem__(0, m["layers"][0]["scale"][0] * 2))
    code, err, _ = _run(capsys, "decode", b)
    assert code == 0 and len(err) == 1, err
    assert err[0].startswith("ctnet decode: warning:") and "format-v1" in err[0] and "no digest" in err[0]
    _one_line_error(capsys, "verify", b, pattern="cannot be verified")
    _one_line_error(capsys, "verify", V1, pattern="cannot be verified")  # untouched ones too: there is nothing to check
    out = tmp_path / "v2"
    code, err, _ = _run(capsys, "encode", V1, "--out", out, "--preset", "ultrafast")
    assert code == 0 and any("warning" in e and "format-v1" in e for e in err)
    code, err, stdout = _run(capsys, "verify", out)
    assert code == 0 and "ok, format v2" in stdout and "digest " in stdout
    with pytest.warns(UnverifiedWarning, match="format-v1"):
        B.read_bundle(V1)


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: m.update(image_size=4096), "image_size"),
    (lambda m: m.update(pixel_bit_depth=9), "pixel_bit_depth"),
    (lambda m: m["settings"].update(bit_depth=6), "'settings.bit_depth' is 6, not one of \\(8, 10, 12\\)"),
    (lambda m: m["settings"].update(dither=9.0), "dither"),
    (lambda m: m["layers"][0]["scale"].__setitem__(0, float("1e39")), "scales must be finite"),
    (lambda m: m["layers"][0]["scale"].__setitem__(0, -1.0), "scales must be finite and positive"),
])
def test_01_v1_values_are_range_checked(tmp_path, edit, pattern):
    b = _copy(V1, tmp_path)
    _v1_rewrite(b, edit)
    with pytest.raises(B.BundleError, match=pattern):
        B.read_bundle(b)


def _set_scale(raw: bytes, index: int, value: float, tiles: int) -> bytes:
    """The tables with one tile's scale replaced (scales are byte-plane shuffled after 6 header bytes)."""
    data = bytearray(raw)
    for k, byte in enumerate(struct.pack("<f", value)):
        data[6 + k * tiles + index] = byte
    return bytes(data)


def test_02_a_huge_finite_scale_is_refused_and_nothing_is_written(tmp_path, capsys):
    b = _copy(V2, tmp_path)
    m = Manifest.from_json((b / B.MANIFEST).read_bytes())
    raw = T.decompress((b / "tables.bin").read_bytes(), m.tables_raw_bytes)
    tiles = 699  # this model's grid tiles: the stride of the scales' byte planes
    (b / "tables.bin").write_bytes(T.compress(_set_scale(raw, 0, 3e38, tiles)))
    _write(b, _manifest(b), rehash=True)
    out = tmp_path / "model.safetensors"
    _one_line_error(capsys, "decode", b, "--out", out, pattern="finite")
    assert not out.exists()
    v1 = _copy(V1, tmp_path, "v1")
    _v1_rewrite(v1, lambda m: m["layers"][0]["scale"].__setitem__(0, 3e38))
    with pytest.raises(B.BundleError, match="finite"), pytest.warns(UnverifiedWarning, match="format-v1"):
        B.read_bundle(v1)


def test_02_weights_that_only_overflow_when_used_are_refused(tmp_path):
    """Finite coefficients of 3e38 give infinite outputs: checked on the materialised weights
    and on a probe image, for checkpoints as for bundles."""
    model, meta = sparse_ctnet18(seed=1)
    with torch.no_grad():
        model.conv1.weight_dct.fill_(3e38)
    path = tmp_path / "huge.safetensors"
    save_checkpoint(path, model, meta)
    with pytest.raises(CheckpointError, match="not usable"):
        from ctnet.checkpoint import load_model
        load_model(path)


def _ctnet_checkpoint(tmp_path: Path, *, digest: bool, block: int) -> Path:
    """A CTNet-18 checkpoint relabelled from block size 16 to ``block`` (a header edit)."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    model, meta = sparse_ctnet18(seed=3)
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, model, meta)
    with safe_open(str(good), framework="pt") as f:
        header = json.loads(f.metadata()["ctnet"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header["model"]["dct_block_size"] = block
    if not digest:
        header.pop("digest")
    out = tmp_path / f"relabelled-{block}.safetensors"
    save_file(tensors, str(out), metadata={"ctnet": json.dumps(header)})
    return out


def test_03_a_relabelled_block_size_is_never_silent(tmp_path, fresh, capsys):
    """Block sizes 16 and 8 give a ResNet-18 the same shapes. A checkpoint with a digest fails
    it; one without says its block size cannot be confirmed; a bundle written by this ctnet
    is refused by its model check even with its digest rewritten."""
    with pytest.raises(CheckpointError, match="does not match its digest"):
        read_checkpoint(_ctnet_checkpoint(tmp_path, digest=True, block=8))
    bare = _ctnet_checkpoint(tmp_path, digest=False, block=8)
    with pytest.warns(UnverifiedWarning, match="block size .8. cannot be confirmed"):
        read_checkpoint(bare)
    code, err, _ = _run(capsys, "encode", bare, "--out", tmp_path / "x", "--preset", "ultrafast")
    assert code == 0 and len([e for e in err if "warning" in e]) == 1 and "cannot be confirmed" in err[0]
    b = _copy(fresh, tmp_path, "relabelled")
    m = _manifest(b)
    assert m["model_check"]["channel_dct"]
    m["model"]["dct_block_size"] = 8
    _write(b, m, rehash=True)
    _one_line_error(capsys, "decode", b, pattern="model check does not match")
    m["model_check"]["channel_dct"] = "0" * 16  # a forged check of the right form: still refused
    m["model"]["dct_block_size"] = 16
    _write(b, m, rehash=True)
    _one_line_error(capsys, "decode", b, pattern="model check does not match")


def test_03_a_relabelled_bundle_from_before_the_model_check_warns_when_evaluated(tmp_path, tiny_imagenette, capsys):
    """Bundles written before the model check have only their digest; rewritten, it passes.
    Evaluated, the model shows it: top-1 far below the one its training recorded is a warning."""
    b = _copy(V2, tmp_path)
    m = _manifest(b)
    assert "model_check" not in m and m["source"]["metrics"]["acc1"] > 80
    m["model"]["dct_block_size"] = 8
    _write(b, m, rehash=True)
    code, err, out = _run(capsys, "decode", b, "--data", tiny_imagenette, "--workers", "0")
    assert code == 0 and len(err) == 1 and "warning:" in err[0] and "below the" in err[0], err
    code, err, out = _run(capsys, "decode", V2, "--data", tiny_imagenette, "--workers", "0")
    assert code == 0 and not err, err  # the untouched bundle: no warning


def test_03_an_untouched_fresh_bundle_decodes_to_what_was_encoded(fresh):
    model, meta = B.read_bundle(fresh)
    again, _ = B.decode_files(B.load_files(fresh))
    assert state_hash(model) == state_hash(again) and meta["model_check"]["channel_dct"]


# --- exit 1 or a hang on input the user can fix ------------------------------------------------------

def test_04_a_deep_directory_tree_in_a_bundle(tmp_path, capsys):
    b = _copy(V2, tmp_path, "bundle")
    deep = b
    for _ in range(1200):  # os.makedirs would recurse
        deep = deep / "d"
        deep.mkdir()
    (deep / "f").write_bytes(b"x" * 10)
    code, _, out = _run(capsys, "verify", b)
    assert code == 0 and "note: d is not part of the bundle" in out
    model, meta = B.read_bundle(b)
    assert meta["bundle"]["total_bytes"] == sum(p.stat().st_size for p in V2.iterdir()) + 10
    run = tmp_path / "run"
    (run / "bundles").mkdir(parents=True)
    shutil.move(str(b), str(run / "bundles" / "best"))
    [found] = runs.discover(run)
    assert found.entries and found.entries[0].real_bytes == meta["bundle"]["total_bytes"]
    deep = run / "bundles" / "best" / Path(*["d"] * 1200)  # too deep for shutil.rmtree (and pytest's cleanup)
    (deep / "f").unlink()
    for _ in range(1200):
        deep.rmdir()
        deep = deep.parent


def test_04_too_many_entries_and_a_deeply_nested_manifest(tmp_path, capsys):
    b = _copy(V2, tmp_path, "wide")
    junk = b / "junk"
    junk.mkdir()
    for i in range(B.MAX_BUNDLE_ENTRIES + 1):
        (junk / str(i)).mkdir()
    _one_line_error(capsys, "decode", b, pattern="more than 10000 files")
    for src, name in ((V2, "v2"), (V1, "v1")):
        n = _copy(src, tmp_path, f"nested-{name}")
        m = _manifest(n)
        m["source"] = "NESTED"
        (n / B.MANIFEST).write_text(json.dumps(m).replace('"NESTED"', "[" * 981 + "]" * 981))
        code, err, _ = _run(capsys, "verify", n)  # refused by its depth, or by json's own recursion limit
        assert code == 2 and len(err) == 1 and "nested deeper than 16" in err[0], err
    run = tmp_path / "run"
    (run / "bundles").mkdir(parents=True)
    shutil.copytree(tmp_path / "nested-v2", run / "bundles" / "best")
    (run / "train_log.jsonl").write_text("[" * 5000 + "]" * 5000 + "\n")
    [found] = runs.discover(run)
    assert any("nested" in p for p in found.problems) and not found.entries


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-5"], "--batch-size"),
    (["--workers", "-1"], "--workers"),
    (["--workers", "100000"], "--workers"),
    (["--warmup-epochs", "inf"], "--warmup-epochs"),
    (["--seed", "100000000000000000000"], "--seed"),
    (["--momentum", "nan"], "--momentum"),
    (["--steepness", "inf"], "--steepness"),
    (["--lr", "nan"], "--lr"),
])
def test_05_bad_training_flags_are_one_line(tiny_imagenette, tmp_path, flags, message, capsys):
    run = tmp_path / "run"
    _one_line_error(capsys, "train", tiny_imagenette, "--output-dir", run, *TINY, *flags, pattern=message)
    assert not run.exists()


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size"), (["--workers", "-1"], "--workers"),
    (["--workers", "100000"], "--workers"), (["--limit", "0"], "--limit"),
])
def test_05_bad_evaluation_flags_are_one_line(tiny_imagenette, flags, message, capsys):
    _one_line_error(capsys, "eval", V2, "--data", tiny_imagenette, *flags, pattern=message)


@pytest.fixture(scope="module")
def trained(tiny_imagenette, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(["train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "1", *TINY]) == 0
    return run


def test_05_resume_with_a_damaged_log_or_rng_state(trained, tiny_imagenette, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = run / "checkpoints" / "last.safetensors"
    log = run / "train_log.jsonl"
    good_log = log.read_text()
    log.write_text(good_log[: len(good_log) // 2] + "\n")
    _one_line_error(capsys, "train", tiny_imagenette, "--output-dir", run, "--epochs", "2", *TINY, "--resume", last,
                    pattern="line 1 is not a JSON record")
    log.write_text(good_log)
    ckpt = read_checkpoint(last)
    ckpt.extra["torch_rng"] = torch.zeros(3)  # a float tensor where the generator's byte state belongs
    save_checkpoint(last, ckpt.state_dict, ckpt.meta, extra=ckpt.extra)
    _one_line_error(capsys, "train", tiny_imagenette, "--output-dir", run, "--epochs", "2", *TINY, "--resume", last,
                    pattern="random-number state")


def test_06_decode_onto_a_full_disk_is_one_line(tmp_path):
    for name in ("model.safetensors", "model.onnx"):
        out = tmp_path / name
        r = _cli_subprocess("decode", V2, "--out", out, limit_file_bytes=1 << 20)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "error:" in lines[0], r.stderr
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_07_a_fifo_among_the_images_is_refused_without_being_opened(tiny_imagenette, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_imagenette, data)
    fifo = data / "val" / "n01440764" / "x.JPEG"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    _one_line_error(capsys, "eval", V2, "--data", data, pattern="not a regular file")
    assert time.monotonic() - t0 < 120


# --- memory -------------------------------------------------------------------------------------------

def test_08_member_sizes_are_bounded_by_the_model_before_reading(tmp_path, capsys):
    b = _copy(V2, tmp_path)
    w = b / "w.mp4"
    with open(w, "r+b") as f:  # a sparse 3 GiB member, and the manifest saying so
        f.truncate(3 << 30)
    m = _manifest(b)
    next(e for e in m["members"] if e["file"] == "w.mp4").update(bytes=3 << 30, sha256="0" * 64)
    m["digest"] = digest_of(m)
    (b / B.MANIFEST).write_text(json.dumps(m))
    t0 = time.monotonic()
    _one_line_error(capsys, "verify", b, pattern="need at most")
    assert time.monotonic() - t0 < 30  # refused from the manifest, not after reading 3 GiB
    b2 = _copy(V2, tmp_path, "tables")
    m = _manifest(b2)
    m["tables"]["raw_bytes"] = 1 << 30
    _write(b2, m, rehash=True)
    _one_line_error(capsys, "decode", b2, pattern="tables hold")


def test_08_a_member_larger_than_stated_is_never_read(tmp_path, capsys):
    b = _copy(V2, tmp_path)
    with open(b / "w.mp4", "ab") as f:
        f.write(b"\0" * 1000)
    _one_line_error(capsys, "decode", b, pattern="bytes on disk, the manifest says")
    link = _copy(V2, tmp_path, "fifo")
    os.unlink(link / "w.mp4")
    os.mkfifo(link / "w.mp4")
    _one_line_error(capsys, "verify", link, pattern="not a regular file")


def test_09_image_size_is_capped_as_checkpoints_cap_it(tmp_path):
    from ctnet.evaluate import eval_batch_size
    b = _copy(V2, tmp_path)
    m = _manifest(b)
    m["image_size"] = 2048
    _write(b, m, rehash=True)
    with pytest.raises(B.BundleError, match="image_size.*outside 16..1024"):
        B.read_bundle(b)
    assert eval_batch_size(128) == 256 and eval_batch_size(1024) == 4 and eval_batch_size(16) == 256


def test_10_an_extreme_aspect_ratio_image_is_refused_before_resizing(tmp_path):
    p = tmp_path / "strip.png"
    Image.new("RGB", (60000, 1)).save(p)
    assert p.stat().st_size < 1000
    with pytest.raises(DatasetError, match="too elongated"):
        load_image(p, 128)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (400, 100), (200, 10, 10)).save(wide)
    assert load_image(wide, 32).shape == (3, 32, 32)  # an ordinary panorama still loads


def test_11_workers_are_bounded(tiny_imagenette):
    from ctnet.data import load_split
    from ctnet.errors import ConfigError
    from ctnet.evaluate import evaluate
    from ctnet.train import TrainConfig
    with pytest.raises(ConfigError, match="--workers"):
        TrainConfig(data=str(tiny_imagenette), workers=100000).validate()
    split = load_split(tiny_imagenette, "val", num_classes=10, size=32, limit=2)
    with pytest.raises(ConfigError, match="workers"):
        evaluate(torch.nn.Identity(), split, workers=100000)


def _torch_zip_with_record(tmp_path: Path, name: str, inflated: int) -> Path:
    """A torch.save file whose first storage record is replaced by ``inflated`` zero bytes,
    deflated (torch writes records stored)."""
    src = tmp_path / "src.pt"
    torch.save({"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, src)
    out = tmp_path / name
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if "/data/" in info.filename and info.filename.endswith("/0"):
                target = zipfile.ZipInfo(info.filename)
                target.compress_type = zipfile.ZIP_DEFLATED
                with zout.open(target, "w") as f:
                    for _ in range(inflated >> 20):
                        f.write(bytes(1 << 20))
            else:
                zout.writestr(info, zin.read(info))
    return out


def _record(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        return next(i.filename for i in z.infolist() if i.filename.endswith("/data/0"))


def test_12_a_deflate_bomb_in_a_pt_checkpoint_is_refused_before_torch_reads_it(tmp_path):
    bomb = _torch_zip_with_record(tmp_path, "bomb.pt", 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="deflate bomb"):
        read_checkpoint(bomb)
    lying = tmp_path / "lying.pt"  # its record declares 1,000 bytes and inflates to 64 MiB
    lying.write_bytes(declare(bomb.read_bytes(), _record(bomb), 1000))
    with pytest.raises(CheckpointError, match="deflate bomb|not a readable PyTorch checkpoint"):
        read_checkpoint(lying)


# --- uploads ------------------------------------------------------------------------------------------

def _bundle_zip(files: dict[str, bytes], extra: dict[str, int] | None = None, folder: str = "b") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{folder}/{name}", data)
        for name, size in (extra or {}).items():
            info = zipfile.ZipInfo(f"{folder}/{name}")
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                for _ in range(size >> 20):
                    f.write(bytes(1 << 20))
    return buf.getvalue()


def _files(src: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in src.iterdir()}


def test_13_upload_bombs_are_refused_before_inflating_and_leave_nothing(tmp_path):
    uploads = tmp_path / "uploads"
    files = _files(V2)
    good = runs.import_upload("ok.zip", _bundle_zip(files), uploads)
    assert _files(good) == files
    # a member the manifest does not name (as small as it likes: it is never inflated)
    with pytest.raises(runs.RunError, match="not part of the bundle"):
        runs.import_upload("extra.zip", _bundle_zip(files, extra={"padding.bin": 1 << 20}), uploads)
    # a member declaring 256 MiB
    bomb = _bundle_zip(files, extra={"padding.bin": 256 << 20})
    assert len(bomb) < 2 << 20
    with pytest.raises(runs.RunError, match="too large"):
        runs.import_upload("bomb.zip", bomb, uploads)
    # a member declaring 1,000 bytes that inflates to far more: refused by the size its manifest states
    with pytest.raises(runs.RunError, match="declares 1000 bytes, the manifest says"):
        runs.import_upload("lying.zip", declare(_bundle_zip(files), "b/w.mp4", 1000), uploads)
    # a member declaring what its manifest states but inflating past it: stopped at that size (bad CRC)
    padded = _bundle_zip({**files, "w.mp4": files["w.mp4"] + bytes(64 << 20)})
    with pytest.raises(runs.RunError, match="damaged|inflates"):
        runs.import_upload("past.zip", declare(padded, "b/w.mp4", len(files["w.mp4"])), uploads)
    # a manifest member that is itself a bomb
    with pytest.raises(runs.RunError):
        runs.import_upload("m.zip", _bundle_zip({}, extra={"manifest.json": 8 << 20}), uploads)
    left = [p for p in uploads.rglob("*") if not (p == good.parent or good.parent in p.parents)]
    assert not left, left


def test_18_odd_upload_members_are_one_runerror_and_leave_nothing(tmp_path):
    uploads = tmp_path / "uploads"
    files = _files(V2)
    long_name = _bundle_zip({**files, "x" * 300: b"1"})
    with pytest.raises(runs.RunError, match="not a plain file name"):
        runs.import_upload("long.zip", long_name, uploads)
    damaged = bytearray(_bundle_zip(files))
    at = damaged.find(b"b/tables.bin") + len("b/tables.bin")
    damaged[at + 5: at + 40] = b"\xff" * 35  # inside the deflate stream of tables.bin
    with pytest.raises(runs.RunError):
        runs.import_upload("damaged.zip", bytes(damaged), uploads)
    assert not [p for p in uploads.rglob("*") if p.is_file()]
    with pytest.raises(runs.RunError):
        runs.import_upload("weird.zip", b"PK\x05\x06" + b"\xff" * 18, uploads)


# --- one line, misleading, leftovers -------------------------------------------------------------------

def test_14_argparse_errors_are_one_line(capsys):
    err = _one_line_error(capsys, "encode", "x", "--bit-depth", "13", pattern="--bit-depth")
    assert "usage" not in err
    _one_line_error(capsys, "eval", "x", pattern="--data")
    code, _, out = _run(capsys, "verify", "--help")
    assert code == 0 and out.startswith("usage: ctnet verify")  # --help still shows the usage


def test_14_no_cuda_notice_before_training_output(tmp_path):
    """torch.compile's C++ build (of the rate proxy or the export simulation) imports
    torch.utils.cpp_extension, which looks for CUDA and logs "No CUDA runtime is found" on a
    CPU-only machine with a CUDA toolkit; ctnet silences that logger when its compiled modules load."""
    code = "import ctnet.train\nimport torch.utils.cpp_extension\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "No CUDA runtime" not in r.stderr, r.stderr


def test_14_download_errors_show_no_progress_bar(tmp_path, capsys):
    _one_line_error(capsys, "download", "imagenette", tmp_path / "d", "--url", f"file://{tmp_path}/missing.tgz",
                    pattern="could not download")
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(os.urandom(5000))
    _one_line_error(capsys, "download", "imagenette", tmp_path / "d", "--url", f"file://{junk}",
                    pattern="not a valid ImageNette archive")


def test_15_a_nan_loss_before_any_checkpoint_names_none(tiny_imagenette, tmp_path, monkeypatch, capsys):
    import ctnet.train as train_mod
    monkeypatch.setattr(train_mod.F, "cross_entropy", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    run = tmp_path / "run"
    err = _one_line_error(capsys, "train", tiny_imagenette, "--output-dir", run, "--epochs", "1", *TINY,
                          pattern="loss became nan")
    assert "no checkpoint was written yet" in err and "last.safetensors" not in err


def test_15_a_run_left_without_checkpoints_is_not_told_to_resume_a_missing_file(trained, tiny_imagenette, tmp_path,
                                                                                capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    err = _one_line_error(capsys, "train", tiny_imagenette, "--output-dir", run, "--epochs", "1", *TINY,
                          pattern="already holds a run")
    assert "--resume" not in err and "--force" in err and "no checkpoints/last.safetensors" in err


def test_15_training_onto_a_full_disk_then_again(tiny_imagenette, tmp_path):
    run = tmp_path / "run"
    no_compile = {"CTNET_COMPILE": "0"}  # the limit would fail torch.compile's C++ build first (one warning line)
    r = _cli_subprocess("train", tiny_imagenette, "--output-dir", run, "--epochs", "1", *TINY,
                        limit_file_bytes=1 << 20, env=no_compile)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "could not write the checkpoint" in lines[0], r.stderr
    r = _cli_subprocess("train", tiny_imagenette, "--output-dir", run, "--epochs", "1", *TINY, env=no_compile)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--force" in lines[0] and "--resume" not in lines[0], r.stderr


def test_16_replacing_a_bundle_never_leaves_the_destination_empty(tmp_path):
    files = _files(V2)
    dest = tmp_path / "dest"
    B.write_bundle(files, dest)
    missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not (dest / B.MANIFEST).is_file():
                missing.append(time.monotonic())
    t = threading.Thread(target=watch)
    t.start()
    try:
        for _ in range(20):
            B.write_bundle(files, dest, overwrite=True)
    finally:
        stop.set()
        t.join()
    assert not missing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_16_a_killed_writer_leaves_a_whole_bundle_and_its_temp_dir_goes_at_once(tmp_path):
    dest = tmp_path / "dest"
    B.write_bundle(_files(V2), dest)
    code = ("import sys\nfrom pathlib import Path\nfrom ctnet.codec import bundle as B\n"
            f"files = {{p.name: p.read_bytes() for p in Path({str(V2)!r}).iterdir()}}\n"
            "print('ready', flush=True)\n"
            f"while True:\n    B.write_bundle(files, Path({str(dest)!r}), overwrite=True)\n")
    for delay in (0.0, 0.05, 0.1, 0.2, 0.35, 0.5):
        p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(delay)
        p.kill()
        p.wait()
        model, _ = B.read_bundle(dest)  # whatever the kill point: a complete bundle
        B.write_bundle(_files(V2), dest, overwrite=True)  # the next write cleans up at once
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_17_outputs_inside_the_source_bundle_are_refused(tmp_path, capsys):
    b = _copy(V2, tmp_path)
    before = _files(b)
    _one_line_error(capsys, "decode", b, "--out", b / B.MANIFEST, "--force", pattern="inside the bundle")
    _one_line_error(capsys, "encode", b, "--out", b / "inner", pattern="overlap")
    _one_line_error(capsys, "encode", b, "--out", b, "--force", pattern="overlap")
    assert _files(b) == before and sorted(p.name for p in b.iterdir()) == sorted(before)


# --- verify checks what decode checks, short of decoding frames ------------------------------------------

@pytest.mark.parametrize("edit, pattern", [
    (lambda b, m: m["settings"].update(codec="h264"), "stream is hevc, expected h264"),
    (lambda b, m: m["settings"].update(pix_fmt="yuv420"), "expected yuv420"),
    (lambda b, m: m["coding"].update(workaround="foo=1"), "workaround"),
    (lambda b, m: (os.rename(b / "w.mp4", b / "w.mkv"), m["members"][1].update(file="w.mkv")), "keeps its levels in w.mp4"),
    (lambda b, m: m["coding"].update(frames=m["coding"]["frames"] + 1), "frames"),
])
def test_19_verify_refuses_what_decode_refuses(tmp_path, capsys, edit, pattern):
    b = _copy(V2, tmp_path)
    m = _manifest(b)
    assert m["members"][1]["role"] == "weights"
    edit(b, m)
    _write(b, m, rehash=True)
    with pytest.raises(B.BundleError):
        B.read_bundle(b)
    _one_line_error(capsys, "verify", b, pattern=pattern)


def test_19_verify_refuses_damaged_tables_with_rewritten_hashes(tmp_path, capsys):
    b = _copy(V2, tmp_path)
    m = Manifest.from_json((b / B.MANIFEST).read_bytes())
    raw = bytearray(T.decompress((b / "tables.bin").read_bytes(), m.tables_raw_bytes))
    raw[0] = ord("X")
    (b / "tables.bin").write_bytes(T.compress(bytes(raw)))
    _write(b, _manifest(b), rehash=True)
    _one_line_error(capsys, "verify", b, pattern="CTT2")
