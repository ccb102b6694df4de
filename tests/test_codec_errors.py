"""Damaged or hostile bundles: every problem is a BundleError (a ValueError) naming it — no
crash, no hang, no silently different weights, nothing read or written outside the bundle.

The real bundle is tests/assets/v2/lam1e-6-smallest (the demo's λ = 1e-6 CTNet-18, v2)."""
import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from codec_fixtures import state_hash
from ctnet import cli
from ctnet.codec import bundle as B
from ctnet.codec import tables as T
from ctnet.codec.manifest import Manifest, digest_of

GOOD = Path(__file__).parent / "assets" / "v2" / "lam1e-6-smallest"


@pytest.fixture(scope="module")
def reference():
    model, meta = B.read_bundle(GOOD)
    return state_hash(model), meta


@pytest.fixture
def bundle(tmp_path):
    dest = tmp_path / "b"
    shutil.copytree(GOOD, dest)
    return dest


def _manifest(path):
    return json.loads((path / B.MANIFEST).read_text())


def _write(path, m, *, rehash=False):
    """Write a manifest; with ``rehash`` as a tool that rewrites hashes and the digest would."""
    if rehash:
        for e in m["members"]:
            data = (path / e["file"]).read_bytes()
            e["bytes"], e["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        m["digest"] = digest_of(m)
    (path / B.MANIFEST).write_text(json.dumps(m))


def _edit(path, fn, rehash=False):
    m = _manifest(path)
    fn(m)
    _write(path, m, rehash=rehash)


def _fails(path, pattern):
    with pytest.raises(B.BundleError, match=pattern):
        B.read_bundle(path)


def test_the_untouched_bundle_reads_and_verifies(bundle, reference, capsys):
    model, meta = B.read_bundle(bundle)
    assert state_hash(model) == reference[0] and meta["bundle"]["total_bytes"] == B.directory_bytes(bundle)
    assert cli.main(["verify", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert f"digest {meta['bundle']['digest']}" in out and "ok, format v2" in out


@pytest.mark.parametrize("edit", [
    lambda m: m["model"].update(dct_block_size=8),  # decoded without error to 11 % top-1 in v1
    lambda m: m["settings"].update(order="natural"),
    lambda m: m["settings"].update(dither=4.0),
    lambda m: m["settings"].update(bn_mode="raw"),
    lambda m: m["coding"].update(escapes=1),
    lambda m: m["label_map"].update(n01440764=1),
    lambda m: m["source"]["metrics"].update(acc1=99.9),
])
def test_any_manifest_edit_is_caught_by_the_digest(bundle, edit):
    _edit(bundle, edit)
    _fails(bundle, "does not match its digest")


def test_member_damage(bundle):
    w = bundle / "w.mp4"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    _fails(bundle, "w.mp4: .* bytes on disk, the manifest says .*truncated")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    w.write_bytes(bytes(flipped))
    _fails(bundle, "w.mp4: contents do not match the manifest's SHA-256")
    w.unlink()
    _fails(bundle, "w.mp4: missing from the bundle")


def test_links_names_and_versions(bundle, tmp_path):
    (bundle / "tables.bin").rename(tmp_path / "t.bin")
    (bundle / "tables.bin").symlink_to(tmp_path / "t.bin")
    _fails(bundle, "not a regular file")
    for name in ("../x", "/etc/passwd", "a/b", ".."):
        _edit(bundle, lambda m: m["members"][0].update(file=name), rehash=False)
        _fails(bundle, "not a plain file name|digest")
    _edit(bundle, lambda m: m.update(version=3))
    _fails(bundle, "unknown bundle format version 3")
    _edit(bundle, lambda m: m.update(format="other"))
    _fails(bundle, "format is 'other'")
    (bundle / B.MANIFEST).write_text("[1, 2")
    _fails(bundle, "not valid JSON")


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: m["coding"].update(coded_frames=m["coding"]["coded_frames"] - 1), "coded"),
    (lambda m: m["coding"].update(frames=3), "frames"),
    (lambda m: m["coding"].update(container_bits=8), "container_bits"),
    (lambda m: m["model"].update(arch="resnet50"), "frames|tables"),
    (lambda m: m["model"].update(num_classes=10**401), "model"),
    (lambda m: m["fp32_bytes"].__class__ and m.update(fp32_bytes=10**401), "fp32_bytes.*digit"),
    (lambda m: m["settings"].update(frame=128), "frames"),
    (lambda m: m["settings"].update(bit_depth=10), "container_bits|tables"),
    (lambda m: m["tables"].update(raw_bytes=5), "tables"),
    (lambda m: m.update(members=[]), "members"),
    (lambda m: m["members"].append(dict(m["members"][0])), "same file twice|members"),
    (lambda m: m["members"][0].update(role="weights"), "members"),
    (lambda m: m["settings"].update(dither=float("inf")) if False else m["settings"].update(dither="x"), "dither"),
    (lambda m: m["label_map"].update(nXX=3), "label_map"),
])
def test_inconsistent_manifests_with_rewritten_digests_are_named_errors(bundle, edit, pattern):
    """Even a manifest whose digest was recomputed after the edit cannot make the decoder
    crash or read past what the model holds."""
    _edit(bundle, edit, rehash=True)
    _fails(bundle, pattern)


