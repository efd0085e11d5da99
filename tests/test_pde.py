"""Tests of fmlib.pde against known answers (divergences, continuity residuals, 1-D CDFs, the animation helper)."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib.paths import CondOTPath
from fmlib.pde import animate_density_1d, continuity_residual, divergence, marginal_cdf_1d
from fmlib.targets import GaussianMixture, marginal_log_prob, marginal_velocity

D = torch.float64


def _points(n=50, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=D)


# A Gaussian path N(mu_t, s_t^2 I) with mu_t = sin(t) (1, -2), s_t = 1 + t^2, and its transporting velocity.
MU_DIR = torch.tensor([1.0, -2.0], dtype=D)


def _mu(t):
    return torch.sin(t)[:, None] * MU_DIR


def _s(t):
    return (1 + t**2)[:, None]


def gauss_log_prob(x, t):
    d = x.shape[1]
    s = _s(t)
    return (-((x - _mu(t)) ** 2).sum(1, keepdim=True) / (2 * s**2) - d * torch.log(s) - d / 2 * math.log(2 * math.pi))[:, 0]


def gauss_velocity(x, t):
    return torch.cos(t)[:, None] * MU_DIR + (2 * t / (1 + t**2))[:, None] * (x - _mu(t))


def gauss_dlogp_dt(x, t):
    """Exact d/dt log p_t(x) = (x - mu).mu'/s^2 + (s'/s)(|x - mu|^2/s^2 - d)."""
    d = x.shape[1]
    c = x - _mu(t)
    s = _s(t)[:, 0]
    ds = 2 * t
    return (c * torch.cos(t)[:, None] * MU_DIR).sum(1) / s**2 + (ds / s) * ((c**2).sum(1) / s**2 - d)


def zero_field(x, t):
    return torch.zeros_like(x)


# ---------------------------------------------------------------------------------------------------- divergence
def test_divergence_linear_field_is_trace():
    a = torch.tensor([[1.5, -2.0, 0.3], [0.7, -0.4, 1.0], [2.0, 0.0, 0.25]], dtype=D)
    x = _points(d=3)
    expected = torch.full((x.shape[0],), float(torch.trace(a)), dtype=D)
    field = lambda y, t: y @ a.T  # noqa: E731
    assert torch.allclose(divergence(field, x, 0.3), expected, atol=1e-12)
    assert torch.allclose(divergence(field, x, 0.3, h=1e-3), expected, atol=1e-9)


def test_divergence_nonlinear_field():
    # f(x) = t |x|^2 x in d dims has divergence t (d + 2) |x|^2
    x = _points(d=2)
    t = torch.linspace(0.1, 0.9, x.shape[0], dtype=D)
    field = lambda y, s: s[:, None] * (y**2).sum(1, keepdim=True) * y  # noqa: E731
    expected = t * 4 * (x**2).sum(1)
    assert torch.allclose(divergence(field, x, t), expected, atol=1e-12)
    assert torch.allclose(divergence(field, x, t, h=1e-4), expected, atol=1e-6)


def test_divergence_of_constant_and_rotation_is_zero():
    x = _points()
    assert torch.equal(divergence(zero_field, x, 0.5), torch.zeros(x.shape[0], dtype=D))
    rot = lambda y, t: torch.stack([-y[:, 1], y[:, 0]], 1)  # noqa: E731
    assert divergence(rot, x, 0.5).abs().max() < 1e-14
    assert divergence(rot, x, 0.5).shape == (x.shape[0],)


def test_divergence_bad_inputs():
    x = _points()
    with pytest.raises(TypeError, match="field must be a function"):
        divergence("not a function", x, 0.5)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim\)"):
        divergence(zero_field, x[0], 0.5)
    with pytest.raises(ValueError, match="h must be > 0"):
        divergence(zero_field, x, 0.5, h=-1e-3)
    with pytest.raises(ValueError, match="must return the shape of x"):
        divergence(lambda y, t: y[:, :1], x, 0.5)
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        divergence(zero_field, x, 1.5)


# ------------------------------------------------------------------------------------------- continuity_residual
@pytest.mark.parametrize("form", ["density", "log"])
def test_residual_vanishes_for_gaussian_path_autograd(form):
    x = _points(d=2) * 2
    t = torch.linspace(0.0, 1.0, x.shape[0], dtype=D)
    r = continuity_residual(gauss_log_prob, gauss_velocity, x, t, form=form)
    assert r.shape == (x.shape[0],)
    assert r.abs().max() < 1e-12


def test_residual_with_zero_velocity_is_time_derivative():
    x = _points(d=2) * 2
    t = torch.linspace(0.2, 0.8, x.shape[0], dtype=D)
    expected_log = gauss_dlogp_dt(x, t)
    expected = torch.exp(gauss_log_prob(x, t)) * expected_log
    assert torch.allclose(continuity_residual(gauss_log_prob, zero_field, x, t, form="log"), expected_log, atol=1e-12)
    assert torch.allclose(continuity_residual(gauss_log_prob, zero_field, x, t), expected, atol=1e-14)
    fd = continuity_residual(gauss_log_prob, zero_field, x, t, h=1e-4, form="log")
    assert torch.allclose(fd, expected_log, atol=1e-6)


@pytest.mark.parametrize("form", ["density", "log"])
def test_finite_difference_residual_is_second_order(form):
    x = _points(n=40, d=2)
    t = torch.full((40,), 0.5, dtype=D)
    errs = [float(continuity_residual(gauss_log_prob, gauss_velocity, x, t, h=h, form=form).abs().max())
            for h in (0.04, 0.02, 0.01)]
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(o - 2) < 0.1 for o in orders), orders


def test_residual_of_mixture_marginal_velocity():
    q = GaussianMixture(torch.tensor([[-2.0], [1.0]], dtype=D), torch.tensor([0.3, 0.6], dtype=D),
                        torch.tensor([0.4, 0.6], dtype=D))
    path = CondOTPath()
    lp = lambda x, t: marginal_log_prob(path, q, x, t)  # noqa: E731
    u = lambda x, t: marginal_velocity(path, q, x, t)  # noqa: E731
    x = torch.linspace(-4, 4, 81, dtype=D)[:, None]
    for t in (0.0, 0.5, 1.0):
        assert continuity_residual(lp, u, x, t).abs().max() < 1e-13
    assert continuity_residual(lp, u, x, 0.5, h=1e-3).abs().max() < 1e-4
    # a wrong field leaves an O(1) residual
    assert continuity_residual(lp, zero_field, x, 0.5, h=1e-3).abs().max() > 0.1


def test_residual_bad_inputs():
    x = _points()
    with pytest.raises(TypeError, match="log_prob_fn must be a function"):
        continuity_residual(None, gauss_velocity, x, 0.5)
    with pytest.raises(TypeError, match="velocity_fn must be a function"):
        continuity_residual(gauss_log_prob, 3.0, x, 0.5)
    with pytest.raises(ValueError, match="form must be one of"):
        continuity_residual(gauss_log_prob, gauss_velocity, x, 0.5, form="weak")
    with pytest.raises(ValueError, match=r"t must lie in \[h, 1 - h\]"):
        continuity_residual(gauss_log_prob, gauss_velocity, x, 0.99, h=0.05)
    with pytest.raises(ValueError, match=r"log_prob_fn\(x, t\) must return shape"):
        continuity_residual(lambda y, t: y, gauss_velocity, x, 0.5)
    with pytest.raises(TypeError, match="must return a tensor"):
        continuity_residual(gauss_log_prob, lambda y, t: 1.0, x, 0.5, h=0.01)
    with pytest.raises(ValueError, match="h must be > 0"):
        continuity_residual(gauss_log_prob, gauss_velocity, x, 0.5, h=0.0)
    with pytest.raises(TypeError, match="h must be a real number"):
        continuity_residual(gauss_log_prob, gauss_velocity, x, 0.5, h="small")


# ------------------------------------------------------------------------------------------------ marginal_cdf_1d
def _mixture_1d():
    return GaussianMixture(torch.tensor([[-2.0], [0.5], [2.5]], dtype=D), torch.tensor([0.4, 0.3, 0.5], dtype=D),
                           torch.tensor([0.3, 0.45, 0.25], dtype=D))


def test_cdf_at_time_zero_is_standard_normal():
    x = torch.linspace(-3, 3, 13, dtype=D)[:, None]
    got = marginal_cdf_1d(CondOTPath(), _mixture_1d(), x, 0.0)
    assert torch.allclose(got, torch.special.ndtr(x[:, 0]), atol=1e-15)


def test_cdf_matches_integrated_density_and_flux():
    q, path = _mixture_1d(), CondOTPath()
    grid = torch.linspace(-12, 4, 160001, dtype=D)[:, None]
    dens = torch.exp(marginal_log_prob(path, q, grid, 0.6))
    cum = torch.cat([torch.zeros(1, dtype=D), torch.cumsum(0.5 * (dens[1:] + dens[:-1]) * (grid[1, 0] - grid[0, 0]), 0)])
    idx = torch.arange(0, 160001, 10000)
    assert torch.allclose(marginal_cdf_1d(path, q, grid[idx], 0.6), cum[idx], atol=1e-8)
    # flux identity: -dF/dt = p u
    x = torch.linspace(-4, 4, 33, dtype=D)[:, None]
    t = torch.full((33,), 0.6, dtype=D, requires_grad=True)
    (dF,) = torch.autograd.grad(marginal_cdf_1d(path, q, x, t).sum(), t)
    flux = torch.exp(marginal_log_prob(path, q, x, 0.6)) * marginal_velocity(path, q, x, 0.6)[:, 0]
    assert torch.allclose(-dF, flux, atol=1e-13)


def test_cdf_of_empirical_data():
    data = torch.tensor([[-1.0], [2.0]], dtype=D)
    x = torch.tensor([[0.5]], dtype=D)
    # at t = 0.5 under CondOT: mixture of N(0.5 * x1, 0.25)
    expected = 0.5 * (torch.special.ndtr((0.5 + 0.5) / torch.tensor(0.5, dtype=D))
                      + torch.special.ndtr((0.5 - 1.0) / torch.tensor(0.5, dtype=D)))
    assert torch.allclose(marginal_cdf_1d(CondOTPath(), data, x, 0.5), expected.reshape(1), atol=1e-15)


def test_cdf_bad_inputs():
    q = _mixture_1d()
    with pytest.raises(TypeError, match="path must be an fmlib.paths.AffinePath"):
        marginal_cdf_1d("condot", q, torch.zeros(3, 1, dtype=D), 0.5)
    with pytest.raises(ValueError, match="x must have dim = 1"):
        marginal_cdf_1d(CondOTPath(), q, torch.zeros(3, 2, dtype=D), 0.5)
    q2 = GaussianMixture(torch.zeros(2, 2, dtype=D), 1.0)
    with pytest.raises(ValueError, match="q must be a 1-D mixture"):
        marginal_cdf_1d(CondOTPath(), q2, torch.zeros(3, 1, dtype=D), 0.5)
    with pytest.raises(TypeError, match="q must be a GaussianMixture or a data tensor"):
        marginal_cdf_1d(CondOTPath(), [1.0, 2.0], torch.zeros(3, 1, dtype=D), 0.5)
    with pytest.raises(ValueError, match="point mass"):
        marginal_cdf_1d(CondOTPath(), torch.zeros(4, 1, dtype=D), torch.zeros(3, 1, dtype=D), 1.0)


# -------------------------------------------------------------------------------------------- animate_density_1d
def _small_trajectory():
    x0 = torch.randn(200, 1, generator=torch.Generator().manual_seed(0), dtype=D)
    steps = torch.linspace(0, 1, 5, dtype=D)
    traj = torch.stack([x0 * (1 + s) for s in steps])  # N(0, (1 + t)^2)
    log_prob = lambda x, t: (-0.5 * (x[:, 0] / (1 + t)) ** 2 - torch.log(1 + t) - 0.5 * math.log(2 * math.pi))  # noqa: E731
    return traj, steps, log_prob


def test_animate_density_returns_player_with_requested_frames():
    traj, times, lp = _small_trajectory()
    html = animate_density_1d(traj, times, lp, frames=3, bins=10, figsize=(2.0, 1.5), dpi=40)
    text = html.data
    assert "<script" in text and "animation" in text.lower()
    assert text.count("frames[") >= 3  # one embedded image per frame


def test_animate_density_bad_inputs():
    traj, times, lp = _small_trajectory()
    with pytest.raises(ValueError, match=r"trajectory must be a tensor of shape \(steps \+ 1, batch, 1\)"):
        animate_density_1d(traj[..., 0], times, lp)
    with pytest.raises(ValueError, match="times must hold one time per trajectory step"):
        animate_density_1d(traj, times[:-1], lp)
    with pytest.raises(ValueError, match="frames must be at most"):
        animate_density_1d(traj, times, lp, frames=50)
    with pytest.raises(ValueError, match="xlim must be a pair"):
        animate_density_1d(traj, times, lp, xlim=(3.0, -3.0))
    with pytest.raises(TypeError, match="log_prob_fn must be a function"):
        animate_density_1d(traj, times, "log p")
    with pytest.raises(ValueError, match="bins must be a positive int"):
        animate_density_1d(traj, times, lp, bins=0)
