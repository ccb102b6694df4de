"""Tensors ↔ frames: the quantisation grid is ctnet.quant's, dither is removed exactly, the
error stays within half a step, padding and ordering are reversible."""
import numpy as np
import pytest
import torch

from ctnet import quant
from ctnet.codec import frames as F

SHAPES = [(64, 3, 7, 7), (130, 70, 3, 3), (10, 512), (1, 10), (300,)]


def _rand(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 0.1


def _assemble(tf):
    return F.dequantize_tensor(tf.pixels, tf.scale, tf.zero_point, tf.shape, first_frame=tf.first_frame)


@pytest.mark.parametrize("bits", [8, 10, 12])
@pytest.mark.parametrize("shape", SHAPES)
def test_frames_decode_to_exactly_what_training_simulates(shape, bits):
    t = _rand(shape, bits)
    tf = F.quantize_tensor("x", t, bits=bits)
    decoded = _assemble(tf)
    assert torch.equal(decoded, quant.fake_quantize(t, bits).detach())
    assert all(p.dtype == np.uint16 and int(p.max()) <= 2**bits - 1 for p in tf.pixels)
    assert tf.scale.dtype == np.float32 and len(tf.scale) == len(tf.boxes) == len(tf.pixels)


@pytest.mark.parametrize("dither", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("bits", [8, 12])
def test_error_per_frame_within_half_step(bits, dither):
    t = _rand((256, 130, 3, 3), 7)
    t[0, 0, 0, 0] = 5.0  # one outlier tile with a large step
    tf = F.quantize_tensor("x", t, bits=bits, dither=dither, seed=3, first_frame=11)
    decoded = F.dequantize_tensor(tf.pixels, tf.scale, tf.zero_point, tf.shape, first_frame=11, dither=dither, seed=3)
    err = quant.tensor_to_image((decoded - t).abs())
    for k, (r0, c0, h, w) in enumerate(tf.boxes):
        step = float(tf.scale[k])
        # half a step, plus float32 rounding of v/step and of the product (≤ 2^b·2^-23 steps)
        assert float(err[r0:r0 + h, c0:c0 + w].max()) <= step * (0.5 + 2**bits * 2**-23), (k, step)


def test_dither_is_subtractive_seeded_and_removed_exactly():
    t = _rand((128, 128), 1)
    a = F.quantize_tensor("x", t, bits=8, dither=1.0, seed=5)
    b = F.quantize_tensor("x", t, bits=8, dither=1.0, seed=5)
    c = F.quantize_tensor("x", t, bits=8, dither=1.0, seed=6)
    assert all(np.array_equal(p, q) for p, q in zip(a.pixels, b.pixels))
    assert not all(np.array_equal(p, q) for p, q in zip(a.pixels, c.pixels))
    # decoding subtracts exactly the noise that was added: quant's own formula with the offset
    offset = torch.from_numpy(F.dither_offset(5, 0, (128, 128), 1.0))
    ref = quant.dequantize_image(torch.from_numpy(a.pixels[0].astype(np.int64)), torch.tensor([[a.scale[0]]]),
                                 torch.tensor([[a.zero_point[0]]]), offset=offset)
    got = F.dequantize_tensor(a.pixels, a.scale, a.zero_point, a.shape, dither=1.0, seed=5)
    assert torch.equal(got, ref)
    # forgetting the dither on decode is measurably worse than removing it
    plain = F.dequantize_tensor(a.pixels, a.scale, a.zero_point, a.shape)
    assert float((plain - t).abs().mean()) > float((got - t).abs().mean())
    noise = F.dither_offset(5, 0, (64, 64), 2.0)
    assert noise.dtype == np.float32 and -1.0 <= noise.min() and noise.max() < 1.0
    assert not np.array_equal(noise, F.dither_offset(5, 1, (64, 64), 2.0))


def test_fast_dequantize_matches_quant_bit_for_bit():
    t = _rand((200, 150), 2)
    img = quant.tensor_to_image(t)
    offset = torch.rand(img.shape, generator=torch.Generator().manual_seed(0)) - 0.5
    pixels, scale, zp = quant.quantize_image(img, 10, offset=offset)
    ref = quant.dequantize_image(pixels, scale, zp, offset=None)
    boxes = quant.tile_boxes(*img.shape)
    tiles = [pixels[r0:r0 + h, c0:c0 + w].numpy().astype(np.uint16) for r0, c0, h, w in boxes]
    got = F.dequantize_tensor(tiles, scale.numpy(), zp.numpy(), tuple(t.shape))
    assert torch.equal(got, ref)


def test_bad_dither_and_frame_counts_are_refused():
    with pytest.raises(ValueError, match="dither"):
        F.check_dither(-1)
    with pytest.raises(ValueError, match="dither"):
        F.check_dither(float("nan"))
    tf = F.quantize_tensor("x", _rand((10, 300)), bits=8)
    with pytest.raises(ValueError, match="expected 3 frames"):
        F.dequantize_tensor(tf.pixels[:2], tf.scale, tf.zero_point, tf.shape)
    with pytest.raises(ValueError, match="shape"):
        F.dequantize_tensor([p[:, :5] for p in tf.pixels], tf.scale, tf.zero_point, tf.shape)


def test_padding_is_circular_and_sizes_follow_the_rules():
    p = np.arange(10, dtype=np.uint16).reshape(1, 10)
    padded = F.pad_frame(p, F.coded_size(1, 10))
    assert padded.shape == (16, 16)
    assert np.array_equal(padded[:1, :10], p) and np.array_equal(padded[5, :10], p[0])
    assert np.array_equal(padded[0, 10:], p[0, :6])  # wraps around
    assert F.coded_size(128, 21) == (128, 21)
    assert F.coded_size(128, 21, even=True) == (128, 22)
    assert F.coded_size(4, 512 % 128 or 128) == (16, 128)
    assert F.coded_size(4, 21, even=True, square=128) == (128, 128)


def test_similarity_order_is_a_deterministic_permutation_that_groups_alike_frames():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 50, (16, 16)), rng.integers(200, 255, (16, 16))
    frames = np.stack([a, b, a + 1, b - 1, a + 2, b - 2]).astype(np.uint16)
    order = F.similarity_order(frames)
    assert order == F.similarity_order(frames.copy())
    assert sorted(order) == list(range(6)) and order[0] == 0
    assert order == [0, 2, 4, 5, 3, 1]  # all a-like frames first, then b-like ones, nearest first
    assert F.stream_order(frames, "natural") == list(range(6))
    with pytest.raises(ValueError, match="frame order"):
        F.stream_order(frames, "random")
