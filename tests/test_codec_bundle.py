"""Format-v2 bundles: exact decode at 8/10/12 bit, the export-aware training forward, every
codec, BN as affine or raw, transcoding v1 → v2, determinism (a golden digest), size
accounting, the per-layer report, and v1 bundles still decoding bit-exactly."""
import copy
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from codec_fixtures import sparse_ctnet18, state_hash
from ctnet import api, quant
from ctnet.codec import bundle as B
from ctnet.codec import plan as PL
from ctnet.codec.manifest import EncodeSettings, Manifest, container_bits
from ctnet.export import bn_layers, video_tensors
from ctnet.layers import DCT_LAYERS, configure_export_training
from ctnet.models import fp32_bytes

ASSETS = Path(__file__).parent / "assets"
V1 = {  # real v1 demo bundles and the SHA-256 of their decoded state dict (ctnet before format v2 computed these)
    "lam1e-6-smallest": "16c66cee9384d0cbaf4c788142ee10ce0a71bcc8f657522a1d3a18de8b4857da",
    "lam5e-7-best": "430df53d8f6723103768958cd98020df586d7a15a74da4dc6aaf586afe02e3f7",
}


@pytest.fixture(scope="module")
def source():
    return sparse_ctnet18()


@pytest.fixture(scope="module")
def enc8(source):
    model, meta = source
    return B.encode_model(model, meta, EncodeSettings(bit_depth=8, preset="ultrafast", frame=128))


def _check_lossless(enc, model, bits):
    decoded = video_tensors(enc.model)
    for name, t in video_tensors(model).items():
        assert torch.equal(decoded[name], quant.fake_quantize(t, bits).detach()), name
    for layer in enc.layers:
        if layer["kind"] == "weight":
            assert layer["max_abs_error"] <= layer["max_half_step"] * (1 + 2**bits * 2**-22) + 1e-12, layer["name"]


@pytest.mark.parametrize("bits", [10, 12])
def test_lossless_bundle_decodes_exactly(source, bits):
    model, meta = source
    enc = B.encode_model(model, meta, EncodeSettings(bit_depth=bits, preset="ultrafast", frame=128, bn_mode="raw"))
    _check_lossless(enc, model, bits)
    assert enc.manifest["coding"]["container_bits"] == 12
    again, _ = B.decode_files(enc.files)
    assert state_hash(again) == state_hash(enc.model)
    for (n, a), (_, b) in zip(bn_layers(model).items(), bn_layers(again).items()):  # raw BN is bit-exact
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(a, key), getattr(b, key)), (n, key)


def test_decoded_model_equals_the_export_aware_training_forward(source, enc8):
    """An 8-bit lossless bundle decodes to exactly the weights the training forward used."""
    model, _ = source
    _check_lossless(enc8, model, 8)
    trained = configure_export_training(copy.deepcopy(model), pixel_bit_depth=8).eval()
    with torch.no_grad():
        for (name, a), (_, b) in zip(trained.named_modules(), enc8.model.named_modules()):
            if isinstance(a, DCT_LAYERS):
                assert torch.equal(a.materialized_weight(), b.materialized_weight()), name


def test_report_adds_up_and_names_where_the_bytes_go(source, enc8):
    model, _ = source
    s = enc8.summary()
    weights = [x for x in enc8.layers if x["kind"] == "weight"]
    assert sum(x["bytes"] for x in weights) == sum(enc8.streams[0]["frame_bytes"]) == s["weights_bytes"]
    assert sum(x["nonzero"] for x in weights) == s["nonzero"] > 0
    assert s["bits_per_nonzero"] == pytest.approx(8 * s["weights_bytes"] / s["nonzero"])
    assert s["entropy_bits_per_nonzero"] > 0
    assert s["metadata_bytes"] == len(enc8.files[B.MANIFEST]) + len(enc8.files[B.TABLES])
    assert enc8.manifest["fp32_bytes"] == fp32_bytes(model)
    assert s["total_bytes"] == sum(len(v) for v in enc8.files.values())
    # frames wholly at level 0 are not coded; every coded frame belongs to one layer
    coded = [f for f in enc8.frame_info if f["coded"]]
    assert len(coded) == enc8.streams[0]["frames"] == len(enc8.frames) < len(enc8.frame_info)
    assert sum(f["bytes"] for f in enc8.frame_info) == s["weights_bytes"]
    assert all(f["bytes"] == 0 for f in enc8.frame_info if not f["coded"])


