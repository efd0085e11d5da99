r"""Checkers for the exercises of the chapter on probability paths and the marginalization trick.

The data distribution is a small *weighted* point set :math:`q = \sum_i w_i \delta_{x^{(i)}}` (the weights are
deliberately unequal, so that every place where :math:`q(x_1)` enters the formulas is visible). For an affine
Gaussian path :math:`p_t(x \mid x_1) = \mathcal N(x; \alpha_t x_1, \sigma_t^2 I)`:

* :func:`check_posterior_weights`: the student computes the posterior
  :math:`p_{1|t}(x^{(i)} \mid x) = w_i\, \mathcal N(x; \alpha_t x^{(i)}, \sigma_t^2 I) / p_t(x)` (Bayes' rule);
* :func:`check_marginal_velocity`: the student computes the marginal velocity as the posterior average
  :math:`u_t(x) = \sum_i p_{1|t}(x^{(i)} \mid x)\, u_t(x \mid x^{(i)})`.

On a wrong answer the checker compares it with the results of typical slips (weights not normalised,
:math:`q(x_1)` forgotten or used twice, variance :math:`\sigma_t` or :math:`\sigma_t^4` instead of
:math:`\sigma_t^2`, mean :math:`x_1` instead of :math:`\alpha_t x_1`, normalising over the wrong axis, the prior
instead of the posterior, the denoiser :math:`\mathbb E[x_1 \mid x]` instead of the velocity, the CondOT formula on
another path, densities that underflow far from the data) and names the one that matches.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..paths import AffinePath, CondOTPath, CosinePath
from ._core import Feedback, call_student, compare_tensors, require_callable

__all__ = ["EXERCISE_POINTS", "EXERCISE_WEIGHTS", "check_posterior_weights", "check_marginal_velocity"]

EXERCISE_POINTS = torch.tensor([[-2.0, 0.0], [1.0, 1.0], [0.5, -1.5], [2.5, 0.5]], dtype=torch.float64)
"""The data points :math:`x^{(i)}` used by the checkers, shape ``(4, 2)``."""

EXERCISE_WEIGHTS = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
"""Their probabilities :math:`w_i = q(x^{(i)})`, shape ``(4,)``."""

_QUERIES = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-1.5, 0.5], [2.0, 1.0], [0.3, 0.8]], dtype=torch.float64)
_FAR = torch.tensor([[30.0, -30.0], [-25.0, 40.0]], dtype=torch.float64)

# (path name, path, t): two times on CondOT and one on the cosine path (which catches hard-coded CondOT formulas).
_CASES = (
    ("CondOTPath()", CondOTPath(), 0.35),
    ("CondOTPath()", CondOTPath(), 0.8),
    ("CosinePath()", CosinePath(), 0.6),
)
_FAR_CASE = ("CondOTPath()", CondOTPath(), 0.95)

_SIGNATURE = "fn(path, points, weights, x, t)"


# -- reference formulas and typical slips -------------------------------------------------------------

def _log_lik(path: AffinePath, points: torch.Tensor, x: torch.Tensor, t: float, *, var: str = "sigma2",
             centre: str = "alpha") -> torch.Tensor:
    """log N(x; m_i, v I) up to a constant shared by all i (it cancels in Bayes' rule); shape (B, N)."""
    s = path.schedule(float(t))
    alpha, sigma = float(s.alpha), float(s.sigma)
    v = {"sigma2": sigma**2, "sigma": sigma, "sigma4": sigma**4}[var]
    means = alpha * points if centre == "alpha" else points
    d = x.shape[1]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return -0.5 * sq / v - 0.5 * d * torch.log(torch.tensor(2 * torch.pi * v, dtype=x.dtype))


def _posterior(path, points, weights, x, t, **kw) -> torch.Tensor:
    return torch.softmax(_log_lik(path, points, x, t, **kw) + torch.log(weights)[None], dim=1)


def _cond_velocities(path: AffinePath, points: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
    """u_t(x | x_i) for every query and data point, shape (B, N, d)."""
    b, n = x.shape[0], points.shape[0]
    xx = x[:, None, :].expand(b, n, -1).reshape(b * n, -1)
    pp = points[None].expand(b, n, -1).reshape(b * n, -1)
    return path.cond_velocity(xx, pp, t).reshape(b, n, -1)


def _velocity(path, points, weights, x, t) -> torch.Tensor:
    return (_posterior(path, points, weights, x, t)[..., None] * _cond_velocities(path, points, x, t)).sum(1)


def _weight_slips(path, points, weights, x, t):
    """(description, hint, weights (B, N)) for typical mistakes in Bayes' rule."""
    log_w = torch.log(weights)[None]
    joint = torch.exp(_log_lik(path, points, x, t) + log_w)
    return (
        ("the weights are not normalised: you returned the joint density w_i N(x; alpha_t x_i, sigma_t^2 I) "
         "without dividing by p_t(x)",
         "p_t(x) = sum_j w_j N(x; alpha_t x_j, sigma_t^2 I) is the normaliser: the posterior weights of one query "
         "point must sum to 1 over the data points.",
         joint),
        ("q(x1) is missing: your weights are proportional to N(x; alpha_t x_i, sigma_t^2 I) alone",
         "Bayes' rule multiplies the likelihood p_t(x | x_i) by the prior q(x_i) = weights[i] before normalising.",
         torch.softmax(_log_lik(path, points, x, t), dim=1)),
        ("q(x1) is used twice: your weights are proportional to w_i^2 N(x; alpha_t x_i, sigma_t^2 I)",
         "the prior enters once, in the numerator w_i p_t(x | x_i); the normaliser p_t(x) already contains it, do "
         "not multiply the normalised posterior by the weights again.",
         torch.softmax(_log_lik(path, points, x, t) + 2 * log_w, dim=1)),
        ("the Gaussian has variance sigma_t instead of sigma_t^2",
         "p_t(x | x1) = N(alpha_t x1, sigma_t^2 I): the exponent is -|x - alpha_t x1|^2 / (2 sigma_t^2) "
         "(path.schedule(t) returns the standard deviation sigma_t).",
         _posterior(path, points, weights, x, t, var="sigma")),
        ("the Gaussian has variance sigma_t^4: you squared a quantity that was already the variance",
         "sigma_t from path.schedule(t) is the standard deviation; the variance is sigma_t ** 2.",
         _posterior(path, points, weights, x, t, var="sigma4")),
        ("the Gaussian is centred at x_i instead of alpha_t x_i",
         "at time t the conditional path p_t(x | x1) is centred at alpha_t x1, which moves from 0 to x1.",
         _posterior(path, points, weights, x, t, centre="x1")),
        ("you normalised over the query points (dim 0) instead of over the data points (dim 1)",
         "for each query point x the posterior is a distribution over the data points: each ROW must sum to 1.",
         joint / joint.sum(0, keepdim=True)),
        ("q(x1) is used twice: you multiplied the (already normalised) posterior by w_i again",
         "the posterior w_i N(x; alpha_t x_i, sigma_t^2 I) / p_t(x) already contains the prior; do not multiply by "
         "the weights a second time.",
         torch.softmax(_log_lik(path, points, x, t) + log_w, dim=1) * weights[None]),
        ("you returned the prior weights w_i, ignoring the query point",
         "the posterior depends on x through the likelihood p_t(x | x_i).",
         weights[None].expand_as(joint)),
    )


def _velocity_slips(path, points, weights, x, t):
    """(description, hint, velocity (B, d)) for typical mistakes in the posterior average."""
    u_cond = _cond_velocities(path, points, x, t)
    post = _posterior(path, points, weights, x, t)
    slips = []
    for desc, hint, w in _weight_slips(path, points, weights, x, t):
        slips.append((f"the posterior weights are wrong: {desc}", hint, (w[..., None] * u_cond).sum(1)))
    s = path.schedule(float(t))
    alpha, sigma, d_alpha, d_sigma = (float(v) for v in s)
    x1_hat = (post[..., None] * points[None]).sum(1)
    condot = (points[None] - x[:, None, :]) / (1 - t)
    slips += [
        ("you averaged the conditional velocities with the posterior weights and then also divided by the number "
         "of data points (a .mean over the data axis instead of a .sum)",
         "the posterior weights already sum to 1: u_t(x) = sum_i p(x_i | x) u_t(x | x_i).",
         (post[..., None] * u_cond).mean(1)),
        ("you returned the posterior mean E[x1 | x_t = x] (the denoiser), not the velocity",
         "average the conditional velocities u_t(x | x_i) = path.cond_velocity(x, x_i, t), not the data points.",
         x1_hat),
        ("you used the CondOT velocity (x1 - x)/(1 - t) for every path",
         "use the path's own conditional velocity, path.cond_velocity(x, x1, t) = (sigma_t'/sigma_t)(x - alpha_t x1) "
         "+ alpha_t' x1; (x1 - x)/(1 - t) holds only for CondOTPath(sigma_min=0).",
         (post[..., None] * condot).sum(1)),
        ("the sign of the stretching term is flipped: you used (sigma_t'/sigma_t)(alpha_t x1 - x) + alpha_t' x1",
         "u_t(x | x1) = (sigma_t'/sigma_t)(x - alpha_t x1) + alpha_t' x1; with sigma_t' < 0 it points towards "
         "alpha_t x1.",
         (post[..., None] * ((d_sigma / sigma) * (alpha * points[None] - x[:, None, :])
                              + d_alpha * points[None])).sum(1)),
    ]
    return slips


# -- student calls -------------------------------------------------------------------------------------

def _call(fn: Callable, path, x: torch.Tensor, t: float, what: str, shape: tuple):
    out, fb = call_student(fn, path, EXERCISE_POINTS.clone(), EXERCISE_WEIGHTS.clone(), x.clone(), t,
                           name="your function")
    if fb is not None:
        return None, fb
    if not isinstance(out, torch.Tensor):
        return None, Feedback(False, f"your function must return a torch.Tensor of shape {shape} ({what}); "
                                     f"got {type(out).__name__}.")
    if tuple(out.shape) != shape:
        return None, Feedback(False, f"your function must return {what}, shape {shape} for {x.shape[0]} query "
                                     f"points and {EXERCISE_POINTS.shape[0]} data points; got {tuple(out.shape)}.")
    return out.detach().to(torch.float64), None


def _diagnose(got: torch.Tensor, slips, case_text: str) -> Optional[Feedback]:
    for desc, hint, value in slips:
        if torch.isfinite(value).all() and torch.allclose(got, value, atol=1e-8, rtol=1e-6):
            return Feedback(False, f"{case_text}: {desc}. Hint: {hint}")
    return None


def _check(fn: Callable, *, kind: str) -> Feedback:
    if kind == "weights":
        what, sig = "the posterior weights p(x_i | x)", f"{_SIGNATURE} -> (batch, N)"
    else:
        what, sig = "the marginal velocity u_t(x)", f"{_SIGNATURE} -> (batch, d)"
    fb = require_callable(fn, "fn", sig)
    if fb is not None:
        return fb
    n, d = EXERCISE_POINTS.shape
    for name, path, t in _CASES:
        x = _QUERIES
        shape = (x.shape[0], n) if kind == "weights" else (x.shape[0], d)
        got, fb = _call(fn, path, x, t, what, shape)
        if fb is not None:
            return fb
        case_text = f"With path = {name} at t = {t}"
        if kind == "weights":
            expected = _posterior(path, EXERCISE_POINTS, EXERCISE_WEIGHTS, x, t)
            slips = _weight_slips(path, EXERCISE_POINTS, EXERCISE_WEIGHTS, x, t)
        else:
            expected = _velocity(path, EXERCISE_POINTS, EXERCISE_WEIGHTS, x, t)
            slips = _velocity_slips(path, EXERCISE_POINTS, EXERCISE_WEIGHTS, x, t)
        if not torch.isfinite(got).all():
            return Feedback(False, f"{case_text} your function returned NaN or inf at ordinary query points "
                                   f"(x in {tuple(map(tuple, x.tolist()))}).")
        result = compare_tensors(got, expected, what=f"{case_text}, {what}", atol=1e-8, rtol=1e-6)
        if result:
            continue
        slip = _diagnose(got, slips, case_text)
        if slip is not None:
            return slip
        if kind == "weights":
            sums = got.sum(1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=1e-6):
                return Feedback(False, f"{result.message} Also, your weights of query point "
                                       f"{int(torch.argmax((sums - 1).abs()))} sum to "
                                       f"{float(sums[torch.argmax((sums - 1).abs())]):.6g}, not 1.")
        return result
    # Stability far from the data, where the Gaussian densities underflow to 0 in floating point.
    name, path, t = _FAR_CASE
    x = _FAR
    shape = (x.shape[0], n) if kind == "weights" else (x.shape[0], d)
    got, fb = _call(fn, path, x, t, what, shape)
    if fb is not None:
        return fb
    expected = (_posterior(path, EXERCISE_POINTS, EXERCISE_WEIGHTS, x, t) if kind == "weights"
                else _velocity(path, EXERCISE_POINTS, EXERCISE_WEIGHTS, x, t))
    if not torch.isfinite(got).all():
        return Feedback(False, f"Right on ordinary points, but with path = {name} at t = {t} your function returns "
                               f"NaN or inf at query points far from the data (x = {x.tolist()}): every density "
                               "exp(-|x - alpha_t x_i|^2 / (2 sigma_t^2)) underflows to 0 and you divide 0 by 0. "
                               "Hint: work with log-weights, log w_i - |x - alpha_t x_i|^2 / (2 sigma_t^2), and "
                               "normalise them with torch.softmax (the log-sum-exp trick).")
    result = compare_tensors(got, expected, what=f"far from the data (path = {name}, t = {t}), {what}",
                             atol=1e-8, rtol=1e-6)
    if not result:
        return result
    return Feedback(True, f"{what} is right for {len(_CASES)} (path, t) cases and stays finite far from the data.")


def check_posterior_weights(fn: Callable) -> Feedback:
    r"""Check the posterior :math:`p_{1|t}(x^{(i)} \mid x) = w_i\,\mathcal N(x; \alpha_t x^{(i)}, \sigma_t^2 I)/p_t(x)`.

    Parameters
    ----------
    fn:
        ``fn(path, points, weights, x, t)`` with ``path`` an :class:`fmlib.paths.AffinePath`, ``points`` the data
        points of shape ``(N, d)`` (:data:`EXERCISE_POINTS`), ``weights`` their probabilities ``(N,)``
        (:data:`EXERCISE_WEIGHTS`), ``x`` query points ``(batch, d)`` and ``t`` a float in ``(0, 1)``; returns the
        posterior weights, shape ``(batch, N)`` (each row sums to 1). Everything is float64.

    Returns
    -------
    Feedback
        Passed when the weights match to ``1e-8`` on three (path, t) cases and are finite far from the data;
        otherwise the first wrong entry, and the typical slip it matches when there is one.
    """
    return _check(fn, kind="weights")


def check_marginal_velocity(fn: Callable) -> Feedback:
    r"""Check the marginal velocity :math:`u_t(x) = \sum_i p_{1|t}(x^{(i)} \mid x)\, u_t(x \mid x^{(i)})`.

    Parameters
    ----------
    fn:
        ``fn(path, points, weights, x, t)`` with arguments as in :func:`check_posterior_weights`; returns the
        marginal velocity at the query points, shape ``(batch, d)``.

    Returns
    -------
    Feedback
        Passed when the velocity matches to ``1e-8`` on three (path, t) cases (CondOT at two times and the cosine
        path) and is finite far from the data; otherwise the first wrong entry, and the typical slip it matches
        when there is one.
    """
    return _check(fn, kind="velocity")
