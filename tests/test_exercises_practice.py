"""The checkers of fmlib.exercises.practice accept right answers and name typical mistakes."""

import math

import torch

from fmlib.exercises import Feedback
from fmlib.exercises.practice import check_ema_step, check_lr_schedule
from fmlib.train import cosine_schedule


def test_lr_schedule_checker():
    fb = check_lr_schedule(lambda p, w: cosine_schedule(p, warmup=w))
    assert isinstance(fb, Feedback) and fb.passed, fb.message
    right = lambda p, w: p / w if p < w else 0.5 * (1 + math.cos(math.pi * (p - w) / (1 - w)))  # noqa: E731
    assert check_lr_schedule(right)
    assert check_lr_schedule(lambda p, w: torch.tensor(right(p, w)))  # a 0-d tensor is a number
    no_warmup = lambda p, w: 0.5 * (1 + math.cos(math.pi * (p - w) / (1 - w))) if p >= w else 1.0  # noqa: E731
    fb = check_lr_schedule(no_warmup)
    assert not fb and "no warm-up" in fb.message
    whole = lambda p, w: p / w if p < w else 0.5 * (1 + math.cos(math.pi * p))  # noqa: E731
    fb = check_lr_schedule(whole)
    assert not fb and "(p - w) / (1 - w)" in fb.message
    plain_cos = lambda p, w: p / w if p < w else math.cos(math.pi * (p - w) / (1 - w))  # noqa: E731
    fb = check_lr_schedule(plain_cos)
    assert not fb and "ends at 0" in fb.message
    quarter = lambda p, w: p / w if p < w else math.cos(0.5 * math.pi * (p - w) / (1 - w))  # noqa: E731
    fb = check_lr_schedule(quarter)
    assert not fb and "quarter cosine" in fb.message
    assert not check_lr_schedule(lambda p, w: 1 / 0)      # an exception becomes feedback
    fb = check_lr_schedule(lambda p, w: "fast")
    assert not fb and "must return a number" in fb.message
    assert not check_lr_schedule(3)
    fb = check_lr_schedule(lambda p, w: float("nan"))
    assert not fb


def test_ema_step_checker():
    fb = check_ema_step(lambda a, w, d: d * a + (1 - d) * w)
    assert isinstance(fb, Feedback) and fb.passed, fb.message
    assert check_ema_step(lambda a, w, d: torch.lerp(a, w, 1 - d))
    fb = check_ema_step(lambda a, w, d: (1 - d) * a + d * w)
    assert not fb and "swapped" in fb.message
    fb = check_ema_step(lambda a, w, d: w)
    assert not fb and "equals one of the inputs" in fb.message
    assert not check_ema_step(lambda a, w, d: a[:2])      # wrong shape
    assert not check_ema_step(lambda a, w, d: 1 / 0)
    assert not check_ema_step(None)


def test_ema_step_checker_reports_in_place_changes():
    def in_place(a, w, d):
        return a.mul_(d).add_((1 - d) * w)

    fb = check_ema_step(in_place)
    assert not fb
    assert check_ema_step(lambda a, w, d: d * a + (1 - d) * w)  # the fixed inputs survived