@pytest.mark.parametrize("codec", ["h264", "ffv1", "xz", "zstd"])
def test_every_codec_decodes_to_the_same_weights(source, enc8, codec):
    model, meta = source
    enc = B.encode_model(model, meta, EncodeSettings(codec=codec, preset="ultrafast", frame=128))
    a, b = video_tensors(enc.model), video_tensors(enc8.model)
    assert all(torch.equal(a[n], b[n]) for n in a)
    again, _ = B.decode_files(enc.files)
    assert state_hash(again) == state_hash(enc.model)
    assert B.weights_file(codec) in enc.files


def test_av1_and_yuv420_and_twelve_bit_h264_escapes(source):
    """Levels that do not fit the container (12-bit grid in H.264's 10-bit frames) are
    listed exactly in the tables; 4:2:0 streams are Main10."""
    model, meta = source
    enc = B.encode_model(model, meta, EncodeSettings(codec="h264", bit_depth=12, preset="ultrafast", frame=128))
    assert enc.manifest["coding"]["container_bits"] == 10 and enc.manifest["coding"]["escapes"] > 0
    _check_lossless(enc, model, 12)
    again, _ = B.decode_files(enc.files)
    assert state_hash(again) == state_hash(enc.model)
    enc = B.encode_model(model, meta, EncodeSettings(pix_fmt="yuv420", preset="ultrafast", frame=128))
    from ctnet.codec import video as V
    assert V.probe(enc.files["w.mp4"])["profile"] == "Main 10"
    _check_lossless(enc, model, 8)


def test_bn_affine_matches_raw_eval_arithmetic(source, enc8):
    model, _ = source
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    raw = B.encode_model(model, {"model": enc8.manifest["model"]}, EncodeSettings(preset="ultrafast", frame=128,
                                                                                  bn_mode="raw")).model
    with torch.no_grad():
        a, b = enc8.model(x), raw(x)
    assert (a - b).abs().max() <= 1e-4 * b.abs().max()  # 24-bit float affine
    for m in bn_layers(enc8.model).values():
        assert float(m.running_var.min()) > 0 and float(m.running_mean.abs().max()) == 0


def test_lossy_crf_and_dither_decode_within_reason(source, enc8):
    model, meta = source
    enc = B.encode_model(model, meta, EncodeSettings(preset="ultrafast", frame=128, dither=1.0, seed=7))
    for layer in enc.layers:
        if layer["kind"] == "weight":
            assert layer["max_abs_error"] <= layer["max_half_step"] * (1 + 2**-13) + 1e-12, layer["name"]
    redecoded, _ = B.decode_files(enc.files)
    assert state_hash(redecoded) == state_hash(enc.model)
    lossy = B.encode_model(model, meta, EncodeSettings(preset="ultrafast", frame=128, crf=30))
    again, _ = B.decode_files(lossy.files)
    assert state_hash(again) == state_hash(lossy.model)


def test_natural_order_and_frame_sizes(source, enc8):
    model, meta = source
    sizes = {}
    for frame, order in ((64, "count"), (256, "count"), (128, "natural")):
        enc = B.encode_model(model, meta, EncodeSettings(preset="ultrafast", frame=frame, order=order))
        _check_lossless(enc, model, 8)
        assert enc.frames.shape[1:] == (frame, frame)
        sizes[(frame, order)] = enc.total_bytes
    assert len(set(sizes.values())) == 3


def test_one_layout_codes_every_preset_and_refuses_other_grids(source, enc8):
    """A model laid out once (the app's worker does it on checkpoint selection) codes the same
    bundle as an encode that lays it out itself, at any codec or preset; a layout of another
    grid or frame size is refused, not coded."""
    model, meta = source
    loaded = api.LoadedModel.of(model, meta, "checkpoint", None)
    settings = EncodeSettings(bit_depth=8, preset="ultrafast", frame=128)
    laid = api.lay_out(loaded, settings)
    assert laid.key == api.layout_key(replace(settings, preset="medium", codec="h264", crf=20)) != \
        api.layout_key(replace(settings, bit_depth=10))
    assert api.encode(loaded, settings, laid_out=laid).files == enc8.files
    levels = laid.levels.copy()
    assert api.encode(loaded, replace(settings, codec="h264"), laid_out=laid).files == \
        api.encode(loaded, replace(settings, codec="h264")).files
    assert np.array_equal(laid.levels, levels)  # read, not changed
    for other in (replace(settings, bit_depth=10), replace(settings, frame=64), replace(settings, order="natural")):
        with pytest.raises(ValueError, match="layout made for"):
            api.encode(loaded, other, laid_out=laid)


