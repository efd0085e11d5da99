"""Checkers for the exercises of the chapter on training and sampling in practice.

Each checker calls the student's function on copies of fixed inputs, never raises on a wrong answer, and
returns :class:`~fmlib.exercises._core.Feedback` saying what is wrong.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..train import cosine_schedule
from ._core import Feedback, call_student, compare_tensors, require_callable

__all__ = ["check_lr_schedule", "check_ema_step"]

_PROGRESS = [0.0, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0]


def _as_float(value: object) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(type(value).__name__)


def check_lr_schedule(schedule_fn: Callable) -> Feedback:
    r"""Check ``schedule_fn(progress, warmup) -> multiplier``: linear warm-up, then cosine decay to zero.

    The expected multiplier is :func:`fmlib.train.cosine_schedule` with ``final = 0``: ``p / w`` for ``p < w``,
    then :math:`\tfrac12(1 + \cos(\pi (p - w) / (1 - w)))`. Checked at 11 fractions of training for ``w = 0.05``
    and ``w = 0.2``.
    """
    bad = require_callable(schedule_fn, "schedule_fn", "schedule_fn(progress, warmup) -> float")
    if bad:
        return bad
    for w in (0.05, 0.2):
        for p in _PROGRESS:
            out, err = call_student(schedule_fn, p, w, name="schedule_fn")
            if err:
                return err
            try:
                got = _as_float(out)
            except TypeError:
                return Feedback(False, f"schedule_fn must return a number; got {type(out).__name__} at progress {p}.")
            want = cosine_schedule(p, warmup=w)
            if math.isfinite(got) and abs(got - want) <= 1e-6:
                continue
            if p < w and abs(got - 1.0) < 1e-6:
                hint = "there is no warm-up: for progress < warmup the multiplier must rise linearly from 0 (p / w)."
            elif p >= w and abs(got - 0.5 * (1 + math.cos(math.pi * p))) < 1e-6:
                hint = ("the cosine runs over the whole of training; it must start at the end of the warm-up: use "
                        "(p - w) / (1 - w) in place of p.")
            elif p >= w and abs(got - math.cos(math.pi * (p - w) / (1 - w))) < 1e-6:
                hint = "cos(pi s) goes from 1 to -1: the decay is (1 + cos(pi s)) / 2, which ends at 0."
            elif p >= w and abs(got - math.cos(0.5 * math.pi * (p - w) / (1 - w))) < 1e-6:
                hint = "that is a quarter cosine; the usual schedule is the half cosine (1 + cos(pi s)) / 2."
            else:
                hint = "warm-up p / w for p < w, then (1 + cos(pi (p - w) / (1 - w))) / 2."
            return Feedback(False, f"at progress {p} with warmup {w} the multiplier should be {want:.6f}; "
                                   f"got {got:.6g}. Hint: {hint}")
    return Feedback(True, "warm-up and cosine decay agree with fmlib.train.cosine_schedule at 22 points.")


def check_ema_step(ema_fn: Callable) -> Feedback:
    r"""Check ``ema_fn(average, weights, decay) -> new_average``: one step of an exponential moving average.

    The expected result is :math:`\beta\,\bar\theta + (1 - \beta)\,\theta` (``decay`` is :math:`\beta`), returned as a
    new tensor; changing ``average`` in place is reported.
    """
    bad = require_callable(ema_fn, "ema_fn", "ema_fn(average, weights, decay) -> tensor")
    if bad:
        return bad
    g = torch.Generator().manual_seed(12)
    avg = torch.randn(5, 3, generator=g, dtype=torch.float64)
    new = torch.randn(5, 3, generator=g, dtype=torch.float64) + 2.0
    decay = 0.9
    out, err = call_student(ema_fn, avg, new, decay, name="ema_fn")
    if err:
        return err
    expected = decay * avg + (1 - decay) * new
    if isinstance(out, torch.Tensor) and out.shape == avg.shape:
        got = out.detach().to(avg)
        if torch.allclose(got, (1 - decay) * avg + decay * new):
            return Feedback(False, "the weights are swapped: the average keeps the fraction `decay` of itself and "
                                   "moves by (1 - decay) towards the new weights.")
        if torch.allclose(got, avg) or torch.allclose(got, new):
            return Feedback(False, "the result equals one of the inputs: mix them, decay * average + (1 - decay) * weights.")
    return compare_tensors(
        out, expected, what="the new average", atol=1e-12, rtol=1e-12,
        hint="decay * average + (1 - decay) * weights (torch.lerp(average, weights, 1 - decay) does the same).",
    )
