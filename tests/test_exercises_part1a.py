"""Tests of the exercise checkers of Part I, chapters 1-2 (change of variables, normalizing flows)."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib.exercises.change_of_variables import PROBLEMS, check_pushforward_density
from fmlib.exercises.normalizing_flows import (
    check_coupling_forward,
    make_coupling_nets,
    reference_coupling_forward,
)

SQRT_2PI = math.sqrt(2 * math.pi)


def phi(x):
    return torch.exp(-0.5 * x**2) / SQRT_2PI


# --- change of variables ---------------------------------------------------------------------------------------


def test_known_answers_of_the_problems():
    # closed forms: log-normal, N(1, 4), logit-normal
    y = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(PROBLEMS["exp_neg"].density(y), phi(torch.log(y)) / y)
    torch.testing.assert_close(
        PROBLEMS["affine_neg"].density(y), torch.distributions.Normal(1.0, 2.0).log_prob(y).exp()
    )
    u = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(PROBLEMS["sigmoid"].density(u), phi(torch.logit(u)) / (u * (1 - u)))


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_each_problem_density_integrates_to_one(name):
    # integrate in x-space over a wide range: y = g(x), dy = |g'(x)| dx
    pb = PROBLEMS[name]
    x = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    assert abs(float(torch.trapezoid(pb.density(pb.g(x)) * pb.d_g(x).abs(), x)) - 1) < 1e-9
    # the checker's grid holds all but ~7e-6 of the probability
    y = pb.grid()
    assert torch.all(y[1:] > y[:-1])


def test_correct_answers_pass():
    assert check_pushforward_density(lambda y: phi(-torch.log(y)) / y, "exp_neg")
    assert check_pushforward_density(lambda y: phi((1 - y) / 2) / 2, "affine_neg")
    assert check_pushforward_density(lambda y: phi(torch.logit(y)) / (y * (1 - y)), "sigmoid")
    # the default problem is exp_neg; NumPy-like outputs (lists) are accepted too
    assert check_pushforward_density(lambda y: (phi(torch.log(y)) / y).tolist())


@pytest.mark.parametrize(
    "wrong, expected_words",
    [
        (lambda y: phi(-torch.log(y)), "left out the Jacobian"),
        (lambda y: -phi(-torch.log(y)) / y, "dropped the absolute value"),
        (lambda y: phi(-torch.log(y)) * y, "multiplied by g'"),
        (lambda y: phi(-torch.log(y)) * -y, "without the absolute value"),
        (lambda y: phi(torch.exp(-y)) / y, "used g where g^{-1} belongs"),
        (lambda y: phi(y), "density of X evaluated at y"),
    ],
)
def test_classic_mistakes_are_named_exp_neg(wrong, expected_words):
    fb = check_pushforward_density(wrong, "exp_neg")
    assert not fb
    assert expected_words in fb.message, fb.message


def test_classic_mistakes_are_named_affine():
    fb = check_pushforward_density(lambda y: phi((1 - y) / 2) * 2, "affine_neg")
    assert not fb and "multiplied by g'" in fb.message
    fb = check_pushforward_density(lambda y: phi((1 - y) / 2) * -0.5, "affine_neg")
    assert not fb and "absolute value" in fb.message


def test_other_errors_get_useful_messages():
    fb = check_pushforward_density(lambda y: 2 * phi(torch.log(y)) / y, "exp_neg")
    assert not fb and "integrates to" in fb.message
    fb = check_pushforward_density(lambda y: phi(torch.log(y)) / y - 0.01, "exp_neg")
    assert not fb and "negative" in fb.message
    fb = check_pushforward_density(lambda y: (phi(torch.log(y)) / y) * (1 + 0.01 * torch.sin(y)), "exp_neg")
    assert not fb and "should be" in fb.message
    fb = check_pushforward_density(lambda y: phi(torch.log(y))[:10], "exp_neg")
    assert not fb and "shape" in fb.message
    fb = check_pushforward_density(lambda y: 1 / (y - y), "exp_neg")
    assert not fb and "finite" in fb.message


def test_student_exceptions_and_non_callables_do_not_crash():
    def broken(y):
        raise RuntimeError("boom")

    fb = check_pushforward_density(broken)
    assert not fb and "RuntimeError: boom" in fb.message
    fb = check_pushforward_density(3.0)
    assert not fb and "must be a function" in fb.message
    fb = check_pushforward_density(lambda y: object())
    assert not fb and "tensor" in fb.message


def test_unknown_problem_raises():
    with pytest.raises(ValueError, match="problem must be one of"):
        check_pushforward_density(lambda y: y, "cube")


# --- normalizing flows -----------------------------------------------------------------------------------------


def _correct(x, scale_net, shift_net):
    xa, xb = x[:, :2], x[:, 2:]
    s = scale_net(xa)
    return torch.cat([xa, xb * torch.exp(s) + shift_net(xa)], dim=1), s.sum(dim=1)


def test_reference_log_det_is_log_abs_det_of_the_jacobian():
    scale_net, shift_net = make_coupling_nets(0)
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, ld = reference_coupling_forward(x, scale_net, shift_net)
    def single(v):
        return reference_coupling_forward(v[None], scale_net, shift_net)[0][0]

    jac = torch.func.vmap(torch.func.jacrev(single))(x)
    torch.testing.assert_close(ld, torch.linalg.slogdet(jac).logabsdet)


def test_make_coupling_nets_is_deterministic():
    a, _ = make_coupling_nets(5)
    b, _ = make_coupling_nets(5)
    x = torch.ones(3, 2, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        make_coupling_nets(-1)


def test_coupling_checker_accepts_the_right_answer():
    fb = check_coupling_forward(_correct)
    assert fb, fb.message


@pytest.mark.parametrize(
    "mistake, words",
    [
        (lambda x, s, t: (_correct(x, s, t)[0], -_correct(x, s, t)[1]), "wrong sign"),
        (lambda x, s, t: (_correct(x, s, t)[0], torch.exp(_correct(x, s, t)[1])), "determinant exp(sum(s)) itself"),
        (lambda x, s, t: (_correct(x, s, t)[0], s(x[:, :2])), "Sum the log-scales"),
        (lambda x, s, t: (_correct(x, s, t)[0], _correct(x, s, t)[1].sum()), "sum over the batch"),
        (lambda x, s, t: (_correct(x, s, t)[0], torch.exp(s(x[:, :2])).sum(1)), "summed exp(s)"),
        (lambda x, s, t: (_correct(x, s, t)[0], (s(x[:, :2]) + t(x[:, :2])).sum(1)), "shift t does not change"),
        (lambda x, s, t: (torch.cat([x[:, :2], (x[:, 2:] + t(x[:, :2])) * torch.exp(s(x[:, :2]))], 1),
         _correct(x, s, t)[1]), "shifted before scaling"),
        (lambda x, s, t: (torch.cat([x[:, :2], x[:, 2:] * s(x[:, :2]) + t(x[:, :2])], 1), _correct(x, s, t)[1]),
         "must be exp(s)"),
        (lambda x, s, t: (torch.cat([x[:, :2], (x[:, 2:] - t(x[:, :2])) * torch.exp(-s(x[:, :2]))], 1),
         _correct(x, s, t)[1]), "implemented the inverse"),
        (lambda x, s, t: (torch.cat([2 * x[:, :2], _correct(x, s, t)[0][:, 2:]], 1), _correct(x, s, t)[1]),
         "pass through unchanged"),
        (lambda x, s, t: (_correct(x, s, t)[0][:, 2:], _correct(x, s, t)[1]), "z must have the shape of x"),
        (lambda x, s, t: _correct(x, s, t)[0], "must return a pair"),
        (lambda x, s, t: (_correct(x, s, t)[0], 1.1 * _correct(x, s, t)[1]), "log_det: entry"),
        (lambda x, s, t: (_correct(x, s, t)[0] + 0.1, _correct(x, s, t)[1]), "pass through unchanged"),
    ],
)
def test_coupling_checker_names_the_mistake(mistake, words):
    fb = check_coupling_forward(mistake)
    assert not fb
    assert words in fb.message, fb.message


def test_coupling_checker_handles_broken_input():
    fb = check_coupling_forward("not a function")
    assert not fb and "must be a function" in fb.message

    def raises(x, s, t):
        raise IndexError("index 4 is out of bounds")

    fb = check_coupling_forward(raises)
    assert not fb and "IndexError" in fb.message
    fb = check_coupling_forward(lambda x, s, t: (x.numpy(), 0))
    assert not fb and "must be tensors" in fb.message
