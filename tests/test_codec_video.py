"""Frames ↔ HEVC streams through PyAV's libx265: lossless is bit-exact at 8/10/12 bit in
gray and 4:2:0, per-frame packet sizes add up, output is deterministic, bad streams are
named errors."""
import numpy as np
import pytest

from ctnet.codec import video as V


def _frames(n, shape, bits, seed=0, smooth=False):
    rng = np.random.default_rng(seed)
    if smooth:
        base = rng.integers(0, 2**bits, shape)
        return [np.clip(base + rng.integers(-3, 4, shape), 0, 2**bits - 1).astype(np.uint16) for _ in range(n)]
    return [rng.integers(0, 2**bits, shape).astype(np.uint16) for _ in range(n)]


@pytest.mark.parametrize("pix_fmt", ["gray", "yuv420"])
@pytest.mark.parametrize("bits", [8, 10, 12])
@pytest.mark.parametrize("shape", [(128, 128), (64, 48)])
def test_lossless_round_trip_is_bit_exact(bits, pix_fmt, shape):
    frames = _frames(12, shape, bits, seed=bits) + _frames(5, shape, bits, seed=1, smooth=True)
    s = V.VideoSettings(bit_depth=bits, pix_fmt=pix_fmt, crf=0, preset="ultrafast")
    enc = V.encode_frames(frames, s)
    assert enc.settings.workaround == V.geometry_workaround(*shape)
    assert np.array_equal(enc.decoded, np.stack(frames))
    again = V.decode_frames(enc.data, enc.settings, height=shape[0], width=shape[1], count=17)
    assert np.array_equal(again, np.stack(frames))
    info = V.probe(enc.data)
    assert info["codec"] == "hevc" and (info["height"], info["width"], info["frames"]) == (*shape, 17)
    expected_profile = {("gray", 8): "Rext", ("gray", 10): "Rext", ("gray", 12): "Rext",
                        ("yuv420", 8): "Main", ("yuv420", 10): "Main 10", ("yuv420", 12): "Rext"}
    if enc.settings.workaround == V.INTRA:  # x265 signals intra-only streams as RExt (Main Intra)
        expected_profile = {key: "Rext" for key in expected_profile}
    assert info["profile"] == expected_profile[pix_fmt, bits]


@pytest.mark.parametrize("shape", [(16, 16), (21, 16), (64, 64), (128, 64), (16, 128)])
def test_small_noisy_frames_are_intra_coded_exact_and_deterministic(shape):
    """libx265 4.2 gets lossless inter frames of small, noisy frames wrong (and differently
    on every run); such streams are coded as intra frames, recorded in the settings."""
    frames = _frames(9, shape, 8, seed=3)
    runs = [V.encode_frames(frames, V.VideoSettings(crf=0, preset="medium")) for _ in range(2)]
    for enc in runs:
        assert np.array_equal(enc.decoded, np.stack(frames))
        assert enc.settings.workaround == V.INTRA and V.INTRA in enc.settings.encoder_params()
    assert runs[0].data == runs[1].data


def test_full_size_frames_keep_spec_settings():
    enc = V.encode_frames(_frames(5, (128, 128), 8, smooth=True), V.VideoSettings(crf=0, preset="ultrafast"))
    assert enc.settings.workaround == "" and "keyint=-1" in enc.settings.encoder_params()
    assert V.geometry_workaround(16, 128) == V.geometry_workaround(128, 64) == V.INTRA


def test_packet_sizes_cover_every_frame_and_spec_options_are_used():
    frames = _frames(20, (128, 128), 8, smooth=True)
    s = V.VideoSettings(crf=0, preset="ultrafast")
    enc = V.encode_frames(frames, s)
    assert len(enc.frame_bytes) == 20 and all(b > 0 for b in enc.frame_bytes)
    assert sum(enc.frame_bytes) < len(enc.data) < sum(enc.frame_bytes) + 2000  # container overhead
    assert sorted(enc.coded_order) == list(range(20)) and enc.coded_order != list(range(20))  # B-frames reorder
    params = s.encoder_params()
    for opt in ("keyint=-1", "bframes=16", "ref=16", "b-adapt=2", "rc-lookahead=250", "range=full", "lossless=1",
                "allow-non-conformance=1", "log-level=error"):
        assert opt in params
    assert "crf=20" in V.VideoSettings(crf=20).encoder_params()


