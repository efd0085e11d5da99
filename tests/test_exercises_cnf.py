"""Tests of the checkers in fmlib.exercises.cnf: they pass the reference solutions and name typical mistakes."""

from __future__ import annotations

import pytest
import torch

from fmlib.exercises import Feedback
from fmlib.exercises.cnf import (
    _RK4_MISTAKES,
    check_hutchinson_estimate,
    check_rk4_step,
    reference_hutchinson_estimate,
    reference_rk4_step,
)
from fmlib.solvers import METHODS


def test_reference_rk4_matches_fmlib_rk4():
    x = torch.randn(4, 2, dtype=torch.float64)
    t = torch.full((4,), 0.3, dtype=torch.float64)

    def v(y, s):
        return torch.sin(y) * s[:, None] + y.flip(1)

    assert torch.allclose(reference_rk4_step(v, x, t, 0.2), METHODS["rk4"](v, x, t, 0.2), atol=1e-15)


def test_rk4_checker_passes_reference_and_fmlib_step():
    fb = check_rk4_step(reference_rk4_step)
    assert isinstance(fb, Feedback) and fb.passed, fb.message
    assert check_rk4_step(METHODS["rk4"]).passed


def test_rk4_checker_passes_student_style_solution_with_float_time():
    def step(velocity, x, t, h):
        k1 = velocity(x, t)
        k2 = velocity(x + h / 2 * k1, t + h / 2)
        k3 = velocity(x + h / 2 * k2, t + h / 2)
        k4 = velocity(x + h * k3, t + h)
        return x + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6

    assert check_rk4_step(step).passed


@pytest.mark.parametrize("name", sorted(_RK4_MISTAKES))
def test_rk4_checker_names_each_typical_mistake(name):
    fn, message = _RK4_MISTAKES[name]
    fb = check_rk4_step(fn)
    assert not fb.passed
    assert fb.message.startswith(message), fb.message


def test_rk4_checker_t_instead_of_t_plus_half_h_message():
    def step(velocity, x, t, h):
        k1 = velocity(x, t)
        k2 = velocity(x + h / 2 * k1, t)
        k3 = velocity(x + h / 2 * k2, t)
        k4 = velocity(x + h * k3, t + h)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    fb = check_rk4_step(step)
    assert not fb.passed and "t + h/2" in fb.message and "entry" in fb.message


def test_rk4_checker_unknown_mistake_gets_a_hint():
    def step(velocity, x, t, h):  # uses only the first row's time
        k1 = velocity(x, t[0].expand_as(t))
        return x + h * k1 * 1.01

    fb = check_rk4_step(step)
    assert not fb.passed and "Hint" in fb.message


def test_rk4_checker_in_place_and_errors():
    def in_place(velocity, x, t, h):
        x += h * velocity(x, t)
        return x

    fb = check_rk4_step(in_place)
    assert not fb.passed and "in place" in fb.message
    fb = check_rk4_step(lambda velocity, x, t, h: 1 / 0)
    assert not fb.passed and "ZeroDivisionError" in fb.message
    fb = check_rk4_step("rk4")
    assert not fb.passed and "must be a function" in fb.message
    fb = check_rk4_step(lambda velocity, x, t, h: x[:, 0])
    assert not fb.passed and "shape" in fb.message


def test_hutchinson_checker_passes_reference():
    fb = check_hutchinson_estimate(reference_hutchinson_estimate)
    assert fb.passed, fb.message


def test_hutchinson_checker_mistakes():
    def no_jacobian(velocity, x, t, eps):
        return (velocity(x, t) * eps).sum(1)

    def missing_dot(velocity, x, t, eps):
        x = x.detach().requires_grad_(True)
        (vjp,) = torch.autograd.grad((velocity(x, t) * eps).sum(), x)
        return vjp.sum(1)

    def exact(velocity, x, t, eps):
        x = x.detach().requires_grad_(True)
        v = velocity(x, t)
        return sum(torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))

    def summed(velocity, x, t, eps):
        return reference_hutchinson_estimate(velocity, x, t, eps).sum()

    for fn, phrase in [(no_jacobian, "needs the Jacobian"), (missing_dot, "dot"), (exact, "exact divergence"),
                       (summed, "one estimate per row")]:
        fb = check_hutchinson_estimate(fn)
        assert not fb.passed and phrase in fb.message, fb.message
    fb = check_hutchinson_estimate(lambda velocity, x, t, eps: torch.zeros(x.shape[0], dtype=x.dtype))
    assert not fb.passed and "Hint" in fb.message
    assert not check_hutchinson_estimate(42).passed
