"""The checkers of fmlib.exercises.score_matching accept right answers and name typical mistakes."""

import pytest
import torch

from fmlib.exercises import Feedback
from fmlib.exercises.score_matching import check_score_to_velocity, check_score_to_x1
from fmlib.paths import CustomPath


def right(s, x, a, sig, da, ds):
    return (da / a)[:, None] * x + (da * sig**2 / a - sig * ds)[:, None] * s


def seed002(s, x, a, sig, da, ds):
    # seed 002: score = (alpha/beta^2) u + (alpha'/alpha - beta'/beta) x, solved for u
    a_, sig_, da_, ds_ = (v[:, None] for v in (a, sig, da, ds))
    return (sig_**2 / a_) * (s - (da_ / a_ - ds_ / sig_) * x)


def test_accepts_reference_and_fmlib():
    fb = check_score_to_velocity(right)
    assert isinstance(fb, Feedback) and fb.passed, fb.message

    # via fmlib: a CustomPath with constant schedule values reproduces the same conversion row by row
    def via_noise(s, x, a, sig, da, ds):
        eps = -sig[:, None] * s
        x1 = (x - sig[:, None] * eps) / a[:, None]
        return da[:, None] * x1 + ds[:, None] * eps

    assert check_score_to_velocity(via_noise)


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (seed002, "seed 002"),
        (lambda s, x, a, sig, da, ds: (da * sig**2 / a - sig * ds)[:, None] * s, "term in x is missing"),
        (lambda s, x, a, sig, da, ds: -(da / a)[:, None] * x + (da * sig**2 / a - sig * ds)[:, None] * s,
         "x term has the wrong sign"),
        (lambda s, x, a, sig, da, ds: (a / da)[:, None] * x + (da * sig**2 / a - sig * ds)[:, None] * s, "upside down"),
        (lambda s, x, a, sig, da, ds: (ds / sig)[:, None] * x + (da * sig**2 / a - sig * ds)[:, None] * s,
         "x1-prediction"),
        (lambda s, x, a, sig, da, ds: da[:, None] * x + (da * sig**2 / a - sig * ds)[:, None] * s, "divide by alpha"),
        (lambda s, x, a, sig, da, ds: (da / a)[:, None] * x - (da * sig**2 / a - sig * ds)[:, None] * s,
         "score term has the wrong sign"),
        (lambda s, x, a, sig, da, ds: (da / a)[:, None] * x + (da * sig**2 / a + sig * ds)[:, None] * s,
         "sign inside the bracket"),
        (lambda s, x, a, sig, da, ds: (da / a)[:, None] * x + (da * sig / a - ds)[:, None] * s,
         "a factor sigma_t is missing in the score term"),
        (lambda s, x, a, sig, da, ds: (da / a)[:, None] * x + (ds - da * sig / a)[:, None] * s,
         "noise-prediction coefficient"),
        (lambda s, x, a, sig, da, ds: (da / a)[:, None] * x + (da * sig**2 / a - ds)[:, None] * s,
         "missing in front of sigma_t'"),
        (lambda s, x, a, sig, da, ds: (da / a)[:, None] * x + (da * sig / a - sig * ds)[:, None] * s,
         "missing in alpha' sigma^2/alpha"),
        (lambda s, x, a, sig, da, ds: (da / a)[:, None] * x + (sig**2)[:, None] * s, "Tweedie"),
        (lambda s, x, a, sig, da, ds: (da / a)[:, None] * x, "score term is missing"),
        (lambda s, x, a, sig, da, ds: (da / a) * x + (da * sig**2 / a - sig * ds) * s, "alpha[:, None]"),
        (lambda s, x, a, sig, da, ds: right(s, x, a, sig, da, ds).sum(1), "expected an output of shape"),
        (lambda s, x, a, sig, da, ds: "velocity", "must return a tensor"),
        (lambda s, x, a, sig, da, ds: right(s, x, a, sig, da, ds) + 0.1 * s * x, "random inputs"),
    ],
)
def test_names_the_mistake(wrong, phrase):
    fb = check_score_to_velocity(wrong)
    assert not fb.passed
    assert phrase in fb.message, fb.message


def test_batch_mixing_is_caught():
    def mixes(s, x, a, sig, da, ds):
        return right(s, x, a, sig, da, ds) + 1e-3 * torch.arange(x.shape[0], dtype=x.dtype)[:, None] * s * x.sum()

    fb = check_score_to_velocity(mixes)
    assert not fb.passed


def test_fails_on_real_schedules_only():
    # right on generic values, but special-cases values near 1 wrongly: caught by the real-path probe
    def odd(s, x, a, sig, da, ds):
        out = right(s, x, a, sig, da, ds)
        return torch.where((da == 1.0)[:, None], out + 1.0, out)  # CondOT has d_alpha = 1 exactly

    fb = check_score_to_velocity(odd)
    assert not fb.passed and "CondOTPath" in fb.message


def test_not_callable_and_raising():
    fb = check_score_to_velocity(None)
    assert not fb.passed and "must be a function" in fb.message

    def boom(*args):
        raise ZeroDivisionError("nope")

    fb = check_score_to_velocity(boom)
    assert not fb.passed and "ZeroDivisionError" in fb.message


def tweedie(s, x, a, sig):
    return (x + (sig**2)[:, None] * s) / a[:, None]


def test_tweedie_accepts_and_matches_fmlib():
    assert check_score_to_x1(tweedie)
    path = CustomPath(lambda t: 0.5 + 0.5 * t, lambda t: 1.0 - 0.8 * t)
    x, s = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    sch = path.schedule(t)
    torch.testing.assert_close(tweedie(s, x, sch.alpha, sch.sigma), path.score_to_x1(s, x, t))


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (lambda s, x, a, sig: (x + sig[:, None] * s) / a[:, None], "use sigma^2, not sigma"),
        (lambda s, x, a, sig: (x - (sig**2)[:, None] * s) / a[:, None], "sign of the score term"),
        (lambda s, x, a, sig: x + (sig**2)[:, None] * s, "division by alpha is missing"),
        (lambda s, x, a, sig: (x + (sig**2)[:, None] * s) * a[:, None], "do not multiply"),
        (lambda s, x, a, sig: x / a[:, None] + (sig**2)[:, None] * s, "whole bracket"),
        (lambda s, x, a, sig: (x + sig**2 * s) / a, "alpha[:, None]"),
        (lambda s, x, a, sig: x, "the denoiser x1_hat"),
    ],
)
def test_tweedie_names_the_mistake(wrong, phrase):
    fb = check_score_to_x1(wrong)
    assert not fb.passed and phrase in fb.message, fb.message
