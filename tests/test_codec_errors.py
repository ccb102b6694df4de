"""Damaged or hostile bundles: every problem is a BundleError (a ValueError) naming it —
no crash, no hang, nothing read or written outside the bundle."""
import json
import os
import shutil

import pytest

from codec_fixtures import sparse_ctnet18
from ctnet import cli
from ctnet.codec import bundle as B


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    model, meta = sparse_ctnet18(seed=1)
    enc = B.encode_model(model, meta, B.EncodeSettings(bit_depth=8, preset="ultrafast"))
    return B.write_bundle(enc, tmp_path_factory.mktemp("good") / "bundle")


@pytest.fixture
def bundle(good, tmp_path):
    dest = tmp_path / "b"
    shutil.copytree(good, dest)
    return dest


def _manifest(path):
    return json.loads((path / B.MANIFEST).read_text())


def _edit(path, fn):
    m = _manifest(path)
    fn(m)
    (path / B.MANIFEST).write_text(json.dumps(m))


def _stream(m, size=None):
    streams = m["streams"]
    return max(streams, key=lambda s: s["frames"]) if size is None else next(
        s for s in streams if (s["height"], s["width"]) == size)


def _fails(path, pattern):
    with pytest.raises(B.BundleError, match=pattern):
        B.read_bundle(path)


def test_the_untouched_bundle_reads(good):
    model, meta = B.read_bundle(good)
    assert meta["bundle"]["total_bytes"] == B.directory_bytes(good)


def test_truncated_stream(bundle):
    name = _stream(_manifest(bundle))["file"]
    data = (bundle / name).read_bytes()
    (bundle / name).write_bytes(data[: len(data) // 2])
    _fails(bundle, f"{name}: .* bytes on disk, the manifest says .*truncated")


def test_bit_flipped_stream(bundle):
    name = _stream(_manifest(bundle))["file"]
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0x10
    (bundle / name).write_bytes(bytes(data))
    _fails(bundle, f"{name}: contents do not match the manifest's SHA-256")


@pytest.mark.parametrize("where", [0.3, 0.6, 0.97])
def test_damaged_stream_with_a_matching_checksum_never_crashes(bundle, where):
    """Someone who also edits the checksum gets a decode error or a (wrong) model — never a
    crash, a hang or an exception of another kind."""
    import hashlib
    m = _manifest(bundle)
    s = _stream(m)
    data = bytearray((bundle / s["file"]).read_bytes())
    for k in range(64):
        data[int(len(data) * where) + k] ^= 0xA5
    (bundle / s["file"]).write_bytes(bytes(data))
    s["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (bundle / B.MANIFEST).write_text(json.dumps(m))
    try:
        model, _ = B.read_bundle(bundle)
    except B.BundleError as exc:
        assert s["file"] in str(exc)
    else:
        assert not model.training


@pytest.mark.parametrize("path,message", [
    (("settings",), "missing field 'settings'"),
    (("layers",), "missing field 'layers'"),
    (("streams",), "missing field 'streams'"),
    (("model",), "missing field 'model'"),
    (("label_map",), "missing field 'label_map'"),
    (("bn",), "missing field 'bn'"),
    (("version",), "missing field 'version'"),
    (("layout",), "missing field 'layout'"),
    (("settings", "bit_depth"), "missing field 'settings.bit_depth'"),
    (("layers", 0, "scale"), r"missing field 'layers\[0\].scale'"),
    (("streams", 0, "sha256"), r"missing field 'streams\[0\].sha256'"),
    (("bn", "file"), "missing field 'bn.file'"),
])
def test_manifest_missing_a_field(bundle, path, message):
    def drop(m):
        d = m
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]
    _edit(bundle, drop)
    _fails(bundle, message)


def test_unknown_format_version_and_foreign_manifests(bundle):
    _edit(bundle, lambda m: m.update(version=99))
    _fails(bundle, "unknown bundle format version 99")
    _edit(bundle, lambda m: m.update(version=1, format="something-else"))
    _fails(bundle, "format is 'something-else'")
    (bundle / B.MANIFEST).write_text("{not json")
    _fails(bundle, "not valid JSON")
    (bundle / B.MANIFEST).write_text("[1, 2]")
    _fails(bundle, "not a JSON object")
    (bundle / B.MANIFEST).unlink()
    _fails(bundle, "manifest.json: missing")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "sub/w.mp4", "..", ".hidden", "", "a" * 200, 7])