def test_encoding_is_deterministic():
    frames = _frames(10, (128, 128), 10, smooth=True)
    s = V.VideoSettings(bit_depth=10, crf=12, preset="medium")
    assert V.encode_frames(frames, s, decode=False).data == V.encode_frames(frames, s, decode=False).data


def test_bytes_do_not_depend_on_the_machines_core_count(monkeypatch):
    """x265 sizes its thread pool from the core count and, unpinned, its frame threads too —
    which change the bytes. ``pools=N`` stands in for an N-core machine; the
    frames are the last 27 of the densest demo bundle's stream, where the difference shows."""
    import json
    from pathlib import Path

    from ctnet.codec.registry import X265
    bundle = Path(__file__).resolve().parents[1] / "assets/demo/runs/ctnet18-export-lam1e-5/bundles/best"
    coding = json.loads((bundle / "manifest.json").read_text())["coding"]
    frames = V.decode_frames((bundle / "w.mp4").read_bytes(), V.VideoSettings(bit_depth=coding["container_bits"]),
                             height=256, width=256, count=coding["coded_frames"])[-27:]
    s = V.VideoSettings(bit_depth=coding["container_bits"], preset="ultrafast")
    real = X265.params
    out = []
    for cores in (1, 16):
        monkeypatch.setattr(X265, "params", lambda self, st, n=cores: real(self, st) + f":pools={n}")
        out.append(V.encode_frames(list(frames), s, decode=False).data)
    assert out[0] == out[1]


def test_encode_reports_each_coded_frame():
    frames = _frames(12, (128, 128), 8, smooth=True)
    seen = []
    V.encode_frames(frames, V.VideoSettings(preset="ultrafast"), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 12) for i in range(1, 13)]


def test_lossy_crf_decodes_to_the_right_geometry():
    frames = _frames(6, (40, 40), 8, smooth=True)
    enc = V.encode_frames(frames, V.VideoSettings(crf=30, preset="ultrafast"))
    assert enc.decoded.shape == (6, 40, 40)
    lossless = V.encode_frames(frames, V.VideoSettings(crf=0, preset="ultrafast"))
    assert len(enc.data) < len(lossless.data)


def test_bad_streams_and_settings_are_named_errors():
    frames = _frames(8, (32, 32), 8, smooth=True)
    s = V.VideoSettings(crf=0, preset="ultrafast")
    data = V.encode_frames(frames, s).data
    with pytest.raises(V.VideoError, match="holds 8 frames, expected 9"):
        V.decode_frames(data, s, height=32, width=32, count=9)
    with pytest.raises(V.VideoError, match="32x32, expected 32x48"):
        V.decode_frames(data, s, height=32, width=48, count=8)
    with pytest.raises(V.VideoError, match="implausible"):
        V.decode_frames(data, s, height=100_000, width=32, count=8)
    with pytest.raises(V.VideoError):
        V.decode_frames(data[: len(data) // 2], s, height=32, width=32, count=8)
    with pytest.raises(V.VideoError):
        V.decode_frames(b"not a video at all" * 10, s, height=32, width=32, count=8)
    with pytest.raises(V.VideoError, match="decodes to gray10le|expected gray"):
        V.decode_frames(data, V.VideoSettings(bit_depth=10), height=32, width=32, count=8)
    with pytest.raises(V.VideoError, match="values outside"):
        V.encode_frames([np.full((16, 16), 300, np.uint16)], s)
    with pytest.raises(V.VideoError, match="even"):
        V.encode_frames([np.zeros((17, 16), np.uint16)], V.VideoSettings(pix_fmt="yuv420"))
    for bad in (dict(bit_depth=9), dict(pix_fmt="rgb"), dict(crf=52), dict(preset="warp"), dict(codec="av1")):
        with pytest.raises(V.VideoError):
            V.VideoSettings(**bad).validate()
