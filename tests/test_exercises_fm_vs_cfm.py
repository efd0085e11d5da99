"""Tests for the checkers of fmlib.exercises.fm_vs_cfm: right answers pass, typical mistakes get a precise message."""

from __future__ import annotations

import torch

from fmlib.exercises.fm_vs_cfm import PHIS, check_bregman_divergence, check_cfm_loss
from fmlib.losses import bregman_divergence, cfm_loss


def _parts(path, t, x0, x1):
    a, s, da, ds = (v[:, None] for v in path.schedule(t))
    return a * x1 + s * x0, da * x1 + ds * x0


# -- CFM loss --------------------------------------------------------------------------------------------

def good_cfm(model, path, x0, x1, t):
    xt, target = _parts(path, t, x0, x1)
    return ((model(xt, t) - target) ** 2).sum(dim=1).mean()


def test_correct_cfm_losses_pass():
    assert check_cfm_loss(good_cfm)
    assert check_cfm_loss(cfm_loss)


def test_ot_target_for_every_path_is_named():
    def wrong(model, path, x0, x1, t):
        xt, _ = _parts(path, t, x0, x1)
        return ((model(xt, t) - (x1 - x0)) ** 2).sum(1).mean()

    fb = check_cfm_loss(wrong)
    assert not fb and "x1 - x0" in fb.message and "CondOT path with sigma_min = 0" in fb.message


def test_mean_over_dimensions_is_named():
    def wrong(model, path, x0, x1, t):
        xt, target = _parts(path, t, x0, x1)
        return ((model(xt, t) - target) ** 2).mean()

    fb = check_cfm_loss(wrong)
    assert not fb and "averaged the squared error over the coordinates" in fb.message


def test_sign_norm_and_batch_sum_are_named():
    def sign(model, path, x0, x1, t):
        xt, target = _parts(path, t, x0, x1)
        return ((model(xt, t) + target) ** 2).sum(1).mean()

    def norm(model, path, x0, x1, t):
        xt, target = _parts(path, t, x0, x1)
        return (model(xt, t) - target).norm(dim=1).mean()

    def batch_sum(model, path, x0, x1, t):
        xt, target = _parts(path, t, x0, x1)
        return ((model(xt, t) - target) ** 2).sum()

    def per_sample(model, path, x0, x1, t):
        xt, target = _parts(path, t, x0, x1)
        return ((model(xt, t) - target) ** 2).sum(1)

    assert "wrong sign" in check_cfm_loss(sign).message
    assert "unsquared" in check_cfm_loss(norm).message
    assert "summed over the batch" in check_cfm_loss(batch_sum).message
    assert "one value per sample" in check_cfm_loss(per_sample).message


def test_wrong_interpolation_is_named():
    def linear(model, path, x0, x1, t):
        _, target = _parts(path, t, x0, x1)
        return ((model(t[:, None] * x1 + (1 - t[:, None]) * x0, t) - target) ** 2).sum(1).mean()

    def swapped(model, path, x0, x1, t):
        a, s, da, ds = (v[:, None] for v in path.schedule(t))
        return ((model(a * x0 + s * x1, t) - (da * x1 + ds * x0)) ** 2).sum(1).mean()

    def at_data(model, path, x0, x1, t):
        _, target = _parts(path, t, x0, x1)
        return ((model(x1, t) - target) ** 2).sum(1).mean()

    assert "x_t = t x1 + (1 - t) x0 for every path" in check_cfm_loss(linear).message
    assert not check_cfm_loss(swapped)
    assert "evaluated the model at the data x1" in check_cfm_loss(at_data).message


def test_cfm_checker_reports_errors_and_non_callables():
    fb = check_cfm_loss(lambda *a: 1 / 0)
    assert not fb and "ZeroDivisionError" in fb.message
    fb = check_cfm_loss("loss")
    assert not fb and "must be a function" in fb.message
    fb = check_cfm_loss(lambda *a: torch.tensor(0.0))
    assert not fb and "should be" in fb.message


# -- Bregman divergence ----------------------------------------------------------------------------------

def good_bregman(phi, u, v):
    vv = v if v.requires_grad else v.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(phi(vv).sum(), vv, create_graph=True)
    return phi(u) - phi(vv) - (g * (u - vv)).sum(dim=1)


def _grad(phi, v):
    vv = v.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(phi(vv).sum(), vv)
    return g


def test_correct_bregman_passes():
    assert check_bregman_divergence(good_bregman)
    assert check_bregman_divergence(bregman_divergence)
    assert len(PHIS) >= 3


def test_bregman_mistakes_are_named():
    def sign(phi, u, v):
        return phi(u) - phi(v) + (_grad(phi, v) * (u - v)).sum(1)

    def at_u(phi, u, v):
        return phi(u) - phi(v) - (_grad(phi, u) * (u - v)).sum(1)

    def swapped(phi, u, v):
        return bregman_divergence(phi, v, u)

    def scalar(phi, u, v):
        return bregman_divergence(phi, u, v).sum()

    def detached(phi, u, v):
        return phi(u) - phi(v) - (_grad(phi, v) * (u - v)).sum(1)

    assert "linear term has the wrong sign" in check_bregman_divergence(sign).message
    assert "gradient at u" in check_bregman_divergence(at_u).message
    assert "arguments are swapped" in check_bregman_divergence(swapped).message
    assert "single number" in check_bregman_divergence(scalar).message
    fb = check_bregman_divergence(detached)
    assert not fb and "gradient in v is zero" in fb.message


def test_bregman_checker_reports_errors_and_wrong_values():
    assert "raised" in check_bregman_divergence(lambda phi, u, v: phi(u, v)).message
    assert "must be a function" in check_bregman_divergence(None).message
    fb = check_bregman_divergence(lambda phi, u, v: ((u - v) ** 2).sum(1))
    assert not fb and "Phi(u) - [Phi(v)" in fb.message