def _same_result(a, b) -> None:
    """Two encode results alike in every byte, report and decoded tensor."""
    assert a.files == b.files and a.manifest == b.manifest and a.streams == b.streams
    assert a.layers == b.layers and a.frame_info == b.frame_info and np.array_equal(a.frames, b.frames)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_prepared_layout_encodes_what_an_encode_of_its_own_does(source, enc8):
    """``api.lay_out`` computes ahead what every encode of the layout computes alike (the
    app's worker, on checkpoint selection: pixels, tables, the model a lossless stream decodes
    to and its errors); an encode from it — lossless, lossy — gives the bytes, reports and
    decoded tensors of an encode without it, with a model of its own; a layout's memo serves
    only the model it was made of."""
    model, meta = source
    loaded = api.LoadedModel.of(model, meta, "checkpoint", None)
    settings = EncodeSettings(bit_depth=8, preset="ultrafast", frame=128)
    laid = api.lay_out(loaded, settings)
    assert ("lossless", settings.container_bits, settings.bn_mode) in laid.memo
    first = api.encode(loaded, settings, laid_out=laid)
    _same_result(first, enc8)
    assert first.model is not laid.memo[("lossless", settings.container_bits, settings.bn_mode)][0]
    lossy = replace(settings, codec="h264", crf=20)
    _same_result(api.encode(loaded, lossy, laid_out=laid), api.encode(loaded, lossy))
    edited = copy.deepcopy(model)
    next(iter(bn_layers(edited).values())).bias.data += 1.0  # another model, the same levels
    other = replace(settings, codec="h264")
    _same_result(B.encode_model(edited, meta, other, laid_out=laid),
                 B.encode_model(edited, meta, other, laid_out=B.layout(model, meta, settings)))


@pytest.mark.slow
def test_a_prepared_layout_with_escapes_raw_bn_or_the_quick_gop_encodes_the_same(source):
    """The same for levels outside the container (escapes, 12-bit H.264), BatchNorm stored raw
    (a memo computed at the encode, not ahead) and the preview's short GOP."""
    model, meta = source
    loaded = api.LoadedModel.of(model, meta, "checkpoint", None)
    escapes = EncodeSettings(codec="h264", bit_depth=12, preset="ultrafast", frame=128)
    laid = api.lay_out(loaded, escapes)
    got = api.encode(loaded, escapes, laid_out=laid)
    assert got.manifest["coding"]["escapes"] > 0
    _same_result(got, api.encode(loaded, escapes))
    raw = replace(escapes, bn_mode="raw")
    _same_result(api.encode(loaded, raw, laid_out=laid), api.encode(loaded, raw))
    settings = EncodeSettings(bit_depth=8, preset="ultrafast", frame=128)
    _same_result(api.encode(loaded, settings, laid_out=api.lay_out(loaded, settings), quick=True),
                 api.encode(loaded, settings, quick=True))


def test_a_quick_encode_codes_the_same_levels_with_a_short_gop_and_says_so(source, enc8, tmp_path):
    """``quick`` (the app's preview): a lossless HEVC stream with x265's short GOP decodes to
    the same model, its manifest records the GOP as the stream's workaround, and the bundle
    reads back from disk like any other; other codecs and lossy encodes are not changed."""
    from ctnet.codec.registry import QUICK
    model, meta = source
    loaded = api.LoadedModel.of(model, meta, "checkpoint", None)
    settings = EncodeSettings(bit_depth=8, preset="ultrafast", frame=128)
    quick = api.encode(loaded, settings, quick=True)
    assert quick.files != enc8.files and quick.manifest["coding"]["workaround"] == QUICK
    assert quick.manifest["coding"]["options"]["x265-params"].endswith(":" + QUICK)
    for a, b in zip(quick.model.state_dict().values(), enc8.model.state_dict().values()):
        assert torch.equal(a, b)
    back = api.load_any(api.write_encoded(quick, tmp_path / "quick"))
    for a, b in zip(back.model.state_dict().values(), enc8.model.state_dict().values()):
        assert torch.equal(a, b)
    for other in (replace(settings, codec="h264"), replace(settings, crf=20)):
        assert api.encode(loaded, other, quick=True).files == api.encode(loaded, other).files
    from ctnet.codec.registry import VideoError, VideoSettings
    with pytest.raises(VideoError, match="unknown encoder workaround"):  # a manifest naming it for AV1 is refused
        VideoSettings("av1", 10, "yuv420", 0, "medium", QUICK).validate()


