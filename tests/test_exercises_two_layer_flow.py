"""The two-layer flow checker of chapter 2 (fmlib.exercises.normalizing_flows.check_two_layer_log_prob)."""

import math

import torch

from fmlib.exercises.normalizing_flows import check_two_layer_log_prob, reference_two_layer_log_prob


def test_reference_matches_autograd_change_of_variables():
    x = torch.tensor([-2.0, 0.3, math.sinh(3.0)], dtype=torch.float64, requires_grad=True)
    z0 = (torch.asinh(x) - 1) / 2                                   # g = f_1^-1 o f_2^-1
    (dz0,) = torch.autograd.grad(z0.sum(), x)                       # diagonal Jacobian in 1-D
    expected = -0.5 * z0**2 - 0.5 * math.log(2 * math.pi) + torch.log(dz0.abs())
    assert torch.allclose(reference_two_layer_log_prob(x.detach()), expected.detach(), atol=1e-12)
    # the known value at x = sinh 3 (z_1 = 3, z_0 = 1)
    assert abs(float(reference_two_layer_log_prob(torch.tensor([math.sinh(3.0)], dtype=torch.float64))) + 4.421414) < 1e-6


def test_reference_integrates_to_one():
    z = torch.linspace(-16, 16, 200_001, dtype=torch.float64)      # integrate over x = sinh(u), dx = cosh(u) du
    x = torch.sinh(z)
    mass = torch.trapezoid(reference_two_layer_log_prob(x).exp() * torch.cosh(z), z)
    assert abs(float(mass) - 1) < 1e-8


def test_correct_answer_passes():
    fb = check_two_layer_log_prob(lambda x: reference_two_layer_log_prob(x).clone())
    assert fb and "matches" in fb.message


def _base(x):
    z1 = torch.asinh(x)
    return (z1 - 1) / 2, z1


def test_mistakes_are_named():
    def plus_logdets(x):
        z0, z1 = _base(x)
        return -0.5 * z0**2 - 0.5 * math.log(2 * math.pi) + math.log(2) + torch.log(torch.cosh(z1))

    def wrong_point(x):
        z0, _ = _base(x)
        return -0.5 * z0**2 - 0.5 * math.log(2 * math.pi) - math.log(2) - torch.log(torch.cosh(z0))

    def no_log2(x):
        z0, z1 = _base(x)
        return -0.5 * z0**2 - 0.5 * math.log(2 * math.pi) - torch.log(torch.cosh(z1))

    def no_constant(x):
        z0, z1 = _base(x)
        return -0.5 * z0**2 - math.log(2) - torch.log(torch.cosh(z1))

    for fn, words in [(plus_logdets, "added"), (wrong_point, "wrong point"), (no_log2, "log 2"),
                      (no_constant, "normalising constant")]:
        fb = check_two_layer_log_prob(fn)
        assert not fb and words in fb.message, (fn.__name__, fb.message)


def test_stub_and_bad_answers_get_feedback_without_raising():
    assert not check_two_layer_log_prob(lambda x: torch.zeros_like(x))
    assert not check_two_layer_log_prob(lambda x: 1 / 0)
    assert "shape" in check_two_layer_log_prob(lambda x: torch.zeros(3, dtype=torch.float64)).message
    assert not check_two_layer_log_prob("not a function")
    assert not check_two_layer_log_prob(lambda x: [0.0] * 8)


def test_student_input_is_a_copy():
    def mutating(x):
        x.mul_(0)
        return reference_two_layer_log_prob(torch.zeros(8, dtype=torch.float64))

    assert not check_two_layer_log_prob(mutating)
    assert check_two_layer_log_prob(lambda x: reference_two_layer_log_prob(x))


def test_reference_validates_input():
    import pytest

    with pytest.raises(ValueError, match="shape"):
        reference_two_layer_log_prob(torch.zeros(2, 2))