def _tables(bundle):
    m = Manifest.from_json((bundle / B.MANIFEST).read_bytes())
    return m, T.decompress((bundle / "tables.bin").read_bytes(), m.tables_raw_bytes)


def _put_tables(bundle, raw):
    (bundle / "tables.bin").write_bytes(T.compress(raw))
    _edit(bundle, lambda m: m["tables"].update(raw_bytes=len(raw)), rehash=True)


def test_tampered_tables_are_named_errors(bundle):
    m, raw = _tables(bundle)
    n_tiles = 699
    nan = bytearray(raw)  # scales are byte-plane shuffled: byte k of scale 0 is at 6 + k·tiles
    nan[6 + 2 * n_tiles], nan[6 + 3 * n_tiles] = 0xC0, 0x7F
    cases = [
        (raw[:4] + b"\0\0" + raw[6:], "another number of layers"),
        (bytes(nan), "scale"),
        (raw[:-7], "tables hold .* this model's hold"),  # BN cut short: the size is refused before unpacking
        (raw + b"\0", "tables hold .* this model's hold"),
    ]
    # the last BN shift set to +inf: 24-bit floats in three byte planes of 2·4800 values
    bn = bytearray(raw)
    bn[-1], bn[-1 - 9600], bn[-1 - 2 * 9600] = 0x7F, 0x80, 0x00
    cases.append((bytes(bn), "not finite"))
    # a row class outside 0..7
    classes_at = 6 + 4 * n_tiles + n_tiles
    bad = bytearray(raw)
    bad[classes_at] = 9
    cases.append((bytes(bad), "classes outside"))
    for data, pattern in cases:
        _put_tables(bundle, data)
        _fails(bundle, pattern)
    # the bitmap says a frame is coded that is not, the count stays → levels land elsewhere
    shutil.copy(GOOD / "tables.bin", bundle / "tables.bin")