def test_api_encode_is_deterministic_and_round_trips_through_a_directory(source, enc8, tmp_path):
    model, meta = source
    result = api.encode(api.LoadedModel.of(model, meta, "checkpoint", None), preset="ultrafast", bit_depth=8, frame=128)
    assert result.files == enc8.files  # same model and settings → byte-identical bundle
    assert isinstance(result, B.EncodeResult) and result.total_bytes == enc8.total_bytes
    assert set(result.summary()) >= {"total_bytes", "fp32_bytes", "ratio", "seconds", "digest", "bits_per_nonzero",
                                     "entropy_bits_per_nonzero", "metadata_bytes", "layers", "streams"}
    out = api.write_encoded(result, tmp_path / "bundle")
    decoded = api.decode(out)
    assert decoded.bundle.total_bytes == sum(len(v) for v in result.files.values()) == B.directory_bytes(out)
    (out / "notes.txt").write_text("anything in the directory counts")
    assert api.decode(out).bundle.total_bytes == decoded.bundle.total_bytes + len("anything in the directory counts")
    loaded = api.load_any(out)
    assert loaded.kind == "bundle" and loaded.path == out and loaded.spec.to_dict() == meta["model"]
    assert loaded.metrics["acc1"] == meta["metrics"]["acc1"] and loaded.settings == api.EncodeSettings.from_dict(result.settings)
    assert loaded.bundle.digest == result.digest and not loaded.model.training
    assert sum(loaded.bundle.frame_bytes) == sum(result.streams[0]["frame_bytes"])
    assert oct(os.stat(out / B.MANIFEST).st_mode & 0o777) != oct(0o600)


@pytest.mark.parametrize("name", sorted(V1))
def test_v1_bundles_decode_bit_exactly_and_transcode_exactly(name):
    path = ASSETS / "v1" / name
    model, meta = B.read_bundle(path)
    assert meta["version"] == 1 and state_hash(model) == V1[name]
    enc = B.encode_model(model, meta, EncodeSettings(preset="ultrafast"))
    a, b = video_tensors(model), video_tensors(enc.model)
    assert all(torch.equal(a[n], b[n]) for n in a)  # the v1 grid is reused: the same levels
    assert enc.manifest["source"] == {"metrics": {k: v for k, v in meta["source"]["metrics"].items()
                                                  if k in B.SOURCE_METRICS}, "epoch": meta["source"]["epoch"]}
    assert enc.total_bytes < 0.7 * meta["bundle"]["total_bytes"]


def test_golden_digest_of_a_small_real_bundle(expected):
    """Same source + settings → the same bytes, across machines and library upgrades
    (torch, numpy, PyAV/libx265, lzma): the digest in tests/assets/golden.json
    (``GENERATE_EXPECTED=1`` rewrites it after a deliberate format change)."""
    model, meta = B.read_bundle(ASSETS / "v1" / "lam1e-6-smallest")
    enc = B.encode_model(model, meta, EncodeSettings(preset="ultrafast"))
    again = B.encode_model(model, meta, EncodeSettings(preset="ultrafast"))
    assert again.files == enc.files
    expected("golden.json", "lam1e-6-smallest/ultrafast", enc.manifest["digest"])
    # grids of 4–12 bits left 8/10/12-bit bundles byte for byte as they were (digests written by
    # the ctnet before them): HEVC (8 bits above) and xz, every depth
    for codec, bits in (("xz", 8), ("hevc", 10), ("xz", 10), ("hevc", 12), ("xz", 12)):
        other = B.encode_model(model, meta, EncodeSettings(preset="ultrafast", codec=codec, bit_depth=bits))
        expected("golden.json", f"lam1e-6-smallest/ultrafast/{codec}/{bits}", other.manifest["digest"])


