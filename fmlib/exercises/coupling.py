"""Checkers for the exercises of the chapter on minibatch optimal transport and rectified flow.

Each checker calls the student's function on copies of fixed inputs, never raises on a wrong answer, and
returns :class:`~fmlib.exercises._core.Feedback` saying what is wrong.
"""

from __future__ import annotations

from typing import Callable

import torch
from scipy.optimize import linear_sum_assignment

from ..solvers import integrate
from ._core import Feedback, call_student, compare_tensors, require_callable

__all__ = ["check_ot_pairs", "check_reflow_pairs"]


def _ot_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2024)
    x0 = torch.randn(40, 2, generator=g, dtype=torch.float64)
    x1 = torch.rand(40, 2, generator=g, dtype=torch.float64) * 4 - 2 + torch.tensor([3.0, 0.0], dtype=torch.float64)
    return x0, x1


def _rows_of(x1: torch.Tensor, y1: torch.Tensor) -> list[int]:
    """For each row of ``y1`` the index of the identical row of ``x1`` (-1 if there is none)."""
    eq = (y1[:, None, :] == x1[None, :, :]).all(-1)
    return [int(r.nonzero()[0]) if r.any() else -1 for r in eq]


def check_ot_pairs(pair_fn: Callable) -> Feedback:
    """Check ``pair_fn(x0, x1) -> (x0, x1_reordered)``: an optimal re-pairing that is a permutation.

    The answer must keep ``x0`` as it is, return every row of ``x1`` exactly once, and reach the minimal mean
    squared distance (compared with scipy's ``linear_sum_assignment`` on a batch of 40 points).
    """
    bad = require_callable(pair_fn, "pair_fn", "pair_fn(x0, x1) -> (x0, x1)")
    if bad:
        return bad
    x0, x1 = _ot_inputs()
    out, err = call_student(pair_fn, x0.clone(), x1.clone(), name="pair_fn")
    if err:
        return err
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out)):
        return Feedback(False, f"pair_fn must return a tuple (x0, x1) of two tensors; got {type(out).__name__}.")
    y0, y1 = (o.detach().to("cpu", torch.float64) for o in out)
    if y0.shape != x0.shape or y1.shape != x1.shape:
        return Feedback(False, f"both outputs must have shape {tuple(x0.shape)}; got {tuple(y0.shape)} and {tuple(y1.shape)}.")
    if not torch.equal(y0, x0):
        return Feedback(False, "x0 must come back unchanged (only x1 is reordered), so that row i of each is a pair.")
    rows = _rows_of(x1, y1)
    if -1 in rows:
        return Feedback(False, f"row {rows.index(-1)} of your x1 is not one of the input points: reorder x1, do not change it.")
    seen = sorted(set(rows))
    if len(seen) != len(rows):
        dup = next(r for r in rows if rows.count(r) > 1)
        missing = len(rows) - len(seen)
        return Feedback(
            False,
            f"input point x1[{dup}] is used more than once and {missing} point(s) are never used: a pairing of two "
            "batches of equal size must be a permutation (a greedy nearest-neighbour choice, or drawing pairs "
            "with replacement, duplicates points).",
        )
    cost = torch.cdist(x0, x1).pow(2).numpy()
    r, c = linear_sum_assignment(cost)
    best = float(cost[r, c].mean())
    got = float(((y0 - y1) ** 2).sum(1).mean())
    if got > best * (1 + 1e-9) + 1e-12:
        return Feedback(
            False,
            f"your pairing is a permutation, but its mean squared distance {got:.4f} is above the optimum "
            f"{best:.4f}: solve the assignment problem on the matrix of squared distances.",
        )
    return Feedback(True, f"a permutation with the optimal mean squared distance {got:.4f}.")


def _rotation(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.stack([-x[:, 1], x[:, 0]], dim=1) * (1.0 + t)[:, None]


def check_reflow_pairs(reflow_fn: Callable) -> Feedback:
    """Check ``reflow_fn(velocity, x0, steps) -> (x0, x1)``: ``x1`` is the Euler end point of ``x0`` at ``t = 1``.

    Uses a time-dependent rotation field, for which one big step, the wrong direction of time or a missing
    ``t`` argument give clearly different end points.
    """
    bad = require_callable(reflow_fn, "reflow_fn", "reflow_fn(velocity, x0, steps) -> (x0, x1)")
    if bad:
        return bad
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(16, 2, generator=g, dtype=torch.float64)
    steps = 20
    expected = integrate(_rotation, x0, 0.0, 1.0, steps=steps, method="euler")
    out, err = call_student(reflow_fn, _rotation, x0.clone(), steps, name="reflow_fn")
    if err:
        return err
    if not (isinstance(out, tuple) and len(out) == 2):
        return Feedback(False, f"reflow_fn must return a tuple (x0, x1); got {type(out).__name__}.")
    y0, y1 = out
    if not isinstance(y0, torch.Tensor) or not torch.equal(y0.detach().to(x0), x0):
        return Feedback(False, "the first output must be the starting points x0, unchanged.")
    one_step = x0 + _rotation(x0, torch.zeros(16, dtype=torch.float64))
    if isinstance(y1, torch.Tensor) and y1.shape == x0.shape and torch.allclose(y1.detach().to(x0), one_step):
        return Feedback(False, "x1 is one Euler step of size 1: take `steps` steps of size 1/steps.")
    return compare_tensors(
        y1, expected, what="the end points x1", atol=1e-9, rtol=1e-9,
        hint="Euler from t = 0 to t = 1 in `steps` equal steps, calling velocity(x, t) with t of shape (n,).",
    )
