"""Tests for fmlib.exercises.guidance: correct answers pass, each typical mistake gets its own message, and the
checkers never raise on a wrong answer."""

from __future__ import annotations

import torch

from fmlib.exercises.guidance import check_cfg_combine, check_unconditional_from_classes


def test_cfg_combine_correct_and_mistakes():
    assert check_cfg_combine(lambda c, u, w: w * c + (1 - w) * u)
    assert check_cfg_combine(lambda c, u, w: u + w * (c - u))
    fb = check_cfg_combine(lambda c, u, w: w * u + (1 - w) * c)
    assert not fb and "roles are swapped" in fb.message
    fb = check_cfg_combine(lambda c, u, w: (1 + w) * c - w * u)
    assert not fb and "Ho and Salimans" in fb.message
    fb = check_cfg_combine(lambda c, u, w: w * c + u)
    assert not fb and "w = 0" in fb.message
    fb = check_cfg_combine(lambda c, u, w: c.mul_(w).add_((1 - w) * u))
    assert not fb and "in place" in fb.message
    fb = check_cfg_combine(lambda c, u, w: (w * c + (1 - w) * u)[:, 0])
    assert not fb and "shape" in fb.message
    fb = check_cfg_combine(lambda c, u, w: 1 / 0)
    assert not fb and "ZeroDivisionError" in fb.message
    fb = check_cfg_combine(3)
    assert not fb and "must be a function" in fb.message


def _right(v, log_lik, log_prior):
    return (torch.softmax(log_prior + log_lik, dim=1)[..., None] * v).sum(1)


def test_unconditional_from_classes_correct_and_mistakes():
    assert check_unconditional_from_classes(_right)
    fb = check_unconditional_from_classes(lambda v, ll, lp: (lp.exp()[None, :, None] * v).sum(1))
    assert not fb and "prior" in fb.message and "posterior" in fb.message
    fb = check_unconditional_from_classes(lambda v, ll, lp: (torch.softmax(ll, 1)[..., None] * v).sum(1))
    assert not fb and "missing the prior" in fb.message
    fb = check_unconditional_from_classes(lambda v, ll, lp: (torch.softmax(lp + ll, 0)[..., None] * v).sum(1))
    assert not fb and "over the batch" in fb.message

    def naive(v, ll, lp):  # exp without normalising in log space: 0/0 far from the data
        w = torch.exp(lp + ll)
        return (w[..., None] * v).sum(1) / w.sum(1, keepdim=True)

    fb = check_unconditional_from_classes(naive)
    assert not fb and "underflows" in fb.message
    fb = check_unconditional_from_classes(lambda v, ll, lp: v.mean(2))
    assert not fb and "shape" in fb.message
    fb = check_unconditional_from_classes(lambda v, ll, lp: _right(v, ll.sub_(1.0), lp))
    assert not fb and "in place" in fb.message
    fb = check_unconditional_from_classes(lambda v, ll, lp: _right(v, ll, lp) + 0.01)
    assert not fb and "the unconditional field" in fb.message
    fb = check_unconditional_from_classes(lambda v, ll, lp: None.x)
    assert not fb and "AttributeError" in fb.message
