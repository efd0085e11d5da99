"""Tests of fmlib.solvers' adaptive solver, divergences and CNF log-likelihoods against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib.data import eight_gaussians_mixture
from fmlib.paths import CondOTPath
from fmlib.solvers import ADAPTIVE_METHODS, divergence, hutchinson_divergence, integrate, log_prob
from fmlib.targets import GaussianMixture, marginal_log_prob, marginal_velocity

DT = torch.float64
A = torch.tensor([[0.3, -1.0], [0.8, -0.5]], dtype=DT)  # trace -0.2, not symmetric


def linear(x, t):
    return x @ A.T.to(x.dtype)


def std_normal(x):
    return -0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)


def logistic(x, t):
    """dx/dt = (1 + t) x (1 - x); solution x(t) = 1 / (1 + (1/x0 - 1) exp(-(t + t^2/2)))."""
    return (1 + t)[:, None] * x * (1 - x)


def logistic_solution(x0, t):
    return 1.0 / (1.0 + (1.0 / x0 - 1.0) * math.exp(-(t + t**2 / 2)))


def nonlinear(x, t):
    """A row-wise nonlinear, time-dependent field with a non-trivial Jacobian."""
    B = torch.tensor([[1.0, 2.0, -0.5], [0.3, -1.0, 0.7], [-0.8, 0.4, 1.2]], dtype=x.dtype)
    return torch.tanh(x @ B.T) * (1 + t[:, None]) + torch.sin(x.roll(1, dims=1))


def exact_trace(field, x, t):
    """Trace of the per-row Jacobian by torch.func (independent of fmlib's autograd loop)."""
    def single(xi, ti):
        return field(xi[None], ti[None])[0]
    jac = torch.func.vmap(torch.func.jacrev(single))(x, t)
    return jac.diagonal(dim1=1, dim2=2).sum(-1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- integrate: fixed-step behaviour kept, NFE, adaptive method ------------------------------------------


def test_integrate_default_returns_tensor_and_matches_rk4_loop():
    x0 = torch.rand(7, 3, generator=gen(), dtype=DT) * 0.8 + 0.1
    out = integrate(logistic, x0, steps=8)
    assert isinstance(out, torch.Tensor) and out.shape == x0.shape
    x, h = x0.clone(), 1 / 8
    for n in range(8):
        t = torch.full((7,), n * h, dtype=DT)
        k1 = logistic(x, t)
        k2 = logistic(x + h / 2 * k1, t + h / 2)
        k3 = logistic(x + h / 2 * k2, t + h / 2)
        k4 = logistic(x + h * k3, t + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert torch.allclose(out, x, atol=1e-14)


@pytest.mark.parametrize("method,per_step", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_integrate_return_nfe_fixed(method, per_step):
    x0 = torch.full((4, 1), 0.3, dtype=DT)
    x, nfe = integrate(logistic, x0, steps=10, method=method, return_nfe=True)
    assert nfe == 10 * per_step
    assert torch.equal(x, integrate(logistic, x0, steps=10, method=method))


def test_dopri5_against_known_solution():
    x0 = torch.linspace(0.1, 0.9, 9, dtype=DT)[:, None]
    errs, nfes = [], []
    for tol in (1e-4, 1e-7, 1e-10):
        x, nfe = integrate(logistic, x0, method="dopri5", rtol=tol, atol=tol, return_nfe=True)
        errs.append(float((x - logistic_solution(x0, 1.0)).abs().max()))
        nfes.append(nfe)
    assert all(n > 0 for n in nfes)
    assert nfes[0] < nfes[1] < nfes[2]
    assert errs[0] > errs[1] > errs[2]
    assert errs[0] < 1e-3 and errs[1] < 1e-6 and errs[2] < 1e-9


def test_dopri5_default_tolerance_trajectory_and_backward():
    x0 = torch.linspace(0.1, 0.9, 5, dtype=DT)[:, None]
    traj = integrate(logistic, x0, method="dopri5", trajectory=True, steps=4)
    assert traj.shape == (5, 5, 1)
    for k, t in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
        assert torch.allclose(traj[k], logistic_solution(x0, t), atol=1e-4)
    x1 = logistic_solution(x0, 1.0)
    back = integrate(logistic, x1, t0=1.0, t1=0.0, method="dopri5", rtol=1e-9, atol=1e-9)
    assert torch.allclose(back, x0, atol=1e-8)
    assert torch.equal(integrate(logistic, x0, t0=0.5, t1=0.5, method="dopri5"), x0)


def test_dopri5_never_evaluates_outside_the_interval():
    seen = []

    def field(x, t):
        seen.append(float(t.min()))
        seen.append(float(t.max()))
        return -x * (1 + 5 * t[:, None])

    x0 = torch.ones(3, 2, dtype=DT)
    integrate(field, x0, t0=0.2, t1=0.9, method="dopri5")
    integrate(field, x0, t0=1.0, t1=0.0, method="dopri5")
    assert 0.0 <= min(seen) and max(seen) <= 1.0


def test_dopri5_float32():
    x0 = torch.full((3, 2), 0.4)
    x, nfe = integrate(logistic, x0, method="dopri5", return_nfe=True)
    assert x.dtype == torch.float32 and nfe > 0
    assert torch.allclose(x, logistic_solution(x0, 1.0), atol=1e-5)


# -- divergences --------------------------------------------------------------------------------------------


def test_divergence_linear_is_trace():
    x = torch.randn(6, 2, generator=gen(), dtype=DT)
    div = divergence(linear, x, 0.3)
    assert div.shape == (6,)
    assert torch.allclose(div, torch.full((6,), float(torch.trace(A)), dtype=DT), atol=1e-14)


def test_divergence_nonlinear_matches_jacobian_trace():
    x = torch.randn(10, 3, generator=gen(1), dtype=DT)
    t = torch.rand(10, generator=gen(2), dtype=DT)
    assert torch.allclose(divergence(nonlinear, x, t), exact_trace(nonlinear, x, t), atol=1e-12)


def test_divergence_of_constant_field_is_zero():
    x = torch.randn(4, 2, dtype=DT)
    assert torch.equal(divergence(lambda y, t: torch.ones_like(y), x, 0.5), torch.zeros(4, dtype=DT))


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(noise):
    x = torch.randn(3, 3, generator=gen(3), dtype=DT)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=DT)
    n = 20000
    xs, ts = x.repeat_interleave(n, 0), t.repeat_interleave(n)
    est = hutchinson_divergence(nonlinear, xs, ts, gen(4), noise=noise).reshape(3, n)
    exact = divergence(nonlinear, x, t)
    se = est.std(1) / math.sqrt(n)
    assert ((est.mean(1) - exact).abs() < 4 * se + 1e-12).all()
    # averaging K probes divides the variance by K
    many = hutchinson_divergence(nonlinear, xs[: 3 * 2000], ts[: 3 * 2000], gen(5), n_probes=10, noise=noise)
    assert many.var() < est[0].var() * 0.2 + 1e-12 or est[0].var() < 1e-12


def test_hutchinson_variance_closed_form_linear():
    """One probe: Var = 2 ||S||_F^2 (Gaussian), 2 (||S||_F^2 - sum_i S_ii^2) (Rademacher), S = (A + A^T)/2."""
    S = 0.5 * (A + A.T)
    x = torch.zeros(40000, 2, dtype=DT)
    var_g = hutchinson_divergence(linear, x, 0.0, gen(6), noise="gaussian").var()
    var_r = hutchinson_divergence(linear, x, 0.0, gen(7), noise="rademacher").var()
    exp_g = 2 * (S**2).sum()
    exp_r = 2 * ((S**2).sum() - (S.diagonal() ** 2).sum())
    assert abs(float(var_g / exp_g) - 1) < 0.05
    assert abs(float(var_r / exp_r) - 1) < 0.05


def test_hutchinson_rademacher_exact_for_diagonal_jacobian():
    D = torch.tensor([0.5, -2.0, 1.5], dtype=DT)
    x = torch.randn(5, 3, dtype=DT)
    est = hutchinson_divergence(lambda y, t: y * D, x, 0.5, gen(8))
    assert torch.allclose(est, torch.full((5,), float(D.sum()), dtype=DT), atol=1e-14)


def test_hutchinson_is_reproducible_with_generator():
    x = torch.randn(5, 3, dtype=DT)
    a = hutchinson_divergence(nonlinear, x, 0.5, gen(9), noise="gaussian")
    b = hutchinson_divergence(nonlinear, x, 0.5, gen(9), noise="gaussian")
    assert torch.equal(a, b)


# -- log_prob -----------------------------------------------------------------------------------------------


def linear_gaussian():
    """v = A x carries N(0, I) to N(0, E E^T) with E = expm(A); log p_1 = log p_0(E^-1 x) - tr A."""
    E = torch.linalg.matrix_exp(A)
    return torch.distributions.MultivariateNormal(torch.zeros(2, dtype=DT), E @ E.T)


def test_log_prob_linear_field_closed_form():
    p1 = linear_gaussian()
    x1 = p1.sample((300,))
    with torch.no_grad():
        lp = log_prob(linear, x1, std_normal, steps=50)
    assert lp.shape == (300,)
    assert (lp - p1.log_prob(x1)).abs().max() < 1e-8
    with torch.no_grad():
        lp_ad, nfe = log_prob(linear, x1, std_normal, method="dopri5", rtol=1e-9, atol=1e-9, return_nfe=True)
    assert nfe > 0 and (lp_ad - p1.log_prob(x1)).abs().max() < 1e-7


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_log_prob_hutchinson_linear_unbiased(noise):
    p1 = linear_gaussian()
    x1 = p1.sample((8,), ).repeat_interleave(4000, 0)
    with torch.no_grad():
        lp = log_prob(linear, x1, std_normal, steps=20, exact=False, generator=gen(10), noise=noise)
    lp = lp.reshape(8, 4000)
    exact = p1.log_prob(x1[::4000])
    se = lp.std(1) / math.sqrt(4000)
    assert (lp.std(1) > 0).all()
    assert ((lp.mean(1) - exact).abs() < 4 * se + 1e-9).all()


def two_component_mixture():
    means = torch.tensor([[-2.0, 1.0], [1.5, -0.5]], dtype=DT)
    return GaussianMixture(means, torch.tensor([0.4, 0.7], dtype=DT), torch.tensor([0.3, 0.7], dtype=DT))


@pytest.mark.parametrize("q", [two_component_mixture(), eight_gaussians_mixture()], ids=["2-mix", "8-gaussians"])
def test_log_prob_exact_marginal_field_of_mixture(q):
    path = CondOTPath()

    def u(x, t):
        return marginal_velocity(path, q, x, t)

    x1 = q.sample(100, generator=gen(11))
    with torch.no_grad():
        lp = log_prob(u, x1, std_normal, steps=60)
    assert (lp - q.log_prob(x1)).abs().max() < 1e-4
    assert torch.allclose(q.log_prob(x1), marginal_log_prob(path, q, x1, 1.0), atol=1e-12)
    # Hutchinson: the mean over many probes approaches the exact value of the same discretisation
    x1, n = x1[:6], 400
    with torch.no_grad():
        ref = log_prob(u, x1, std_normal, steps=15)
        lp_h = log_prob(u, x1.repeat_interleave(n, 0), std_normal, steps=15, exact=False, generator=gen(12))
    lp_h = lp_h.reshape(6, n)
    se = lp_h.std(1) / math.sqrt(n)
    assert (lp_h.std(1) > 0).all()
    assert ((lp_h.mean(1) - ref).abs() < 4 * se + 1e-9).all()


def test_log_prob_is_differentiable_in_parameters():
    """v = a x carries N(0, I) to N(0, e^{2a} I): d/da log p_1(x) = -d + |x|^2 e^{-2a}."""
    a = torch.tensor(0.4, dtype=DT, requires_grad=True)
    x1 = torch.randn(5, 2, generator=gen(13), dtype=DT)
    lp = log_prob(lambda x, t: a * x, x1, std_normal, steps=40)
    for exact_kind in (True,):
        (grad,) = torch.autograd.grad(lp.sum(), a)
    expected = (-2 + (x1**2).sum(1) * torch.exp(-2 * a.detach())).sum()
    assert torch.allclose(grad, expected, atol=1e-8)
    lp_h = log_prob(lambda x, t: a * x, x1, std_normal, steps=10, exact=False, generator=gen(14))
    (grad_h,) = torch.autograd.grad(lp_h.sum(), a)
    assert torch.allclose(grad_h, expected, atol=1e-6)  # diagonal Jacobian: Rademacher is exact


def test_log_prob_no_grad_returns_detached():
    x1 = torch.randn(4, 2, dtype=DT)
    with torch.no_grad():
        lp = log_prob(linear, x1, std_normal, steps=5)
    assert not lp.requires_grad


# -- bad inputs ---------------------------------------------------------------------------------------------


def test_integrate_bad_method_and_tolerances():
    x0 = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="method must be one of"):
        integrate(linear, x0, method="rk45")
    with pytest.raises(ValueError, match="rtol must be > 0"):
        integrate(linear, x0, method="dopri5", rtol=0.0)
    with pytest.raises(ValueError, match="atol must be > 0"):
        integrate(linear, x0, method="dopri5", atol=-1e-3)
    with pytest.raises(ValueError, match="rtol must be a small positive number below 1"):
        integrate(linear, x0, method="dopri5", rtol=2.0)
    with pytest.raises(TypeError, match="rtol must be a real number"):
        integrate(linear, x0, method="dopri5", rtol="1e-3")
    with pytest.raises(ValueError, match="atol must be finite"):
        integrate(linear, x0, method="dopri5", atol=float("nan"))
    with pytest.raises(ValueError, match="rtol applies only to the adaptive methods"):
        integrate(linear, x0, method="rk4", rtol=1e-3)
    with pytest.raises(TypeError, match="return_nfe must be a bool"):
        integrate(linear, x0, return_nfe=1)
    assert "dopri5" in ADAPTIVE_METHODS


def test_integrate_adaptive_wrong_velocity_shape():
    with pytest.raises(ValueError, match="must return the shape of x"):
        integrate(lambda x, t: x[:, :1], torch.zeros(2, 2), method="dopri5")


def test_divergence_bad_inputs():
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="velocity must be callable"):
        divergence("v", x, 0.5)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim\)"):
        divergence(linear, torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="must return the shape of x"):
        divergence(lambda y, t: y.sum(1), x, 0.5)
    with pytest.raises(ValueError, match="t must lie in"):
        divergence(linear, x, 1.5)
    with pytest.raises(TypeError, match="create_graph must be a bool"):
        divergence(linear, x, 0.5, create_graph="yes")