def test_interrupted_write_leaves_nothing_and_force_replaces_atomically(enc8, tmp_path, monkeypatch):
    dest = tmp_path / "out"
    calls = {"n": 0}
    real_fsync = os.fsync

    def flaky(fd):
        calls["n"] += 1
        if calls["n"] == 2:
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
    # a --force killed between its two renames: the next call puts the old bundle back first
    os.rename(dest, tmp_path / ".out.old")
    B.write_bundle(enc8, dest, overwrite=True)
    assert B.read_bundle(dest)[1]["bundle"]["digest"] == enc8.manifest["digest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    other = tmp_path / "not-a-bundle"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(B.BundleError, match="not a bundle"):
        B.write_bundle(enc8, other, overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"


def test_encode_refuses_bad_settings_and_models(source):
    model, meta = source
    for bad in (dict(bit_depth=3), dict(bit_depth=13), dict(crf=-1), dict(preset="warp"), dict(dither=9.0), dict(bn_mode="zip"),
                dict(tile=8), dict(order="random"), dict(seed=-1), dict(frame=100), dict(codec="xz", crf=3),
                dict(crf=True), dict(dither=float("nan"))):
        with pytest.raises(B.BundleError):
            EncodeSettings(**bad).validate()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.fc.weight[0, 0] = float("nan")
    with pytest.raises(B.BundleError, match="non-finite"):
        B.encode_model(broken, meta, EncodeSettings(preset="ultrafast"))


def test_container_depths():
    assert [container_bits("hevc", b) for b in (8, 10, 12)] == [10, 12, 12]
    assert [container_bits("h264", b) for b in (8, 10, 12)] == [10, 10, 10]
    assert [container_bits("xz", b) for b in (8, 10, 12)] == [8, 16, 16]
    for codec in ("hevc", "h264", "av1", "ffv1", "xz", "zstd"):  # a b-bit grid's levels need b + 1 bits
        assert [container_bits(codec, b) for b in range(4, 8)] == [8] * 4, codec


@pytest.mark.parametrize("codec,bits", [("hevc", 4), ("hevc", 6), ("hevc", 7), ("xz", 5), ("h264", 6)])
def test_grids_below_8_bits_decode_exactly_in_8_bit_frames(source, codec, bits):
    model, meta = source
    enc = B.encode_model(model, meta, EncodeSettings(codec=codec, bit_depth=bits, preset="ultrafast", frame=128))
    _check_lossless(enc, model, bits)
    assert enc.manifest["coding"]["container_bits"] == 8 and enc.manifest["coding"]["escapes"] == 0
    again, dmeta = B.decode_files(enc.files)
    assert state_hash(again) == state_hash(enc.model) and dmeta["settings"]["bit_depth"] == bits
    assert "layer_bits" not in dmeta["settings"]  # uniform grids write no per-layer field
    assert B.encode_model(again, dmeta, EncodeSettings(codec=codec, bit_depth=bits, preset="ultrafast",
                                                       frame=128)).files == enc.files  # keeps its levels


def test_per_layer_grids_decode_exactly_and_travel_in_the_manifest(source):
    model, meta = source
    names = list(video_tensors(model))
    layer_bits = {n: 4 + i % 5 for i, n in enumerate(names)}  # 4..8 bits
    settings = EncodeSettings(bit_depth=8, layer_bits=layer_bits, preset="ultrafast", frame=128)
    assert settings.layer_bits == tuple(sorted(layer_bits.items())) and settings.bits_of(names[1]) == 5
    enc = B.encode_model(model, meta, settings)
    assert enc.manifest["settings"]["layer_bits"] == layer_bits
    assert {x["name"]: x["bits"] for x in enc.layers if x["kind"] == "weight"} == layer_bits
    decoded, dmeta = B.decode_files(enc.files)
    got = video_tensors(decoded)
    for name, t in video_tensors(model).items():
        assert torch.equal(got[name], quant.fake_quantize(t, layer_bits[name]).detach()), name
    again = B.encode_model(decoded, dmeta, EncodeSettings.from_dict(dmeta["settings"]))
    assert again.files == enc.files  # a decoded per-layer bundle re-encodes to its own bytes
    uniform = B.encode_model(decoded, dmeta, EncodeSettings(bit_depth=8, preset="ultrafast", frame=128))
    assert uniform.total_bytes > enc.total_bytes  # layers that were coarser are re-quantised to 8 bits


def test_per_layer_maps_must_name_every_tensor_and_only_those(source):
    model, meta = source
    names = list(video_tensors(model))
    full = {n: 6 for n in names}
    cases = [({**full, "layer9.weight": 6}, "name 1 tensor\\(s\\) the model does not have: layer9.weight"),
             ({n: 6 for n in names[1:]}, f"leave out 1 of the model's {len(names)} stored tensors: {names[0]}")]
    for layer_bits, message in cases:
        with pytest.raises(B.BundleError, match=message):
            B.encode_model(model, meta, EncodeSettings(bit_depth=6, layer_bits=layer_bits, preset="ultrafast"))
    with pytest.raises(B.BundleError, match="largest per-layer bit depth \\(6\\)"):
        EncodeSettings(bit_depth=8, layer_bits=full).validate()
    with pytest.raises(B.BundleError, match="per-layer bit depth of conv1.weight_dct must be 4..12, got 3"):
        EncodeSettings(bit_depth=6, layer_bits={**full, "conv1.weight_dct": 3}).validate()


@pytest.mark.parametrize("codec", ["hevc", "xz"])
def test_encode_reports_progress_in_frames(source, codec):
    model, meta = source
    calls = []
    enc = api.encode(api.LoadedModel.of(model, meta, "checkpoint", None), codec=codec, preset="ultrafast", frame=128,
                     progress=lambda done, total: calls.append((done, total)))
    frames = sum(s["frames"] for s in enc.streams)
    assert calls and calls[-1] == (frames, frames)


def test_plan_round_trips_every_shape():
    rng = np.random.default_rng(0)
    for shape in [(64, 3, 7, 7), (128, 64), (10,), (512, 256, 3, 3), (10, 512), (1000, 2048), (3, 1)]:
        lev = ((rng.random(shape) < 0.05) * rng.integers(-255, 256, shape)).astype(np.int32)
        for frame in PL.FRAME_SIZES:
            lp = PL.make_plan([("x", shape)], frame).layers[0]
            planes = PL.to_planes(lev)
            rc, cc = PL.order_classes(planes) if lp.ordered else (None, None)
            frames = PL.layer_frames(planes, lp, rc, cc)
            assert frames.shape == (lp.frames, frame, frame)
            back = PL.from_planes(PL.layer_planes(frames, lp, rc, cc), shape)
            assert np.array_equal(back, lev), (shape, frame)
    assert Manifest  # the typed parser is what decoding uses (tests/test_codec_errors.py)


def test_a_manifest_whose_per_layer_bits_disagree_with_its_tables_is_refused(source, tmp_path):
    from ctnet.codec.manifest import digest_of
    model, meta = source
    names = list(video_tensors(model))
    layer_bits = {n: 7 if i % 2 else 5 for i, n in enumerate(names)}
    enc = B.encode_model(model, meta, EncodeSettings(bit_depth=7, layer_bits=layer_bits, preset="ultrafast",
                                                     frame=128))
    out = B.write_bundle(enc, tmp_path / "b")
    assert B.verify(out)["digest"] == enc.digest

    def edited(fn):
        m = json.loads(enc.files[B.MANIFEST])
        fn(m["settings"]["layer_bits"])
        m["digest"] = digest_of(m)  # as a tool that rewrites the digest would
        return {**enc.files, B.MANIFEST: json.dumps(m).encode()}
    cases = [(lambda lb: lb.update({names[0]: 6}), f"per-layer bits disagree with its tables: {names[0]} is 6-bit in "
                                                   "the manifest, 5-bit in the tables"),
             (lambda lb: lb.update({"layer9.conv.weight_dct": 5}), "does not have: layer9.conv.weight_dct"),
             (lambda lb: lb.pop(names[-1]), "leave out 1 of the model's"),
             (lambda lb: lb.update({names[1]: 13}), "layer_bits.layer1.0.conv1.weight_dct' is 13, outside 4..12")]
    for fn, message in cases:
        files = edited(fn)
        with pytest.raises(B.BundleError, match=message):
            B.decode_files(files)
        (out / B.MANIFEST).write_bytes(files[B.MANIFEST])
        with pytest.raises(B.BundleError, match=message):
            B.verify(out)
