"""Tests for fmlib.exercises.marginalization: right answers pass, typical mistakes get a precise message."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib.exercises import marginalization as ex
from fmlib.exercises.marginalization import (EXERCISE_POINTS, EXERCISE_WEIGHTS, check_marginal_velocity,
                                             check_posterior_weights)
from fmlib.paths import CondOTPath, CosinePath, VPPath
from fmlib.targets import marginal_velocity, posterior_mean


def _coeffs(path, t):
    return (float(v) for v in path.schedule(float(t)))


def _log_lik(path, points, x, t, var_power=2, centre_alpha=True):
    a, s, _, _ = _coeffs(path, t)
    centre = a * points if centre_alpha else points
    return -((x[:, None, :] - centre[None]) ** 2).sum(-1) / (2 * s**var_power)


def good_weights(path, points, weights, x, t):
    return torch.softmax(_log_lik(path, points, x, t) + torch.log(weights)[None], dim=1)


def _u_cond(path, points, x, t):
    a, s, da, ds = _coeffs(path, t)
    return ds / s * (x[:, None, :] - a * points[None]) + da * points[None]


def good_velocity(path, points, weights, x, t):
    w = good_weights(path, points, weights, x, t)
    return (w[..., None] * _u_cond(path, points, x, t)).sum(1)


# -- the reference answers ----------------------------------------------------------------------------------

def test_reference_matches_fmlib_targets():
    """A weighted point set with weights k/10 is the empirical distribution with point i repeated k times."""
    repeats = torch.cat([EXERCISE_POINTS[i:i + 1].repeat(k, 1) for i, k in enumerate((1, 2, 3, 4))])
    assert torch.allclose(EXERCISE_WEIGHTS, torch.tensor([1, 2, 3, 4], dtype=torch.float64) / 10)
    x = torch.tensor([[0.3, -0.2], [1.5, 2.0], [-3.0, 1.0]], dtype=torch.float64)
    for path in (CondOTPath(), CosinePath(), VPPath()):
        for t in (0.2, 0.7):
            u_ref = ex._velocity(path, EXERCISE_POINTS, EXERCISE_WEIGHTS, x, t)
            torch.testing.assert_close(u_ref, marginal_velocity(path, repeats, x, t), atol=1e-12, rtol=1e-10)
            post = ex._posterior(path, EXERCISE_POINTS, EXERCISE_WEIGHTS, x, t)
            torch.testing.assert_close(post @ EXERCISE_POINTS, posterior_mean(path, repeats, x, t),
                                       atol=1e-12, rtol=1e-10)


def test_reference_posterior_by_hand():
    # one query point, CondOT at t = 0.5: weights proportional to w_i exp(-|x - x_i / 2|^2 / (2 * 0.25))
    x = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    raw = [w * math.exp(-((0.5 - p[0] / 2) ** 2 + (p[1] / 2) ** 2) / 0.5)
           for w, p in zip(EXERCISE_WEIGHTS.tolist(), EXERCISE_POINTS.tolist())]
    expected = torch.tensor([r / sum(raw) for r in raw], dtype=torch.float64)
    torch.testing.assert_close(ex._posterior(CondOTPath(), EXERCISE_POINTS, EXERCISE_WEIGHTS, x, 0.5)[0], expected)


# -- posterior weights --------------------------------------------------------------------------------------

def test_correct_weights_pass():
    fb = check_posterior_weights(good_weights)
    assert fb, fb.message
    assert "stays finite far from the data" in fb.message


def _joint(path, points, weights, x, t):
    _, s, _, _ = _coeffs(path, t)
    return weights[None] * torch.exp(_log_lik(path, points, x, t)) / (2 * math.pi * s**2)


WEIGHT_MISTAKES = {
    "not normalised": _joint,
    "q(x1) is missing": lambda p, pts, w, x, t: torch.softmax(_log_lik(p, pts, x, t), dim=1),
    "q(x1) is used twice: your weights are proportional to w_i^2":
        lambda p, pts, w, x, t: torch.softmax(_log_lik(p, pts, x, t) + 2 * torch.log(w)[None], dim=1),
    "multiplied the (already normalised) posterior by w_i again":
        lambda p, pts, w, x, t: good_weights(p, pts, w, x, t) * w[None],
    "variance sigma_t instead of sigma_t^2":
        lambda p, pts, w, x, t: torch.softmax(_log_lik(p, pts, x, t, var_power=1) + torch.log(w)[None], dim=1),
    "variance sigma_t^4":
        lambda p, pts, w, x, t: torch.softmax(_log_lik(p, pts, x, t, var_power=4) + torch.log(w)[None], dim=1),
    "centred at x_i instead of alpha_t x_i":
        lambda p, pts, w, x, t: torch.softmax(_log_lik(p, pts, x, t, centre_alpha=False) + torch.log(w)[None], 1),
    "normalised over the query points":
        lambda p, pts, w, x, t: _joint(p, pts, w, x, t) / _joint(p, pts, w, x, t).sum(0, keepdim=True),
    "prior weights w_i, ignoring the query point": lambda p, pts, w, x, t: w[None].expand(x.shape[0], -1).clone(),
}


@pytest.mark.parametrize("phrase", list(WEIGHT_MISTAKES))
def test_weight_mistakes_are_named(phrase):
    fb = check_posterior_weights(WEIGHT_MISTAKES[phrase])
    assert not fb
    assert phrase in fb.message, fb.message
    assert "Hint:" in fb.message


def test_underflowing_weights_are_explained():
    def naive(path, points, weights, x, t):
        dens = weights[None] * torch.exp(_log_lik(path, points, x, t))
        return dens / dens.sum(1, keepdim=True)

    fb = check_posterior_weights(naive)
    assert not fb and "underflows" in fb.message and "log-sum-exp" in fb.message


def test_unrecognised_weights_report_the_entry_and_the_row_sums():
    def scaled(path, points, weights, x, t):
        return 0.5 * good_weights(path, points, weights, x, t) + 0.1

    fb = check_posterior_weights(scaled)
    assert not fb and "entry (" in fb.message and "sum to" in fb.message


def test_shape_type_and_exception_errors():
    fb = check_posterior_weights(lambda p, pts, w, x, t: good_weights(p, pts, w, x, t).T)
    assert not fb and "shape (5, 4)" in fb.message and "got (4, 5)" in fb.message
    fb = check_posterior_weights(lambda p, pts, w, x, t: good_weights(p, pts, w, x, t).tolist())
    assert not fb and "must return a torch.Tensor" in fb.message
    fb = check_posterior_weights(lambda p, pts, w, x, t: 1 / 0)
    assert not fb and "ZeroDivisionError" in fb.message
    fb = check_posterior_weights("not a function")
    assert not fb and "must be a function" in fb.message
    fb = check_posterior_weights(lambda p, pts, w, x, t: torch.full((x.shape[0], 4), float("nan"), dtype=x.dtype))
    assert not fb and "NaN or inf at ordinary query points" in fb.message


# -- marginal velocity --------------------------------------------------------------------------------------

def test_correct_velocities_pass():
    assert check_marginal_velocity(good_velocity)

    def with_library(path, points, weights, x, t):  # path.cond_velocity on all pairs
        w = good_weights(path, points, weights, x, t)
        b, n = w.shape
        u = path.cond_velocity(x.repeat_interleave(n, 0), points.repeat(b, 1), t).reshape(b, n, -1)
        return (w[..., None] * u).sum(1)

    fb = check_marginal_velocity(with_library)
    assert fb, fb.message


def _sign_flipped(path, points, weights, x, t):
    a, s, da, ds = _coeffs(path, t)
    u = ds / s * (a * points[None] - x[:, None, :]) + da * points[None]
    return (good_weights(path, points, weights, x, t)[..., None] * u).sum(1)


def _with_weights(weight_fn):
    def velocity(path, points, weights, x, t):
        return (weight_fn(path, points, weights, x, t)[..., None] * _u_cond(path, points, x, t)).sum(1)

    return velocity


VELOCITY_MISTAKES = {
    "not normalised": _with_weights(_joint),
    "q(x1) is missing": _with_weights(WEIGHT_MISTAKES["q(x1) is missing"]),
    "variance sigma_t instead of sigma_t^2": _with_weights(WEIGHT_MISTAKES["variance sigma_t instead of sigma_t^2"]),
    ".mean over the data axis": lambda p, pts, w, x, t: (good_weights(p, pts, w, x, t)[..., None]
                                                          * _u_cond(p, pts, x, t)).mean(1),
    "posterior mean E[x1 | x_t = x] (the denoiser)":
        lambda p, pts, w, x, t: good_weights(p, pts, w, x, t) @ pts,
    "CondOT velocity (x1 - x)/(1 - t) for every path":
        lambda p, pts, w, x, t: (good_weights(p, pts, w, x, t)[..., None]
                                 * (pts[None] - x[:, None, :]) / (1 - t)).sum(1),
    "sign of the stretching term is flipped": lambda p, pts, w, x, t: _sign_flipped(p, pts, w, x, t),
}


@pytest.mark.parametrize("phrase", list(VELOCITY_MISTAKES))
def test_velocity_mistakes_are_named(phrase):
    fb = check_marginal_velocity(VELOCITY_MISTAKES[phrase])
    assert not fb
    assert phrase in fb.message, fb.message


def test_condot_formula_fails_only_on_the_cosine_path():
    fb = check_marginal_velocity(VELOCITY_MISTAKES["CondOT velocity (x1 - x)/(1 - t) for every path"])
    assert "CosinePath()" in fb.message


def test_underflowing_velocity_is_explained():
    def naive(path, points, weights, x, t):
        dens = weights[None] * torch.exp(_log_lik(path, points, x, t))
        return ((dens / dens.sum(1, keepdim=True))[..., None] * _u_cond(path, points, x, t)).sum(1)

    fb = check_marginal_velocity(naive)
    assert not fb and "far from the data" in fb.message and "softmax" in fb.message


def test_velocity_shape_error():
    fb = check_marginal_velocity(lambda p, pts, w, x, t: good_velocity(p, pts, w, x, t)[:, 0])
    assert not fb and "shape (5, 2)" in fb.message
