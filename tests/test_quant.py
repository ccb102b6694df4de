import pytest
import torch

from ctnet.quant import (dequantize_image, entropy_bits, fake_quantize, image_to_tensor, quantize_image,
                         tensor_to_image, tile_boxes)


def test_image_layout_roundtrip_and_kernel_blocks():
    t = torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3, 3)
    img = tensor_to_image(t)
    assert img.shape == (6, 9)
    assert torch.equal(img[0:3, 3:6], t[0, 1])  # filter (o=0, i=1) is one 3×3 block
    assert torch.equal(image_to_tensor(img, t.shape), t)
    assert tensor_to_image(torch.ones(5)).shape == (1, 5)


def test_tiles_cover_image():
    boxes = tile_boxes(300, 130, 128)
    assert len(boxes) == 6 and boxes[-1] == (256, 128, 44, 2)
    assert sum(h * w for _, _, h, w in boxes) == 300 * 130


def test_error_at_most_half_step_zero_exact_and_idempotent():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(300, 200, generator=g) * torch.rand(300, 200, generator=g)
    img[img.abs() < 0.3] = 0
    for bits in range(4, 13):
        px, scale, zp = quantize_image(img, bits)
        assert px.min() >= 0 and px.max() <= 2**bits - 1
        dec = dequantize_image(px, scale, zp)
        for (r, c, h, w), s in zip(tile_boxes(300, 200), scale.flatten()):
            assert (dec[r:r + h, c:c + w] - img[r:r + h, c:c + w]).abs().max() <= s / 2 + 1e-7
        assert torch.all(dec[img == 0] == 0)  # 0 is a level: zero coefficients stay zero
        px2, _, _ = quantize_image(dec, bits)
        assert torch.equal(px2, px)  # re-encoding a decoded tile changes nothing


def test_fake_quantize_is_exact_in_forward():
    t = torch.randn(16, 8, 3, 3, requires_grad=True)
    q = fake_quantize(t, 8)
    px, s, z = quantize_image(tensor_to_image(t), 8)
    assert torch.equal(q, image_to_tensor(dequantize_image(px, s, z), t.shape))
    q.sum().backward()
    assert torch.equal(t.grad, torch.ones_like(t))


def test_entropy_of_constant_and_uniform_tiles():
    zeros = torch.zeros(128, 128)
    assert entropy_bits(zeros, 8) == (0.0, 0)
    two_levels = torch.zeros(128, 128)
    two_levels[:, :64] = 1.0
    bits, off_zero = entropy_bits(two_levels, 8)
    assert abs(bits - 128 * 128) < 1e-6 and off_zero == 128 * 64


