"""Bundles: exact decode at 8/10/12 bit, dither, BN, 4:2:0, the training-time simulation,
determinism, size accounting, the app-facing API and decoded accuracy on real data."""
import copy
import os

import pytest
import torch

from codec_fixtures import sparse_ctnet18
from ctnet import api, quant
from ctnet.codec import bundle as B
from ctnet.export import bn_layers, video_tensors
from ctnet.layers import DCT_LAYERS, configure_export_training
from ctnet.models import fp32_bytes


@pytest.fixture(scope="module")
def source():
    return sparse_ctnet18()


@pytest.fixture(scope="module")
def enc8(source):
    model, meta = source
    return B.encode_model(model, meta, B.EncodeSettings(bit_depth=8, preset="ultrafast"))


def _bn_equal(a, b):
    for (na, ma), (nb, mb) in zip(bn_layers(a).items(), bn_layers(b).items()):
        assert na == nb
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(ma, key), getattr(mb, key)), (na, key)


def _check_lossless(enc, model, bits):
    decoded = video_tensors(enc.model)
    for name, t in video_tensors(model).items():
        assert torch.equal(decoded[name], quant.fake_quantize(t, bits).detach()), name
    for layer in enc.layers:
        assert layer["max_abs_error"] <= layer["max_half_step"] * (1 + 2**bits * 2**-22) + 1e-12, layer["name"]
    _bn_equal(model, enc.model)  # raw BN is bit-exact
    # the frame order inside the big stream is not the model order, and decoding undid it
    big = max(enc.streams, key=lambda s: s["frames"])
    assert big["order"] != sorted(big["order"])


@pytest.mark.parametrize("bits", [10, 12])
def test_lossless_bundle_decodes_exactly(source, bits):
    model, meta = source
    enc = B.encode_model(model, meta, B.EncodeSettings(bit_depth=bits, preset="ultrafast"))
    _check_lossless(enc, model, bits)
    again, _ = B.decode_files(enc.files)
    for name, t in video_tensors(enc.model).items():
        assert torch.equal(video_tensors(again)[name], t)


def test_lossless_8bit_bundle_decodes_exactly_and_per_layer_bytes_add_up(source, enc8):
    model, _ = source
    _check_lossless(enc8, model, 8)
    streams = {s["file"]: s for s in enc8.streams}
    frame_total = sum(sum(s["frame_bytes"]) for s in enc8.streams)
    assert sum(layer["bytes"] for layer in enc8.layers if layer["frames"]) == frame_total
    for name, data in enc8.files.items():
        if name in streams:
            assert sum(streams[name]["frame_bytes"]) < len(data)
    assert enc8.manifest["fp32_bytes"] == fp32_bytes(model)


def test_decoded_model_equals_the_export_aware_training_forward(source, enc8):
    """An 8-bit lossless bundle decodes to exactly the values the training forward pass used."""
    model, _ = source
    trained = configure_export_training(copy.deepcopy(model), pixel_bit_depth=8).eval()
    decoded = enc8.model
    with torch.no_grad():
        for (name, a), (_, b) in zip(trained.named_modules(), decoded.named_modules()):
            if isinstance(a, DCT_LAYERS):
                assert torch.equal(a.materialized_weight(), b.materialized_weight()), name
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        assert torch.equal(trained(x), decoded(x))
        plain = configure_export_training(copy.deepcopy(model), pixel_bit_depth=0).eval()
        assert not torch.equal(plain(x), decoded(x))  # the comparison can tell a difference


def test_dither_is_removed_and_error_stays_within_half_step(source, enc8):
    model, meta = source
    enc = B.encode_model(model, meta, B.EncodeSettings(bit_depth=8, preset="ultrafast", dither=1.0, seed=7))
    for layer in enc.layers:
        assert layer["max_abs_error"] <= layer["max_half_step"] * (1 + 2**-13) + 1e-12, layer["name"]
    assert enc.manifest["settings"]["dither"] == 1.0 and enc.manifest["settings"]["seed"] == 7
    a, b = video_tensors(enc.model), video_tensors(enc8.model)
    assert any(not torch.equal(a[n], b[n]) for n in a)
    redecoded, _ = B.decode_files(enc.files)
    assert all(torch.equal(video_tensors(redecoded)[n], a[n]) for n in a)


def test_bn_video_stream_clamps_running_var_and_yuv420_pads_to_even(source):
    model, meta = source
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in bn_layers(model).values():
            m.running_var[::3] = 0.0  # lossy coding around 0 can dip below it
    enc = B.encode_model(model, meta, B.EncodeSettings(bit_depth=8, pix_fmt="yuv420", preset="ultrafast",
                                                       bn_mode="video", bn_crf=40, bn_bit_depth=8))
    assert B.BN_FILE not in enc.files and any(name.startswith("bn_") for name in enc.files)
    # 4:2:0 is for hardware decoders: every tile padded to 128x128, one Main-profile stream
    assert [(s["kind"], s["height"], s["width"]) for s in enc.streams] == [("weight", 128, 128), ("bn", 128, 128)]
    assert enc.manifest["layout"]["square"] == 128 and enc.manifest["layout"]["even"] is True
    from ctnet.codec import video as V
    assert V.probe(enc.files["w_128x128.mp4"])["profile"] == "Main"
    for m in bn_layers(enc.model).values():
        assert float(m.running_var.min()) >= 0.0
    decoded = video_tensors(enc.model)
    for name, t in video_tensors(model).items():  # the weights were still lossless
        assert torch.equal(decoded[name], quant.fake_quantize(t, 8).detach()), name
    again, meta2 = B.decode_files(enc.files)
    assert meta2["bn"]["mode"] == "video"
    for m in bn_layers(again).values():
        assert float(m.running_var.min()) >= 0.0


