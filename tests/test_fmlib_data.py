"""Unit tests for fmlib.data: the toy datasets follow their published definitions."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib import data
from fmlib.targets import GaussianMixture

F64 = torch.float64


SAMPLERS = ["moons", "sklearn_moons", "8gaussians", "checkerboard", "spirals", "circles", "s_curve"]


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_shape_dtype_device_and_finite(name, dtype):
    x = data.sample(name, 37, seed=0, dtype=dtype, device="cpu")
    assert x.shape == (37, 2) and x.dtype == dtype and x.device.type == "cpu"
    assert torch.isfinite(x).all()
    assert data.sample(name, 5, seed=0).dtype == torch.float32  # default dtype


@pytest.mark.parametrize("name", SAMPLERS)
def test_deterministic_given_seed_or_generator(name):
    a = data.sample(name, 64, seed=3)
    b = data.sample(name, 64, seed=3)
    c = data.sample(name, 64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, data.sample(name, 64, seed=4))
    torch.manual_seed(5)
    d = data.sample(name, 64)
    torch.manual_seed(5)
    assert torch.equal(d, data.sample(name, 64))
    # a generator advances: two consecutive draws differ
    g = torch.Generator().manual_seed(1)
    assert not torch.equal(data.sample(name, 64, generator=g), data.sample(name, 64, generator=g))


def test_dtype_does_not_change_the_draw():
    a = data.moons(20, seed=2, dtype=F64)
    b = data.moons(20, seed=2, dtype=torch.float32)
    assert torch.equal(a.float(), b)


# ---------------------------------------------------------------------------------------------------- moons
@pytest.mark.parametrize("n", [2, 9, 100, 101])
def test_moons_follow_torchcfm_definition(n):
    x = data.moons(n, seed=1, dtype=F64)
    n_out, n_in = n // 2, n - n // 2
    angles = torch.cat([torch.linspace(0, math.pi, n_out, dtype=F64), torch.linspace(0, math.pi, n_in, dtype=F64)])
    # the single offset u is added to both coordinates, so (x - y) / 3 is the noise-free difference
    diff = (x[:, 0] - x[:, 1]) / 3
    expected = torch.cat([
        torch.cos(angles[:n_out]) - torch.sin(angles[:n_out]),
        (1 - torch.cos(angles[n_out:])) - (0.5 - torch.sin(angles[n_out:])),
    ])
    torch.testing.assert_close(diff, expected, rtol=0, atol=1e-13)
    # recover the offsets: x = 3 (cos a + u) - 1 on the outer arc, 3 (1 - cos a + u) - 1 on the inner arc
    base_x = torch.cat([torch.cos(angles[:n_out]), 1 - torch.cos(angles[n_out:])])
    u = (x[:, 0] + 1) / 3 - base_x
    assert (u >= -1e-13).all() and (u < 0.2 + 1e-13).all()
    base_y = torch.cat([torch.sin(angles[:n_out]), 0.5 - torch.sin(angles[n_out:])])
    torch.testing.assert_close((x[:, 1] + 1) / 3 - base_y, u, rtol=0, atol=1e-13)


def test_moons_offsets_uniform_on_0_02():
    n = 4000
    x = data.moons(n, seed=0, dtype=F64)
    a = torch.linspace(0, math.pi, n // 2, dtype=F64)
    u = (x[: n // 2, 0] + 1) / 3 - torch.cos(a)
    # U[0, 0.2): mean 0.1, std 0.2 / sqrt(12)
    assert abs(float(u.mean()) - 0.1) < 5 * 0.2 / math.sqrt(12) / math.sqrt(n // 2)
    assert float(u.min()) < 0.01 and float(u.max()) > 0.19


def test_sklearn_moons_noise_free_lies_on_arcs():
    x = data.sklearn_moons(200, noise=0.0, seed=0, dtype=F64)
    outer = (x.norm(dim=1) - 1).abs() < 1e-12
    inner = ((x - torch.tensor([1.0, 0.5], dtype=F64)).norm(dim=1) - 1).abs() < 1e-12
    assert (outer | inner).all() and int(outer.sum()) == 100


# ------------------------------------------------------------------------------------------- eight gaussians
def test_eight_gaussians_mixture_parameters():
    q = data.eight_gaussians_mixture()
    assert isinstance(q, GaussianMixture) and q.means.dtype == F64 and q.n_components == 8
    angles = torch.arange(8, dtype=F64) * math.pi / 4
    torch.testing.assert_close(q.means, 5 * torch.stack([torch.cos(angles), torch.sin(angles)], 1))
    torch.testing.assert_close(q.means.norm(dim=1), torch.full((8,), 5.0, dtype=F64))
    torch.testing.assert_close(q.stds, torch.full((8,), 0.1**0.25, dtype=F64))
    torch.testing.assert_close(q.weights, torch.full((8,), 1 / 8, dtype=F64))
    assert data.EIGHT_GAUSSIANS_STD == 0.1**0.25 and data.EIGHT_GAUSSIANS_RADIUS == 5.0
    q2 = data.eight_gaussians_mixture(radius=2.0, std=0.5, dtype=torch.float32)
    assert q2.means.dtype == torch.float32
    torch.testing.assert_close(q2.means.norm(dim=1), torch.full((8,), 2.0))


def test_three_gaussians_mixture_parameters_and_density():
    q = data.three_gaussians_mixture()
    assert isinstance(q, GaussianMixture) and q.means.dtype == F64 and q.n_components == 3
    torch.testing.assert_close(q.weights, torch.tensor([0.5, 0.3, 0.2], dtype=F64))
    # density at the first mean, by hand: sum_k w_k N(m_1; m_k, s_k^2 I) in 2-D
    m = torch.tensor([[-2.0, -1.0], [1.5, 1.5], [2.0, -2.0]], dtype=F64)
    s = torch.tensor([0.5, 0.7, 0.35], dtype=F64)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    d2 = ((m[0] - m) ** 2).sum(1)
    expected = (w * torch.exp(-d2 / (2 * s**2)) / (2 * math.pi * s**2)).sum().log()
    torch.testing.assert_close(q.log_prob(m[:1])[0], expected)
    assert data.three_gaussians_mixture(dtype=torch.float32).means.dtype == torch.float32
    with pytest.raises(TypeError, match="dtype"):
        data.three_gaussians_mixture(dtype="float32")


def test_eight_gaussians_samples_have_the_right_centres_and_std():
    n = 40_000
    x = data.eight_gaussians(n, seed=0, dtype=F64)
    q = data.eight_gaussians_mixture()
    nearest = torch.cdist(x, q.means).argmin(1)
    resid = x - q.means[nearest]
    std = 0.1**0.25
    # components are 5 * 2 sin(pi/8) / std ~ 6.8 std apart: assignment to the nearest centre is almost exact
    assert abs(float(resid.std()) - std) < 0.02
    counts = torch.bincount(nearest, minlength=8).to(F64)
    assert ((counts / n - 1 / 8).abs() < 5 * math.sqrt(1 / 8 * 7 / 8 / n)).all()
    # it is a sample of the mixture: same draws as GaussianMixture.sample with the same generator
    torch.testing.assert_close(x, q.sample(n, seed=0))


def test_eight_gaussians_custom_radius():
    x = data.eight_gaussians(2000, radius=10.0, std=0.01, seed=1, dtype=F64)
    assert ((x.norm(dim=1) - 10.0).abs() < 0.1).all()


# ---------------------------------------------------------------------------------------------- checkerboard
def test_checkerboard_cells_and_bounds():
    x = data.checkerboard(5000, seed=0, dtype=F64)
    lim = 2 / 0.45
    assert (x >= -lim).all() and (x <= lim).all()
    cells = torch.floor(0.45 * x).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    # all 8 black cells are used, each with about 1/8 of the points
    ids = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    counts = torch.bincount(ids, minlength=16)
    assert int((counts > 0).sum()) == 8
    used = counts[counts > 0].to(F64) / 5000
    assert ((used - 1 / 8).abs() < 0.03).all()


# ------------------------------------------------------------------------------------- spirals, circles, s_curve
def test_spirals_properties():
    x = data.spirals(3000, noise=0.0, seed=0, dtype=F64)
    # radius r <= 3 pi, jitter in [0, 0.5)^2, then divided by 3
    assert (x.norm(dim=1) <= (3 * math.pi + 0.5 * math.sqrt(2)) / 3 + 1e-12).all()
    assert float(x.norm(dim=1).max()) > 2.5
    # two arms related by x -> -x: the cloud is (nearly) centred
    assert float(x.mean(0).norm()) < 0.2
    noisy = data.spirals(3000, noise=0.1, seed=0, dtype=F64)
    assert not torch.allclose(noisy, x)
    assert data.spirals(1, seed=0).shape == (1, 2)


def test_circles_noise_free_radii():
    x = data.circles(101, noise=0.0, factor=0.4, scale=2.0, seed=0, dtype=F64)
    r = x.norm(dim=1)
    outer = (r - 2.0).abs() < 1e-12
    inner = (r - 0.8).abs() < 1e-12
    assert (outer | inner).all()
    assert int(outer.sum()) == 50  # scikit-learn puts n // 2 points on the outer circle
    with pytest.raises(ValueError, match=r"factor must lie in \(0, 1\)"):
        data.circles(10, factor=1.0)


def test_s_curve_noise_free_identity():
    # make_s_curve: x = sin(u), z = sign(u) (cos(u) - 1), so x^2 + (1 - |z|)^2 = 1 (before scaling)
    x = data.s_curve(500, noise=0.0, scale=1.5, seed=0, dtype=F64) / 1.5
    torch.testing.assert_close(x[:, 0] ** 2 + (1 - x[:, 1].abs()) ** 2, torch.ones(500, dtype=F64))
    assert (x[:, 0].abs() <= 1 + 1e-12).all() and (x[:, 1].abs() <= 2 + 1e-12).all()


def test_digits():
    x, y = data.digits()
    assert x.shape == (1797, 64) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.long
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    # pixel values are integers 0..16 mapped by v / 8 - 1
    torch.testing.assert_close((x + 1) * 8, torch.round((x + 1) * 8))
    assert sorted(y.unique().tolist()) == list(range(10))
    x64, _ = data.digits(dtype=F64)
    assert x64.dtype == F64


# ---------------------------------------------------------------------------------------------------- errors
def test_sample_dispatch_and_unknown_name():
    assert set(data.DATASETS) == set(SAMPLERS)
    torch.testing.assert_close(data.sample("8gaussians", 10, seed=1), data.eight_gaussians(10, seed=1))
    torch.testing.assert_close(data.sample("moons", 10, seed=1), data.moons(10, seed=1))
    with pytest.raises(ValueError, match="name must be one of .*got 'swiss_roll'"):
        data.sample("swiss_roll", 10)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("n, exc", [(0, ValueError), (-5, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_n(name, n, exc):
    with pytest.raises(exc, match="n must be a positive int"):
        data.sample(name, n, seed=0)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, "float32", None])
def test_bad_dtype(name, dtype):
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        data.sample(name, 4, seed=0, dtype=dtype)


def test_other_argument_errors():
    with pytest.raises(ValueError, match="pass either seed or generator"):
        data.moons(4, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="noise must be >= 0"):
        data.spirals(4, noise=-0.1)
    with pytest.raises(ValueError, match="radius must be > 0"):
        data.eight_gaussians_mixture(radius=0.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        data.eight_gaussians(4, std=-1.0)
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        data.digits(dtype=torch.int32)
