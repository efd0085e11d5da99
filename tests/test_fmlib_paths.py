"""Unit tests for fmlib.paths: schedules, sampling, conditional fields and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib.paths import CondOTPath, CosinePath, CustomPath, Schedule, VEPath, VPPath

F64 = torch.float64


TS = [0.0, 0.1, 0.37, 0.5, 0.9, 1.0]


def _vp_reference(t: float, beta_min: float, beta_max: float) -> tuple[float, float]:
    """Lipman et al. (2022): alpha_t = exp(-T(1 - t)/2), T(s) = s b_min + s^2 (b_max - b_min)/2."""
    s = 1.0 - t
    T = s * beta_min + 0.5 * s**2 * (beta_max - beta_min)
    alpha = math.exp(-0.5 * T)
    return alpha, math.sqrt(1.0 - alpha**2)


def _custom_path() -> CustomPath:
    return CustomPath(lambda t: t**2, lambda t: 1.0 - t)


# Every path, with its schedule written out independently (alpha, sigma as Python functions of t).
REFERENCE = {
    "condot0": (lambda: CondOTPath(), lambda t: (t, 1.0 - t)),
    "condot01": (lambda: CondOTPath(sigma_min=0.1), lambda t: (t, 1.0 - 0.9 * t)),
    "vp": (lambda: VPPath(), lambda t: _vp_reference(t, 0.1, 20.0)),
    "vp_small": (lambda: VPPath(beta_min=0.5, beta_max=3.0), lambda t: _vp_reference(t, 0.5, 3.0)),
    "ve": (lambda: VEPath(), lambda t: (1.0, 0.01 * 1000.0 ** (1.0 - t))),
    "ve2": (lambda: VEPath(sigma_min=0.5, sigma_max=2.0), lambda t: (1.0, 0.5 * 4.0 ** (1.0 - t))),
    "cosine": (lambda: CosinePath(), lambda t: (math.sin(math.pi * t / 2), math.cos(math.pi * t / 2))),
    "custom": (_custom_path, lambda t: (t**2, 1.0 - t)),
}


# ------------------------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("t", TS)
def test_schedule_values(name, t):
    make, ref = REFERENCE[name]
    s = make().schedule(t)
    assert isinstance(s, Schedule)
    a, sig = ref(t)
    assert float(s.alpha) == pytest.approx(a, rel=1e-12, abs=1e-14)
    assert float(s.sigma) == pytest.approx(sig, rel=1e-12, abs=1e-14)


def test_condot_known_values():
    s = CondOTPath(sigma_min=0.1).schedule(torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    torch.testing.assert_close(s.alpha, torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    torch.testing.assert_close(s.sigma, torch.tensor([1.0, 0.55, 0.1], dtype=F64))
    torch.testing.assert_close(s.d_alpha, torch.ones(3, dtype=F64))
    torch.testing.assert_close(s.d_sigma, torch.full((3,), -0.9, dtype=F64))


def test_vp_endpoints_and_variance_preservation():
    p = VPPath()
    t = torch.linspace(0, 1, 11, dtype=F64)
    s = p.schedule(t)
    torch.testing.assert_close(s.alpha**2 + s.sigma**2, torch.ones_like(t), rtol=0, atol=1e-14)
    assert float(s.alpha[-1]) == 1.0 and float(s.sigma[-1]) == 0.0
    # alpha_0 = exp(-(0.1 + 19.9/2)/2) = exp(-5.025)
    assert float(s.alpha[0]) == pytest.approx(math.exp(-5.025), rel=1e-14)


def test_schedule_of_float_is_float64_scalar():
    s = CondOTPath().schedule(0.25)
    for field in s:
        assert field.shape == () and field.dtype == F64


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_schedule_keeps_shape_and_dtype(name, dtype):
    t = torch.tensor([[0.1, 0.2], [0.6, 0.8]], dtype=dtype)
    s = REFERENCE[name][0]().schedule(t)
    for field in s:
        assert field.shape == t.shape and field.dtype == dtype


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_derivatives_match_autograd_and_finite_differences(name):
    path = REFERENCE[name][0]()
    t = torch.tensor([0.05, 0.3, 0.5, 0.77, 0.95], dtype=F64, requires_grad=True)
    s = path.schedule(t)
    ga, gs = (
        torch.autograd.grad(f.sum(), t, retain_graph=True)[0] if f.requires_grad else torch.zeros_like(t)
        for f in (s.alpha, s.sigma)
    )
    torch.testing.assert_close(s.d_alpha.detach(), ga, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s.d_sigma.detach(), gs, rtol=1e-10, atol=1e-12)
    # central differences on the independent reference schedule
    ref = REFERENCE[name][1]
    h = 1e-6
    s = Schedule(*(f.detach() for f in s))
    for i, ti in enumerate(t.detach().tolist()):
        (ap, sp), (am, sm) = ref(ti + h), ref(ti - h)
        assert float(s.d_alpha[i]) == pytest.approx((ap - am) / (2 * h), rel=1e-6, abs=1e-8)
        assert float(s.d_sigma[i]) == pytest.approx((sp - sm) / (2 * h), rel=1e-6, abs=1e-8)


def test_vp_sigma_dsigma_finite_at_one_while_dsigma_is_inf():
    p = VPPath()
    t = torch.tensor([0.5, 0.999, 1.0], dtype=F64)
    s = p.schedule(t)
    assert math.isinf(float(s.d_sigma[-1])) and float(s.d_sigma[-1]) < 0
    assert torch.isfinite(s.d_sigma[:2]).all()
    sds = p._sigma_dsigma(t)
    assert torch.isfinite(sds).all()
    # sigma * d_sigma = -alpha * d_alpha = -alpha^2 T'(1 - t) / 2; at t = 1: -beta_min / 2
    torch.testing.assert_close(sds, -s.alpha * s.d_alpha, rtol=1e-12, atol=0)
    assert float(sds[-1]) == pytest.approx(-0.05, rel=1e-14)
    torch.testing.assert_close(sds[:2], (s.sigma * s.d_sigma)[:2], rtol=1e-10, atol=0)


def test_cosine_sigma_dsigma_override():
    p = CosinePath()
    t = torch.linspace(0, 1, 7, dtype=F64)
    s = p.schedule(t)
    torch.testing.assert_close(p._sigma_dsigma(t), s.sigma * s.d_sigma, rtol=1e-12, atol=1e-15)


def test_custom_path_explicit_derivatives_and_constant_schedule():
    p = CustomPath(lambda t: t, lambda t: 1 - t, d_alpha=lambda t: torch.full_like(t, 2.0), d_sigma=lambda t: -t)
    s = p.schedule(torch.tensor([0.5], dtype=F64))
    assert float(s.d_alpha) == 2.0 and float(s.d_sigma) == -0.5  # the user's functions are used as given
    # a constant schedule: autograd gives a zero derivative (VE-like path written as a CustomPath)
    ve_like = CustomPath(lambda t: torch.ones_like(t), lambda t: 2.0 * torch.exp(-t))
    s = ve_like.schedule(torch.tensor([0.2, 0.7], dtype=F64))
    torch.testing.assert_close(s.d_alpha, torch.zeros(2, dtype=F64))
    torch.testing.assert_close(s.d_sigma, -2.0 * torch.exp(-torch.tensor([0.2, 0.7], dtype=F64)))


def test_custom_path_autograd_derivative_is_differentiable_in_t():
    p = CustomPath(lambda t: t**3, lambda t: 1 - t)
    t = torch.tensor([0.3, 0.6], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(p.schedule(t).d_alpha.sum(), t)
    torch.testing.assert_close(g, 6 * t.detach())  # d/dt (3 t^2)


def test_time_rounding_overshoot_is_clamped():
    # values up to 1e-6 outside [0, 1] are accepted (solver rounding); they must not produce NaN
    s = VPPath().schedule(1.0 + 5e-7)
    assert float(s.sigma) == 0.0 and float(s.alpha) == 1.0
    x = torch.ones(2, 2, dtype=F64)
    torch.testing.assert_close(CondOTPath().sample(x, 2 * x, 1 + 5e-7), 2 * x)
    torch.testing.assert_close(CondOTPath().sample(x, 2 * x, -5e-7), x)


# ------------------------------------------------------------------------------------------------ sampling
@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, 3, generator=g, dtype=F64)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_sample_equals_formula(name, pair):
    x0, x1 = pair
    make, ref = REFERENCE[name]
    path = make()
    t = torch.tensor([0.0, 0.1, 0.4, 0.6, 0.99, 1.0], dtype=F64)
    xt = path.sample(x0, x1, t)
    coeffs = torch.tensor([ref(ti) for ti in t.tolist()], dtype=F64)
    torch.testing.assert_close(xt, coeffs[:, :1] * x1 + coeffs[:, 1:] * x0, rtol=1e-12, atol=1e-12)
    # float time is broadcast over the batch
    a, s = ref(0.3)
    torch.testing.assert_close(path.sample(x0, x1, 0.3), a * x1 + s * x0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(path.sample(x0, x1, torch.tensor(0.3, dtype=F64)), a * x1 + s * x0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_target_velocity_is_time_derivative_of_sample_and_cond_velocity(name, pair):
    x0, x1 = pair
    path = REFERENCE[name][0]()
    t = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.8, 0.95], dtype=F64)
    target = path.target_velocity(x0, x1, t)
    h = 1e-6
    fd = (path.sample(x0, x1, t + h) - path.sample(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(target, fd, rtol=1e-6, atol=1e-6)
    xt = path.sample(x0, x1, t)
    torch.testing.assert_close(path.cond_velocity(xt, x1, t), target, rtol=1e-9, atol=1e-9)


def test_target_velocity_condot_at_t_one_and_vp_at_t_one(pair):
    x0, x1 = pair
    torch.testing.assert_close(CondOTPath().target_velocity(x0, x1, 1.0), x1 - x0)
    torch.testing.assert_close(CondOTPath(sigma_min=0.1).target_velocity(x0, x1, 1.0), x1 - 0.9 * x0)
    with pytest.raises(ValueError, match="infinite at t = 1"):
        VPPath().target_velocity(x0, x1, 1.0)


def test_cond_velocity_condot_closed_form(pair):
    x, x1 = pair
    # sigma_min = 0: u_t(x | x1) = (x1 - x) / (1 - t)
    t = torch.linspace(0.0, 0.9, 6, dtype=F64)
    torch.testing.assert_close(CondOTPath().cond_velocity(x, x1, t), (x1 - x) / (1 - t)[:, None])


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_cond_score_is_gradient_of_gaussian_log_density(name, pair):
    x, x1 = pair
    make, ref = REFERENCE[name]
    path = make()
    t = torch.tensor([0.0, 0.15, 0.4, 0.6, 0.85, 0.95], dtype=F64)
    coeffs = torch.tensor([ref(ti) for ti in t.tolist()], dtype=F64)
    a, s = coeffs[:, :1], coeffs[:, 1:]
    xr = x.clone().requires_grad_(True)
    logp = torch.distributions.Normal(a * x1, s).log_prob(xr).sum()
    (g,) = torch.autograd.grad(logp, xr)
    torch.testing.assert_close(path.cond_score(x, x1, t), g, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_dtype_preserved(name, dtype):
    path = REFERENCE[name][0]()
    x0 = torch.randn(4, 2, dtype=dtype)
    x1 = torch.randn(4, 2, dtype=dtype)
    for t in (0.5, torch.full((4,), 0.5, dtype=F64), torch.full((4,), 0.5, dtype=torch.float32)):
        for fn in (path.sample, path.target_velocity, path.cond_velocity, path.cond_score):
            out = fn(x0, x1, t)
            assert out.dtype == dtype and out.shape == (4, 2)


# ------------------------------------------------------------------------------------------------ errors
def test_error_mismatched_batch():
    p = CondOTPath()
    with pytest.raises(ValueError, match="x0 and x1 must have the same shape"):
        p.sample(torch.zeros(3, 2), torch.zeros(4, 2), 0.5)
    with pytest.raises(ValueError, match="x0 and x1 must have the same shape"):
        p.target_velocity(torch.zeros(3, 2), torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="x and x1 must have the same shape"):
        p.cond_velocity(torch.zeros(3, 2), torch.zeros(4, 2), 0.5)
    with pytest.raises(ValueError, match="x and x1 must have the same shape"):
        p.cond_score(torch.zeros(3, 2), torch.zeros(4, 2), 0.5)


@pytest.mark.parametrize("t", [-0.1, 1.1, 2, float("nan"), torch.tensor([0.5, 1.5, 0.2])])
def test_error_t_out_of_range(t):
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"^t (must lie in|contains NaN)"):
        CondOTPath().sample(x, x, t)


@pytest.mark.parametrize("bad", [-0.01, 1.5])
def test_error_schedule_t_out_of_range(bad):
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        VPPath().schedule(bad)


@pytest.mark.parametrize("shape", [(4,), (3, 1), (1, 3), (2,)])
def test_error_t_wrong_shape(shape):
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"t must be a float or a tensor of shape \(3,\)"):
        CondOTPath().sample(x, x, torch.full(shape, 0.5))


@pytest.mark.parametrize("t", ["0.5", None, True, [0.5, 0.5, 0.5]])
def test_error_t_wrong_type(t):
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="^t must be a float"):
        CondOTPath().sample(x, x, t)


def test_error_wrong_ndim_and_type():
    p = CosinePath()
    with pytest.raises(ValueError, match=r"x0 must have shape \(batch, dim\)"):
        p.sample(torch.zeros(3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"x1 must have shape \(batch, dim\)"):
        p.sample(torch.zeros(3, 2), torch.zeros(3, 2, 1), 0.5)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim\)"):
        p.cond_score(torch.zeros(2, 2, 2), torch.zeros(2, 2), 0.5)
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        p.sample([[0.0, 0.0]], torch.zeros(1, 2), 0.5)


def test_error_integer_dtype():
    with pytest.raises(TypeError, match="x0 must be a floating-point tensor"):
        CondOTPath().sample(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2), 0.5)
    with pytest.raises(TypeError, match="x1 must be a floating-point tensor"):
        CondOTPath().target_velocity(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.int32), 0.5)


def test_error_constructor_arguments():
    with pytest.raises(ValueError, match="sigma_min must be >= 0"):
        CondOTPath(sigma_min=-0.1)
    with pytest.raises(ValueError, match=r"sigma_min must lie in \[0, 1\)"):
        CondOTPath(sigma_min=1.0)
    with pytest.raises(ValueError, match=r"sigma_min must lie in \[0, 1\)"):
        CondOTPath(sigma_min=2.5)
    with pytest.raises(TypeError, match="sigma_min must be a real number"):
        CondOTPath(sigma_min="0.1")
    with pytest.raises(ValueError, match="sigma_min must be finite"):
        CondOTPath(sigma_min=float("nan"))
    with pytest.raises(ValueError, match="sigma_max must be > sigma_min"):
        VEPath(sigma_min=1.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="sigma_max must be > sigma_min"):
        VEPath(sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="sigma_min must be > 0"):
        VEPath(sigma_min=0.0)
    with pytest.raises(ValueError, match="beta_max must be >= beta_min"):
        VPPath(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="beta_min must be >= 0"):
        VPPath(beta_min=-1.0)
    with pytest.raises(ValueError, match="beta_max must be > 0"):
        VPPath(beta_min=0.0, beta_max=0.0)
    with pytest.raises(TypeError, match="sigma must be callable"):
        CustomPath(lambda t: t, 1.0)
    with pytest.raises(TypeError, match="d_alpha must be callable"):
        CustomPath(lambda t: t, lambda t: 1 - t, d_alpha=3)


def test_error_cond_fields_where_sigma_is_zero():
    x = torch.zeros(3, 2, dtype=F64)
    p = CondOTPath(sigma_min=0.0)
    t = torch.tensor([0.2, 1.0, 0.5], dtype=F64)
    with pytest.raises(ValueError, match=r"cond_velocity is undefined where sigma_t = 0 \(got t = 1\)"):
        p.cond_velocity(x, x, t)
    with pytest.raises(ValueError, match=r"cond_score is undefined where sigma_t = 0"):
        p.cond_score(x, x, 1.0)
    with pytest.raises(ValueError, match="sigma_t = 0"):
        VPPath().cond_velocity(x, x, 1.0)
    # with sigma_min > 0 everything is finite at t = 1
    assert torch.isfinite(CondOTPath(sigma_min=0.1).cond_score(x, x + 1, 1.0)).all()


def test_repr():
    assert repr(CondOTPath(0.1)) == "CondOTPath(sigma_min=0.1)"
    assert "beta_max=20.0" in repr(VPPath())
