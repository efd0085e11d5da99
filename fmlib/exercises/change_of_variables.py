r"""Checkers for the chapter *Change of variables*.

The exercise: :math:`X \sim \mathcal N(0, 1)` and :math:`Y = g(X)` for a strictly monotone, differentiable
:math:`g`. Write the density of :math:`Y`,

.. math:: p_Y(y) = \varphi\big(g^{-1}(y)\big)\, \Big|\big(g^{-1}\big)'(y)\Big| ,

as a function of a tensor ``y`` of shape ``(n,)``. :func:`check_pushforward_density` evaluates it on a grid
inside the support of :math:`Y` and recognises the classic mistakes: the Jacobian factor left out, :math:`g'`
used instead of :math:`(g^{-1})'`, the absolute value dropped, :math:`g` used where :math:`g^{-1}` belongs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ._core import Feedback, call_student, compare_tensors, require_callable

__all__ = ["PROBLEMS", "PushforwardProblem", "check_pushforward_density"]

Fn = Callable[[torch.Tensor], torch.Tensor]


def _std_normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class PushforwardProblem:
    r"""One exercise: :math:`X \sim \mathcal N(0, 1)`, :math:`Y = g(X)`.

    The density is checked at the points :math:`y = g(x)` for 401 values of :math:`x` evenly spaced in
    :math:`[-4.5, 4.5]` (which carry all but :math:`7 \cdot 10^{-6}` of the probability).

    Attributes
    ----------
    statement:
        The problem in words.
    g, g_inv, d_g, d_g_inv:
        :math:`g`, :math:`g^{-1}`, :math:`g'` and :math:`(g^{-1})'`, each mapping a tensor to a tensor of the
        same shape.
    """

    statement: str
    g: Fn
    g_inv: Fn
    d_g: Fn
    d_g_inv: Fn

    def grid(self) -> torch.Tensor:
        """The sorted float64 points ``y = g(x)``, ``x`` in ``linspace(-4.5, 4.5, 401)``, shape ``(401,)``."""
        return torch.sort(self.g(torch.linspace(-4.5, 4.5, 401, dtype=torch.float64))).values

    def density(self, y: torch.Tensor) -> torch.Tensor:
        r"""The correct density :math:`\varphi(g^{-1}(y))\,|(g^{-1})'(y)|`, same shape as ``y``."""
        return _std_normal_pdf(self.g_inv(y)) * self.d_g_inv(y).abs()


PROBLEMS: dict[str, PushforwardProblem] = {
    "exp_neg": PushforwardProblem(
        "X ~ N(0, 1) and Y = exp(-X) (a decreasing map onto (0, inf)); write p_Y(y) for y > 0.",
        g=lambda x: torch.exp(-x),
        g_inv=lambda y: -torch.log(y),
        d_g=lambda x: -torch.exp(-x),
        d_g_inv=lambda y: -1.0 / y,
    ),
    "affine_neg": PushforwardProblem(
        "X ~ N(0, 1) and Y = 1 - 2 X; write p_Y(y) for all real y.",
        g=lambda x: 1 - 2 * x,
        g_inv=lambda y: (1 - y) / 2,
        d_g=lambda x: torch.full_like(x, -2.0),
        d_g_inv=lambda y: torch.full_like(y, -0.5),
    ),
    "sigmoid": PushforwardProblem(
        "X ~ N(0, 1) and Y = 1 / (1 + exp(-X)) (the logistic function, onto (0, 1)); write p_Y(y) for 0 < y < 1.",
        g=torch.sigmoid,
        g_inv=torch.logit,
        d_g=lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x)),
        d_g_inv=lambda y: 1.0 / (y * (1 - y)),
    ),
}
"""The available problems by name; ``PROBLEMS[name].statement`` describes each one."""


def _mistakes(pb: PushforwardProblem, y: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Densities produced by the classic mistakes, with the explanation of each."""
    phi = _std_normal_pdf
    z = pb.g_inv(y)
    return [
        (
            "you left out the Jacobian factor: phi(g^{-1}(y)) alone is not a density of Y (it does not integrate "
            "to 1). Multiply by |(g^{-1})'(y)|, the factor by which g^{-1} stretches lengths near y.",
            phi(z),
        ),
        (
            "you multiplied by g'(g^{-1}(y)) instead of dividing by it: the factor is |(g^{-1})'(y)| = "
            "1 / |g'(g^{-1}(y))|. Where g stretches an interval, the same probability is spread thinner.",
            phi(z) * pb.d_g(z).abs(),
        ),
        (
            "you multiplied by g'(g^{-1}(y)) instead of dividing by it, and without the absolute value: the "
            "factor is |(g^{-1})'(y)| = 1 / |g'(g^{-1}(y))|.",
            phi(z) * pb.d_g(z),
        ),
        (
            "you evaluated g' at y instead of using (g^{-1})'(y) = 1 / g'(g^{-1}(y)).",
            phi(z) * pb.d_g(y).abs(),
        ),
        (
            "you evaluated g' at y instead of using (g^{-1})'(y) = 1 / g'(g^{-1}(y)).",
            phi(z) / pb.d_g(y).abs(),
        ),
        (
            "you used g where g^{-1} belongs: the base density must be evaluated at the point x = g^{-1}(y) that "
            "is mapped to y.",
            phi(pb.g(y)) * pb.d_g_inv(y).abs(),
        ),
        (
            "you used g where g^{-1} belongs: the base density must be evaluated at x = g^{-1}(y), and the "
            "factor is |(g^{-1})'(y)|.",
            phi(pb.g(y)) * pb.d_g(y).abs(),
        ),
        (
            "you returned the density of X evaluated at y: the map g is missing altogether.",
            phi(y),
        ),
    ]


