"""ctnet.inspect: what the pages draw equals what the codec and training compute."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest

from ctnet import api, export
from ctnet import inspect as ci
from ctnet.codec import video


@pytest.fixture(scope="module")
def loaded(demo_dir):
    bundle = next(demo_dir.glob("runs/*/bundles/*"))
    return api.load_any(bundle)


@pytest.fixture(scope="module")
def model_meta(loaded):
    return loaded.model, loaded.meta


@pytest.fixture(scope="module")
def encoded(loaded):
    return api.encode(loaded, preset="ultrafast")


def test_layer_table_has_bits_per_nonzero_and_entropy(encoded):
    rows = ci.encode_layer_table(encoded.layers)
    conv = next(r for r in rows if r["layer"] == "layer1.0.conv1.weight_dct")
    assert conv["bits/nz"] == pytest.approx(8 * conv["bytes"] / conv["non-zero"])
    assert 0 < conv["H0 bits/nz"] < 32


def test_frames_are_the_codecs_frames(model_meta, encoded):
    """The Frames page's frames, plan and bytes are exactly the encoder's (format v2)."""
    model, meta = model_meta
    cf = ci.coded_frames(model, meta, api.EncodeSettings(**encoded.settings))
    assert np.array_equal(cf.pixels, encoded.frames)
    assert cf.plan_frames == len(encoded.frame_info)
    assert cf.ids == [k for k, f in enumerate(encoded.frame_info) if f["coded"]]
    assert [f["layer"] for f in cf.info] == [f["layer"] for f in encoded.frame_info]
    assert cf.frame == 256 and cf.pixels.shape[1:] == (256, 256)
    first = cf.labels[0]
    assert first.startswith(cf.info[cf.ids[0]]["layer"]) and "rows" in first and "cols" in first
    # bytes per layer from bytes per plan frame add up to the weight stream's
    per_layer = ci.layer_bytes(encoded.frame_info, [f["bytes"] for f in encoded.frame_info])
    assert sum(per_layer.values()) == sum(sum(s["frame_bytes"]) for s in encoded.streams)
    for layer in encoded.layers:
        if layer["kind"] == "weight":
            assert per_layer.get(layer["name"], 0) == layer["bytes"]
    view = ci.level_view(cf.pixels[:3], cf.container_bits)
    assert view.dtype == np.uint8 and view.shape == cf.pixels[:3].shape


def test_grid_counts_are_the_bundles(model_meta, loaded, encoded):
    """Coefficients' default count (levels ≠ 0 on the export grid) is what the encoder codes."""
    model, meta = model_meta
    rows = {r["layer"]: r for r in ci.grid_stats(model, meta)}
    for layer in encoded.layers:
        if layer["kind"] == "weight":
            assert rows[layer["name"]]["non-zero"] == layer["nonzero"]
    assert sum(r["non-zero"] for r in rows.values()) == encoded.nonzero
    summary = ci.layer_summary(loaded)
    assert {n: v["non-zero"] for n, v in summary.items()} == {n: r["non-zero"] for n, r in rows.items()}


def test_sparsity_map_counts_the_grids_levels(model_meta):
    model, meta = model_meta
    rows = {r["layer"]: r for r in ci.grid_stats(model, meta)}
    name = "layer2.0.conv1.weight_dct"
    m = ci.level_frequency_map(model, meta, name)
    assert m.shape == (3, 3) and round(m.sum() * rows[name]["values"] / m.size) == rows[name]["non-zero"]
    assert ci.level_frequency_map(model, meta, "fc.weight") is None


def test_compare_layers():
    a = {"x": {"bytes": 100, "non-zero": 50}, "y": {"bytes": None, "non-zero": 10}}
    b = {"x": {"bytes": 80, "non-zero": 40}}
    rows = ci.compare_layers(a, b)
    assert rows[0]["Δ bytes"] == -20 and rows[0]["bits/nz A"] == 16.0 and rows[0]["bits/nz B"] == 16.0
    assert rows[1]["bytes B"] is None and rows[1]["Δ non-zero"] is None


def test_reconstruction_errors_agree_with_the_encoder(model_meta, encoded):
    model, _ = model_meta
    errors = ci.reconstruction_errors(model, encoded.model)
    for layer in encoded.layers:
        if layer["kind"] == "weight":
            assert errors[layer["name"]]["max_abs"] == pytest.approx(layer["max_abs_error"], abs=1e-12)
            assert errors[layer["name"]]["rms"] <= errors[layer["name"]]["max_abs"]
    for name, e in ci.layer_errors(encoded.layers).items():  # what the lab's worker sends: measured once, the same
        assert e == pytest.approx(errors[name], rel=1e-9, abs=1e-15), name
    rows = ci.encode_layer_table(encoded.layers, errors)
    conv1 = next(r for r in rows if r["layer"] == "conv1.weight_dct")
    assert conv1["bits/coeff"] == pytest.approx(8 * conv1["bytes"] / (64 * 3 * 7 * 7))
    changes = ci.encode_changes(encoded.layers, encoded.layers)
    assert all(c["Δ bytes"] == 0 for c in changes)


