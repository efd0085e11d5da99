"""The checkers of fmlib.exercises.gaussian_paths accept right answers and name typical mistakes."""

import math

import pytest
import torch

from fmlib.exercises import Feedback
from fmlib.exercises.gaussian_paths import check_gaussian_cond_velocity, check_ve_cond_velocity
from fmlib.paths import VEPath


def right(x, mu, sigma, d_mu, d_sigma):
    return (d_sigma / sigma)[:, None] * (x - mu) + d_mu


def test_accepts_reference_and_fmlib_formula():
    fb = check_gaussian_cond_velocity(right)
    assert isinstance(fb, Feedback) and fb.passed, fb.message
    # The same formula written differently (one division) also passes.
    fb = check_gaussian_cond_velocity(lambda x, m, s, dm, ds: (ds[:, None] * (x - m)) / s[:, None] + dm)
    assert fb, fb.message


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (lambda x, m, s, dm, ds: (ds / s)[:, None] * (x - m), "is missing"),
        (lambda x, m, s, dm, ds: (ds / s)[:, None] * (x - m) + m, "use d_mu, not mu"),
        (lambda x, m, s, dm, ds: -(ds / s)[:, None] * (x - m) + dm, "sign of the first term is flipped"),
        (lambda x, m, s, dm, ds: (x - m) + dm, "you used sigma_t where its time derivative belongs"),
        (lambda x, m, s, dm, ds: (s / ds)[:, None] * (x - m) + dm, "upside down"),
        (lambda x, m, s, dm, ds: ds[:, None] * (x - m) + dm, "division by sigma_t is missing"),
        (lambda x, m, s, dm, ds: (ds / s**2)[:, None] * (x - m) + dm, "divided by sigma_t^2"),
        (lambda x, m, s, dm, ds: (ds / s)[:, None] * (x + m) + dm, "not (x + mu)"),
        (lambda x, m, s, dm, ds: (ds / s)[:, None] * x + dm, "not x alone"),
        (lambda x, m, s, dm, ds: (ds / s) * (x - m) + dm, "sigma[:, None]"),
        (lambda x, m, s, dm, ds: (ds.mean() / s.mean()) * (x - m) + dm, "velocity with mu_t = mu_t' = 0"),
        (lambda x, m, s, dm, ds: (x - m).sum(1), "expected an output of shape"),
        (lambda x, m, s, dm, ds: 1.0, "must return a tensor"),
        (lambda x, m, s, dm, ds: -(ds / s)[:, None] * (x - m) - dm, "mean term enters with a plus sign"),
    ],
)
def test_names_the_mistake(wrong, phrase):
    fb = check_gaussian_cond_velocity(wrong)
    assert not fb.passed
    assert phrase in fb.message, fb.message


def test_batch_mixing_is_caught():
    def mixes(x, m, s, dm, ds):
        out = right(x, m, s, dm, ds)
        return out + 1e-3 * torch.arange(x.shape[0], dtype=x.dtype)[:, None] * (x - m).norm()

    fb = check_gaussian_cond_velocity(mixes)
    assert not fb.passed


def test_not_callable_and_raising():
    fb = check_gaussian_cond_velocity(3)
    assert not fb.passed and "must be a function" in fb.message

    def boom(*args):
        raise KeyError("oops")

    fb = check_gaussian_cond_velocity(boom)
    assert not fb.passed and "KeyError" in fb.message


def ve_right(x, x1, t):
    return math.log(10.0 / 0.01) * (x1 - x)


def test_ve_accepts_closed_form_and_fmlib():
    assert check_ve_cond_velocity(ve_right)
    path = VEPath(0.01, 10.0)
    assert check_ve_cond_velocity(lambda x, x1, t: path.cond_velocity(x, x1, t))
    other = VEPath(0.1, 3.0)
    assert check_ve_cond_velocity(lambda x, x1, t: other.cond_velocity(x, x1, t), sigma_min=0.1, sigma_max=3.0)


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (lambda x, x1, t: -ve_right(x, x1, t), "sign is flipped"),
        (lambda x, x1, t: x1 - x, "your factor is 1"),
        (lambda x, x1, t: 1000.0 * (x1 - x), "use the logarithm"),
        (lambda x, x1, t: math.log(1000.0) * (x1 + x), "not (x1 + x)"),
        (lambda x, x1, t: math.log(1000.0) * x1, "-x part is missing"),
        (lambda x, x1, t: 2 * ve_right(x, x1, t), "2 times too large"),
        (lambda x, x1, t: VEPath(0.01, 10.0).schedule(t).sigma[:, None] * (x1 - x), "multiplied by sigma_t"),
        (lambda x, x1, t: -VEPath(0.01, 10.0).schedule(t).d_sigma[:, None] * (x1 - x), "forgot to divide"),
        (lambda x, x1, t: (x1 - x)[:, :1], "must return a tensor of shape"),
        (lambda x, x1, t: t[:, None] * (x1 - x), "the VE conditional velocity"),
    ],
)
def test_ve_names_the_mistake(wrong, phrase):
    fb = check_ve_cond_velocity(wrong)
    assert not fb.passed
    assert phrase in fb.message, fb.message


def test_ve_bad_arguments():
    with pytest.raises(ValueError, match="sigma_max must be > sigma_min"):
        check_ve_cond_velocity(ve_right, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="sigma_min must be > 0"):
        check_ve_cond_velocity(ve_right, sigma_min=0.0)
    with pytest.raises(TypeError, match="sigma_max must be a real number"):
        check_ve_cond_velocity(ve_right, sigma_max="10")
    assert not check_ve_cond_velocity(None)


# ------------------------------------------------------------------------------ CondOT conditional velocity
from fmlib.exercises.gaussian_paths import check_condot_cond_velocity  # noqa: E402


def test_condot_checker_accepts_right_answers():
    assert check_condot_cond_velocity(lambda x, x1, t: (x1 - x) / (1 - t[:, None]))
    assert check_condot_cond_velocity(lambda x, x1, t: (x1 - 0.9 * x) / (1 - 0.9 * t[:, None]), sigma_min=0.1)


@pytest.mark.parametrize("wrong, words", [
    (lambda x, x1, t: x1 - x, "velocity at t = 0 only"),
    (lambda x, x1, t: (x - x1) / t[:, None], "opposite time direction"),
    (lambda x, x1, t: (x1 - x) / t[:, None], "not by t"),
    (lambda x, x1, t: (x - x1) / (1 - t[:, None]), "sign is flipped"),
    (lambda x, x1, t: (x1 - x) / (1 - t), "t[:, None]"),
    (lambda x, x1, t: x.mul_(2), "in place"),
    (lambda x, x1, t: (1 - t[:, None]).sum(), "expected an output of shape"),
])
def test_condot_checker_names_the_mistake(wrong, words):
    fb = check_condot_cond_velocity(wrong)
    assert not fb and words in fb.message, fb.message


def test_condot_checker_sigma_min_and_escapes():
    fb = check_condot_cond_velocity(lambda x, x1, t: (x1 - x) / (1 - t[:, None]), sigma_min=0.1)
    assert not fb and "left out sigma_min" in fb.message
    import sys

    fb = check_condot_cond_velocity(lambda x, x1, t: sys.exit(3))
    assert not fb and "SystemExit" in fb.message
    assert not check_condot_cond_velocity(3)
    with pytest.raises(ValueError, match="sigma_min must lie in"):
        check_condot_cond_velocity(lambda x, x1, t: x, sigma_min=1.0)
