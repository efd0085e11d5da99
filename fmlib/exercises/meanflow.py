r"""Checkers for the chapter "MeanFlow: one-step generation".

* :func:`check_meanflow_target`: the MeanFlow target in the book's convention,
  :math:`v + (r - t)\,(v\cdot\nabla_x u + \partial_t u)`, computed with one Jacobian-vector product.
* :func:`check_convention_map`: turn an average velocity written in the MeanFlow paper's convention (data at
  time 0, :math:`u^{\mathrm{MF}}(z, r', t')` with :math:`r' < t'`) into the book's :math:`u(x, t, r)`.

Both run the student's function on a one-dimensional Gaussian example whose average velocity is known in closed
form, on copies of the inputs, and name the usual mistakes: the paper's tangent :math:`(v, 0, 1)` used on the
book's argument order, a flipped sign of :math:`(r - t)`, a missing :math:`\partial_t u`, a missing minus sign or
unswapped times in the convention map.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._core import Feedback, call_student, compare_tensors, require_callable, shape_problem

__all__ = ["check_meanflow_target", "check_convention_map"]

_M, _S = 1.5, 0.5  # data N(_M, _S^2) in 1-D; the CondOT flow is affine


def _a(s: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((1 - s) ** 2 + s**2 * _S**2)


def _book_u(x: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Exact book-convention average velocity of CondOT for data N(_M, _S^2) (t != r)."""
    t, r = t[:, None], r[:, None]
    return (_a(r) / _a(t) * (x - t * _M) + r * _M - x) / (r - t)


def _book_v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    da2 = -2 * (1 - t) + 2 * t * _S**2
    return (da2 / (2 * _a(t) ** 2))[:, None] * (x - t[:, None] * _M) + _M


def _paper_u(z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The same field in the paper's convention: data at 0, u(z, r, t) with z_r = z_t - (t - r) u."""
    return -_book_u(z, 1 - t, 1 - r)


def _probe(seed: int = 7, n: int = 9):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    t = 0.1 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    r = t + 0.1 + (0.9 - t) * torch.rand(n, generator=g, dtype=torch.float64)
    return x, t, r


def _jvp_total(u, x, t, r, tangent):
    return torch.func.jvp(u, (x, t, r), tangent)[1]


def check_meanflow_target(meanflow_target: Callable) -> Feedback:
    r"""Check a student's ``meanflow_target(u, x, t, r, v)``.

    It receives an average velocity ``u(x, t, r)``, points ``x`` of shape ``(batch, d)``, times ``t <= r`` of shape
    ``(batch,)`` and the velocity ``v`` at ``(x, t)``, and must return
    :math:`v + (r - t)\,(v\cdot\nabla_x u + \partial_t u)`, shape ``(batch, d)``. With the exact ``u`` and ``v`` of a
    Gaussian example the result equals ``u(x, t, r)`` (the MeanFlow identity); the checker also compares with
    the common mistakes.

    Returns
    -------
    Feedback
    """
    bad = require_callable(meanflow_target, "meanflow_target", "meanflow_target(u, x, t, r, v)")
    if bad is not None:
        return bad
    x, t, r = _probe()
    v = _book_v(x, t)
    expected = _book_u(x, t, r)
    out, err = call_student(meanflow_target, _book_u, x.clone(), t.clone(), r.clone(), v.clone(),
                            name="meanflow_target")
    if err is not None:
        return err
    shape = shape_problem(out, expected, "meanflow_target(u, x, t, r, v)")
    if shape is not None:
        return shape
    out = out.detach()
    gap = (r - t)[:, None]
    ones, zeros = torch.ones_like(t), torch.zeros_like(t)
    mistakes = {
        "the tangent (v, 0, 1): that is the paper's order u(z, r, t); in the book's u(x, t, r) the time t comes "
        "second, so the tangent on (x, t, r) is (v, 1, 0)": v + gap * _jvp_total(_book_u, x, t, r, (v, zeros, ones)),
        "the sign of (r - t): the book's identity is u = v + (r - t) du/dt (the paper writes v - (t - r) du/dt in "
        "its own time)": v - gap * _jvp_total(_book_u, x, t, r, (v, ones, zeros)),
        "a missing partial_t u: the time tangent must be 1, because t moves along the trajectory too":
            v + gap * _jvp_total(_book_u, x, t, r, (v, zeros, zeros)),
        "a missing v . grad_x u: the x tangent must be v": v + gap * _jvp_total(_book_u, x, t, r, (zeros[:, None] * v,
                                                                                                   ones, zeros)),
    }
    for what, wrong in mistakes.items():
        if torch.allclose(out.to(wrong.dtype), wrong, atol=1e-6):
            return Feedback(False, f"your target matches {what}.")
    return compare_tensors(out, expected, what="the MeanFlow target with the exact u and v (which must equal u)",
                           atol=1e-6, rtol=1e-6,
                           hint="use torch.func.jvp(u, (x, t, r), (v, ones, zeros)) and v + (r - t)[:, None] * dudt")


def check_convention_map(to_book: Callable) -> Feedback:
    r"""Check a student's ``to_book(u_mf, x, t, r)``: the book's :math:`u(x, t, r)` from the paper's ``u_mf``.

    ``u_mf(z, r', t')`` is an average velocity in the MeanFlow paper's convention (data at time 0,
    :math:`z_{r'} = z_{t'} - (t' - r') u^{\mathrm{MF}}`, :math:`r' < t'`); the answer is
    :math:`-u^{\mathrm{MF}}(x, 1 - r, 1 - t)`.

    Returns
    -------
    Feedback
    """
    bad = require_callable(to_book, "to_book", "to_book(u_mf, x, t, r)")
    if bad is not None:
        return bad
    x, t, r = _probe(seed=11)
    expected = _book_u(x, t, r)
    out, err = call_student(to_book, _paper_u, x.clone(), t.clone(), r.clone(), name="to_book")
    if err is not None:
        return err
    shape = shape_problem(out, expected, "to_book(u_mf, x, t, r)")
    if shape is not None:
        return shape
    out = out.detach()
    mistakes = {
        "+u_mf(x, 1 - r, 1 - t): the sign is missing (the paper's u points from data to noise, against the book's "
        "direction of time)": _paper_u(x, 1 - r, 1 - t),
        "-u_mf(x, 1 - t, 1 - r): the two times are not swapped (the paper's first time argument is the end point "
        "r' = 1 - r)": -_paper_u(x, 1 - t, 1 - r),
        "-u_mf(x, r, t): the times are not flipped (t' = 1 - t)": -_paper_u(x, r, t),
    }
    for what, wrong in mistakes.items():
        if torch.allclose(out.to(wrong.dtype), wrong, atol=1e-6):
            return Feedback(False, f"your answer is {what}.")
    return compare_tensors(out, expected, what="the book-convention average velocity", atol=1e-6, rtol=1e-6,
                           hint="the book's time is t = 1 - t'; average velocities change sign with time.")