def test_cli_reports_a_bad_bundle_in_one_line(bundle, capsys):
    _edit(bundle, lambda m: m["model"].update(dct_block_size=8))
    assert cli.main(["decode", str(bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctnet decode: error:") and "digest" in err and "\n" not in err
    assert cli.main(["verify", str(bundle)]) == 2
    assert "digest" in capsys.readouterr().err


MUTATIONS = 320


def _mutate(rng: random.Random, path: Path) -> bool:
    """One random mutation of a bundle; True if it rewrote the hashes and the digest (as a
    tool that 'fixes' them would), False if it left them."""
    files = sorted(p.name for p in path.iterdir())
    kind = rng.choice(["truncate", "flip", "zero", "delete", "swap", "manifest", "manifest-rehash", "tables-rehash",
                       "stream-rehash", "append"])
    name = rng.choice(files)
    p = path / name
    data = bytearray(p.read_bytes())
    if kind == "truncate":
        p.write_bytes(bytes(data[: rng.randrange(len(data))]))
    elif kind == "flip":
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        p.write_bytes(bytes(data))
    elif kind == "zero":
        i = rng.randrange(len(data))
        n = rng.randrange(1, 64)
        data[i:i + n] = bytes(len(data[i:i + n]))
        p.write_bytes(bytes(data))
    elif kind == "delete":
        p.unlink()
    elif kind == "swap":
        other = path / rng.choice(files)
        a, b = p.read_bytes(), other.read_bytes()
        p.write_bytes(b)
        other.write_bytes(a)
    elif kind == "append":
        p.write_bytes(bytes(data) + b"\0" * rng.randrange(1, 9))
    elif kind.startswith("manifest"):
        m = json.loads((path / B.MANIFEST).read_text())
        section = rng.choice(["model", "settings", "coding", "source", "tables"])
        key = rng.choice(sorted(m[section]))
        m[section][key] = rng.choice([0, 1, -1, 8, 16, 10**12, "x", None, [], 1.5, True])
        _write(path, m, rehash=kind.endswith("rehash"))
        return kind.endswith("rehash")
    else:  # rewrite a member's bytes and every hash: the decoder must still not crash
        target = path / ("tables.bin" if kind == "tables-rehash" else "w.mp4")
        data = bytearray(target.read_bytes())
        if kind == "tables-rehash":
            m = json.loads((path / B.MANIFEST).read_text())
            raw = bytearray(T.decompress(bytes(data), m["tables"]["raw_bytes"]))
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(raw))
                raw[i] ^= 1 << rng.randrange(8)
            target.write_bytes(T.compress(bytes(raw)))
        else:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
            target.write_bytes(bytes(data))
        _write(path, json.loads((path / B.MANIFEST).read_text()), rehash=True)
        return True
    return False


def test_fuzz_hundreds_of_mutations_no_silent_change_no_traceback(tmp_path, reference):
    rng = random.Random(20261130)
    outcomes = {"refused": 0, "same": 0, "changed-with-rewritten-digest": 0}
    for i in range(MUTATIONS):
        path = tmp_path / f"m{i}"
        shutil.copytree(GOOD, path)
        rehashed = _mutate(rng, path)
        try:
            model, _ = B.read_bundle(path)
        except B.BundleError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
        else:
            if state_hash(model) == reference[0]:
                outcomes["same"] += 1
            else:
                assert rehashed, f"mutation {i} changed the weights silently"
                outcomes["changed-with-rewritten-digest"] += 1
            assert np.isfinite(sum(float(v.float().abs().sum()) for v in model.state_dict().values()))
        shutil.rmtree(path)
    assert outcomes["refused"] > MUTATIONS // 2, outcomes


def test_v1_raw_bn_that_is_not_finite_or_negative_is_refused(tmp_path):
    """v1 manifests carry no digest; their raw BN is still checked."""
    from safetensors.torch import load, save
    src = Path(__file__).parent / "assets" / "v1" / "lam1e-6-smallest"
    for value, pattern in ((float("nan"), "not finite"), (-1.0, "negative running variance")):
        dest = tmp_path / f"v1-{pattern.split()[0]}"
        shutil.copytree(src, dest)
        bn = load((dest / "bn.safetensors").read_bytes())
        bn["bn1"][3, 0] = value
        data = save(bn)
        (dest / "bn.safetensors").write_bytes(data)
        m = json.loads((dest / B.MANIFEST).read_text())
        m["bn"]["bytes"], m["bn"]["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        (dest / B.MANIFEST).write_text(json.dumps(m))
        _fails(dest, pattern)
