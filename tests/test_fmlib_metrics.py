"""Unit tests for fmlib.metrics: exact W2 and MMD against known answers."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib.metrics import mmd, wasserstein2

F64 = torch.float64


BANDWIDTHS = (0.1, 0.5, 1.0, 2.0, 5.0)


def _cloud(n=40, d=2, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ------------------------------------------------------------------------------------------------ wasserstein2
def test_w2_translation_equals_shift_length():
    x = _cloud()
    shift = torch.tensor([3.0, -4.0], dtype=F64)
    assert wasserstein2(x, x + shift) == pytest.approx(5.0, rel=1e-9)
    # also for a permuted copy (the optimal plan is not the identity ordering)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    assert wasserstein2(x, x[perm] + shift) == pytest.approx(5.0, rel=1e-9)


def test_w2_one_dimensional_sorted_matching():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 1, generator=g, dtype=F64)
    y = torch.rand(50, 1, generator=g, dtype=F64) * 3 + 1
    ref = math.sqrt(float(((torch.sort(x[:, 0]).values - torch.sort(y[:, 0]).values) ** 2).mean()))
    assert wasserstein2(x, y) == pytest.approx(ref, rel=1e-9)


def test_w2_unequal_sizes_known_answer():
    # all mass of x at 0, y uniform on {1, 3}: W2^2 = (1 + 9) / 2
    x = torch.zeros(3, 1, dtype=F64)
    y = torch.tensor([[1.0], [3.0]], dtype=F64)
    assert wasserstein2(x, y) == pytest.approx(math.sqrt(5.0), rel=1e-12)


def test_w2_zero_for_identical_and_symmetric():
    x, y = _cloud(seed=3), _cloud(n=30, seed=4) + 1.0
    assert wasserstein2(x, x) == pytest.approx(0.0, abs=1e-7)  # sqrt of a rounding-level W2^2
    assert wasserstein2(x, x.flip(0)) == pytest.approx(0.0, abs=1e-7)
    assert wasserstein2(x, y) == pytest.approx(wasserstein2(y, x), rel=1e-12)
    assert wasserstein2(x, y) > 0.5


def test_w2_accepts_float32_and_grad_tensors():
    x = _cloud().float().requires_grad_(True)
    assert wasserstein2(x, x.detach() + torch.tensor([0.0, 2.0])) == pytest.approx(2.0, rel=1e-6)


def test_w2_errors():
    x = _cloud()
    with pytest.raises(ValueError, match=r"x and y must have the same dim; got \(40, 2\) and \(40, 3\)"):
        wasserstein2(x, _cloud(d=3))
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="x and y must be finite"):
        wasserstein2(x, bad)
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="x and y must be finite"):
        wasserstein2(bad, x)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim\)"):
        wasserstein2(x[:, 0], x)
    with pytest.raises(ValueError, match=r"y must have shape \(batch, dim\)"):
        wasserstein2(x, x[None])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        wasserstein2(x.numpy(), x)


# ------------------------------------------------------------------------------------------------------- mmd
def test_mmd_single_points_known_answer():
    a = torch.tensor([[0.0, 0.0]], dtype=F64)
    b = torch.tensor([[1.0, 2.0]], dtype=F64)
    d2 = 5.0
    ref = sum(2 - 2 * math.exp(-d2 / (2 * h * h)) for h in BANDWIDTHS)
    assert mmd(a, b) == pytest.approx(ref, rel=1e-12)
    assert mmd(a, b, bandwidths=[1.0]) == pytest.approx(2 - 2 * math.exp(-2.5), rel=1e-12)


def test_mmd_two_point_sets_known_answer():
    # x = {0, 1}, y = {2}, one bandwidth h: k(x,x') mean = (2 + 2 e^{-1/2h^2}) / 4, k(y,y) = 1,
    # k(x, y) mean = (e^{-4/2h^2} + e^{-1/2h^2}) / 2
    h = 1.3
    k = lambda d2: math.exp(-d2 / (2 * h * h))  # noqa: E731
    x = torch.tensor([[0.0], [1.0]], dtype=F64)
    y = torch.tensor([[2.0]], dtype=F64)
    ref = (2 + 2 * k(1.0)) / 4 + 1 - 2 * (k(4.0) + k(1.0)) / 2
    assert mmd(x, y, bandwidths=(h,)) == pytest.approx(ref, rel=1e-12)


def test_mmd_zero_for_identical_positive_for_different_and_symmetric():
    x, y = _cloud(seed=5), _cloud(seed=6) * 2 + 1
    assert mmd(x, x) == pytest.approx(0.0, abs=1e-12)
    assert mmd(x, x.flip(0)) == pytest.approx(0.0, abs=1e-12)
    assert mmd(x, y) > 0.1
    assert mmd(x, y) == pytest.approx(mmd(y, x), rel=1e-12)
    # farther apart: larger discrepancy
    assert mmd(x, x + 3.0) > mmd(x, x + 0.5) > 0


def test_mmd_bandwidth_validation():
    x, y = _cloud(seed=7), _cloud(seed=8)
    with pytest.raises(ValueError, match="bandwidths must be > 0"):
        mmd(x, y, bandwidths=(1.0, 0.0))
    with pytest.raises(ValueError, match="bandwidths must be > 0"):
        mmd(x, y, bandwidths=(-1.0,))
    with pytest.raises(ValueError, match="bandwidths must hold at least one positive value"):
        mmd(x, y, bandwidths=())
    with pytest.raises(TypeError, match="bandwidths must be a real number"):
        mmd(x, y, bandwidths=("1",))
    with pytest.raises(ValueError, match="bandwidths must be finite"):
        mmd(x, y, bandwidths=(float("inf"),))
    with pytest.raises(TypeError, match="bandwidths must be a sequence"):
        mmd(x, y, bandwidths=1.0)


def test_mmd_input_errors():
    x = _cloud()
    with pytest.raises(ValueError, match="x and y must have the same dim"):
        mmd(x, _cloud(d=3))
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x and y must be finite"):
        mmd(bad, x)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim\)"):
        mmd(x[:, 0], x)
