import math

import pytest
import torch

from ctnet import dct


@pytest.mark.parametrize("n", [1, 3, 7, 16])
def test_dct_matrix_is_orthonormal_with_scaled_dc_row(n):
    c = dct.dct_matrix(n, torch.float64)
    assert torch.allclose(c @ c.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(c[0], torch.full((n,), math.sqrt(1 / n), dtype=torch.float64))
    if n > 1:  # C[k, n] = sqrt(2/N) cos(pi (2n+1) k / 2N)
        assert c[1, 0].item() == pytest.approx(math.sqrt(2 / n) * math.cos(math.pi / (2 * n)))


def test_constant_kernel_has_only_dc():
    w = torch.ones(3, 3, dtype=torch.float64)
    c = dct.dct_matrix(3, torch.float64)
    coeffs = dct.dct2(w, c, c)
    assert coeffs[0, 0].item() == pytest.approx(3.0)
    coeffs[0, 0] = 0
    assert coeffs.abs().max() < 1e-12


def test_dct2_roundtrip_rectangular():
    x = torch.randn(5, 2, 3, 7, dtype=torch.float64)
    ch, cw = dct.dct_matrix(3, torch.float64), dct.dct_matrix(7, torch.float64)
    assert torch.allclose(dct.idct2(dct.dct2(x, ch, cw), ch, cw), x, atol=1e-12)


@pytest.mark.parametrize("block", [0, 4, 16])
def test_block_dct_roundtrip(block):
    m = torch.randn(32, 48, dtype=torch.float64)
    back = dct.block_dct2(dct.block_dct2(m, block), block, inverse=True)
    assert torch.allclose(back, m, atol=1e-12)


def test_block_dct_rejects_non_multiple():
    with pytest.raises(ValueError, match="multiple"):
        dct.block_dct2(torch.zeros(10, 16), 16)


def test_zigzag_weights_follow_hevc_diagonal_scan():
    w = dct.zigzag_weights(3, 3)
    # up-right diagonal: (0,0) (1,0) (0,1) (2,0) (1,1) (0,2) (2,1) (1,2) (2,2)
    expected = torch.tensor([[1, 3, 6], [2, 5, 8], [4, 7, 9]], dtype=torch.float32)
    assert torch.equal(w, expected)
    assert dct.zigzag_weights(7, 7).max() == 49 and dct.zigzag_weights(7, 7)[0, 0] == 1


def test_radial_weights_are_bounded():
    w = dct.radial_weights(16, 16)
    assert w[0, 0] == 1.0 and w[-1, -1] == pytest.approx(3.0) and w.max() <= 3.0
