"""Tests of the MeanFlow exercise checkers: right answers pass, each typical mistake is named, nothing raises."""

import torch

from fmlib.exercises.meanflow import check_convention_map, check_meanflow_target


def right_target(u, x, t, r, v):
    _, dudt = torch.func.jvp(u, (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    return v + (r - t)[:, None] * dudt


def paper_tangent(u, x, t, r, v):
    _, dudt = torch.func.jvp(u, (x, t, r), (v, torch.zeros_like(t), torch.ones_like(r)))
    return v + (r - t)[:, None] * dudt


def flipped_sign(u, x, t, r, v):
    _, dudt = torch.func.jvp(u, (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    return v - (r - t)[:, None] * dudt


def no_dt(u, x, t, r, v):
    _, dudt = torch.func.jvp(u, (x, t, r), (v, torch.zeros_like(t), torch.zeros_like(r)))
    return v + (r - t)[:, None] * dudt


def test_target_checker():
    assert check_meanflow_target(right_target)
    assert "paper's order" in check_meanflow_target(paper_tangent).message
    assert "sign of (r - t)" in check_meanflow_target(flipped_sign).message
    assert "partial_t" in check_meanflow_target(no_dt).message
    assert not check_meanflow_target(lambda u, x, t, r, v: v)
    assert "raised" in check_meanflow_target(lambda u, x, t, r, v: 1 / 0).message
    assert "shape" in check_meanflow_target(lambda u, x, t, r, v: v[:, 0]).message
    assert not check_meanflow_target(3)


def test_convention_checker():
    assert check_convention_map(lambda u_mf, x, t, r: -u_mf(x, 1 - r, 1 - t))
    assert "sign is missing" in check_convention_map(lambda u_mf, x, t, r: u_mf(x, 1 - r, 1 - t)).message
    assert "not swapped" in check_convention_map(lambda u_mf, x, t, r: -u_mf(x, 1 - t, 1 - r)).message
    assert "not flipped" in check_convention_map(lambda u_mf, x, t, r: -u_mf(x, r, t)).message
    assert not check_convention_map(lambda u_mf, x, t, r: x)
    assert "raised" in check_convention_map(lambda u_mf, x, t, r: None.shape).message


def test_checker_does_not_let_student_modify_inputs():
    def mutating(u, x, t, r, v):
        x.zero_()
        return v
    assert not check_meanflow_target(mutating)
    assert check_meanflow_target(right_target)
