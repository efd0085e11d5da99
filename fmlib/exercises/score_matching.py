r"""Checkers for the chapter "Score matching and the score–velocity link".

* :func:`check_score_to_velocity`: turn a score into the velocity of an affine Gaussian path
  ``x_t = alpha_t x1 + sigma_t x0``,

  .. math:: u_t(x) = \frac{\dot\alpha_t}{\alpha_t}\,x + \Big(\frac{\dot\alpha_t\sigma_t^2}{\alpha_t}
            - \sigma_t\dot\sigma_t\Big)\, s_t(x).

* :func:`check_score_to_x1`: Tweedie's formula for the denoiser,
  :math:`\mathbb E[x_1 \mid x_t = x] = (x + \sigma_t^2 s_t(x))/\alpha_t`.

The student's function receives the schedule values ``alpha, sigma, d_alpha, d_sigma`` (shape ``(batch,)``,
float64) rather than a path, so that the checker can choose inputs that isolate one term at a time and name the
mistake: a flipped sign, a missing factor ``sigma_t``, the noise-prediction formula used for a score, or the
(wrong) score-from-velocity formula of seed 002 solved for the velocity. A last probe runs the function on the
schedules of real paths (CondOT, VP, cosine) and compares with :meth:`fmlib.paths.AffinePath.score_to_velocity`.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..paths import CondOTPath, CosinePath, VPPath
from ._core import (Feedback, call_student, compare_tensors, require_callable, shape_problem,
                    with_broadcast_hint)

__all__ = ["check_score_to_velocity", "check_score_to_x1"]

_SIGNATURE = "score_to_velocity(score, x, alpha, sigma, d_alpha, d_sigma)"
_TWEEDIE_SIGNATURE = "score_to_x1(score, x, alpha, sigma)"
_BROADCAST_HINT = (" alpha, sigma, d_alpha and d_sigma have shape (batch,): add a trailing axis (alpha[:, None]) "
                   "before combining them with points of shape (batch, dim).")


def _close(a: object, b: torch.Tensor, tol: float = 1e-7) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and bool(
        torch.allclose(a.detach().to(b.dtype), b, atol=tol, rtol=tol)
    )


def _schedule_values(g: torch.Generator, batch: int):
    """Generic schedule values: alpha, sigma in (0.2, 1.2), alpha' > 0, sigma' < 0, all different per row."""
    alpha = 0.2 + torch.rand(batch, generator=g, dtype=torch.float64)
    sigma = 0.2 + torch.rand(batch, generator=g, dtype=torch.float64)
    d_alpha = 0.5 + torch.rand(batch, generator=g, dtype=torch.float64)
    d_sigma = -0.5 - torch.rand(batch, generator=g, dtype=torch.float64)
    return alpha, sigma, d_alpha, d_sigma


def check_score_to_velocity(score_to_velocity: Callable) -> Feedback:
    r"""Check a student's conversion of a score into a velocity.

    The student's ``score_to_velocity(score, x, alpha, sigma, d_alpha, d_sigma)`` receives ``score`` and ``x`` of
    shape ``(batch, dim)`` and the schedule values :math:`\alpha_t, \sigma_t, \dot\alpha_t, \dot\sigma_t` of
    shape ``(batch,)`` (float64), and must return
    :math:`\frac{\dot\alpha_t}{\alpha_t} x + \big(\frac{\dot\alpha_t\sigma_t^2}{\alpha_t} - \sigma_t\dot\sigma_t\big) s`
    of shape ``(batch, dim)``.

    Returns
    -------
    Feedback
        Passed, or a message naming the mistake: wrong shape (schedule values not broadcast), a wrong ``x`` term
        (missing, flipped, upside down, the ``x1``-form's ``sigma'/sigma``), a wrong score term (flipped sign, a
        sign inside the bracket, a missing ``sigma_t`` factor, the noise-prediction coefficient used for a score),
        seed 002's formula solved for ``u``, rows that influence each other, or failure on real path schedules.
    """
    bad = require_callable(score_to_velocity, "score_to_velocity", _SIGNATURE)
    if bad is not None:
        return bad
    g = torch.Generator().manual_seed(2024)
    batch, dim = 7, 3
    x = 2 * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    score = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    a, s, da, ds = _schedule_values(g, batch)
    col = lambda v: v[:, None]  # noqa: E731 - (batch,) -> (batch, 1)
    cx = col(da / a)
    cs = col(da * s**2 / a - s * ds)
    expected = cx * x + cs * score
    name = _SIGNATURE

    out, err = call_student(score_to_velocity, score, x, a, s, da, ds, name=name)
    if err is not None:
        return with_broadcast_hint(err, _BROADCAST_HINT)
    bad = shape_problem(out, expected, name, _BROADCAST_HINT)
    if bad is not None:
        return bad

    # seed 002 writes  s = (alpha/sigma^2) u + (alpha'/alpha - sigma'/sigma) x ; solved for u:
    seed_x = -col(s**2 / a * (da / a - ds / s))
    seed_s = col(s**2 / a)

    # 1. score = 0 isolates the x term (alpha'/alpha) x.
    zeros = torch.zeros_like(x)
    out, err = call_student(score_to_velocity, zeros, x, a, s, da, ds, name=name)
    if err is not None:
        return err
    want = cx * x
    if not _close(out, want):
        for candidate, message in [
            (seed_x * x, "this is seed 002's score-from-velocity formula s = (alpha/sigma^2) u + "
                         "(alpha'/alpha - sigma'/sigma) x solved for u, and that formula is wrong. Derive the "
                         "conversion from x = alpha x1_hat + sigma eps_hat, s = -eps_hat/sigma and "
                         "u = alpha' x1_hat + sigma' eps_hat."),
            (zeros, "with score = 0 your velocity is 0, but it must be (alpha'/alpha) x: the term in x is missing."),
            (-want, "the x term has the wrong sign: it is +(alpha'/alpha) x."),
            (col(a / da) * x, "the x coefficient is upside down: it is alpha'/alpha (d_alpha / alpha)."),
            (col(ds / s) * x, "the x coefficient sigma'/sigma belongs to the conversion from an x1-prediction; "
                              "from a score (or a noise-prediction) it is alpha'/alpha."),
            (col(da) * x, "the x coefficient is alpha'/alpha: you forgot to divide by alpha."),
        ]:
            if _close(out, candidate):
                return Feedback(False, message)
        return compare_tensors(out, want, what="the velocity for score = 0 (which should be (alpha'/alpha) x)",
                               hint="with a zero score only the term in x is left.")

    # 2. x = 0 isolates the score term.
    out, err = call_student(score_to_velocity, score, zeros, a, s, da, ds, name=name)
    if err is not None:
        return err
    want = cs * score
    if not _close(out, want):
        for candidate, message in [
            (seed_s * score, "this is seed 002's score-from-velocity formula s = (alpha/sigma^2) u + "
                             "(alpha'/alpha - sigma'/sigma) x solved for u, and that formula is wrong. Derive the "
                             "conversion from x = alpha x1_hat + sigma eps_hat, s = -eps_hat/sigma and "
                             "u = alpha' x1_hat + sigma' eps_hat."),
            (-want, "the score term has the wrong sign: "
                    "u = (alpha'/alpha) x + (alpha' sigma^2/alpha - sigma sigma') s. "
                    "Remember eps_hat = -sigma s (the score points against the noise)."),
            (col(da * s**2 / a + s * ds) * score, "the sign inside the bracket is wrong: the score coefficient is "
                                                  "alpha' sigma^2/alpha - sigma sigma' (minus sigma sigma')."),
            (col(da * s / a - ds) * score, "a factor sigma_t is missing in the score term: the coefficient is "
                                           "sigma (alpha' sigma/alpha - sigma') = alpha' sigma^2/alpha - sigma sigma'. "
                                           "It comes from eps_hat = -sigma s."),
            (col(ds - da * s / a) * score, "you used the noise-prediction coefficient (sigma' - alpha' sigma/alpha) "
                                           "for a score. A score is not a noise-prediction: first convert with "
                                           "eps_hat = -sigma s, which multiplies by -sigma."),
            (col(da * s**2 / a - ds) * score, "a factor sigma_t is missing in front of sigma_t': the coefficient "
                                              "is alpha' sigma^2/alpha - sigma sigma'."),
            (col(da * s / a - s * ds) * score, "a factor sigma_t is missing in alpha' sigma^2/alpha: the coefficient "
                                               "is alpha' sigma^2/alpha - sigma sigma'."),
            (col(s**2) * score, "the score coefficient is not sigma^2 (that is Tweedie's x1 = (x + sigma^2 s)/alpha): "
                                "for the velocity it is alpha' sigma^2/alpha - sigma sigma'."),
            (zeros, "with x = 0 your velocity is 0: the score term is missing."),
        ]:
            if _close(out, candidate):
                return Feedback(False, message)
        return compare_tensors(out, want, what="the velocity at x = 0 (which should be "
                                               "(alpha' sigma^2/alpha - sigma sigma') s)",
                               hint="at x = 0 only the score term is left.")

    # 3. Generic inputs, then reordered rows (each row has its own schedule values).
    out, _ = call_student(score_to_velocity, score, x, a, s, da, ds, name=name)
    if not _close(out, expected):
        return compare_tensors(out, expected, what="the velocity at random inputs",
                               hint="u = (alpha'/alpha) x + (alpha' sigma^2/alpha - sigma sigma') s.")
    perm = torch.arange(batch - 1, -1, -1)
    out, _ = call_student(score_to_velocity, score[perm], x[perm], a[perm], s[perm], da[perm], ds[perm], name=name)
    if not _close(out, expected[perm]):
        return Feedback(False, "your result changes when the rows are reordered: use each row's own schedule values "
                               "(no sums or means over the batch).")

    # 4. Real schedules.
    t = 0.05 + 0.9 * torch.rand(batch, generator=g, dtype=torch.float64)
    for path in (CondOTPath(), VPPath(), CosinePath()):
        sch = path.schedule(t)
        out, err = call_student(score_to_velocity, score, x, sch.alpha, sch.sigma, sch.d_alpha, sch.d_sigma, name=name)
        if err is not None:
            return err
        fb = compare_tensors(out, path.score_to_velocity(score, x, t), what=f"the velocity for {path!r}",
                             atol=1e-7, rtol=1e-7)
        if not fb:
            return fb
    return Feedback(True, "u = (alpha'/alpha) x + (alpha' sigma^2/alpha - sigma sigma') s on every probe (score = 0, "
                          "x = 0, random inputs, reordered rows, and the CondOT, VP and cosine schedules).")


def check_score_to_x1(score_to_x1: Callable) -> Feedback:
    r"""Check a student's Tweedie denoiser :math:`\hat x_1 = (x + \sigma_t^2 s)/\alpha_t`.

    The student's ``score_to_x1(score, x, alpha, sigma)`` receives ``score`` and ``x`` of shape ``(batch, dim)``
    and ``alpha, sigma`` of shape ``(batch,)`` (float64) and returns :math:`\mathbb E[x_1 \mid x_t = x]`, shape
    ``(batch, dim)``.

    Returns
    -------
    Feedback
        Passed, or a message naming the mistake (``sigma`` for ``sigma^2``, a flipped sign, a missing or inverted
        division by ``alpha``, wrong shape).
    """
    bad = require_callable(score_to_x1, "score_to_x1", _TWEEDIE_SIGNATURE)
    if bad is not None:
        return bad
    g = torch.Generator().manual_seed(77)
    batch, dim = 6, 2
    x = 2 * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    score = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    a, s, _, _ = _schedule_values(g, batch)
    a, s = a + 0.3, s + 0.1  # keep alpha, sigma away from 1 so that sigma and sigma^2 differ
    col = lambda v: v[:, None]  # noqa: E731
    expected = (x + col(s**2) * score) / col(a)
    out, err = call_student(score_to_x1, score, x, a, s, name=_TWEEDIE_SIGNATURE)
    if err is not None:
        return with_broadcast_hint(err, _BROADCAST_HINT)
    bad = shape_problem(out, expected, _TWEEDIE_SIGNATURE, _BROADCAST_HINT)
    if bad is not None:
        return bad
    if _close(out, expected):
        return Feedback(True, "x1_hat = (x + sigma^2 s)/alpha (Tweedie's formula).")
    for candidate, message in [
        ((x + col(s) * score) / col(a), "use sigma^2, not sigma: eps_hat = -sigma s, and x1_hat = "
                                        "(x - sigma eps_hat)/alpha = (x + sigma^2 s)/alpha."),
        ((x - col(s**2) * score) / col(a), "the sign of the score term is flipped: the score points towards the "
                                           "data, so x1_hat = (x + sigma^2 s)/alpha."),
        (x + col(s**2) * score, "the division by alpha is missing: x = alpha x1_hat + sigma eps_hat, so "
                                "x1_hat = (x + sigma^2 s)/alpha."),
        ((x + col(s**2) * score) * col(a), "divide by alpha, do not multiply: x1_hat = (x + sigma^2 s)/alpha."),
        (x / col(a) + col(s**2) * score, "divide the whole bracket by alpha: x1_hat = (x + sigma^2 s)/alpha."),
    ]:
        if _close(out, candidate):
            return Feedback(False, message)
    return compare_tensors(out, expected, what="the denoiser x1_hat", hint="x1_hat = (x + sigma^2 s)/alpha.")