def test_api_encode_is_deterministic_and_round_trips_through_a_directory(source, enc8, tmp_path):
    model, meta = source
    result = api.encode(model, meta, preset="ultrafast", bit_depth=8)
    assert result["files"] == enc8.files  # same model and settings → byte-identical bundle
    for key in ("total_bytes", "fp32_bytes", "ratio", "seconds", "layers", "streams", "frames_stored",
                "frames_coded", "frames_decoded", "model", "manifest"):
        assert key in result
    assert result["ratio"] == pytest.approx(result["fp32_bytes"] / result["total_bytes"])
    for layer in result["layers"]:
        assert {"name", "bytes", "frames", "max_abs_error"} <= set(layer)
    n_frames = sum(s["frames"] for s in result["streams"])
    assert len(result["frames_stored"]) == n_frames
    for s in result["streams"]:
        coded = result["frames_coded"][s["file"]]
        assert coded.shape == (s["frames"], s["height"], s["width"])
        assert (coded == result["frames_decoded"][s["file"]]).all()  # lossless
        # stored (model) order and coded order hold the same frames, permuted by `order`
        stored = {f["frame"]: f["pixels"] for f in result["frames_stored"]}
        first = s["order"][0]
        h, w = stored[first].shape
        assert (coded[0][:h, :w] == stored[first]).all()
    out = api.write_encoded(result, tmp_path / "bundle")
    again = api.write_encoded(result, tmp_path / "bundle2")
    for name in result["files"]:
        assert (out / name).read_bytes() == (again / name).read_bytes() == result["files"][name]
    decoded = api.decode(out)
    assert decoded["total_bytes"] == sum(len(v) for v in result["files"].values()) == B.directory_bytes(out)
    assert decoded["ratio"] == pytest.approx(fp32_bytes(model) / decoded["total_bytes"])
    (out / "notes.txt").write_text("anything in the directory counts")
    assert api.decode(out)["total_bytes"] == decoded["total_bytes"] + len("anything in the directory counts")
    assert api.decode(result["files"])["total_bytes"] == result["total_bytes"]
    model2, meta2 = api.load_any(out)
    assert meta2["model"] == meta["model"] and meta2["source"]["metrics"] == meta["metrics"]
    assert not model2.training


def test_twelve_bit_lossless_keeps_top1_on_real_imagenette(shared_resnet18, shared_data):
    model, meta = api.load_any(shared_resnet18)
    enc = B.encode_model(model, meta, B.EncodeSettings(bit_depth=12, preset="ultrafast"))
    assert enc.manifest["model"]["ctnet"] is False  # a plain checkpoint: its conv weights are the video
    before = api.evaluate_model(model, meta, shared_data, limit=200, workers=0)
    after = api.evaluate_model(enc.model, enc.manifest, shared_data, limit=200, workers=0)
    assert before["images"] == after["images"] == 200
    assert abs(before["acc1"] - after["acc1"]) <= 0.1
    assert before["acc1"] > 50  # a real model on real data, not chance


def test_interrupted_write_leaves_nothing(enc8, tmp_path, monkeypatch):
    dest = tmp_path / "out"
    calls = {"n": 0}
    real_fsync = os.fsync

    def flaky(fd):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", flaky)
    with pytest.raises(KeyboardInterrupt):
        B.write_bundle(enc8, dest)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    B.write_bundle(enc8, dest)
    with pytest.raises(B.BundleError, match="already exists"):
        B.write_bundle(enc8, dest)
    B.write_bundle(enc8, dest, overwrite=True)
    other = tmp_path / "not-a-bundle"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(B.BundleError, match="not a bundle"):
        B.write_bundle(enc8, other, overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-bundle", "out"]


def test_encode_refuses_bad_settings_and_models(source):
    model, meta = source
    for bad in (dict(bit_depth=9), dict(crf=-1), dict(preset="warp"), dict(dither=9.0), dict(bn_mode="zip"),
                dict(tile=8), dict(order="random"), dict(seed=-1)):
        with pytest.raises(B.BundleError):
            B.EncodeSettings(**bad).validate()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.fc.weight[0, 0] = float("nan")
    with pytest.raises(B.BundleError, match="non-finite"):
        B.encode_model(broken, meta, B.EncodeSettings(preset="ultrafast"))


@pytest.mark.parametrize("codec", ["hevc", "xz"])
def test_encode_reports_progress_in_frames(source, codec):
    model, meta = source
    calls = []
    enc = api.encode(model, meta, codec=codec, preset="ultrafast", progress=lambda done, total: calls.append((done, total)))
    frames = sum(s["frames"] for s in enc["streams"])
    assert calls and calls[-1] == (frames, frames)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len({t for _, t in calls}) == 1