def test_layer_stats_count_like_training(model_meta):
    model, _ = model_meta
    for q in (0.1, 0.01):
        rows = ci.layer_stats(model, q)
        assert sum(r["non-zero"] for r in rows) == export.nonzero_coefficients(model, q)
    kinds = {r["layer"]: r["kind"] for r in rows}
    assert kinds["conv1.weight_dct"] == ci.KIND_SPATIAL
    assert kinds["layer2.0.downsample.0.weight_dct"] == ci.KIND_CHANNEL
    assert kinds["fc.weight"] == ci.KIND_PLAIN


def test_frequency_maps(model_meta):
    model, _ = model_meta
    w = model.conv1.weight_dct.detach().double()
    maps = ci.frequency_maps(model, "conv1.weight_dct", 0.1)
    assert maps.energy.shape == (7, 7)
    assert np.allclose(maps.energy, (w ** 2).mean((0, 1)).numpy())
    assert np.allclose(maps.nonzero, (w.abs() >= 0.05).double().mean((0, 1)).numpy())
    channel = ci.frequency_maps(model, "layer3.0.downsample.0.weight_dct", 0.1)
    assert channel.energy.shape == (16, 16)
    m = model.layer3[0].downsample[0].weight_dct.detach().double()
    assert channel.energy.mean() == pytest.approx(float((m ** 2).mean()))
    assert ci.frequency_maps(model, "fc.weight", 0.1) is None


def test_histogram_and_images(model_meta):
    model, _ = model_meta
    t = model.layer1[0].conv1.weight_dct.detach()
    h = ci.magnitude_histogram(t, 0.1)
    assert h.counts.sum() + h.zeros == t.numel()
    assert h.above == int((t.abs() >= 0.05).sum()) and h.above + h.below + h.zeros == t.numel()
    img = ci.coefficient_image(t)
    assert img.shape == (64 * 3, 64 * 3)
    assert img[3 * 5 + 1, 3 * 7 + 2] == t[5, 7, 1, 2]  # (O·Kh, I·Kw) layout
    logm = ci.log_magnitude(np.array([[0.0, 1e-9, 0.1, -10.0]]), floor=1e-6)
    assert logm[0].tolist() == pytest.approx([-6, -6, -1, 1])


def test_max_pool_keeps_isolated_values():
    img = np.zeros((10, 7))
    img[9, 6] = 5.0
    pooled, k = ci.max_pool(img, 4)
    assert k == 3 and pooled.shape == (4, 3) and pooled[3, 2] == 5.0 and pooled.sum() == 5.0
    same, k = ci.max_pool(img, 10)
    assert k == 1 and same is img


def test_frame_views():
    frames = np.full((3, 20, 20), 128, np.uint16)
    frames[1, 5, 5] = 200
    frames[2] = 130
    assert ci.adjacent_mse(frames).tolist() == pytest.approx([72 ** 2 / 400, (70 ** 2 + 399 * 4) / 400])
    assert ci.adjacent_mse(frames, [0, 2, 1]).tolist() == pytest.approx([4.0, (70 ** 2 + 399 * 4) / 400])
    assert ci.zero_levels(frames).tolist() == [128, 128, 130]
    view = ci.magnitude_view(frames)
    assert view[0].max() == 0 and view[1, 5, 5] == 255 and view[2].max() == 0
    grid = ci.thumbnail_grid(view, [1, 0, 2], thumb=8, columns=2, gap=1, pool="max")
    assert grid.shape == (2 * 7 + 1, 2 * 7 + 1)
    assert grid[:7, :7].max() == 255 and grid[:7, 8:].max() == 0  # frame 1 first, its pixel kept
    assert ci.to_uint8(np.array([1023], np.uint16), 10).tolist() == [255]
    assert ci.upscale(view, 2).shape == (3, 40, 40)


def test_preview_mp4_plays_as_h264():
    frames = [np.full((21, 33), 16 * i, np.uint8) for i in range(10)]
    data = video.preview_mp4(frames, fps=6)
    with av.open(io.BytesIO(data)) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "h264" and (st.width, st.height) == (34, 22)
        decoded = [f.to_ndarray(format="gray") for f in c.decode(st)]
    assert len(decoded) == 10
    assert abs(int(decoded[5][:21, :33].mean()) - 80) <= 2  # lossy, but it is the frame
    with pytest.raises(video.VideoError, match="no frames"):
        video.preview_mp4([], 6)
    with pytest.raises(video.VideoError, match="expected uint8"):
        video.preview_mp4([frames[0], frames[0].astype(np.uint16)], 6)
