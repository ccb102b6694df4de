"""Codec shootout (issue 5): every codec's lossless mode round-trips bit for bit at every
bit depth it supports, bundles in every codec decode exactly, bad codec requests are named
errors, and ``ctnet rd`` measures real points, caches them and recomputes nothing twice."""
import hashlib
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from codec_fixtures import sparse_ctnet18
from ctnet import baselines, cli, quant, rd
from ctnet.checkpoint import save_checkpoint
from ctnet.codec import bundle as B
from ctnet.codec import planes as P
from ctnet.codec import video as V
from ctnet.export import bn_layers, video_tensors

# every (codec, pixel format, bit depth) a video codec takes, all with a lossless mode
VIDEO_LOSSLESS = [(c.name, fmt, bits) for c in V.CODECS.values() if c.family == "video"
                  for fmt in c.pix_fmts for bits in c.bit_depths]


def _frames(n, shape, bits, seed=0):
    """Half noise, half a slowly changing sparse pattern (what weight tiles look like)."""
    rng = np.random.default_rng(seed)
    peak = 2**bits - 1
    noisy = [rng.integers(0, peak + 1, shape) for _ in range(n // 2)]
    base = np.where(rng.random(shape) < 0.05, rng.integers(0, peak + 1, shape), peak // 2)
    sparse = [np.where(rng.random(shape) < 0.02, rng.integers(0, peak + 1, shape), base) for _ in range(n - n // 2)]
    return [f.astype(np.uint16) for f in noisy + sparse]


def test_every_codec_in_the_registry_has_a_lossless_mode_and_the_expected_formats():
    assert set(V.CODECS) == {"hevc", "h264", "av1", "ffv1", "xz", "zstd"}
    assert {(c, f) for c, f, _ in VIDEO_LOSSLESS} == {("hevc", "gray"), ("hevc", "yuv420"), ("h264", "gray"),
                                                     ("h264", "yuv420"), ("av1", "yuv420"), ("ffv1", "gray"),
                                                     ("ffv1", "yuv420")}
    assert V.CODECS["av1"].bit_depths == V.CODECS["h264"].bit_depths == (8, 10)
    assert [n for n, c in V.CODECS.items() if not c.lossy] == ["ffv1", "xz", "zstd"]


@pytest.mark.parametrize("codec,pix_fmt,bits", VIDEO_LOSSLESS)
def test_video_lossless_round_trip_is_bit_exact(codec, pix_fmt, bits):
    shape = (48, 64)
    frames = _frames(8, shape, bits, seed=bits)
    s = V.VideoSettings(codec=codec, bit_depth=bits, pix_fmt=pix_fmt, crf=0, preset="ultrafast")
    enc = V.encode_frames(frames, s)
    assert np.array_equal(enc.decoded, np.stack(frames))
    again = V.decode_frames(enc.data, enc.settings, height=shape[0], width=shape[1], count=len(frames))
    assert np.array_equal(again, np.stack(frames))
    info = V.probe(enc.data)
    assert info["codec"] == codec and (info["height"], info["width"], info["frames"]) == (*shape, len(frames))
    assert enc.settings.to_dict()["options"] == enc.settings.encoder_options()
    # and the stream really is that codec's lossless mode, not a lossy one that happened to match
    lossless_switch = {"hevc": "lossless=1", "h264": "qp=0", "av1": "lossless=1", "ffv1": "level=3"}[codec]
    assert lossless_switch in enc.settings.encoder_params()


@pytest.mark.parametrize("codec,bits", [("h264", 8), ("av1", 10), ("hevc", 10)])
def test_lossy_crf_is_smaller_and_not_exact(codec, bits):
    pix_fmt = V.CODECS[codec].pix_fmts[0]
    frames = _frames(6, (64, 64), bits, seed=3)
    lossless = V.encode_frames(frames, V.VideoSettings(codec=codec, bit_depth=bits, pix_fmt=pix_fmt, crf=0,
                                                       preset="ultrafast"))
    lossy = V.encode_frames(frames, V.VideoSettings(codec=codec, bit_depth=bits, pix_fmt=pix_fmt, crf=30,
                                                    preset="ultrafast"))
    assert len(lossy.data) < len(lossless.data)
    assert not np.array_equal(lossy.decoded, np.stack(frames))


def test_svt_av1_geometry_that_would_hang_is_refused_and_bundles_pad_around_it():
    s = V.VideoSettings(codec="av1", pix_fmt="yuv420")
    with pytest.raises(V.VideoError, match="more than 4x"):
        V.encode_frames([np.zeros((16, 128), np.uint16)], s)
    # format-v2 bundles code square frames only, so an AV1 bundle never meets that geometry
    assert B.EncodeSettings(codec="av1", pix_fmt="yuv420").validate().frame in (64, 128, 256)


LAYERS = [(64, 32, 3, 3), (10, 200), (7,), (5, 3, 1, 7)]


@pytest.mark.parametrize("codec", V.PLANE_CODECS)
@pytest.mark.parametrize("bits", [8, 10, 12])
def test_plane_codecs_round_trip_bit_exactly(codec, bits):
    g = torch.Generator().manual_seed(bits)
    layers = []
    for shape in LAYERS:
        t = torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.2)
        tf = B.F.quantize_tensor("x", t, bits=bits, tile=64)
        layers.append((tf.shape, tf.boxes, tf.pixels, tf.zero_point))
    data = P.encode(codec, layers, bits)
    back = P.decode(codec, data, [(s, b, z) for s, b, _, z in layers], bits)
    for (_, _, pixels, _), tiles in zip(layers, back):
        assert len(pixels) == len(tiles) and all(np.array_equal(a, b) for a, b in zip(pixels, tiles))
    assert len(data) < P.packed_size(layers, bits) / 2  # sparse content compresses
    with pytest.raises(P.PlaneError):
        P.decode(codec, data[: len(data) // 2], [(s, b, z) for s, b, _, z in layers], bits)
    assert sum(P.apportion(len(data), [p for layer in layers for p in layer[2]])) == len(data)


def test_frequency_major_order_is_its_own_inverse():
    img = np.arange(4 * 3 * 5 * 2).reshape(4 * 3, 5 * 2)
    stored = P._to_stored(img, (4, 5, 3, 2))
    assert stored.shape == (3, 2, 4, 5) and stored[0, 0, 1, 2] == img[1 * 3, 2 * 2]  # DC of kernel (1, 2)
    assert np.array_equal(P._from_stored(stored.reshape(-1), (4, 5, 3, 2)), img)


@pytest.fixture(scope="module")
def source():
    return sparse_ctnet18(seed=5)


BUNDLE_CASES = [("hevc", "gray", 8), ("h264", "gray", 8), ("h264", "yuv420", 10), ("av1", "yuv420", 8),
                ("av1", "yuv420", 10), ("ffv1", "gray", 8), ("ffv1", "gray", 12), ("xz", "gray", 8),
                ("xz", "gray", 12), ("zstd", "gray", 10)]


@pytest.mark.parametrize("codec,pix_fmt,bits", BUNDLE_CASES)
def test_lossless_bundle_in_every_codec_decodes_to_the_export_grid(source, tmp_path, codec, pix_fmt, bits):
    model, meta = source
    settings = B.EncodeSettings(codec=codec, pix_fmt=pix_fmt, bit_depth=bits, preset="ultrafast", bn_mode="raw",
                                frame=128)
    enc = B.encode_model(model, meta, settings)
    out = B.write_bundle(enc, tmp_path / "b")
    decoded, dmeta = B.read_bundle(out)
    assert dmeta["settings"]["codec"] == codec and dmeta["coding"]["codec"] == codec
    if codec not in V.PLANE_CODECS:  # the options as used (an intra-only retry says so in its workaround)
        from dataclasses import replace
        used = replace(settings.video(), workaround=dmeta["coding"]["workaround"])
        assert dmeta["coding"]["options"] == used.encoder_options()
    got = video_tensors(decoded)
    for name, t in video_tensors(model).items():
        assert torch.equal(got[name], quant.fake_quantize(t, bits).detach()), name
    for (na, ma), (nb, mb) in zip(bn_layers(model).items(), bn_layers(decoded).items()):
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(ma, key), getattr(mb, key)), (na, key)
    assert dmeta["bundle"]["total_bytes"] == enc.total_bytes == sum(s["bytes"] for s in enc.streams) + sum(
        len(v) for k, v in enc.files.items() if k not in {s["file"] for s in enc.streams})
    layer_bytes = sum(layer["bytes"] for layer in enc.layers if layer["kind"] == "weight")
    assert layer_bytes <= sum(s["bytes"] for s in enc.streams)
    assert set(enc.files) == {"manifest.json", "tables.bin", f"w{V.CODECS[codec].extension}"}
    if codec in V.PLANE_CODECS:
        assert layer_bytes == enc.streams[0]["bytes"]
    if (codec, bits) in (("xz", 8), ("h264", 8)):
        assert B.encode_model(model, meta, settings).files == enc.files  # deterministic


def test_plane_bundle_damage_is_a_named_error(source):
    from ctnet.codec.manifest import digest_of
    model, meta = source
    enc = B.encode_model(model, meta, B.EncodeSettings(codec="xz", frame=128))
    files = dict(enc.files)
    files["w.xz"] = files["w.xz"][:-40] + bytes(40)
    manifest = json.loads(files["manifest.json"])
    for e in manifest["members"]:  # as a tool that rewrites hashes and the digest would
        e["bytes"], e["sha256"] = len(files[e["file"]]), hashlib.sha256(files[e["file"]]).hexdigest()
    manifest["digest"] = digest_of(manifest)
    files["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(B.BundleError, match="w.xz: xz data"):
        B.decode_files(files)


@pytest.mark.parametrize("bad,message", [
    (dict(codec="vp9"), "codec must be one of"),
    (dict(codec="ffv1", crf=8), "ffv1 is lossless only"),
    (dict(codec="xz", crf=4), "xz is lossless only"),
    (dict(codec="av1"), "yuv420 only"),
    (dict(codec="av1", pix_fmt="yuv420", crf=64), "0..63"),
    (dict(codec="hevc", crf=52), "0..51"),
    (dict(codec="xz", pix_fmt="yuv420"), "gray only"),
])
def test_bad_codec_requests_are_named_errors(bad, message):
    with pytest.raises(B.BundleError, match=message):
        B.EncodeSettings(**bad).validate()


def test_cli_codec_errors_exit_2_with_the_reason(tmp_path, capsys, source):
    model, meta = source
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, model, meta)
    assert cli.main(["encode", str(ckpt), "--out", str(tmp_path / "o"), "--codec", "ffv1", "--crf", "8"]) == 2
    assert "ffv1 is lossless only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["encode", str(ckpt), "--out", str(tmp_path / "o"), "--codec", "vp9"])
    assert exc.value.code == 2 and "invalid choice: 'vp9'" in capsys.readouterr().err
    assert cli.main(["profile", str(ckpt), "--codec", "xz"]) == 2
    assert "no presets" in capsys.readouterr().err
    # av1 without --pix-fmt gets its only format, and the bundle says which codec it is
    assert cli.main(["encode", str(ckpt), "--out", str(tmp_path / "a"), "--codec", "av1", "--preset", "fast",
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["codec"] == "av1" and report["settings"]["pix_fmt"] == "yuv420"
    assert sorted(report["files"]) == ["manifest.json", "tables.bin", "w.mp4"]
    assert rd.bundle_jobs(["ffv1"], bits=[8], crfs={"ffv1": (8,)})[0].settings_dict["crf"] == 0
    with pytest.raises(rd.RDError, match="unknown codec 'vp9'"):
        rd.bundle_jobs(["vp9"])
    with pytest.raises(rd.RDError, match=r"av1 codes grids of up to 10 bits only; none of the bit depths asked for \(12\)"):
        rd.bundle_jobs(["av1"], bits=[12])


# --- baselines ---------------------------------------------------------------------------------

def test_int4_and_int8_decode_to_their_levels(source):
    model, _ = source
    for bits in (8, 4):
        c = baselines.int_zstd(model, bits)
        peak = 2 ** (bits - 1) - 1
        for name, t in video_tensors(model).items():
            d = video_tensors(c.model)[name]
            scale = float(t.detach().abs().max()) / peak
            if scale == 0:  # an all-zero tensor stays zero
                assert not d.any(), name
                continue
            levels = d / scale
            assert torch.allclose(levels, levels.round(), atol=1e-3), name
            assert float((d - t).abs().max()) <= scale / 2 * 1.001 + 1e-12, name
    assert baselines.int_zstd(model, 4).bytes < baselines.int_zstd(model, 8).bytes


# --- ctnet rd ------------------------------------------------------------------------------------

@pytest.fixture
def rd_source(tmp_path, source):
    model, meta = source
    path = tmp_path / "ctnet18.safetensors"
    save_checkpoint(path, model, meta)
    return path


def test_rd_caches_points_and_recomputes_nothing_twice(rd_source, tiny_imagenette, tmp_path, monkeypatch):
    cache = tmp_path / "rd.json"
    jobs = rd.bundle_jobs(["xz", "h264"], bits=[8], crfs={"h264": (20,)}, preset="ultrafast") + \
        rd.baseline_jobs(nncodec_qps=[], int_bits=[8])
    first = rd.sweep(rd_source, tiny_imagenette, jobs, limit=10, cache=cache)
    assert not first.errors and [p["cached"] for p in first.points] == [False] * 5
    assert first.images == 10 and all(p["images"] == 10 for p in first.points)
    by = {p["label"]: p for p in first.points}
    assert by["fp32 (weights as loaded)"]["bytes"] == first.fp32_bytes
    assert by["xz 8-bit lossless"]["bytes"] < by["h264 8-bit lossless ultrafast"]["bytes"]
    assert json.loads(cache.read_text())["format"] == "ctnet-rd-cache"

    calls = []
    measure = rd._measure
    monkeypatch.setattr(rd, "_measure", lambda job, src: calls.append(job) or measure(job, src))
    second = rd.sweep(rd_source, tiny_imagenette, jobs, limit=10, cache=cache)
    assert calls == [] and all(p["cached"] for p in second.points)
    assert [p["bytes"] for p in second.points] == [p["bytes"] for p in first.points]
    # a new point is the only one measured; another limit is another set of points
    third = rd.sweep(rd_source, tiny_imagenette, jobs + rd.baseline_jobs(nncodec_qps=[], int_bits=[4]), limit=10,
                     cache=cache)
    assert [j.codec for j in calls] == ["int4+zstd"] and sum(not p["cached"] for p in third.points) == 1
    assert len(rd.cached_points(rd_source, tiny_imagenette, 10, cache)) == 6
    assert rd.cached_points(rd_source, tiny_imagenette, 20, cache) == []


def test_rd_cli_json_schema_and_no_fake_nncodec_points(rd_source, tiny_imagenette, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(baselines, "nncodec_status", lambda: (False, "NNCodec is not importable (test)"))
    cache = tmp_path / "c.json"
    argv = ["rd", str(rd_source), "--data", str(tiny_imagenette), "--limit", "10", "--codecs", "zstd", "--bits", "8",
            "--int-bits", "8", "--nncodec-qps", "-30", "--cache", str(cache)]
    assert cli.main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"checkpoint", "data", "images", "points", "best_at_floor"} <= set(out)
    assert out["images"] == 10 and out["nncodec"] == {"available": False, "status": "NNCodec is not importable (test)"}
    for p in out["points"]:
        assert {"method", "codec", "settings", "bytes", "ratio", "acc1", "acc5", "encode_seconds", "decode_seconds",
                "cached"} <= set(p)
    assert sorted(p["codec"] for p in out["points"]) == ["fp32", "int8+zstd", "zstd"]
    best = out["best_at_floor"]
    assert best["floor"] == pytest.approx(best["reference_acc1"] - 0.3)
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "NNCodec: no points — NNCodec is not importable (test)" in text and "(cached)" in text
    cache.write_text("{}")
    assert cli.main(argv) == 2
    assert "not a ctnet rd cache file" in capsys.readouterr().err


# --- a tampered or corrupted rd cache ---------------------------------------------------------------

SHIPPED_RD = sorted((Path(__file__).resolve().parents[1] / "assets" / "demo" / "rd").glob("*.json"))
KEY = "3f2a" + "0" * 60


def _point() -> dict:
    """A bundle point's JSON form, as ``sweep`` writes it."""
    return {"method": "bundle", "codec": "hevc", "label": "hevc 8-bit lossless medium",
            "settings": {"codec": "hevc", "crf": 0, "bit_depth": 8, "pix_fmt": "gray", "preset": "medium",
                         "frame": 256, "order": "count", "bn_mode": "affine", "dither": 0.0, "seed": 0, "tile": 128},
            "bytes": 371455, "ratio": 120.5, "acc1": 88.4, "acc5": 98.4, "images": 500, "device": "cpu",
            "encode_seconds": 1.25, "decode_seconds": 0.5, "source_sha256": "b3" * 32, "data": "sample/val:10f9785b",
            "limit": None, "measured": "2026-11-30T09:01:11", "load_average": 5.11,
            "files": {"manifest.json": 1456, "tables.bin": 31914, "w.mp4": 338085},
            "streams": [{"file": "w.mp4", "bytes": 338085, "frames": 90, "params": "lossless=1"}]}


def _with(**change):
    def edit(p):
        return {**p, **change}
    return edit


def _without(name):
    def edit(p):
        return {k: v for k, v in p.items() if k != name}
    return edit


TAMPERED = [  # (how the point is edited, words the one-line error must hold)
    (_with(acc1="abc"), "'acc1' must be a number in 0..100, not 'abc'"),
    (_with(bytes=-5), "'bytes' must be an integer in 1..2**53, not -5"),
    (_with(bytes=10**400), "'bytes' must be an integer in 1..2**53, not an integer of 1329 bits"),
    (_without("acc5"), "'acc5' is missing"),
    (_with(ratio=float("nan")), "'ratio' must be a finite number > 0, not NaN"),
    (_with(settings="crf 0"), "'settings' must be an object"),
    (lambda p: list(p), "a point must be an object, not a list"),
    # and a few more that would otherwise fail deep inside the curves, the table or the page
    (_with(acc1=True), "'acc1' must be a number in 0..100, not true"),
    (_with(acc5=1e309), "'acc5' must be a number in 0..100, not Infinity"),
    (_with(bytes=1.5e6), "'bytes' must be an integer"),
    (_with(method="zip"), "'method' must be one of bundle, nncodec, int, fp16, fp32"),
    (_with(label="x\nFAKE ROW"), "'label' must be a one-line string"),
    (_with(settings={"crf": [0]}), "'settings.crf' must be a string, number, boolean or null, not a list"),
    (_with(limit=0), "'limit' must be an integer in 1..2**53 or null"),
    (_with(source_sha256="B3" * 32), "'source_sha256' must be 64 lowercase hex digits"),
    (_with(files={"w.mp4": "big"}), "'files[\"w.mp4\"]' must be a byte count"),
    (_with(streams=[{"bytes": float("inf")}]), "'streams[0].bytes' must be a JSON value"),
    (_with(notes={"deep": [[[[[[[[[[1]]]]]]]]]]}), "'notes.deep[0][0][0][0][0][0][0][0]' must be JSON"),
    (_with(cached=True), "'cached' is not a field of an rd point"),
]


def _cache_with(path, point, key=KEY):
    path.write_text(json.dumps({"format": rd.CACHE_FORMAT, "version": rd.CACHE_VERSION,
                                "points": {"ab" * 32: _point(), key: point}}))
    return path


@pytest.mark.parametrize("edit, words", TAMPERED, ids=[
    "acc1-string", "bytes-negative", "bytes-400-digits", "field-missing", "ratio-nan", "settings-not-object",
    "point-a-list", "acc1-bool", "acc5-inf", "bytes-float", "method-unknown", "label-two-lines",
    "settings-nested", "limit-zero", "sha256-uppercase", "files-string", "streams-inf", "notes-too-deep",
    "unknown-field"])
def test_a_tampered_point_is_a_one_line_error_naming_the_file_point_and_field(tmp_path, edit, words):
    cache = _cache_with(tmp_path / "x.json", edit(_point()))
    with pytest.raises(rd.RDError) as info:
        rd.read_cache(cache)
    text = str(info.value)
    assert text.startswith(f"{cache}: point 3f2a00000000…: ") and words in text and "\n" not in text
    assert len(text) < 300
    with pytest.raises(rd.RDError, match="'acc1' must be"):  # the one parser is also the constructor's check
        rd.RDPoint(**{**_point(), "acc1": "abc"})


@pytest.mark.parametrize("text, words", [
    ('{"format": "ctnet-rd-cache", "version": 1, "points": {"%s": {"bytes": %s}}}' % (KEY, "9" * 5000),
     "not a readable rd cache (ValueError: Exceeds the limit"),  # json's own 4300-digit limit
    ("[" * 100_000, "not a readable rd cache (RecursionError"),
    ('{"format": "ctnet-rd-cache", "version": true, "points": {}}', "rd cache version true"),
    ('{"format": "ctnet-rd-cache", "version": 1, "points": {"a-0": {}}}', "point key 'a-0' is not a SHA-256"),
], ids=["int-5000-digits", "nested-100000-deep", "version-true", "key-not-sha256"])
def test_a_corrupted_cache_file_is_a_one_line_error(tmp_path, text, words):
    cache = tmp_path / "x.json"
    cache.write_text(text)
    with pytest.raises(rd.RDError) as info:
        rd.read_cache(cache)
    assert str(info.value).startswith(f"{cache}: ") and words in str(info.value) and "\n" not in str(info.value)


def test_rd_cli_refuses_a_tampered_cache_with_one_line_exit_2(rd_source, tiny_imagenette, tmp_path, capsys):
    cache = tmp_path / "c.json"
    argv = ["rd", str(rd_source), "--data", str(tiny_imagenette), "--limit", "10", "--codecs", "none",
            "--int-bits", "--nncodec-qps", "--cache", str(cache)]
    for edit, words in TAMPERED[:7]:
        _cache_with(cache, edit(_point()))
        before = cache.read_bytes()
        assert cli.main(argv) == 2, words
        err = capsys.readouterr().err
        assert err.startswith(f"ctnet rd: error: {cache}: point 3f2a00000000…: ") and words in err
        assert err.count("\n") == 1 and "Traceback" not in err and "bug" not in err
        assert cache.read_bytes() == before  # never overwritten


def test_sweep_never_writes_a_malformed_point(rd_source, tiny_imagenette, tmp_path, monkeypatch):
    import ctnet.evaluate
    monkeypatch.setattr(ctnet.evaluate, "evaluate", lambda *a, **k: {"acc1": float("nan"), "acc5": 50.0,
                                                                       "images": 10, "device": "cpu"})
    cache = tmp_path / "c.json"
    result = rd.sweep(rd_source, tiny_imagenette, rd.baseline_jobs(nncodec_qps=[], int_bits=[]), limit=10,
                      cache=cache)
    assert result.points == [] and not cache.exists()
    assert result.errors[0]["error"] == "RDError: 'acc1' must be a number in 0..100, not NaN"
    with pytest.raises(TypeError, match="RDPoint"):
        rd.write_point(cache, KEY, _point())  # a plain dict is never written unchecked
    rd.write_point(cache, KEY, rd.RDPoint.from_dict(_point(), "test"))
    assert rd.read_cache(cache) == {KEY: _point()}


@pytest.mark.skipif(not SHIPPED_RD, reason="no shipped rd cache")
@pytest.mark.parametrize("path", SHIPPED_RD, ids=lambda p: p.name)
def test_the_shipped_rd_cache_parses_and_round_trips_unchanged(path):
    doc = json.loads(path.read_text())
    assert rd.read_cache(path) == doc["points"]
    for key, p in doc["points"].items():
        again = rd.RDPoint.from_dict(p, f"{path}: point {key[:12]}…").to_dict()
        assert json.dumps(again, sort_keys=True) == json.dumps(p, sort_keys=True)  # 1.0 stays 1.0, 0 stays 0
    # write_point's rewrite of the file, byte for byte
    rewritten = json.dumps({"format": rd.CACHE_FORMAT, "version": rd.CACHE_VERSION, "points": rd.read_cache(path)},
                           indent=1, sort_keys=True) + "\n"
    assert rewritten == path.read_text()


def test_best_at_floor_picks_the_smallest_point_per_codec_with_ratios_to_hevc():
    def pt(codec, nbytes, acc, method="bundle"):
        return {"method": method, "codec": codec, "label": f"{codec} {nbytes}", "settings": {}, "bytes": nbytes,
                "ratio": 1000 / nbytes, "acc1": acc, "encode_seconds": 1.0, "decode_seconds": 0.1}
    points = [pt("fp32", 1000, 86.9, "fp32"), pt("hevc", 100, 86.9), pt("hevc", 60, 86.6), pt("hevc", 40, 80.0),
              pt("xz", 50, 86.9), pt("av1", 300, 86.9), pt("nncodec", 55, 86.5, "nncodec")]
    best = rd.best_at_floor(points)
    assert best["floor"] == pytest.approx(86.6)
    rows = {r["codec"]: r for r in best["per_codec"]}
    assert rows["hevc"]["bytes"] == 60  # 86.6 counts as equal (within 0.3 inclusive)
    assert rows["xz"]["vs_hevc"] == pytest.approx(50 / 60) and rows["av1"]["vs_hevc"] == pytest.approx(5.0)
    assert best["best"]["codec"] == "xz" and best["missing"] == ["nncodec"]
    assert rd.best_at_floor(points, floor=80)["best"]["codec"] == "hevc"
    assert [p["bytes"] for p in rd.frontier(points)] == [40, 50]  # nothing bigger is more accurate


def test_default_codec_comes_from_the_environment(monkeypatch, source, tmp_path):
    from ctnet.cli.codec import encode_main
    monkeypatch.delenv("CTNET_CODEC", raising=False)
    assert V.default_codec() == "hevc"
    monkeypatch.setenv("CTNET_CODEC", "xz")
    assert V.default_codec() == "xz"
    model, meta = source
    from ctnet.checkpoint import save_checkpoint
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, model, meta)
    assert encode_main([str(ckpt), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["settings"]["codec"] == "xz"
    monkeypatch.setenv("CTNET_CODEC", "mpeg2")
    with pytest.raises(V.VideoError, match="CTNET_CODEC='mpeg2' is not a codec"):
        V.default_codec()


# --- the rd cache under concurrent writers -----------------------------------------------------

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


def test_full_split_points_are_only_those_of_the_model_on_the_whole_split(tmp_path):
    """What the app draws beside CTNet points decoded on the full val split: the baseline's
    own points on all 3,925 images — not a --limit subset, not the 500-image sample, not
    another model's."""
    import baseline_fixture as bf
    cache = bf.write_cache(tmp_path / "rd.json")
    points = rd.full_split_points(cache, bf.SHA, bf.FULL)
    assert {p["bytes"] for p in points} == bf.DRAWN
    assert all(p["images"] == bf.FULL and p["limit"] is None for p in points)
    assert rd.full_split_points(tmp_path / "none.json", bf.SHA, bf.FULL) == []