def check_pushforward_density(density: Callable[[torch.Tensor], torch.Tensor], problem: str = "exp_neg") -> Feedback:
    r"""Check a student's density of :math:`Y = g(X)`, :math:`X \sim \mathcal N(0, 1)`.

    Parameters
    ----------
    density:
        The student's function: maps a float64 tensor ``y`` of shape ``(n,)`` (points inside the support of
        :math:`Y`, see :meth:`PushforwardProblem.grid`) to the density values, shape ``(n,)``.
    problem:
        A key of :data:`PROBLEMS`: ``"exp_neg"`` (:math:`Y = e^{-X}`, the default), ``"affine_neg"``
        (:math:`Y = 1 - 2X`) or ``"sigmoid"`` (:math:`Y = 1/(1 + e^{-X})`).

    Returns
    -------
    Feedback
        Passed when the values match :math:`\varphi(g^{-1}(y))\,|(g^{-1})'(y)|` at 401 points (relative
        tolerance 1e-4); otherwise a message naming the mistake when it is a classic one (missing Jacobian
        factor, :math:`g'` instead of :math:`(g^{-1})'`, missing absolute value, :math:`g` instead of
        :math:`g^{-1}`), or the worst grid point, a negative value, or the integral over the grid.
    """
    if not isinstance(problem, str) or problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {sorted(PROBLEMS)}; got {problem!r}")
    bad = require_callable(density, "density", "density(y) -> tensor of shape (n,)")
    if bad is not None:
        return bad
    pb = PROBLEMS[problem]
    y = pb.grid()
    expected = pb.density(y)
    got, err = call_student(density, y.clone(), name="density(y)")
    if err is not None:
        return err
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return Feedback(
                False, f"density(y) must return a tensor of shape {tuple(y.shape)}; got {type(got).__name__}."
            )
    got = got.detach().to(torch.float64)
    if got.shape != expected.shape:
        return Feedback(
            False,
            f"density(y) must return one value per point: shape {tuple(expected.shape)}; got {tuple(got.shape)}. "
            "Work elementwise with torch operations (torch.exp, torch.log, ...).",
        )
    if not torch.isfinite(got).all():
        i = int(torch.nonzero(~torch.isfinite(got))[0])
        return Feedback(False, f"density(y) is {float(got[i])} at y = {float(y[i]):.4g}; it must be finite there.")
    close = lambda a, b: bool(torch.allclose(a, b, rtol=1e-4, atol=1e-9))  # noqa: E731
    if close(got, expected):
        return compare_tensors(got, expected, what=f"p_Y ({pb.statement})", rtol=1e-4, atol=1e-9)
    if close(got, -expected):
        return Feedback(
            False,
            "your density is the exact negative of the right one: you dropped the absolute value. Here g is "
            "decreasing, so (g^{-1})'(y) < 0, and a density must be |(g^{-1})'(y)| times phi(g^{-1}(y)).",
        )
    for message, wrong in _mistakes(pb, y):
        if not close(wrong, expected) and close(got, wrong):
            return Feedback(False, message)
    if (got < 0).any():
        i = int(torch.argmin(got))
        return Feedback(
            False,
            f"density(y) is negative ({float(got[i]):.4g}) at y = {float(y[i]):.4g}; a density is never negative. "
            "Did you forget the absolute value of the derivative?",
        )
    hint = "p_Y(y) = phi(g^{-1}(y)) |(g^{-1})'(y)| with phi the N(0, 1) density."
    mass = float(torch.trapezoid(got, y))
    true_mass = float(torch.trapezoid(expected, y))
    if abs(mass - true_mass) > 0.02:
        return Feedback(
            False,
            f"over [{float(y[0]):.4g}, {float(y[-1]):.4g}] your density integrates to {mass:.4f}, but the true one "
            f"to {true_mass:.4f} (almost all of the probability). Hint: {hint}",
        )
    return compare_tensors(got, expected, what="p_Y(y)", rtol=1e-4, atol=1e-9, hint=hint)
