"""ctnet.inspect: what the pages draw equals what the codec and training compute."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch

from ctnet import api, export
from ctnet import inspect as ci
from ctnet.codec import video


@pytest.fixture(scope="module")
def model_meta(demo_dir):
    bundle = next(demo_dir.glob("runs/*/bundles/*"))
    return api.load_any(bundle)


@pytest.fixture(scope="module")
def encoded(model_meta):
    model, meta = model_meta
    return api.encode(model, meta, preset="ultrafast")


def test_frames_are_the_codecs_frames(model_meta, encoded):
    """The Frames page's streams, similarity order and bytes are exactly the encoder's."""
    model, _ = model_meta
    streams = {s.name: s for s in ci.model_streams(model, bit_depth=8, tile=128)}
    assert {f"{n}.mp4" for n in streams} == {s["file"] for s in encoded["streams"]}
    for s in encoded["streams"]:
        mine = streams[s["file"][:-4]]
        order = ci.similarity_order(mine.frames)
        assert s["order"] == [mine.ids[j] for j in order]
        assert np.array_equal(encoded["frames_coded"][s["file"]], mine.frames[order])
        assert sum(s["frame_bytes"]) <= s["bytes"]
    assert ci.frame_bytes_from_streams(encoded["streams"]) == ci.frame_bytes_from_manifest(encoded["manifest"])
    # the largest stream first: what the page opens on
    assert ci.model_streams(model)[0].name == "w_128x128"


def test_yuv420_frames_are_the_codecs_frames(model_meta):
    """4:2:0 pads every tile to one square frame size: the page follows the codec's rule."""
    model, meta = model_meta
    enc = api.encode(model, meta, preset="ultrafast", pix_fmt="yuv420", order="natural")
    streams = ci.model_streams(model, pix_fmt="yuv420")
    assert [f"{s.name}.mp4" for s in streams] == [s["file"] for s in enc["streams"]]
    for mine, theirs in zip(streams, enc["streams"]):
        assert np.array_equal(enc["frames_coded"][theirs["file"]], mine.frames)
        assert theirs["order"] == mine.ids


def test_reconstruction_errors_agree_with_the_encoder(model_meta, encoded):
    model, _ = model_meta
    errors = ci.reconstruction_errors(model, encoded["model"])
    for layer in encoded["layers"]:
        if layer["kind"] == "weight":
            assert errors[layer["name"]]["max_abs"] == pytest.approx(layer["max_abs_error"], abs=1e-12)
            assert errors[layer["name"]]["rms"] <= errors[layer["name"]]["max_abs"]
    rows = ci.encode_layer_table(encoded["layers"], errors)
    conv1 = next(r for r in rows if r["layer"] == "conv1.weight_dct")
    assert conv1["bits/coeff"] == pytest.approx(8 * conv1["bytes"] / (64 * 3 * 7 * 7))
    changes = ci.encode_changes(encoded["layers"], encoded["layers"])
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


def test_bn_frames_join_only_as_video(model_meta):
    model, _ = model_meta
    plain = ci.model_streams(model)
    with_bn = ci.model_streams(model, bn_bit_depth=12)
    assert not any(s.kind == "bn" for s in plain)
    bn = [s for s in with_bn if s.kind == "bn"]
    assert bn and sum(len(s.ids) for s in bn) == sum(
        -(-m.num_features // 128) for m in export.bn_layers(model).values())
    assert torch.is_tensor(model.bn1.running_var)
