"""Issue 21's adversarial audit, re-run at the audit's sizes: every crafted input built again,
each command run as a user would (``python -m ctnet …``, or the app's upload import) under
``/usr/bin/time -v``, and the outcome classified:

    .venv/bin/python bench/hostile_inputs.py [--data ../shared/data/imagenette2-128] [--json-out FILE]

* **refused** — exit 2 and exactly one ``error:`` line; **warned** — exit 0 and the warning
  the case calls for (one line each); **ok** — exit 0, read correctly;
* **silent wrong** — exit 0 where a refusal or a warning was due; **exit 1** — a bug;
  **hang** — past the time limit;
* every stderr line must be one of ctnet's own (``ctnet <command>: …``), so one line per message;
* peak memory: the command's maximum resident set size (``--workers 0`` where data loads, so
  it is one process). Target: ≤ 2 GB for every crafted input.

Needs the shared ImageNette copy (``--data``), the demo's λ = 5e-7 ``best`` bundle (B) and its
v1 bundle in tests/assets/v1; writes its inputs (a sparse 3 GiB file among them) under a
temporary folder. Every command imports torch, so on a loaded machine pass ``--timeout-scale``
(a hang is a command past 15 minutes × that scale).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
B = REPO / "assets/demo/runs/ctnet18-export-lam5e-7/bundles/best"
V1 = REPO / "tests/assets/v1/lam5e-7-best"
PY = sys.executable
TIMEOUT_SCALE = 1.0  # --timeout-scale: a command past its limit × this is a hang
GB = 1e9
MANIFEST = "manifest.json"


# --- running one case -------------------------------------------------------------------------------

def run(rows: list, case: str, what: str, argv: list, expect: str, *, code: str | None = None, fsize: int | None = None,
        env: dict | None = None, timeout: int = 900, check=None, work: Path) -> dict:
    """Run ``python -m ctnet argv`` (or ``python -c code``) under /usr/bin/time -v and classify it."""
    report = work / "time.txt"
    cmd = ["/usr/bin/time", "-v", "-o", str(report), PY, *(["-c", code] if code else ["-m", "ctnet", *map(str, argv)])]

    def limit():
        if fsize is not None:  # a full disk: writes past fsize fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    timeout = timeout * TIMEOUT_SCALE
    t0 = time.monotonic()
    # a session of its own, so that a hang is ended with everything it started (not /usr/bin/time alone)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    try:
        _, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        rc = None
    seconds = time.monotonic() - t0
    text = report.read_text() if report.exists() else ""
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    warnings = [line for line in lines if ": warning: " in line]
    own = all(line.startswith(("ctnet ", "upload: ")) for line in lines)
    if rc is None:
        outcome = "hang"
    elif rc == 1:
        outcome = "exit 1"
    elif rc == 2 and len(errors) == 1:
        outcome = "refused"
    elif rc == 0 and warnings:
        outcome = "warned"
    elif rc == 0:
        outcome = "ok"
    else:
        outcome = f"exit {rc}"
    extra = check() if check else None
    passed = outcome == expect and own and extra in (None, True)
    if rc == 0 and expect in ("refused", "warned") and outcome != expect:
        outcome = "silent wrong"
    row = {"case": case, "input": what, "command": " ".join(["ctnet", *map(str, argv)]) if not code else "(app upload import)",
           "expect": expect, "outcome": outcome, "exit": rc, "stderr_lines": len(lines), "own_lines": own,
           "peak_gb": round(int(peak.group(1)) * 1024 / GB, 2) if peak else None, "seconds": round(seconds, 1),
           "message": (errors or warnings or lines or [""])[0][:220], "check": extra, "pass": passed}
    rows.append(row)
    print(f"{case:>4} {row['outcome']:<12} {row['peak_gb']} GB {row['seconds']:>6.1f} s  {what}: {row['message'][:140]}",
          flush=True)
    return row


# --- building the inputs ---------------------------------------------------------------------------------

def copy(src: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    return dest


def manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def rehash(path: Path, m: dict) -> None:
    """Write a v2 manifest with every member's size, SHA-256 and the digest rewritten (what a
    tool that 'fixes' them does)."""
    sys.path.insert(0, str(REPO))
    from ctnet.codec.manifest import digest_of
    for e in m["members"]:
        data = (path / e["file"]).read_bytes()
        e["bytes"], e["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    m["digest"] = digest_of(m)
    (path / MANIFEST).write_text(json.dumps(m))


def v1_edit(src: Path, dest: Path, fn) -> Path:
    copy(src, dest)
    m = manifest(dest)
    fn(m)
    (dest / MANIFEST).write_text(json.dumps(m))
    return dest


def v2_edit(src: Path, dest: Path, fn) -> Path:
    copy(src, dest)
    m = manifest(dest)
    fn(dest, m)
    rehash(dest, m)
    return dest


def huge_scale(path: Path, m: dict) -> None:
    sys.path.insert(0, str(REPO))
    from ctnet.codec import tables as T
    raw = bytearray(T.decompress((path / "tables.bin").read_bytes(), m["tables"]["raw_bytes"]))
    tiles = 699  # this CTNet-18's grid tiles: the stride of the scales' byte planes
    for k, byte in enumerate(struct.pack("<f", 3e38)):
        raw[6 + k * tiles] = byte
    (path / "tables.bin").write_bytes(T.compress(bytes(raw)))


def zip_of(files: dict[str, bytes], extra=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"b/{name}", data)
        for name, chunks in (extra or {}).items():
            info = zipfile.ZipInfo(f"b/{name}")
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                for chunk in chunks:
                    f.write(chunk)
    return buf.getvalue()


def declare(data: bytes, member: str, size: int) -> bytes:
    """A zip archive whose headers state ``size`` uncompressed bytes for ``member``."""
    out = bytearray(data)
    for sig, name_len_at, name_at, size_at in ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24)):
        at = out.find(sig)
        while at != -1:
            n = struct.unpack_from("<H", out, at + name_len_at)[0]
            if out[at + name_at:at + name_at + n].decode(errors="replace") == member:
                struct.pack_into("<I", out, at + size_at, size)
            at = out.find(sig, at + 4)
    return bytes(out)


def upload_code(path: Path, folder: Path, name: str) -> str:
    return ("import sys\nfrom pathlib import Path\nfrom ctnet import runs\n"
            f"data = Path({str(path)!r}).read_bytes()\n"
            f"try:\n    runs.import_upload({name!r}, data, {str(folder)!r})\n"
            "except runs.RunError as exc:\n    print(f'upload: error: {exc}', file=sys.stderr)\n    sys.exit(2)\n")


def torch_bomb(work: Path, inflated: int, declared: int | None = None) -> Path:
    """A .pt file whose first storage record is ``inflated`` zero bytes, deflated."""
    sys.path.insert(0, str(REPO))
    import torch
    src = work / "src.pt"
    torch.save({"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, src)
    out = work / f"bomb-{inflated >> 20}M{'-lying' if declared else ''}.pt"
    block = bytes(16 << 20)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if info.filename.endswith("/data/0"):
                target = zipfile.ZipInfo(info.filename)
                target.compress_type = zipfile.ZIP_DEFLATED
                with zout.open(target, "w", force_zip64=True) as f:
                    for _ in range(inflated // len(block)):
                        f.write(block)
                name = info.filename
            else:
                zout.writestr(info, zin.read(info))
    if declared is not None:
        out.write_bytes(declare(out.read_bytes(), name, declared))
    return out


def semi_compressible(total: int, ratio_block: int = 64 << 10):
    """Chunks of ``total`` bytes that deflate about 110:1 (512 random bytes per 64 KiB)."""
    rng = random.Random(0)
    block = bytearray(ratio_block)
    for _ in range(total // ratio_block):
        block[:512] = rng.randbytes(512)
        yield bytes(block)


# --- the audit ----------------------------------------------------------------------------------------

def audit(data: Path, work: Path, only: set[str] | None = None) -> list[dict]:
    rows: list[dict] = []
    R = lambda *a, **k: run(rows, *a, work=work, **k)  # noqa: E731
    few = ["--limit", "50", "--workers", "0"]
    tiny = ["--image-size", "32", "--batch-size", "10", "--limit-train", "20", "--limit-val", "20", "--workers", "0",
            "--device", "cpu", "--epochs", "1"]
    files = {p.name: p.read_bytes() for p in B.iterdir()}
    up = work / "uploads"
    good = zip_of(files)

    # 1. format-v1 bundles carry no digest
    if only is None or '1' in only:
        def scaled(factor):
            return lambda m: m["layers"][0]["scale"].__setitem__(0, m["layers"][0]["scale"][0] * factor)
        for label, fn in (("scale x2", scaled(2)), ("scale x1.0001", scaled(1.0001)),
                          ("dither 0.5", lambda m: m["settings"].update(dither=0.5)),
                          ("image_size 160", lambda m: m.update(image_size=160))):
            x = v1_edit(V1, work / "v1-edit", fn)
            R("1", f"v1 bundle, {label}", ["decode", x, "--data", data, *few], "warned")
            R("1", f"v1 bundle, {label}", ["verify", x], "refused")
        R("1", "v1 bundle, untouched → v2", ["encode", V1, "--out", work / "v1-migrated", "--force"], "warned",
          check=lambda: subprocess.run([PY, "-m", "ctnet", "verify", str(work / "v1-migrated")], cwd=REPO,
                                       capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}).returncode == 0)

    # 2. a finite but huge scale
    if only is None or '2' in only:
        x = v2_edit(B, work / "huge", huge_scale)
        out = work / "huge.safetensors"
        R("2", "B, first scale 3e38, hashes rewritten", ["decode", x, "--out", out], "refused", check=lambda: not out.exists())
        x = v1_edit(V1, work / "huge-v1", lambda m: m["layers"][0]["scale"].__setitem__(0, 3e38))
        R("2", "v1 bundle, first scale 3e38", ["decode", x, "--out", out], "refused", check=lambda: not out.exists())

    # 3. the block size relabelled 16 → 8
    if only is None or '3' in only:
        ckpt = work / "ctnet.safetensors"
        if not ckpt.exists():
            subprocess.run([PY, "-m", "ctnet", "decode", str(B), "--format", "ctnet", "--out", str(ckpt)], cwd=REPO,
                           check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        sys.path.insert(0, str(REPO))
        from safetensors import safe_open
        from safetensors.torch import save_file
        with safe_open(str(ckpt), framework="pt") as f:
            header, tensors = json.loads(f.metadata()["ctnet"]), {k: f.get_tensor(k) for k in f.keys()}
        header["model"]["dct_block_size"] = 8
        header.pop("digest")
        bare = work / "relabelled-no-digest.safetensors"
        save_file(tensors, str(bare), metadata={"ctnet": json.dumps(header)})
        R("3", "CTNet checkpoint, no digest, block 16 → 8", ["eval", bare, "--data", data, *few], "warned")
        fresh = work / "fresh"
        if not fresh.exists():
            subprocess.run([PY, "-m", "ctnet", "encode", str(B), "--out", str(fresh)], cwd=REPO, check=True,
                           capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        x = v2_edit(fresh, work / "fresh-relabelled", lambda p, m: m["model"].update(dct_block_size=8))
        R("3", "B re-encoded by this ctnet, block 16 → 8, digest rewritten", ["decode", x, "--data", data, *few], "refused")
        x = v2_edit(B, work / "B-relabelled", lambda p, m: m["model"].update(dct_block_size=8))
        R("3", "B as shipped (no model check), block 16 → 8, digest rewritten", ["decode", x, "--data", data, *few], "warned")

    # 4. deep trees and deep JSON
    if only is None or '4' in only:
        x = copy(B, work / "deep")
        d = x
        for _ in range(1200):
            d = d / "d"
            d.mkdir()
        R("4", "B with a 1,200-level directory tree in it", ["verify", x], "ok")
        R("4", "B with a 1,200-level directory tree in it", ["decode", x], "ok")
        x = copy(B, work / "nested")
        m = manifest(x)
        m["source"] = "NESTED"
        (x / MANIFEST).write_text(json.dumps(m).replace('"NESTED"', "[" * 981 + "]" * 981))
        R("4", "B, manifest nested 981 levels", ["verify", x], "refused")
        R("4", "B, manifest nested 981 levels", ["decode", x], "refused")

    # 5. flags
    if only is None or '5' in only:
        for flag in (["--batch-size", "0"], ["--batch-size", "-5"], ["--workers", "-1"], ["--warmup-epochs", "inf"],
                     ["--seed", "100000000000000000000"], ["--momentum", "nan"], ["--steepness", "inf"]):
            R("5", f"train {' '.join(flag)}", ["train", data, "--output-dir", work / "r-flags", *tiny, *flag], "refused")
        run_dir = work / "run"
        if not (run_dir / "checkpoints" / "last.safetensors").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            subprocess.run([PY, "-m", "ctnet", "train", str(data), "--output-dir", str(run_dir), *tiny], cwd=REPO,
                           check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        damaged = copy(run_dir, work / "run-damaged-log")
        log = damaged / "train_log.jsonl"
        log.write_text(log.read_text()[:40] + "\n")
        R("5", "--resume, a damaged train_log.jsonl line", ["train", data, "--output-dir", damaged, *tiny[:-2], "--epochs", "2",
                                                            "--resume", damaged / "checkpoints" / "last.safetensors"], "refused")
        rng = copy(run_dir, work / "run-bad-rng")
        from ctnet.checkpoint import read_checkpoint, save_checkpoint
        import torch
        c = read_checkpoint(rng / "checkpoints" / "last.safetensors")
        c.extra["torch_rng"] = torch.zeros(3)
        save_checkpoint(rng / "checkpoints" / "last.safetensors", c.state_dict, c.meta, extra=c.extra)
        R("5", "--resume, a wrong RNG state", ["train", data, "--output-dir", rng, *tiny[:-2], "--epochs", "2", "--resume",
                                               rng / "checkpoints" / "last.safetensors"], "refused")
        for flag in (["--batch-size", "0"], ["--workers", "-1"]):
            R("5", f"eval {' '.join(flag)}", ["eval", B, "--data", data, *flag], "refused")

    # 6. decode --out onto a full disk
    if only is None or '6' in only:
        for name in ("m.safetensors", "m.onnx"):
            R("6", f"decode --out {name}, disk full at 1 MiB", ["decode", B, "--out", work / name], "refused", fsize=1 << 20,
              check=lambda name=name: not (work / name).exists())

    # 7. a FIFO among the images
    if only is None or '7' in only:
        sample = copy(REPO / "assets/demo/sample", work / "sample")
        os.mkfifo(sample / "val" / "n01440764" / "x.JPEG")
        R("7", "a FIFO named x.JPEG in a class folder", ["eval", B, "--data", sample], "refused", timeout=300)

    # 8. members read whole before hashing
    if only is None or '8' in only:
        x = copy(B, work / "sparse")
        with open(x / "w.mp4", "r+b") as f:
            f.truncate(3 << 30)
        m = manifest(x)
        e = next(e for e in m["members"] if e["file"] == "w.mp4")
        h = hashlib.sha256()
        with open(x / "w.mp4", "rb") as f:
            while chunk := f.read(64 << 20):
                h.update(chunk)
        e["bytes"], e["sha256"] = 3 << 30, h.hexdigest()
        from ctnet.codec.manifest import digest_of
        m["digest"] = digest_of(m)
        (x / MANIFEST).write_text(json.dumps(m))
        R("8", "B, w.mp4 a sparse 3 GiB file, manifest and hashes saying so", ["verify", x], "refused")
        R("8", "B, w.mp4 a sparse 3 GiB file, manifest and hashes saying so", ["decode", x], "refused")
        shutil.rmtree(x)
        x = v2_edit(B, work / "tables-1g", lambda p, m: m["tables"].update(raw_bytes=1 << 30))
        R("8", "B, tables declaring 1 GiB raw", ["decode", x], "refused")

    # 9. image_size
    if only is None or '9' in only:
        x = v2_edit(B, work / "img4096", lambda p, m: m.update(image_size=4096))
        R("9", "B, image_size 4096", ["decode", x, "--data", data, *few], "refused")
        x = v2_edit(B, work / "img1024", lambda p, m: m.update(image_size=1024))
        R("9", "B, image_size 1024 (the cap)", ["decode", x, "--data", data, *few], "warned")

    # 10. a 60000×1 PNG
    if only is None or '10' in only:
        from PIL import Image
        strip = copy(REPO / "assets/demo/sample", work / "strip")
        Image.new("RGB", (60000, 1)).save(strip / "val" / "n01440764" / "strip.png")
        R("10", "a 60000x1 PNG among the images", ["eval", B, "--data", strip, "--workers", "0"], "refused")

    # 11. workers
    if only is None or '11' in only:
        R("11", "--workers 100000", ["eval", B, "--data", data, "--workers", "100000"], "refused")
        R("11", "train --workers 100000", ["train", data, "--output-dir", work / "r-w", *tiny, "--workers", "100000"],
          "refused")

    # 12. a deflate bomb in a .pt record
    if only is None or '12' in only:
        bomb = torch_bomb(work, 4 << 30)
        R("12", f".pt of {bomb.stat().st_size / 1e6:.1f} MB, a record inflating to 4 GiB", ["eval", bomb, "--data", data],
          "refused")
        lying = torch_bomb(work, 1 << 30, declared=1000)
        R("12", ".pt, a record declaring 1,000 B and inflating to 1 GiB", ["eval", lying, "--data", data], "refused")

    # 13. uploads
    if only is None or '13' in only:
        p = work / "lying.zip"
        p.write_bytes(declare(zip_of(files, extra={"padding.bin": (bytes(1 << 20) for _ in range(1024))}), "b/padding.bin",
                              1000))
        R("13", f"upload, a member declaring 1,000 B inflating to 1 GiB ({p.stat().st_size / 1e6:.1f} MB zip)", [], "refused",
          code=upload_code(p, up, "lying.zip"), check=lambda: not any(f.is_file() for f in up.rglob("*")))
        p = work / "inside.zip"
        p.write_bytes(zip_of(files, extra={"padding.bin": semi_compressible(2 << 30)}))
        R("13", f"upload, {p.stat().st_size / 1e6:.1f} MB zip inflating to 2 GiB (inside both old limits)", [], "refused",
          code=upload_code(p, up, "inside.zip"), check=lambda: not any(f.is_file() for f in up.rglob("*")))
        p = work / "w-past.zip"
        p.write_bytes(declare(zip_of({**files, "w.mp4": files["w.mp4"] + bytes(1 << 30)}), "b/w.mp4", len(files["w.mp4"])))
        R("13", "upload, w.mp4 declaring its size and inflating 1 GiB past it", [], "refused",
          code=upload_code(p, up, "w-past.zip"), check=lambda: not any(f.is_file() for f in up.rglob("*")))
        p = work / "good.zip"
        p.write_bytes(good)
        R("13", "upload, B zipped (untouched)", [], "ok", code=upload_code(p, up, "good.zip"))
        shutil.rmtree(up, ignore_errors=True)

    # 14. one line
    if only is None or '14' in only:
        R("14", "encode --bit-depth 13", ["encode", B, "--out", work / "x", "--bit-depth", "13"], "refused")
        R("14", "download from a missing URL", ["download", "imagenette", work / "dl", "--url", f"file://{work}/none.tgz"],
          "refused")
        junk = work / "junk.tgz"
        junk.write_bytes(os.urandom(1 << 20))
        R("14", "download of a file that is no archive", ["download", "imagenette", work / "dl", "--url", f"file://{junk}"],
          "refused")

    # 15. NaN loss, full disk while training
    if only is None or '15' in only:
        # λ = 1e30 no longer overflows (a loss of ~8e36 trains on, finite); 1e38 does, in float32
        shutil.rmtree(work / "r-nan", ignore_errors=True)
        R("15", "a loss that overflows in epoch 1 (λ = 1e38)",
          ["train", data, "--output-dir", work / "r-nan", *tiny, "--lambda-rate", "1e38", "--rate-warmup-epochs", "0"],
          "refused")
        full = work / "r-full"
        shutil.rmtree(full, ignore_errors=True)
        R("15", "train onto a disk full at 1 MiB", ["train", data, "--output-dir", full, *tiny], "refused", fsize=1 << 20)
        R("15", "train again into that run", ["train", data, "--output-dir", full, *tiny], "refused")

    # 16. kills between renames
    if only is None or '16' in only:
        dest = work / "dest"
        copy(B, dest)
        survivors, intact = 0, 0
        for k in range(12):
            proc = subprocess.Popen([PY, "-m", "ctnet", "encode", str(B), "--out", str(dest), "--force", "--preset",
                                     "ultrafast"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "PYTHONPATH": str(REPO)})
            time.sleep(4.0 + 0.25 * k)  # from loading to the final exchange
            proc.kill()
            proc.wait()
            intact += subprocess.run([PY, "-m", "ctnet", "verify", str(dest)], cwd=REPO, capture_output=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO)}).returncode == 0
            subprocess.run([PY, "-m", "ctnet", "encode", str(B), "--out", str(dest), "--force", "--preset", "ultrafast"],
                           cwd=REPO, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            survivors += sum(1 for q in work.iterdir() if q.name.startswith(".dest."))
        rows.append({"case": "16", "input": "encode --force killed at 12 points", "command": "ctnet encode B --out DEST --force",
                     "expect": "ok", "outcome": "ok" if intact == 12 and survivors == 0 else "broken", "exit": None,
                     "stderr_lines": 0, "own_lines": True, "peak_gb": None, "seconds": None,
                     "message": f"a complete bundle at DEST after {intact}/12 kills; temp dirs left after the next encode: "
                                f"{survivors}", "check": None, "pass": intact == 12 and survivors == 0})
        print(f"  16 {rows[-1]['message']}", flush=True)

    # 17. outputs inside the source
    if only is None or '17' in only:
        src = copy(B, work / "src")
        R("17", "decode SRC --out SRC/manifest.json --force", ["decode", src, "--out", src / MANIFEST, "--force"], "refused",
          check=lambda: (src / MANIFEST).read_bytes() == (B / MANIFEST).read_bytes())
        R("17", "encode SRC --out SRC/inner", ["encode", src, "--out", src / "inner"], "refused",
          check=lambda: not (src / "inner").exists())

    # 18. odd upload members
    if only is None or '18' in only:
        p = work / "long.zip"
        p.write_bytes(zip_of({**files, "x" * 300: b"1"}))
        R("18", "upload, a 300-character member name", [], "refused", code=upload_code(p, up, "long.zip"),
          check=lambda: not any(f.is_file() for f in up.rglob("*")))
        damaged = bytearray(good)
        at = damaged.find(b"b/tables.bin") + len("b/tables.bin")
        damaged[at + 5:at + 60] = b"\xff" * 55
        p = work / "damaged.zip"
        p.write_bytes(bytes(damaged))
        R("18", "upload, damaged deflate data", [], "refused", code=upload_code(p, up, "damaged.zip"),
          check=lambda: not any(f.is_file() for f in up.rglob("*")))

    # 19. verify checks what decode checks
    if only is None or '19' in only:
        for label, fn in (("codec h264", lambda p, m: m["settings"].update(codec="h264")),
                          ("pix_fmt yuv420", lambda p, m: m["settings"].update(pix_fmt="yuv420")),
                          ("an unknown x265 option", lambda p, m: m["coding"].update(workaround="foo=1")),
                          ("weights member renamed w.mkv", lambda p, m: (os.rename(p / "w.mp4", p / "w.mkv"),
                                                                         m["members"][1].update(file="w.mkv")))):
            x = v2_edit(B, work / "v19", fn)
            R("19", f"B, {label}, hashes rewritten", ["verify", x], "refused")
    return rows


def table(rows: list[dict]) -> str:
    out = ["| # | crafted input | command | outcome | exit | stderr lines | peak memory |",
           "|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        cmd = r["command"].replace(str(REPO) + "/", "").replace("|", "\\|")
        cmd = re.sub(r"/tmp/[^ ]*/", "", cmd)
        peak = f"{r['peak_gb']:.2f} GB" if r["peak_gb"] is not None else "—"
        code = r["exit"] if r["exit"] is not None else "—"
        out.append(f"| {r['case']} | {r['input']} | `{cmd[:90]}` | {r['outcome']} | {code} | {r['stderr_lines']} | {peak} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared/data/imagenette2-128"))
    p.add_argument("--json-out", default=str(REPO / "docs/bench/hostile_inputs.json"))
    p.add_argument("--work", default=None, help="folder for the crafted inputs (default: a temporary one)")
    p.add_argument("--timeout-scale", type=float, default=1.0,
                   help="multiply every command's time limit (15 min; 5 for the FIFO) on a loaded machine")
    p.add_argument("--only", default=None, help="comma-separated case numbers to re-run; their rows replace those in "
                                                "--json-out, the others are kept")
    args = p.parse_args()
    global TIMEOUT_SCALE
    TIMEOUT_SCALE = args.timeout_scale
    work = Path(args.work or tempfile.mkdtemp(prefix="ctnet-audit-"))
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    rows = audit(Path(args.data), work, only)
    if only is not None and Path(args.json_out).exists():
        kept = [r for r in json.loads(Path(args.json_out).read_text())["rows"] if r["case"] not in only]
        rows = sorted(kept + rows, key=lambda r: int(r["case"]))  # stable: each case's rows keep their order
    totals = {k: sum(r["outcome"] == k for r in rows) for k in ("silent wrong", "exit 1", "hang")}
    totals["not one line"] = sum(not r["own_lines"] for r in rows)
    totals["over 2 GB"] = sum((r["peak_gb"] or 0) > 2 for r in rows)
    totals["failed"] = sum(not r["pass"] for r in rows)
    totals["max_peak_gb"] = max(r["peak_gb"] or 0 for r in rows)
    print(table(rows))
    print(json.dumps(totals))
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"rows": rows, "totals": totals}, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True) if not args.work else None


if __name__ == "__main__":
    main()