def _gather_reference(t, bits, tile=128):
    """The pre-issue-13 fake quantisation: per-element gathers of scatter-reduced tile stats."""
    from ctnet.quant import image_shape, tile_grid, tile_index
    ids = tile_index(t.shape, tile).reshape(-1)
    n = tile_grid(*image_shape(t.shape), tile)
    flat = t.detach().float().reshape(-1)
    lo = torch.zeros(n[0] * n[1]).scatter_reduce(0, ids, flat, "amin")
    hi = torch.zeros(n[0] * n[1]).scatter_reduce(0, ids, flat, "amax")
    scale = (hi - lo) / float(2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zp = torch.round(-lo / scale).clamp(0, 2**bits - 1)
    step, zero = scale[ids].reshape(t.shape), zp[ids].reshape(t.shape)
    levels = torch.clamp(torch.round(t.detach().float() / step) + zero, 0, 2**bits - 1) - zero
    return (levels * step).to(t.dtype), scale, zp.to(torch.int64)


def test_dense_tile_statistics_are_bit_exact_for_every_layout():
    from ctnet.quant import export_step, tile_index, tile_params
    g = torch.Generator().manual_seed(1)
    for shape in [(64, 3, 7, 7), (130, 3, 3, 3), (300, 200), (256, 256), (10, 512), (700,), (1, 1, 3, 3)]:
        for dtype in (torch.float32, torch.float64):
            t = (torch.randn(shape, generator=g) * torch.rand(shape, generator=g)).to(dtype)
            t[t.abs() < 0.1] = 0
            for bits in (4, 6, 7, 8, 10, 12):
                ref, scale, zp = _gather_reference(t, bits)
                got = fake_quantize(t, bits)
                assert torch.equal(got, ref) and got.dtype == dtype and got.is_contiguous(), (shape, dtype, bits)
                s2, z2 = tile_params(tensor_to_image(t), bits)
                assert torch.equal(s2.reshape(-1), scale) and torch.equal(z2.reshape(-1), zp)
                px, s, z = quantize_image(tensor_to_image(t), bits)
                assert torch.equal(got.float(), image_to_tensor(dequantize_image(px, s, z), t.shape))
        if len(shape) == 4:  # CUDA training keeps parameters channels-last
            cl = t.float().contiguous(memory_format=torch.channels_last)
            assert torch.equal(fake_quantize(cl, 8), _gather_reference(t.float(), 8)[0])
            assert torch.equal(export_step(cl, 8), _gather_reference(t.float(), 8)[1][tile_index(shape)])
    assert torch.equal(fake_quantize(torch.zeros(3, 3), 8), torch.zeros(3, 3))


def test_shared_export_grids_compute_once_per_version(monkeypatch):
    from ctnet import quant
    calls = []
    real = quant._grid_params
    monkeypatch.setattr(quant, "_grid_params", lambda *a: calls.append(1) or real(*a))
    p = torch.nn.Parameter(torch.randn(8, 4, 3, 3))
    with quant.shared_export_grids():
        q1 = quant.fake_quantize(p, 8)
        step = quant.export_step(p, 8)
        assert len(calls) == 1  # the STE and the rate proxy read the same statistics
        quant.fake_quantize(p, 10)
        assert len(calls) == 2  # other bit depth, other grid
        with torch.no_grad():
            p.mul_(2)  # an optimizer step: the version moves, the entry is stale
        q2 = quant.fake_quantize(p, 8)
        assert len(calls) == 3 and torch.equal(q2, 2 * q1) and step.shape == p.shape
    quant.fake_quantize(p, 8)
    quant.fake_quantize(p, 8)
    assert len(calls) == 5  # outside the scope nothing is cached


def test_compiled_export_simulation_is_bit_exact(monkeypatch):
    import importlib
    quant = importlib.import_module("ctnet.quant")
    if not hasattr(torch, "compile"):
        return
    monkeypatch.setenv("CTNET_COMPILE", "1")  # every size through torch.compile (CPU: C++)
    g = torch.Generator().manual_seed(2)
    for shape, bits in [((64, 3, 7, 7), 8), ((300, 200), 6), ((20, 10, 3, 3), 10), ((700,), 12), ((40, 8), 4)]:
        for magnitude in (1e-3, 1.0, 1e3):
            t = torch.randn(shape, generator=g) * magnitude
            assert torch.equal(quant.fake_quantize(t, bits), _gather_reference(t, bits)[0]), (shape, bits, magnitude)
    assert quant._DECODE_COMPILED is not False  # it compiled (else it warned and ran eagerly)


def test_grids_outside_4_to_12_bits_are_refused():
    import pytest
    for bits in (3, 13):
        with pytest.raises(ValueError, match="bit depth must be 4..12"):
            fake_quantize(torch.ones(4, 4), bits)


def _codec_offset(shape, bits, amplitude, seed, first_frame):
    """The offset image the codec draws for one tensor (frame numbers from ``first_frame``)."""
    import numpy as np
    from ctnet.codec.frames import dither_offset
    from ctnet.quant import image_shape
    h, w = image_shape(shape)
    offset = np.zeros((h, w), np.float32)
    for k, (r0, c0, th, tw) in enumerate(tile_boxes(h, w)):
        offset[r0:r0 + th, c0:c0 + tw] = dither_offset(seed, first_frame + k, (th, tw), amplitude)
    return torch.from_numpy(offset)


def test_export_dither_zero_is_todays_simulation_bit_for_bit():
    g = torch.Generator().manual_seed(4)
    for shape in [(64, 3, 7, 7), (300, 200), (700,)]:
        t = (torch.randn(shape, generator=g) * torch.rand(shape, generator=g)).requires_grad_()
        for bits in (4, 6, 8):
            ref = _gather_reference(t, bits)[0]
            got = fake_quantize(t, bits, dither=0.0)
            assert torch.equal(got, ref) and torch.equal(got, fake_quantize(t, bits))
            (grad,) = torch.autograd.grad((got * torch.arange(got.numel()).reshape(shape)).sum(), t)
            assert torch.equal(grad, torch.arange(t.numel(), dtype=t.dtype).reshape(shape))


def test_export_dither_is_the_codecs_dithered_bundle_exactly():
    import numpy as np
    from ctnet.codec import frames as F
    from ctnet.quant import dither_margin, tile_params
    g = torch.Generator().manual_seed(5)
    for shape in [(20, 9, 3, 3), (300, 200)]:  # one tile; six tiles with ragged edges
        t = (torch.randn(shape, generator=g) * torch.rand(shape, generator=g)).requires_grad_()
        img = tensor_to_image(t.detach())
        for bits, amp in [(4, 0.5), (5, 1.0), (6, 0.5), (6, 3.0), (8, 4.0)]:
            tf = F.quantize_tensor("w", t, bits=bits, dither=amp, seed=3, first_frame=7)
            decoded = F.dequantize_tensor(tf.pixels, tf.scale, tf.zero_point, tf.shape, first_frame=7,
                                          dither=amp, seed=3)
            offset = _codec_offset(shape, bits, amp, 3, 7)
            got = fake_quantize(t, bits, dither=amp, offset=offset)
            assert torch.equal(got, decoded), (shape, bits, amp)
            (grad,) = torch.autograd.grad(got.sum(), t)
            assert torch.equal(grad, torch.ones_like(t))  # straight through
            # on the dithered grid: (level − offset)·step, levels inside 0..2^b − 1 around the zero point
            scale, zero = tile_params(img, bits, dither=amp)
            assert np.array_equal(scale.reshape(-1).numpy(), tf.scale) and np.array_equal(zero.reshape(-1).numpy(),
                                                                                          tf.zero_point)
            m = dither_margin(amp)
            assert int(zero.min()) >= m
            out = tensor_to_image(got.detach())
            for k, (r0, c0, h, w) in enumerate(tile_boxes(*img.shape)):
                s, z = scale.reshape(-1)[k], zero.reshape(-1)[k]
                level = out[r0:r0 + h, c0:c0 + w] / s + offset[r0:r0 + h, c0:c0 + w]
                assert (level - level.round()).abs().max() < 1e-3
                assert level.round().min() + z >= 0 and level.round().max() + z <= 2**bits - 1
                x = img[r0:r0 + h, c0:c0 + w]
                assert (out[r0:r0 + h, c0:c0 + w] - x).abs().max() <= s / 2 * (1 + 1e-5)  # within half a step
                lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
                assert float(s) == pytest.approx((hi - lo) / (2**bits - 1 - 2 * m), rel=1e-6)  # the margin's step


def test_export_dither_draws_a_fresh_offset_each_call():
    t = torch.randn(40, 30)
    torch.manual_seed(0)
    a, b = fake_quantize(t, 4, dither=1.0), fake_quantize(t, 4, dither=1.0)
    torch.manual_seed(0)
    assert not torch.equal(a, b) and torch.equal(fake_quantize(t, 4, dither=1.0), a)  # fresh, yet seeded
    step = (t.max() - t.min()) / (15 - 2 * 1)
    assert (a - t).abs().max() <= step / 2 * (1 + 1e-5) and (b - t).abs().max() <= step / 2 * (1 + 1e-5)
    with pytest.raises(ValueError, match="offset of shape"):
        fake_quantize(t, 4, dither=1.0, offset=torch.zeros(30, 40))
    with pytest.raises(ValueError, match="needs a dither"):
        fake_quantize(t, 4, offset=torch.zeros(40, 30))
