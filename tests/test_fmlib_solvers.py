"""Unit tests for fmlib.solvers.integrate: convergence orders, trajectories, time arguments and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmlib.solvers import EVALS_PER_STEP, METHODS, integrate

F64 = torch.float64




def linear_in_time(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx/dt = t x, solved by x(t) = x(0) exp(t^2 / 2)."""
    return t[:, None] * x


X0 = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], dtype=F64)


@pytest.mark.parametrize(
    "method, order, steps",
    [("euler", 1, [16, 32, 64, 128]), ("midpoint", 2, [8, 16, 32, 64]), ("rk4", 4, [4, 8, 16, 32])],
)
def test_convergence_order(method, order, steps):
    exact = X0 * math.exp(0.5)
    errors = [float((integrate(linear_in_time, X0, 0.0, 1.0, steps=n, method=method) - exact).abs().max()) for n in steps]
    hs = [1.0 / n for n in steps]
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (method, slope, errors)
    assert errors[-1] < errors[0]


def test_rk4_is_accurate():
    out = integrate(linear_in_time, X0, steps=50, method="rk4")
    torch.testing.assert_close(out, X0 * math.exp(0.5), rtol=1e-9, atol=1e-9)


def test_partial_interval_and_backward_integration():
    # from t0 = 0.2 to t1 = 0.7: x(0.7) = x(0.2) exp((0.49 - 0.04) / 2)
    out = integrate(linear_in_time, X0, 0.2, 0.7, steps=40, method="rk4")
    torch.testing.assert_close(out, X0 * math.exp(0.225), rtol=1e-10, atol=1e-10)
    # backward from t = 1 to t = 0 undoes the growth
    back = integrate(linear_in_time, X0 * math.exp(0.5), 1.0, 0.0, steps=40, method="rk4")
    torch.testing.assert_close(back, X0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_forward_then_backward_returns_to_start(method):
    def v(x, t):
        return torch.stack([torch.sin(3 * t) * x[:, 1], -x[:, 0] + t], dim=1)

    x1 = integrate(v, X0, 0.0, 1.0, steps=400, method=method)
    x0 = integrate(v, x1, 1.0, 0.0, steps=400, method=method)
    tol = {"euler": 5e-2, "midpoint": 1e-4, "rk4": 1e-9}[method]
    torch.testing.assert_close(x0, X0, rtol=0, atol=tol)


def test_zero_length_interval_is_identity():
    torch.testing.assert_close(integrate(linear_in_time, X0, 0.5, 0.5, steps=3), X0)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_trajectory_shape_and_endpoints(method):
    traj = integrate(linear_in_time, X0, steps=7, method=method, trajectory=True)
    assert traj.shape == (8, 3, 2)
    torch.testing.assert_close(traj[0], X0, rtol=0, atol=0)
    final = integrate(linear_in_time, X0, steps=7, method=method)
    torch.testing.assert_close(traj[-1], final, rtol=0, atol=0)
    # euler trajectory: x_{n+1} = x_n (1 + h t_n)
    if method == "euler":
        h = 1 / 7
        ref = [X0]
        for n in range(7):
            ref.append(ref[-1] * (1 + h * n * h))
        torch.testing.assert_close(traj, torch.stack(ref), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_velocity_receives_batch_times_of_x_dtype(method, dtype):
    calls = []

    def v(x, t):
        calls.append((tuple(t.shape), t.dtype, t.device, float(t[0]), bool((t == t[0]).all())))
        return torch.zeros_like(x)

    x = torch.zeros(5, 3, dtype=dtype)
    out = integrate(v, x, 0.0, 1.0, steps=4, method=method)
    assert out.dtype == dtype
    assert len(calls) == 4 * EVALS_PER_STEP[method]
    for shape, tdtype, device, _, constant in calls:
        assert shape == (5,) and tdtype == dtype and device == x.device and constant
    times = sorted({round(c[3], 6) for c in calls})
    expected = {
        "euler": [0.0, 0.25, 0.5, 0.75],
        "midpoint": [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875],
        "rk4": [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0],
    }[method]
    assert times == expected


def test_gradients_flow_through_solver():
    x0 = X0.clone().requires_grad_(True)
    out = integrate(linear_in_time, x0, steps=20, method="rk4")
    (g,) = torch.autograd.grad(out.sum(), x0)
    torch.testing.assert_close(g, torch.full_like(X0, math.exp(0.5)), rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_method():
    with pytest.raises(ValueError, match=r"method must be one of \[.euler., .midpoint., .rk4.\].*; got .heun."):
        integrate(linear_in_time, X0, method="heun")
    with pytest.raises(ValueError, match="method must be one of"):
        integrate(linear_in_time, X0, method=None)


@pytest.mark.parametrize("steps, exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("10", TypeError)])
def test_bad_steps(steps, exc):
    with pytest.raises(exc, match="steps must be a positive int"):
        integrate(linear_in_time, X0, steps=steps)


@pytest.mark.parametrize("name, kwargs", [("t0", {"t0": -0.1}), ("t1", {"t1": 1.5}), ("t0", {"t0": float("nan")})])
def test_times_outside_unit_interval(name, kwargs):
    with pytest.raises(ValueError, match=rf"{name} must lie in \[0, 1\]"):
        integrate(linear_in_time, X0, **kwargs)


def test_times_wrong_type():
    with pytest.raises(TypeError, match="t0 must be a float"):
        integrate(linear_in_time, X0, t0="0")
    with pytest.raises(TypeError, match="t1 must be a float"):
        integrate(linear_in_time, X0, t1=torch.tensor(1.0))


def test_velocity_wrong_output():
    with pytest.raises(ValueError, match=r"velocity\(x, t\) must return the shape of x \(3, 2\); got \(3,\)"):
        integrate(lambda x, t: x.sum(1), X0)
    with pytest.raises(TypeError, match=r"velocity\(x, t\) must return a tensor; got ndarray"):
        integrate(lambda x, t: x.numpy(), X0)


def test_velocity_not_callable():
    with pytest.raises(TypeError, match="velocity must be callable"):
        integrate(torch.zeros(3, 2), X0)


def test_bad_initial_state():
    with pytest.raises(ValueError, match=r"x0 must have shape \(batch, dim\)"):
        integrate(linear_in_time, torch.zeros(3))
    with pytest.raises(TypeError, match="x0 must be a floating-point tensor"):
        integrate(linear_in_time, torch.zeros(3, 2, dtype=torch.long))


def test_blow_up_reported_as_value_error():
    with pytest.raises(ValueError, match="integration produced NaN or infinite values"):
        integrate(lambda x, t: x**2, torch.full((2, 1), 1e3, dtype=F64), steps=10, method="euler")
    with pytest.raises(ValueError, match="NaN or infinite"):
        integrate(lambda x, t: x * float("nan"), X0, steps=3, method="rk4", trajectory=True)
