"""Tests for the flow matching, per-sample CFM and Bregman losses of fmlib.losses (known answers + bad inputs)."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib.losses import (
    bregman_cfm_loss,
    bregman_divergence,
    cfm_loss,
    cfm_loss_per_sample,
    dsm_loss,
    fm_loss,
)
from fmlib.paths import CondOTPath, CosinePath, VPPath
from fmlib.targets import GaussianMixture, marginal_velocity

PATHS = [CondOTPath(), CondOTPath(0.05), CosinePath(), VPPath()]


def _mixture() -> GaussianMixture:
    means = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]], dtype=torch.float64)
    return GaussianMixture(means, torch.tensor([0.3, 0.5, 0.4], dtype=torch.float64),
                           torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))


def _batch(n: int, seed: int = 0, q=None):
    g = torch.Generator().manual_seed(seed)
    q = _mixture() if q is None else q
    x1 = q.sample(n, generator=g)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = 0.98 * torch.rand(n, generator=g, dtype=torch.float64)
    return x0, x1, t


class Linear:
    """v(x, t) = x A + t b + c."""

    def __init__(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(2, 2, generator=g, dtype=torch.float64).requires_grad_(True)
        self.b = torch.randn(2, generator=g, dtype=torch.float64).requires_grad_(True)
        self.c = torch.randn(2, generator=g, dtype=torch.float64).requires_grad_(True)

    def __call__(self, x, t):
        return x @ self.A + t[:, None] * self.b + self.c

    def params(self):
        return [self.A, self.b, self.c]


# -- cfm_loss_per_sample ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_cfm_loss_per_sample_averages_to_cfm_loss(path):
    x0, x1, t = _batch(64)
    model = Linear(1)
    per = cfm_loss_per_sample(model, path, x0, x1, t)
    assert per.shape == (64,)
    assert torch.allclose(per.mean(), cfm_loss(model, path, x0, x1, t), rtol=1e-12)
    # the per-sample errors by hand
    a, s, da, ds = (v[:, None] for v in path.schedule(t))
    by_hand = ((model(a * x1 + s * x0, t) - (da * x1 + ds * x0)) ** 2).sum(1)
    assert torch.allclose(per, by_hand, rtol=1e-12)


# -- fm_loss ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_fm_loss_of_the_exact_field_is_zero(path):
    q = _mixture()
    x0, x1, t = _batch(128)
    x = path.sample(x0, x1, t)
    exact = lambda y, s: marginal_velocity(path, q, y, s)  # noqa: E731
    assert float(fm_loss(exact, path, q, x, t)) == pytest.approx(0.0, abs=1e-20)
    data = q.sample(50, generator=torch.Generator().manual_seed(5))
    exact_emp = lambda y, s: marginal_velocity(path, data, y, s)  # noqa: E731
    assert float(fm_loss(exact_emp, path, data, x, t)) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_fm_loss_equals_cfm_loss_for_a_single_data_point(path):
    # with one data point the posterior is a point mass, so u_t(x) = u_t(x | x1) and the losses coincide
    x0, _, t = _batch(64)
    point = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    x1 = point.expand(64, 2)
    model = Linear(2)
    x = path.sample(x0, x1, t)
    assert torch.allclose(fm_loss(model, path, point, x, t), cfm_loss(model, path, x0, x1, t), rtol=1e-10)


def test_fm_loss_matches_a_hand_computation_and_accepts_float_time():
    path, q = CondOTPath(), _mixture()
    x0, x1, _ = _batch(32)
    x = path.sample(x0, x1, 0.4)
    model = Linear(3)
    tt = torch.full((32,), 0.4, dtype=torch.float64)
    by_hand = ((model(x, tt) - marginal_velocity(path, q, x, tt)) ** 2).sum(1).mean()
    assert torch.allclose(fm_loss(model, path, q, x, 0.4), by_hand, rtol=1e-12)


def test_cfm_minus_fm_is_the_same_constant_for_linear_models():
    """L_CFM - L_FM = E||u_t(x|x1)||^2 - E||u_t(x)||^2, whatever the model (checked on 50k shared samples)."""
    path, q = CondOTPath(), _mixture()
    x0, x1, t = _batch(50_000, seed=1)
    x = path.sample(x0, x1, t)
    u_cond = path.target_velocity(x0, x1, t)
    u_marg = marginal_velocity(path, q, x, t)
    const = float((u_cond**2).sum(1).mean() - (u_marg**2).sum(1).mean())
    assert const > 0.5  # the conditional targets do scatter around their mean
    gaps = []
    for seed in range(4):
        model = Linear(seed)
        with torch.no_grad():
            gaps.append(float(cfm_loss(model, path, x0, x1, t) - fm_loss(model, path, q, x, t)))
    assert max(abs(g - const) for g in gaps) < 0.02 * const, (gaps, const)


def test_fm_and_cfm_gradients_agree_for_a_linear_model():
    path, q = CosinePath(), _mixture()
    x0, x1, t = _batch(50_000, seed=2)
    x = path.sample(x0, x1, t)
    model = Linear(7)
    g_cfm = torch.autograd.grad(cfm_loss(model, path, x0, x1, t), model.params())
    g_fm = torch.autograd.grad(fm_loss(model, path, q, x, t), model.params())
    g_cfm, g_fm = torch.cat([g.flatten() for g in g_cfm]), torch.cat([g.flatten() for g in g_fm])
    assert float((g_cfm - g_fm).norm() / g_fm.norm()) < 0.02


def test_fm_loss_bad_inputs():
    path, q = CondOTPath(), _mixture()
    x = torch.zeros(4, 2, dtype=torch.float64)
    model = Linear(0)
    with pytest.raises(TypeError, match="target"):
        fm_loss(model, path, [[0.0, 0.0]], x, 0.5)
    with pytest.raises(TypeError, match="path"):
        fm_loss(model, "condot", q, x, 0.5)
    with pytest.raises(TypeError, match="model"):
        fm_loss(3.0, path, q, x, 0.5)
    with pytest.raises(ValueError, match=r"shape \(batch, dim\)"):
        fm_loss(model, path, q, torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        fm_loss(model, path, q, x, 1.5)
    with pytest.raises(ValueError, match="model output"):
        fm_loss(lambda y, s: y[:, :1], path, q, x, 0.5)
    with pytest.raises(ValueError, match="dim = 2 columns"):
        fm_loss(model, path, q, torch.zeros(4, 3, dtype=torch.float64), 0.5)


def test_cfm_loss_per_sample_bad_inputs():
    path = CondOTPath()
    x0 = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="same shape"):
        cfm_loss_per_sample(Linear(0), path, x0, torch.zeros(5, 2, dtype=torch.float64), 0.5)
    with pytest.raises(TypeError, match="path"):
        cfm_loss_per_sample(Linear(0), None, x0, x0, 0.5)
    with pytest.raises(ValueError, match="model output"):
        cfm_loss_per_sample(lambda x, t: x[:, :1], path, x0, x0, 0.5)


# -- Bregman divergences ---------------------------------------------------------------------------------

def _uv(seed=0, n=32, d=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, d, generator=g, dtype=torch.float64))


def test_bregman_of_squared_norm_is_squared_distance():
    u, v = _uv()
    d = bregman_divergence(lambda w: (w**2).sum(1), u, v)
    assert d.shape == (32,)
    assert torch.allclose(d, ((u - v) ** 2).sum(1), rtol=1e-12)


def test_bregman_of_exp_matches_closed_form():
    u, v = _uv(1)
    d = bregman_divergence(lambda w: torch.exp(w).sum(1), u, v)
    closed = (torch.exp(u) - torch.exp(v) - torch.exp(v) * (u - v)).sum(1)
    assert torch.allclose(d, closed, rtol=1e-12)
    assert (d >= 0).all()
    assert torch.allclose(bregman_divergence(lambda w: torch.exp(w).sum(1), u, u), torch.zeros(32, dtype=torch.float64))


def test_bregman_gradient_is_hessian_times_difference():
    u, v = _uv(2)
    vv = v.clone().requires_grad_(True)
    d = bregman_divergence(lambda w: torch.log(torch.cosh(w)).sum(1), u, vv)
    (grad,) = torch.autograd.grad(d.sum(), vv)
    assert torch.allclose(grad, (v - u) / torch.cosh(v) ** 2, rtol=1e-10, atol=1e-12)
    # quartic: Hessian = ||v||^2 I + 2 v v^T
    vv = v.clone().requires_grad_(True)
    d = bregman_divergence(lambda w: 0.25 * (w**2).sum(1) ** 2, u, vv)
    (grad,) = torch.autograd.grad(d.sum(), vv)
    n2 = (v**2).sum(1, keepdim=True)
    expected = n2 * (v - u) + 2 * v * (v * (v - u)).sum(1, keepdim=True)
    assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-12)


def test_bregman_gradient_is_affine_in_the_target():
    """grad_v D(a u1 + (1 - a) u2, v) = a grad_v D(u1, v) + (1 - a) grad_v D(u2, v)."""
    u1, v = _uv(3)
    u2, _ = _uv(4)
    phi = lambda w: torch.exp(w).sum(1)  # noqa: E731

    def grad(u):
        vv = v.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(bregman_divergence(phi, u, vv).sum(), vv)
        return g

    a = 0.3
    assert torch.allclose(grad(a * u1 + (1 - a) * u2), a * grad(u1) + (1 - a) * grad(u2), rtol=1e-10, atol=1e-12)


def test_bregman_result_does_not_require_grad_for_plain_inputs():
    u, v = _uv(5)
    assert not bregman_divergence(lambda w: (w**2).sum(1), u, v).requires_grad


def test_bregman_cfm_loss_with_squared_norm_is_cfm_loss():
    x0, x1, t = _batch(64)
    model = Linear(4)
    for path in PATHS:
        a = bregman_cfm_loss(model, path, x0, x1, t, lambda w: (w**2).sum(1))
        assert torch.allclose(a, cfm_loss(model, path, x0, x1, t), rtol=1e-12)
        a.backward()  # differentiable through the model


def test_bregman_bad_inputs():
    u, v = _uv()
    with pytest.raises(TypeError, match="phi"):
        bregman_divergence(2.0, u, v)
    with pytest.raises(ValueError, match=r"phi must map points .* \(batch,\)"):
        bregman_divergence(lambda w: (w**2).sum(), u, v)
    with pytest.raises(TypeError, match="phi must return a tensor"):
        bregman_divergence(lambda w: 1.0, u, v)
    with pytest.raises(ValueError, match="same shape"):
        bregman_divergence(lambda w: (w**2).sum(1), u, v[:5])
    with pytest.raises(ValueError, match=r"u must have shape \(batch, dim\)"):
        bregman_divergence(lambda w: (w**2).sum(1), u[0], v)
    with pytest.raises(TypeError, match="v must be a torch.Tensor"):
        bregman_divergence(lambda w: (w**2).sum(1), u, v.numpy())
    x0, x1, t = _batch(8)
    with pytest.raises(TypeError, match="path"):
        bregman_cfm_loss(Linear(0), "ot", x0, x1, t, lambda w: (w**2).sum(1))
    with pytest.raises(TypeError, match="phi"):
        bregman_cfm_loss(Linear(0), CondOTPath(), x0, x1, t, None)
    assert math.isfinite(float(bregman_cfm_loss(Linear(0), CondOTPath(), x0, x1, t, lambda w: (w**2).sum(1)).detach()))


# --- dsm_loss ---------------------------------------------------------------------------------------------------


def test_dsm_loss_matches_hand_computation_for_both_weightings():
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 2, generator=gen, dtype=torch.float64), torch.randn(6, 2, generator=gen, dtype=torch.float64)
    path = CondOTPath()
    x_t = 0.5 * x1 + 0.5 * x0  # sigma_t = 0.5

    def model(x, t):
        return -x  # the score of N(0, I)

    by_hand_none = ((-x_t + x0 / 0.5) ** 2).sum(1).mean()
    by_hand_noise = ((0.5 * -x_t + x0) ** 2).sum(1).mean()
    assert torch.allclose(dsm_loss(model, path, x0, x1, 0.5, weighting="none"), by_hand_none, rtol=1e-14)
    assert torch.allclose(dsm_loss(model, path, x0, x1, 0.5), by_hand_noise, rtol=1e-14)
    assert torch.allclose(dsm_loss(model, path, x0, x1, 0.5), 0.25 * by_hand_none, rtol=1e-14)


@pytest.mark.parametrize("path", [CondOTPath(0.01), VPPath(), CosinePath()], ids=repr)
def test_dsm_loss_is_zero_for_the_exact_score_of_a_single_data_point(path):
    # for q = delta_{x1} the marginal score is the conditional score, so the exact model has zero loss
    gen = torch.Generator().manual_seed(1)
    x1_point = torch.tensor([[0.7, -1.2]], dtype=torch.float64)
    x0 = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    x1 = x1_point.expand(64, 2)
    t = 0.05 + 0.9 * torch.rand(64, generator=gen, dtype=torch.float64)

    def exact_score(x, t):
        return path.cond_score(x, x1_point.expand_as(x), t)

    for weighting in ("noise", "none"):
        assert float(dsm_loss(exact_score, path, x0, x1, t, weighting=weighting)) < 1e-20


def test_dsm_loss_with_noise_weighting_is_noise_prediction():
    gen = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(32, 3, generator=gen, dtype=torch.float64), torch.randn(32, 3, generator=gen, dtype=torch.float64)
    t = torch.rand(32, generator=gen, dtype=torch.float64)
    path = VPPath()
    weights = torch.randn(3, 3, generator=gen, dtype=torch.float64)

    def eps_model(x, t):
        return torch.tanh(x @ weights) * (1 + t[:, None])

    def score_model(x, t):
        return path.noise_to_score(eps_model(x, t), x, t)

    x_t = path.sample(x0, x1, t)
    noise_prediction = ((eps_model(x_t, t) - x0) ** 2).sum(1).mean()
    assert torch.allclose(dsm_loss(score_model, path, x0, x1, t), noise_prediction, rtol=1e-12)


def test_dsm_loss_bad_inputs():
    x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
    path = CondOTPath()
    with pytest.raises(ValueError, match="weighting must be one of"):
        dsm_loss(lambda x, t: x, path, x0, x1, 0.5, weighting="sigma")
    with pytest.raises(ValueError, match="needs sigma_t > 0"):
        dsm_loss(lambda x, t: x, path, x0, x1, 1.0, weighting="none")
    assert float(dsm_loss(lambda x, t: x, path, x0, x1, 1.0)) == 0.0  # the noise weighting is finite at t = 1
    with pytest.raises(ValueError, match=r"shape of its input x \(4, 2\); got \(4,\)"):
        dsm_loss(lambda x, t: t, path, x0, x1, 0.5)
    with pytest.raises(TypeError, match="the model must return a tensor"):
        dsm_loss(lambda x, t: 1.0, path, x0, x1, 0.5)
    with pytest.raises(TypeError, match="path must be an fmlib.paths.AffinePath"):
        dsm_loss(lambda x, t: x, "CondOT", x0, x1, 0.5)
    with pytest.raises(ValueError, match="x1"):
        dsm_loss(lambda x, t: x, path, x0, torch.ones(3, 2), 0.5)
