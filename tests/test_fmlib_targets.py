"""Unit tests for fmlib.targets: Gaussian mixtures and the exact marginal fields of affine Gaussian paths.

Known answers used here:

* ``GaussianMixture.log_prob`` against SciPy's ``multivariate_normal``;
* the marginal path of a single Gaussian ``q = N(m, s^2 I)``, which stays Gaussian,
  ``p_t = N(alpha_t m, (alpha_t^2 s^2 + sigma_t^2) I)``, with the velocity of the affine flow
  ``u(x) = d/dt mean + (d/dt std) / std * (x - mean)``; the schedules are re-implemented here and
  differentiated with autograd, independently of fmlib's own derivatives;
* the continuity equation ``d/dt log p_t + div u + u . grad log p_t = 0`` (finite differences);
* a brute-force posterior average of ``path.cond_velocity`` for an empirical target;
* Tweedie's identity ``score = (alpha E[x1 | x] - x) / sigma^2``.

The largest errors are printed (``pytest -s``) and attached with ``record_property``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from fmlib.paths import CondOTPath, CosinePath, CustomPath, VEPath, VPPath
from fmlib.targets import (
    GaussianMixture,
    marginal_log_prob,
    marginal_score,
    marginal_velocity,
    posterior_mean,
)

F64 = torch.float64




def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _report(record_property, key: str, value: float) -> None:
    record_property(key, value)
    print(f"\n[fmlib-targets] {key} = {value:.3e}")


def _vp_T(t, bmin, bmax):
    s = 1.0 - t
    return s * bmin + 0.5 * s**2 * (bmax - bmin)


# path factory and an independent torch implementation of (alpha_t, sigma_t^2)
PATHS = {
    "condot0": (lambda: CondOTPath(), lambda t: (t, (1 - t) ** 2)),
    "condot01": (lambda: CondOTPath(sigma_min=0.1), lambda t: (t, (1 - 0.9 * t) ** 2)),
    "vp": (lambda: VPPath(), lambda t: (torch.exp(-0.5 * _vp_T(t, 0.1, 20.0)), 1 - torch.exp(-_vp_T(t, 0.1, 20.0)))),
    "ve": (lambda: VEPath(sigma_min=0.05, sigma_max=5.0), lambda t: (t * 0 + 1, (0.05 * 100.0 ** (1 - t)) ** 2)),
    "cosine": (lambda: CosinePath(), lambda t: (torch.sin(math.pi * t / 2), torch.cos(math.pi * t / 2) ** 2)),
    "custom": (lambda: CustomPath(lambda t: t**2, lambda t: 1 - t), lambda t: (t**2, (1 - t) ** 2)),
}


def _mixture(dtype=F64) -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.5]], dtype=dtype)
    stds = torch.tensor([0.4, 0.7, 0.3], dtype=dtype)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=dtype)
    return GaussianMixture(means, stds, weights)


def _data() -> torch.Tensor:
    return torch.tensor([[-1.0, 0.5], [0.3, 1.2], [1.1, -0.4], [0.0, -1.5], [2.0, 0.8]], dtype=F64)


# ------------------------------------------------------------------------------------------ GaussianMixture
def test_log_prob_matches_scipy():
    q = _mixture()
    x = torch.randn(50, 2, generator=_gen(1), dtype=F64) * 3
    ref = logsumexp(
        np.stack([
            math.log(float(w)) + multivariate_normal(m.numpy(), float(s) ** 2 * np.eye(2)).logpdf(x.numpy())
            for m, s, w in zip(q.means, q.stds, q.weights)
        ]),
        axis=0,
    )
    np.testing.assert_allclose(q.log_prob(x).numpy(), ref, rtol=1e-12, atol=1e-12)


def test_weights_normalised_and_defaults():
    q = GaussianMixture(torch.zeros(4, 3, dtype=F64), 2.0, torch.tensor([1.0, 1.0, 2.0, 0.0], dtype=F64))
    torch.testing.assert_close(q.weights, torch.tensor([0.25, 0.25, 0.5, 0.0], dtype=F64))
    torch.testing.assert_close(q.stds, torch.full((4,), 2.0, dtype=F64))
    assert q.dim == 3 and q.n_components == 4
    q2 = GaussianMixture(torch.zeros(4, 3, dtype=F64), torch.ones(4, dtype=F64))
    torch.testing.assert_close(q2.weights, torch.full((4,), 0.25, dtype=F64))
    # a mixture of identical components is that component
    x = torch.randn(5, 3, dtype=F64)
    torch.testing.assert_close(q2.log_prob(x), torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1).to(F64))


def test_sample_moments_match_analytic_mean_and_cov():
    q = _mixture()
    n = 200_000
    x = q.sample(n, seed=0)
    assert x.shape == (n, 2) and x.dtype == F64
    w, m, s2 = q.weights, q.means, q.stds**2
    mean = (w[:, None] * m).sum(0)
    cov = (w[:, None, None] * (s2[:, None, None] * torch.eye(2, dtype=F64) + m[:, :, None] * m[:, None, :])).sum(0)
    cov = cov - torch.outer(mean, mean)
    se_mean = torch.sqrt(torch.diagonal(cov) / n)
    assert ((x.mean(0) - mean).abs() < 5 * se_mean).all()
    c = x - mean
    emp_cov = c.T @ c / n
    prod = c[:, :, None] * c[:, None, :]
    se_cov = prod.std(0) / math.sqrt(n)
    assert ((emp_cov - cov).abs() < 5 * se_cov + 1e-12).all()


def test_sample_reproducible_and_dtype():
    q = _mixture()
    torch.testing.assert_close(q.sample(10, seed=3), q.sample(10, generator=_gen(3)))
    assert not torch.equal(q.sample(10, seed=3), q.sample(10, seed=4))
    q32 = q.to(dtype=torch.float32)
    x32 = q32.sample(10, seed=3)
    assert x32.dtype == torch.float32
    torch.testing.assert_close(x32, q.sample(10, seed=3).float())  # same draws whatever the dtype
    torch.manual_seed(9)
    a = q.sample(5)
    torch.manual_seed(9)
    torch.testing.assert_close(a, q.sample(5))
    with pytest.raises(ValueError, match="n must be a positive int"):
        q.sample(0)


def test_score_is_autograd_of_log_prob():
    q = _mixture()
    x = (torch.randn(20, 2, generator=_gen(2), dtype=F64) * 2).requires_grad_(True)
    (g,) = torch.autograd.grad(q.log_prob(x).sum(), x)
    torch.testing.assert_close(q.score(x.detach()), g, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------- single Gaussian, closed form
def _closed_form(ref, m, s, x, t: float):
    """(log p_t, score, velocity, posterior mean) of the Gaussian path from q = N(m, s^2 I), via autograd in t."""
    tt = torch.tensor(t, dtype=F64, requires_grad=True)
    alpha, sigma2 = ref(tt)
    var = alpha**2 * s**2 + sigma2
    std = torch.sqrt(var)
    (d_alpha,) = torch.autograd.grad(alpha, tt, retain_graph=True)
    (d_std,) = torch.autograd.grad(std, tt)
    alpha, var, std = alpha.detach(), var.detach(), std.detach()
    mean = alpha * m
    logp = torch.distributions.Normal(mean, std).log_prob(x).sum(1)
    score = -(x - mean) / var
    vel = d_alpha * m + (d_std / std) * (x - mean)
    post = m + alpha * s**2 / var * (x - mean)
    return logp, score, vel, post


@pytest.mark.parametrize("name", sorted(PATHS))
def test_single_gaussian_marginals_match_closed_form(name, record_property):
    make, ref = PATHS[name]
    path = make()
    m = torch.tensor([0.7, -1.3], dtype=F64)
    s = 0.6
    q = GaussianMixture(m[None], s)
    x = torch.randn(16, 2, generator=_gen(4), dtype=F64) * 2
    worst = {"log_prob": 0.0, "score": 0.0, "velocity": 0.0, "posterior_mean": 0.0}
    for t in (0.0, 0.1, 0.3, 0.5, 0.8, 0.95, 1.0):
        logp, score, vel, post = _closed_form(ref, m, s, x, t)
        got = {
            "log_prob": marginal_log_prob(path, q, x, t),
            "score": marginal_score(path, q, x, t),
            "velocity": marginal_velocity(path, q, x, t),
            "posterior_mean": posterior_mean(path, q, x, t),
        }
        for key, want in zip(worst, (logp, score, vel, post)):
            assert torch.isfinite(got[key]).all(), (key, t)
            err = float((got[key] - want).abs().max() / (1 + want.abs().max()))
            worst[key] = max(worst[key], err)
            torch.testing.assert_close(got[key], want, rtol=1e-9, atol=1e-9, msg=lambda msg: f"{key} t={t}: {msg}")
    for key, err in worst.items():
        _report(record_property, f"single_gaussian_{name}_{key}_max_rel_err", err)


def test_condot_velocity_endpoints_known_answers():
    # CondOT(sigma_min=0): u_0(x) = E[x1] - x (x_0 is pure noise) and u_1(x) = x (E[x0 | x1 = x] = 0).
    path = CondOTPath()
    x = torch.randn(10, 2, generator=_gen(5), dtype=F64)
    q = _mixture()
    mean = (q.weights[:, None] * q.means).sum(0)
    torch.testing.assert_close(marginal_velocity(path, q, x, 0.0), mean - x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(marginal_velocity(path, q, x, 1.0), x, rtol=1e-12, atol=1e-12)
    data = _data()
    torch.testing.assert_close(marginal_velocity(path, data, x, 0.0), data.mean(0) - x, rtol=1e-12, atol=1e-12)


def test_marginal_at_t1_condot_equals_data_distribution():
    q = _mixture()
    x = torch.randn(30, 2, generator=_gen(6), dtype=F64) * 2
    path = CondOTPath(sigma_min=0.0)
    torch.testing.assert_close(marginal_log_prob(path, q, x, 1.0), q.log_prob(x), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(marginal_score(path, q, x, 1.0), q.score(x), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(posterior_mean(path, q, x, 1.0), x, rtol=1e-13, atol=1e-13)
    # and at t = 0 the marginal is the source N(0, I)
    torch.testing.assert_close(
        marginal_log_prob(path, q, x, 0.0), torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1).to(F64)
    )


@pytest.mark.parametrize("name", sorted(PATHS))
@pytest.mark.parametrize("target", ["mixture", "empirical"])
def test_marginal_score_is_autograd_of_marginal_log_prob(name, target):
    path = PATHS[name][0]()
    q = _mixture() if target == "mixture" else _data()
    x = (torch.randn(12, 2, generator=_gen(7), dtype=F64) * 2).requires_grad_(True)
    t = torch.linspace(0.0, 0.9, 12, dtype=F64)
    (g,) = torch.autograd.grad(marginal_log_prob(path, q, x, t).sum(), x)
    torch.testing.assert_close(marginal_score(path, q, x.detach(), t), g, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(PATHS))
@pytest.mark.parametrize("target", ["mixture", "empirical"])
def test_tweedie_identity(name, target):
    path, ref = PATHS[name]
    path = path()
    q = _mixture() if target == "mixture" else _data()
    x = torch.randn(12, 2, generator=_gen(8), dtype=F64) * 2
    t = torch.linspace(0.0, 0.95, 12, dtype=F64)
    alpha, sigma2 = ref(t)
    lhs = marginal_score(path, q, x, t)
    rhs = (alpha[:, None] * posterior_mean(path, q, x, t) - x) / sigma2[:, None]
    torch.testing.assert_close(lhs, rhs, rtol=1e-8, atol=1e-8)


# ----------------------------------------------------------------------------------------- continuity equation
CONTINUITY_PATHS = {
    "condot": CondOTPath(),
    "vp": VPPath(),
    "ve": VEPath(),
}


def _continuity_residual(path, q, x, t: float, ht: float = 1e-5, hx: float = 1e-5):
    """(max |residual|, max |residual| / scale) of d/dt log p + div u + u . grad log p at points x."""
    dlogp = (marginal_log_prob(path, q, x, t + ht) - marginal_log_prob(path, q, x, t - ht)) / (2 * ht)
    div = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = hx
        div += (marginal_velocity(path, q, x + e, t)[:, i] - marginal_velocity(path, q, x - e, t)[:, i]) / (2 * hx)
    u = marginal_velocity(path, q, x, t)
    transport = (u * marginal_score(path, q, x, t)).sum(1)
    res = dlogp + div + transport
    scale = dlogp.abs() + div.abs() + transport.abs()
    return float(res.abs().max()), float((res.abs() / (1 + scale)).max())


@pytest.mark.parametrize("name", sorted(CONTINUITY_PATHS))
@pytest.mark.parametrize("target", ["mixture", "empirical"])
def test_continuity_equation(name, target, record_property):
    path = CONTINUITY_PATHS[name]
    q = _mixture() if target == "mixture" else _data()
    g = _gen(10)
    worst_abs = worst_rel = 0.0
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        # typical points of p_t (x_t = alpha x1 + sigma x0) plus a few spread-out ones
        x1 = q.sample(24, generator=g) if target == "mixture" else q[torch.randint(0, q.shape[0], (24,), generator=g)]
        x0 = torch.randn(24, 2, generator=g, dtype=F64)
        x = torch.cat([path.sample(x0, x1, t), torch.randn(8, 2, generator=g, dtype=F64) * 2])
        a, r = _continuity_residual(path, q, x, t)
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
    _report(record_property, f"continuity_{name}_{target}_max_abs_residual", worst_abs)
    _report(record_property, f"continuity_{name}_{target}_max_rel_residual", worst_rel)
    assert worst_rel < 1e-5
    assert worst_abs < 1e-3


# ---------------------------------------------------------------------------------- empirical target, brute force
def _brute_force_velocity(path, data, x, t: float, ref) -> torch.Tensor:
    alpha, sigma2 = (float(v) for v in ref(torch.tensor(t, dtype=F64)))
    out = torch.zeros_like(x)
    for j in range(x.shape[0]):
        logw = torch.tensor(
            [-float(((x[j] - alpha * d) ** 2).sum()) / (2 * sigma2) for d in data], dtype=F64
        )
        w = torch.softmax(logw, 0)
        for i, d in enumerate(data):
            u_i = path.cond_velocity(x[j : j + 1], d[None], t)
            out[j] += w[i] * u_i[0]
    return out


@pytest.mark.parametrize("name", ["condot01", "vp", "ve", "cosine", "custom"])
def test_empirical_velocity_equals_brute_force_posterior_average(name, record_property):
    make, ref = PATHS[name]
    path = make()
    data = _data()
    x = torch.randn(6, 2, generator=_gen(11), dtype=F64) * 1.5
    worst = 0.0
    for t in (0.0, 0.3, 0.6, 0.9) + ((1.0,) if name in ("condot01", "ve") else ()):
        got = marginal_velocity(path, data, x, t)
        want = _brute_force_velocity(path, data, x, t, ref)
        worst = max(worst, float((got - want).abs().max()))
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    _report(record_property, f"empirical_bruteforce_{name}_max_abs_err", worst)


def test_empirical_single_point_condot_velocity():
    # one data point x1*, CondOT(sigma_min = 0): u_t(x) = (x1* - x) / (1 - t)
    x1 = torch.tensor([[0.5, -2.0]], dtype=F64)
    x = torch.randn(5, 2, generator=_gen(12), dtype=F64)
    for t in (0.0, 0.4, 0.9):
        torch.testing.assert_close(marginal_velocity(CondOTPath(), x1, x, t), (x1 - x) / (1 - t))


# ------------------------------------------------------------------------------------------ autograd / dtypes
@pytest.mark.parametrize("name", ["condot01", "vp", "custom"])
def test_gradcheck_marginal_velocity(name):
    path = PATHS[name][0]()
    q = GaussianMixture(torch.tensor([[0.0, 1.0], [1.0, -1.0]], dtype=F64), torch.tensor([0.5, 0.8], dtype=F64))
    x = torch.tensor([[0.3, -0.2], [1.1, 0.4]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.3, 0.7], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, t: marginal_velocity(path, q, x, t), (x, t))
    assert torch.autograd.gradcheck(lambda x, t: marginal_log_prob(path, q, x, t), (x, t))
    data = _data()[:3]
    assert torch.autograd.gradcheck(lambda x, t: marginal_velocity(path, data, x, t), (x, t))


@pytest.mark.parametrize("target", ["mixture", "empirical"])
def test_float32_in_float32_out(target):
    q = _mixture() if target == "mixture" else _data()  # float64 target, float32 points
    x = torch.randn(7, 2, dtype=torch.float32)
    for fn in (marginal_log_prob, marginal_score, marginal_velocity, posterior_mean):
        for t in (0.5, torch.full((7,), 0.5, dtype=F64)):
            out = fn(VPPath(), q, x, t)
            assert out.dtype == torch.float32
            assert out.shape == ((7,) if fn is marginal_log_prob else (7, 2))
    if target == "mixture":
        q32 = _mixture(torch.float32)
        assert q32.log_prob(x).dtype == torch.float32 and q32.score(x).dtype == torch.float32
        torch.testing.assert_close(
            marginal_velocity(CosinePath(), q32, x, 0.4),
            marginal_velocity(CosinePath(), q, x.double(), 0.4).float(),
            rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("target", ["mixture", "empirical"])
@pytest.mark.parametrize("path", [CondOTPath(0.01), VPPath(), VEPath()], ids=["condot", "vp", "ve"])
def test_far_away_points_are_finite(dtype, target, path):
    q = _mixture() if target == "mixture" else _data()
    x = torch.tensor([[1e3, 1e3], [-1e3, 5.0], [0.0, 1e3]], dtype=dtype)
    for t in (0.0, 0.5, 0.99):
        for fn in (marginal_log_prob, marginal_score, marginal_velocity, posterior_mean):
            assert torch.isfinite(fn(path, q, x, t)).all(), (fn.__name__, t)
    if target == "mixture":
        assert torch.isfinite(q.log_prob(x.double())).all() and torch.isfinite(q.score(x.double())).all()


def test_far_away_single_gaussian_matches_closed_form():
    m = torch.tensor([0.7, -1.3], dtype=F64)
    q = GaussianMixture(m[None], 0.6)
    x = torch.tensor([[1e3, -1e3], [5e2, 0.0]], dtype=F64)
    ref = PATHS["vp"][1]
    logp, score, vel, _ = _closed_form(ref, m, 0.6, x, 0.5)
    torch.testing.assert_close(marginal_log_prob(VPPath(), q, x, 0.5), logp, rtol=1e-12, atol=0)
    torch.testing.assert_close(marginal_score(VPPath(), q, x, 0.5), score, rtol=1e-12, atol=0)
    torch.testing.assert_close(marginal_velocity(VPPath(), q, x, 0.5), vel, rtol=1e-10, atol=0)


# ------------------------------------------------------------------------------------------------ errors
def test_mixture_constructor_errors():
    means = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(ValueError, match="stds must be > 0"):
        GaussianMixture(means, torch.tensor([1.0, -0.5, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="stds must be > 0"):
        GaussianMixture(means, 0.0)
    with pytest.raises(ValueError, match=r"stds must have shape \(3,\)"):
        GaussianMixture(means, torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match=r"stds must have shape \(3,\)"):
        GaussianMixture(means, torch.ones(3, 1, dtype=F64))
    with pytest.raises(TypeError, match="stds must be a float or a tensor"):
        GaussianMixture(means, "1")
    with pytest.raises(ValueError, match="stds contains NaN"):
        GaussianMixture(means, torch.tensor([1.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="weights must be >= 0"):
        GaussianMixture(means, 1.0, torch.tensor([0.5, -0.1, 0.6]))
    with pytest.raises(ValueError, match="weights must not all be zero"):
        GaussianMixture(means, 1.0, torch.zeros(3))
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\)"):
        GaussianMixture(means, 1.0, torch.ones(4))
    with pytest.raises(TypeError, match="weights must be a tensor"):
        GaussianMixture(means, 1.0, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"means must have shape \(batch, dim\)"):
        GaussianMixture(torch.zeros(3), 1.0)


def test_marginal_errors():
    q = _mixture()
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="x must have dim = 2 columns"):
        q.log_prob(torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="x must have dim = 2 columns to match the mixture"):
        marginal_velocity(CondOTPath(), q, torch.zeros(4, 3, dtype=F64), 0.5)
    with pytest.raises(ValueError, match=r"q \(data tensor\) must have the same dim as x"):
        marginal_score(CondOTPath(), torch.zeros(5, 3, dtype=F64), x, 0.5)
    with pytest.raises(TypeError, match="q must be a GaussianMixture or a data tensor"):
        marginal_log_prob(CondOTPath(), [[0.0, 0.0]], x, 0.5)
    with pytest.raises(TypeError, match="path must be an fmlib.paths.AffinePath"):
        marginal_log_prob("condot", q, x, 0.5)
    with pytest.raises(ValueError, match=r"point mass at t = 1"):
        marginal_velocity(CondOTPath(sigma_min=0.0), _data(), x, 1.0)
    with pytest.raises(ValueError, match=r"point mass at t = 1"):
        marginal_log_prob(CondOTPath(sigma_min=0.0), _data(), x, torch.tensor([0.5, 1.0, 0.2, 0.3], dtype=F64))
    with pytest.raises(ValueError, match="t must lie in"):
        marginal_score(CondOTPath(), q, x, 1.5)
    with pytest.raises(ValueError, match=r"t must be a float or a tensor of shape \(4,\)"):
        posterior_mean(CondOTPath(), q, x, torch.full((4, 1), 0.5))
