"""The checkers of fmlib.exercises.coupling accept right answers and name typical mistakes."""

import torch

from fmlib.coupling import ot_pairs, reflow_pairs
from fmlib.exercises import Feedback
from fmlib.exercises.coupling import check_ot_pairs, check_reflow_pairs
from fmlib.solvers import integrate


def greedy(x0, x1):
    # nearest data point for each noise point: duplicates points
    return x0, x1[torch.cdist(x0, x1).argmin(1)]


def test_ot_pairs_checker():
    fb = check_ot_pairs(lambda a, b: ot_pairs(a, b))
    assert isinstance(fb, Feedback) and fb.passed, fb.message
    fb = check_ot_pairs(greedy)
    assert not fb and "more than once" in fb.message
    fb = check_ot_pairs(lambda a, b: (a, b))  # independent pairs: a permutation, not optimal
    assert not fb and "above the optimum" in fb.message
    fb = check_ot_pairs(lambda a, b: (a, b + 1))
    assert not fb and "not one of the input points" in fb.message
    fb = check_ot_pairs(lambda a, b: (a * 2, b))
    assert not fb and "unchanged" in fb.message
    assert not check_ot_pairs(lambda a, b: 1 / 0)  # an exception becomes feedback
    assert not check_ot_pairs(3)
    assert not check_ot_pairs(lambda a, b: a)


def test_ot_pairs_checker_does_not_let_student_mutate_inputs():
    def mutating(a, b):
        b.zero_()
        return a, b

    assert not check_ot_pairs(mutating)
    assert check_ot_pairs(lambda a, b: ot_pairs(a, b))  # the fixed inputs survived


def test_reflow_checker():
    fb = check_reflow_pairs(lambda v, x0, steps: reflow_pairs(v, x0, steps, "euler"))
    assert fb.passed, fb.message
    fb = check_reflow_pairs(lambda v, x0, steps: (x0, x0 + v(x0, torch.zeros(len(x0), dtype=x0.dtype))))
    assert not fb and "one Euler step" in fb.message
    fb = check_reflow_pairs(lambda v, x0, steps: (x0, integrate(v, x0, steps=steps, method="rk4")))
    assert not fb and "end points" in fb.message
    fb = check_reflow_pairs(lambda v, x0, steps: (x0, integrate(v, x0, 1.0, 0.0, steps=steps, method="euler")))
    assert not fb
    assert not check_reflow_pairs(lambda v, x0, steps: None)
    assert not check_reflow_pairs(lambda v, x0, steps: (x0 * 0, x0))