def test_hutchinson_bad_inputs():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="noise must be one of"):
        hutchinson_divergence(linear, x, 0.5, gen(), noise="uniform")
    with pytest.raises(ValueError, match="n_probes must be a positive int"):
        hutchinson_divergence(linear, x, 0.5, gen(), n_probes=0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        hutchinson_divergence(linear, x, 0.5, generator=3)


def test_log_prob_bad_inputs():
    x1 = torch.zeros(4, 2)
    with pytest.raises(TypeError, match="log_p0 must be callable"):
        log_prob(linear, x1, "normal")
    with pytest.raises(ValueError, match=r"log_p0 must map points of shape \(4, 2\) to log-densities of shape \(4,\)"):
        log_prob(linear, x1, lambda x: -0.5 * x**2)
    with pytest.raises(TypeError, match="log_p0 must return a tensor"):
        log_prob(linear, x1, lambda x: 0.0)
    with pytest.raises(ValueError, match=r"x1 must have shape \(batch, dim\)"):
        log_prob(linear, torch.zeros(4), std_normal)
    with pytest.raises(TypeError, match="x1 must be a torch.Tensor"):
        log_prob(linear, [[0.0, 0.0]], std_normal)
    with pytest.raises(ValueError, match="method must be one of"):
        log_prob(linear, x1, std_normal, method="heun")
    with pytest.raises(ValueError, match="rtol applies only"):
        log_prob(linear, x1, std_normal, method="euler", rtol=1e-4)
    with pytest.raises(ValueError, match="atol must be > 0"):
        log_prob(linear, x1, std_normal, method="dopri5", atol=0.0)
    with pytest.raises(TypeError, match="exact must be a bool"):
        log_prob(linear, x1, std_normal, exact="no")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        log_prob(linear, x1, std_normal, steps=0)
    with pytest.raises(ValueError, match="noise must be one of"):
        log_prob(linear, x1, std_normal, exact=False, noise="bernoulli")
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        log_prob(linear, x1, std_normal, exact=False, generator="seed")
    with pytest.raises(TypeError, match="velocity must be callable"):
        log_prob(None, x1, std_normal)
    with pytest.raises(ValueError, match="must return the shape of x"):
        log_prob(lambda x, t: x[:, :1], x1, std_normal)
