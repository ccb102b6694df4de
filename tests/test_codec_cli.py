"""``ctnet encode / decode / profile / export`` called in-process, as a user types them."""
import json

import pytest

from codec_fixtures import sparse_ctnet18
from ctnet import cli
from ctnet.checkpoint import save_checkpoint
from ctnet.codec import bundle as B
from ctnet.cli.codec import add_codec_args, settings_from_args


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model, meta = sparse_ctnet18(seed=2)
    path = tmp_path_factory.mktemp("ckpt") / "smoke.safetensors"
    save_checkpoint(path, model, meta)
    return path


@pytest.fixture(scope="module")
def encoded(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "bundle"
    return out, cli.main(["encode", str(ckpt), "--out", str(out), "--preset", "ultrafast", "--json"])


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_encode_json_report(encoded, ckpt, capsys):
    out, code = encoded
    assert code == 0
    manifest = json.loads((out / B.MANIFEST).read_text())
    assert manifest["settings"]["preset"] == "ultrafast" and manifest["settings"]["crf"] == 0
    assert manifest["model"]["arch"] == "resnet18" and manifest["label_map"]["n01440764"] == 0
    assert manifest["source"] == {"metrics": {"acc1": 10.0}, "epoch": 1} and manifest["version"] == 2
    capsys.readouterr()  # drop whatever the fixture printed
    out2 = out.parent / "again"
    assert cli.main(["encode", str(ckpt), "--out", str(out2), "--preset", "ultrafast", "--json"]) == 0
    report = _json(capsys)
    for key in ("total_bytes", "fp32_bytes", "ratio", "seconds", "layers", "files", "streams", "digest",
                "bits_per_nonzero", "entropy_bits_per_nonzero", "metadata_bytes"):
        assert key in report
    assert report["total_bytes"] == B.directory_bytes(out2) == B.directory_bytes(out)
    assert report["ratio"] == pytest.approx(report["fp32_bytes"] / report["total_bytes"])
    names = [layer["name"] for layer in report["layers"]]
    assert "conv1.weight_dct" in names and "fc.weight" in names and "bn1" in names
    for layer in report["layers"]:
        assert set(layer) == {"name", "kind", "bits", "bytes", "frames", "coded_frames", "nonzero", "bits_per_nonzero",
                              "entropy_bits_per_nonzero", "max_abs_error"}
    for name in report["files"]:  # deterministic: byte-identical to the first run
        assert (out / name).read_bytes() == (out2 / name).read_bytes()


def test_decode_json_with_data(encoded, shared_data, capsys):
    out, _ = encoded
    assert cli.main(["decode", str(out), "--data", str(shared_data), "--limit", "20", "--workers", "0", "--json"]) == 0
    report = _json(capsys)
    for key in ("total_bytes", "fp32_bytes", "ratio", "acc1", "acc5"):
        assert key in report
    assert report["images"] == 20 and 0 <= report["acc1"] <= report["acc5"] <= 100
    assert report["total_bytes"] == B.directory_bytes(out)
    assert cli.main(["decode", str(out)]) == 0
    text = capsys.readouterr().out
    assert "smaller than fp32" in text and "top-1" not in text


def test_export_spelling(encoded, ckpt, tmp_path, capsys):
    out, _ = encoded
    assert cli.main(["export", "decode", "--h265-dir", str(out), "--json"]) == 0
    assert _json(capsys)["total_bytes"] == B.directory_bytes(out)
    seed = ["export", "encode", "--arch", "resnet18", "--crf", "0", "--bit-depth", "8", "--bn-bit-depth", "12",
            "--bn-crf", "0", "--preset", "slower"]
    # the seed's exact line parses; without a checkpoint it is a one-line error
    assert cli.main(seed) == 2
    assert "no checkpoint given" in capsys.readouterr().err
    dest = tmp_path / "seed"
    args = seed[:-1] + ["ultrafast", "--checkpoint", str(ckpt), "--output-dir", str(dest)]
    assert cli.main(args) == 0
    manifest = json.loads((dest / B.MANIFEST).read_text())
    assert manifest["settings"]["bn_mode"] == "raw"  # --bn-crf 0: lossless BN, stored exactly
    assert cli.main(["export", "nonsense"]) == 2


def test_profile_json(ckpt, capsys):
    assert cli.main(["profile", str(ckpt), "--presets", "ultrafast", "--json"]) == 0
    rows = _json(capsys)
    assert [r["preset"] for r in rows] == ["ultrafast"]
    assert rows[0]["bytes"] > 0 and rows[0]["seconds"] > 0
    assert cli.main(["profile", str(ckpt), "--presets", "ultrafast,bogus"]) == 2
    assert "unknown preset(s) bogus" in capsys.readouterr().err


def test_user_errors_are_one_line_and_exit_2(encoded, ckpt, tmp_path, capsys):
    out, _ = encoded
    assert cli.main(["encode", str(ckpt), "--out", str(out), "--preset", "ultrafast"]) == 2
    assert "already exists (pass --force" in capsys.readouterr().err
    assert cli.main(["encode", str(ckpt), "--out", str(tmp_path / "x"), "--arch", "resnet50"]) == 2
    assert "is a resnet18, not a resnet50" in capsys.readouterr().err
    assert cli.main(["encode", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "y")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert cli.main(["encode", str(ckpt), "--out", str(tmp_path / "z"), "--dither", "99"]) == 2
    assert "dither amplitude" in capsys.readouterr().err
    assert cli.main(["encode", str(ckpt), "--out", str(tmp_path / "w"), "--bit-depth", "13"]) == 2
    assert "--bit-depth must be 4..12" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("x", "y", "z", "w"))


def test_flag_defaults_and_bn_mode_rules():
    import argparse
    from ctnet.codec.manifest import EncodeSettings
    p = argparse.ArgumentParser()
    add_codec_args(p)
    assert settings_from_args(p.parse_args([])) == EncodeSettings()  # one place for defaults
    assert settings_from_args(p.parse_args(["--bn-crf", "0", "--bn-bit-depth", "12"])).bn_mode == "raw"  # the seed's
    with pytest.raises(ValueError, match="lossy BN"):
        settings_from_args(p.parse_args(["--bn-crf", "20"]))
    s = settings_from_args(p.parse_args(["--crf", "18", "--bit-depth", "10", "--pix-fmt", "yuv420", "--dither", "1",
                                         "--seed", "3", "--tile", "64", "--order", "natural", "--frame", "128"]))
    assert (s.crf, s.bit_depth, s.pix_fmt, s.dither, s.seed, s.tile, s.order, s.frame) == (
        18, 10, "yuv420", 1.0, 3, 64, "natural", 128)


def test_encode_takes_a_bundle_and_transcodes_exactly(encoded, tmp_path, capsys):
    """v2 → another codec and back: the same weights (the source's grid is reused)."""
    out, _ = encoded
    xz = tmp_path / "xz"
    assert cli.main(["encode", str(out), "--out", str(xz), "--codec", "xz", "--json"]) == 0
    capsys.readouterr()
    back = tmp_path / "back"
    assert cli.main(["encode", str(xz), "--out", str(back), "--preset", "ultrafast", "--json"]) == 0
    capsys.readouterr()
    a, b = B.read_bundle(out)[0].state_dict(), B.read_bundle(back)[0].state_dict()
    assert all(a[k].equal(b[k]) for k in a if "weight_dct" in k or k.startswith("fc."))
    assert cli.main(["verify", str(back), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["digest"] == json.loads((back / B.MANIFEST).read_text())["digest"]
    assert cli.main(["encode", str(out), "--out", str(tmp_path / "r50"), "--arch", "resnet50"]) == 2
    assert "is a resnet18, not a resnet50" in capsys.readouterr().err


def test_newcomers_words_version_summary_and_verify_on_a_run_folder(tmp_path, capsys):
    """Issue 24.7: `ctnet --version` prints the version; `ctnet summary` describes the
    ImageNette head by default; `ctnet verify` on a run folder says it is not a bundle and
    names the bundles inside, in one line, exit 2."""
    from ctnet import __version__
    assert cli.main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"ctnet {__version__}"
    assert cli.main(["summary", "--json"]) == 0
    assert _json(capsys)[-1]["fp32_bytes"] == 44_764_968  # CTNet-18 with the 10-class head, as trained here
    run = tmp_path / "run"
    (run / "bundles" / "best").mkdir(parents=True)
    (run / "bundles" / "best" / "manifest.json").write_text("{}")
    assert cli.main(["verify", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a bundle (no manifest.json); it is a run folder: its bundles are bundles/best" in err
    assert "\n" not in err
