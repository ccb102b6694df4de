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
    for bits in (8, 10, 12):
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
