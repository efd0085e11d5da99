r"""Checkers for the chapter "Gaussian paths: VE, VP and OT".

* :func:`check_gaussian_cond_velocity`: the conditional velocity of a Gaussian path
  :math:`\mathcal N(\mu_t, \sigma_t^2 I)`, :math:`u_t(x) = \frac{\dot\sigma_t}{\sigma_t}(x - \mu_t) + \dot\mu_t`,
  from the values of :math:`\mu_t, \sigma_t` and their time derivatives.
* :func:`check_ve_cond_velocity`: the closed-form conditional velocity of the VE path
  ``fmlib.paths.VEPath(sigma_min, sigma_max)`` (book convention: data at ``t = 1``).
* :func:`check_condot_cond_velocity`: the conditional velocity of the CondOT path
  ``fmlib.paths.CondOTPath(sigma_min)``, the usual first assignment.

Both probe the student's function on inputs chosen to isolate one term at a time, so that the feedback
names the mistake (a flipped sign, ``sigma`` where its derivative belongs, a missing ``mu'`` term, ...).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .._checks import real
from ..paths import CondOTPath, VEPath
from ._core import (Feedback, call_student, compare_tensors, require_callable, shape_problem,
                    with_broadcast_hint)

__all__ = ["check_gaussian_cond_velocity", "check_ve_cond_velocity", "check_condot_cond_velocity"]

_SIGNATURE = "cond_velocity(x, mu, sigma, d_mu, d_sigma)"
_VE_SIGNATURE = "ve_velocity(x, x1, t)"


def _close(a: object, b: torch.Tensor, tol: float = 1e-6) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and bool(
        torch.allclose(a.detach().to(b.dtype), b, atol=tol, rtol=tol)
    )


def _reference(x, mu, sigma, d_mu, d_sigma):
    return (d_sigma / sigma)[:, None] * (x - mu) + d_mu


def _inputs(g: torch.Generator, batch: int = 7, dim: int = 3):
    x = torch.randn(batch, dim, generator=g, dtype=torch.float64) * 2
    mu = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    d_mu = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    sigma = 0.3 + torch.rand(batch, generator=g, dtype=torch.float64)
    d_sigma = -0.5 - torch.rand(batch, generator=g, dtype=torch.float64)  # shrinking noise, as towards the data
    return x, mu, sigma, d_mu, d_sigma


_BROADCAST_HINT = (" sigma and d_sigma have shape (batch,): add a trailing axis (sigma[:, None]) before combining"
                   " them with points of shape (batch, dim).")


def check_gaussian_cond_velocity(cond_velocity: Callable) -> Feedback:
    r"""Check ``cond_velocity(x, mu, sigma, d_mu, d_sigma)`` against :math:`\frac{\dot\sigma}{\sigma}(x-\mu)+\dot\mu`.

    The student's function receives ``x``, ``mu = mu_t(x1)``, ``d_mu = d mu_t / dt`` of shape ``(batch, dim)``
    and ``sigma = sigma_t``, ``d_sigma = d sigma_t / dt`` of shape ``(batch,)`` (float64), and returns the
    conditional velocity at ``x``, shape ``(batch, dim)``.

    Returns
    -------
    Feedback
        Passed, or a message naming the mistake: wrong shape (``sigma`` not broadcast), missing ``mu'`` term,
        ``mu`` used for ``mu'``, flipped sign, ``sigma`` used for its derivative, inverted ratio, missing or
        doubled division by ``sigma``, ``x + mu`` or ``x`` for ``x - mu``.
    """
    bad = require_callable(cond_velocity, "cond_velocity", _SIGNATURE)
    if bad is not None:
        return bad
    g = torch.Generator().manual_seed(1234)
    x, mu, sigma, d_mu, d_sigma = _inputs(g)
    name = _SIGNATURE

    # 0. Shape and finiteness on a generic input.
    expected = _reference(x, mu, sigma, d_mu, d_sigma)
    out, err = call_student(cond_velocity, x, mu, sigma, d_mu, d_sigma, name=name)
    if err is not None:
        return with_broadcast_hint(err, _BROADCAST_HINT)
    bad = shape_problem(out, expected, _SIGNATURE, _BROADCAST_HINT)
    if bad is not None:
        return bad

    rate = (d_sigma / sigma)[:, None]
    centring = {
        "plus": (rate * (x + mu) + d_mu, "the first term must be centred at the mean: (sigma'/sigma)(x - mu), "
                                         "not (x + mu)."),
        "alone": (rate * x + d_mu, "the first term must be centred at the mean: (sigma'/sigma)(x - mu), "
                                   "not x alone."),
    }

    # 1. At x = mu the first term vanishes: only mu' is left.
    out, err = call_student(cond_velocity, mu.clone(), mu, sigma, d_mu, d_sigma, name=name)
    if err is not None:
        return err
    if not _close(out, d_mu):
        if _close(out, 2 * rate * mu + d_mu):
            return Feedback(False, centring["plus"][1])
        if _close(out, rate * mu + d_mu):
            return Feedback(False, centring["alone"][1])
        if _close(out, torch.zeros_like(d_mu)):
            return Feedback(False, "at x = mu_t your velocity is 0, but it must be mu_t' (the mean keeps moving). "
                                   "The term + mu_t' (d_mu) is missing.")
        if _close(out, mu):
            return Feedback(False, "at x = mu_t your velocity equals mu_t; it must be its time derivative mu_t' "
                                   "(use d_mu, not mu).")
        if _close(out, -d_mu):
            return Feedback(False, "at x = mu_t your velocity is -mu_t'; the mean term enters with a plus sign: "
                                   "u = (sigma'/sigma)(x - mu) + mu'.")
        return compare_tensors(out, d_mu, what="the velocity at x = mu_t (which should be mu_t')",
                               hint="at x = mu_t the first term (sigma'/sigma)(x - mu) is zero, so only mu_t' remains.")

    # 2. With mu = 0 and mu' = 0 only the first term is left: (sigma'/sigma) x.
    zeros = torch.zeros_like(x)
    out, err = call_student(cond_velocity, x, zeros, sigma, zeros, d_sigma, name=name)
    if err is not None:
        return err
    want = rate * x
    if not _close(out, want):
        diagnoses = [
            (-want, "the sign of the first term is flipped: it is +(sigma_t'/sigma_t)(x - mu_t). With a shrinking "
                    "sigma_t (sigma' < 0) the field pulls x towards the mean."),
            (x, "you used sigma_t where its time derivative belongs: the factor is sigma_t'/sigma_t (d_sigma / sigma), "
                "not sigma_t/sigma_t = 1."),
            ((sigma / d_sigma)[:, None] * x, "the ratio is upside down: the factor is sigma_t'/sigma_t "
                                             "(d_sigma / sigma), not sigma_t/sigma_t'."),
            (d_sigma[:, None] * x, "the division by sigma_t is missing: the factor is sigma_t'/sigma_t, not sigma_t'."),
            ((d_sigma / sigma**2)[:, None] * x, "you divided by sigma_t^2; the factor is sigma_t'/sigma_t."),
            (sigma[:, None] * x, "you multiplied by sigma_t; the factor is sigma_t'/sigma_t (d_sigma / sigma)."),
        ]
        for candidate, message in diagnoses:
            if _close(out, candidate):
                return Feedback(False, message)
        return compare_tensors(out, want, what="the velocity with mu_t = mu_t' = 0 (which should be (sigma'/sigma) x)",
                               hint="this isolates the first term (sigma_t'/sigma_t)(x - mu_t).")

    # 3. Generic inputs: the centring x - mu.
    out, _ = call_student(cond_velocity, x, mu, sigma, d_mu, d_sigma, name=name)
    if not _close(out, expected):
        for candidate, message in centring.values():
            if _close(out, candidate):
                return Feedback(False, message)
        return compare_tensors(out, expected, what="the conditional velocity at random inputs",
                               hint="u = (sigma'/sigma)(x - mu) + mu'.")

    # 4. It must not mix rows: one point per row, each with its own sigma.
    perm = torch.arange(x.shape[0] - 1, -1, -1)
    out, _ = call_student(cond_velocity, x[perm], mu[perm], sigma[perm], d_mu[perm], d_sigma[perm], name=name)
    if not _close(out, expected[perm]):
        return Feedback(False, "your result changes when the rows are reordered: use each row's own sigma and "
                               "d_sigma (no sums or means over the batch).")
    return Feedback(True, "u_t(x) = (sigma_t'/sigma_t)(x - mu_t) + mu_t' on every probe "
                          "(x = mu_t, mu_t = mu_t' = 0, random inputs, reordered rows).")


def check_ve_cond_velocity(ve_velocity: Callable, sigma_min: float = 0.01, sigma_max: float = 10.0) -> Feedback:
    r"""Check the closed-form VE conditional velocity written by a student.

    The path is ``VEPath(sigma_min, sigma_max)``: :math:`x_t = x_1 + \sigma_t x_0`,
    :math:`\sigma_t = \sigma_{\min} (\sigma_{\max}/\sigma_{\min})^{1-t}` (data at ``t = 1``). The student's
    ``ve_velocity(x, x1, t)`` takes ``x, x1`` of shape ``(batch, dim)`` and ``t`` of shape ``(batch,)``
    (float64) and returns :math:`u_t(x \mid x_1) = \log(\sigma_{\max}/\sigma_{\min})\,(x_1 - x)`.

    Returns
    -------
    Feedback
        Passed, or a message naming the mistake (the sign lost by reading :math:`\sigma'_{1-t}` as the
        derivative in its own argument, a missing log, a wrong constant factor, a wrong centre).
    """
    sigma_min = real(sigma_min, "sigma_min", positive=True)
    sigma_max = real(sigma_max, "sigma_max", positive=True)
    if sigma_max <= sigma_min:
        raise ValueError(f"sigma_max must be > sigma_min; got sigma_min={sigma_min}, sigma_max={sigma_max}")
    bad = require_callable(ve_velocity, "ve_velocity", _VE_SIGNATURE)
    if bad is not None:
        return bad
    path = VEPath(sigma_min, sigma_max)
    g = torch.Generator().manual_seed(4321)
    batch, dim = 9, 2
    x = 3 * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    x1 = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    t = torch.rand(batch, generator=g, dtype=torch.float64) * 0.98 + 0.01
    expected = path.cond_velocity(x, x1, t)
    out, err = call_student(ve_velocity, x, x1, t, name=_VE_SIGNATURE)
    if err is not None:
        return err
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        return Feedback(False, f"{_VE_SIGNATURE} must return a tensor of shape {tuple(expected.shape)}; got "
                               f"{getattr(out, 'shape', type(out).__name__)}.")
    if _close(out, expected):
        return Feedback(True, f"u_t(x | x1) = log(sigma_max/sigma_min) (x1 - x) = {math.log(sigma_max / sigma_min):.4g} "
                              "(x1 - x): a time-independent pull towards x1.")
    log_ratio = math.log(sigma_max / sigma_min)
    direction = x1 - x
    if _close(out, -expected):
        return Feedback(False, "the sign is flipped: your field pushes x away from x1. d sigma_t/dt = "
                               "-log(sigma_max/sigma_min) sigma_t is negative (sigma shrinks towards the data), so "
                               "u = log(sigma_max/sigma_min)(x1 - x). Reading sigma'_{1-t} as the derivative of "
                               "sigma in its own argument drops the chain-rule minus sign.")
    for wrong, message in [
        (direction, "your factor is 1; it must be -(d sigma_t/dt)/sigma_t = log(sigma_max/sigma_min)."),
        ((sigma_max / sigma_min) * direction, "use the logarithm: the factor is log(sigma_max/sigma_min), "
                                              "not sigma_max/sigma_min."),
        (path.schedule(t).sigma[:, None] * direction, "you multiplied by sigma_t; the factor is "
                                                      "-(d sigma_t/dt)/sigma_t = log(sigma_max/sigma_min)."),
        (-path.schedule(t).d_sigma[:, None] * direction, "you forgot to divide d sigma_t/dt by sigma_t."),
        (log_ratio * (x1 + x), "the field is centred at x1: it is proportional to (x1 - x), not (x1 + x)."),
        (log_ratio * x1, "the field is proportional to (x1 - x); the -x part is missing."),
    ]:
        if _close(out, wrong):
            return Feedback(False, message)
    # Proportional to the right answer with another constant?
    ratio = (out * expected).sum() / (expected * expected).sum()
    if _close(out, ratio * expected, tol=1e-5):
        return Feedback(False, f"your field points the right way but is {float(ratio):.4g} times too large; the rate "
                               f"is log(sigma_max/sigma_min) = {log_ratio:.4g}.")
    return compare_tensors(out, expected, what="the VE conditional velocity",
                           hint="with sigma_t = sigma_min (sigma_max/sigma_min)^(1-t), sigma_t'/sigma_t = "
                                "-log(sigma_max/sigma_min); put it into u = (sigma_t'/sigma_t)(x - x1).")


_CONDOT_SIGNATURE = "cond_velocity(x, x1, t)"


def check_condot_cond_velocity(cond_velocity: Callable, sigma_min: float = 0.0) -> Feedback:
    r"""Check a student's conditional velocity of the CondOT path ``CondOTPath(sigma_min)``.

    The path is :math:`x_t = t\,x_1 + (1 - (1 - \sigma_{\min}) t)\,x_0` (data at ``t = 1``), whose conditional
    velocity at a point ``x`` is

    .. math:: u_t(x \mid x_1) = \frac{x_1 - (1 - \sigma_{\min})\,x}{1 - (1 - \sigma_{\min})\,t},

    which is :math:`(x_1 - x)/(1 - t)` for :math:`\sigma_{\min} = 0`. The student's ``cond_velocity(x, x1, t)``
    takes ``x, x1`` of shape ``(batch, dim)`` and ``t`` of shape ``(batch,)`` in ``[0.05, 0.95]`` (float64) and
    returns shape ``(batch, dim)``.

    Returns
    -------
    Feedback
        Passed, or a diagnosis: the field of the wrong time direction (data at ``t = 0``), a missing division
        by the remaining time, ``t`` where ``1 - t`` belongs, a flipped sign, the ``sigma_min`` factors left out,
        a missing trailing axis on ``t``.
    """
    sigma_min = real(sigma_min, "sigma_min", nonnegative=True)
    if sigma_min >= 1:
        raise ValueError(f"sigma_min must lie in [0, 1); got {sigma_min}")
    bad = require_callable(cond_velocity, "cond_velocity", _CONDOT_SIGNATURE)
    if bad is not None:
        return bad
    path = CondOTPath(sigma_min)
    g = torch.Generator().manual_seed(2024)
    batch, dim = 8, 2
    x = 2 * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    x1 = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, batch, dtype=torch.float64)[torch.randperm(batch, generator=g)]
    expected = path.cond_velocity(x, x1, t)
    out, err = call_student(cond_velocity, x, x1, t, name=_CONDOT_SIGNATURE)
    if err is not None:
        return with_broadcast_hint(err, ". Hint: t has shape (batch,); use t[:, None] to combine it with (batch, dim) points.")
    problem = shape_problem(out, expected, _CONDOT_SIGNATURE,
                            " t has shape (batch,): use t[:, None] to combine it with (batch, dim) points.")
    if problem is not None:
        return problem
    if _close(out, expected):
        return Feedback(True, f"u_t(x | x1) matches CondOTPath({sigma_min:g}).cond_velocity at 8 times in [0.05, 0.95].")
    c = 1.0 - sigma_min
    tt = t[:, None]
    for wrong, message in [
        (x1 - c * x, "you returned the velocity at t = 0 only: divide by the remaining 'noise scale' "
                     "sigma_t = 1 - (1 - sigma_min) t, because the point has less time left as t grows."),
        ((x - x1) / tt, "this is the field for the opposite time direction (data at t = 0, "
                                          "noise at t = 1, as MeanFlow and SD3 write it). In this book t = 1 is data: "
                                          "u = (x1 - x)/(1 - t) for sigma_min = 0."),
        ((x1 - c * x) / tt, "divide by 1 - (1 - sigma_min) t, the remaining noise scale, not by t."),
        (-expected, "the sign is flipped: the field must point from x towards x1."),
        ((x1 - x) / (1 - tt), "you left out sigma_min: with sigma_min > 0 the path ends at N(x1, sigma_min^2 I), so "
                              "u = (x1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) t)."),
        (x1 - x, "you returned x1 - x: that is the regression target x1 - x0 written at the wrong point, "
                 "not the velocity at x. Divide by 1 - t."),
    ]:
        if _close(out, wrong):
            return Feedback(False, message)
    return compare_tensors(out, expected, what="the CondOT conditional velocity",
                           hint="u_t(x | x1) = (x1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) t).")