def test_file_names_must_stay_inside_the_bundle(bundle, name):
    before = sorted(os.listdir(bundle.parent))
    original = (bundle / B.MANIFEST).read_text()
    _edit(bundle, lambda m: _stream(m).update(file=name))
    _fails(bundle, "is not a plain file name inside the bundle|wrong type")
    (bundle / B.MANIFEST).write_text(original)
    _edit(bundle, lambda m: m["bn"].update(file=name))
    _fails(bundle, "is not a plain file name inside the bundle|wrong type")
    assert sorted(os.listdir(bundle.parent)) == before  # nothing written beside it


def test_links_and_missing_files_are_refused(bundle, tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes((bundle / B.BN_FILE).read_bytes())
    (bundle / B.BN_FILE).unlink()
    _fails(bundle, "bn.safetensors: missing from the bundle")
    os.symlink(outside, bundle / B.BN_FILE)
    _fails(bundle, "not a regular file")


def test_frame_count_and_size_must_agree_with_the_model(bundle):
    _edit(bundle, lambda m: _stream(m).update(frames=_stream(m)["frames"] + 1))
    _fails(bundle, "manifest says .* frames, the model's layout needs")


def test_frame_order_must_be_a_permutation(bundle):
    def dup(m):
        s = _stream(m)
        s["order"][1] = s["order"][0]
    _edit(bundle, dup)
    _fails(bundle, "frame order is not a permutation")


def test_stream_size_that_disagrees_with_the_manifest(bundle):
    _edit(bundle, lambda m: _stream(m).update(height=120))
    _fails(bundle, "no weight frames of 120x128")


def test_absurd_dimensions(bundle):
    _edit(bundle, lambda m: _stream(m).update(height=10**9, width=10**9))
    _fails(bundle, "implausible frame size")
    _edit(bundle, lambda m: (_stream(m).update(height=128, width=128), m["layers"][0].update(shape=[10**9, 3, 7, 7])))
    _fails(bundle, "shape .* does not match the model's")
    _edit(bundle, lambda m: (m["layers"][0].update(shape=[64, 3, 7, 7]), m["settings"].update(tile=10**6)))
    _fails(bundle, "tile size must be")
    _edit(bundle, lambda m: (m["settings"].update(tile=128), m["model"].update(num_classes=10**9)))
    _fails(bundle, "num_classes out of range")


def test_a_valid_stream_in_the_wrong_place_is_caught_by_the_container_check(bundle):
    """The right checksum and size, but the container holds other frames than the manifest says."""
    import hashlib
    m = _manifest(bundle)
    small = _stream(m, (16, 16))
    target = _stream(m, (64, 64))
    data = (bundle / small["file"]).read_bytes()
    (bundle / target["file"]).write_bytes(data)
    target.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (bundle / B.MANIFEST).write_text(json.dumps(m))
    _fails(bundle, f"{target['file']}: stream frames are 16x16, expected 64x64")


def test_bad_grid_values(bundle):
    _edit(bundle, lambda m: m["layers"][0]["scale"].__setitem__(0, -1.0))
    _fails(bundle, "scales must be finite and positive")
    _edit(bundle, lambda m: (m["layers"][0]["scale"].__setitem__(0, 0.5),
                             m["layers"][0]["zero_point"].__setitem__(0, 256)))
    _fails(bundle, "values outside 0..255")


def test_damaged_bn_tensors(bundle):
    import hashlib
    data = b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"
    (bundle / B.BN_FILE).write_bytes(data)
    _edit(bundle, lambda m: m["bn"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
    _fails(bundle, "bn.safetensors")


def test_cli_reports_a_bad_bundle_in_one_line(bundle, capsys):
    _edit(bundle, lambda m: m.update(version=2))
    assert cli.main(["decode", str(bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ctnet decode: error: unknown bundle format version 2 (this ctnet reads version 1)"]
    assert cli.main(["decode", str(bundle.parent / "does-not-exist")]) == 2
    assert "not a bundle directory" in capsys.readouterr().err
