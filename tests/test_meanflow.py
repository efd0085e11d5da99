"""Tests of fmlib.meanflow against known answers."""


import pytest
import torch

from fmlib.meanflow import (exact_average_velocity, fit_meanflow, meanflow_loss, meanflow_target, sample,
                            sample_times)
from fmlib.nets import VelocityMLP
from fmlib.paths import CondOTPath
from fmlib.targets import GaussianMixture

DT = torch.float64
M, S = 1.5, 0.5  # 1-D Gaussian data N(M, S^2): the CondOT flow is affine and u is explicit


def _gauss_u(x, t, r):
    """Exact average velocity of CondOT for data N(M, S^2): x_t = a_t x0' + t M, a_t = sqrt((1-t)^2 + t^2 S^2)."""
    a = lambda s: torch.sqrt((1 - s) ** 2 + s**2 * S**2)  # noqa: E731
    t, r = t[:, None], r[:, None]
    x_r = a(r) / a(t) * (x - t * M) + r * M
    gap = torch.where((r - t).abs() < 1e-12, torch.ones_like(t), r - t)
    return (x_r - x) / gap


def _gauss_v(x, t):
    a2 = (1 - t) ** 2 + t**2 * S**2
    da2 = -2 * (1 - t) + 2 * t * S**2
    return (da2 / (2 * a2))[:, None] * (x - t[:, None] * M) + M


def _inputs(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(n, 1, generator=g, dtype=DT)
    t = 0.8 * torch.rand(n, generator=g, dtype=DT)
    r = t + (1 - t) * torch.rand(n, generator=g, dtype=DT)
    return x, t, r


def test_identity_holds_for_exact_u_with_exact_v():
    x, t, r = _inputs()
    target = meanflow_target(_gauss_u, x, t, r, _gauss_v(x, t))
    assert torch.allclose(target, _gauss_u(x, t, r), atol=1e-10)


def test_target_is_detached_and_wrong_v_breaks_identity():
    x, t, r = _inputs()
    target = meanflow_target(_gauss_u, x, t, r, 1.1 * _gauss_v(x, t))
    assert not target.requires_grad
    assert (target - _gauss_u(x, t, r)).abs().max() > 1e-2


def test_exact_average_velocity_matches_gaussian_closed_form():
    x, t, r = _inputs(32)
    q = GaussianMixture(torch.tensor([[M]], dtype=DT), S)
    got = exact_average_velocity(CondOTPath(), q, x, t, r, steps=100)
    assert torch.allclose(got, _gauss_u(x, t, r), atol=1e-8)
    same = exact_average_velocity(CondOTPath(), q, x, t, t)
    assert torch.allclose(same, _gauss_v(x, t), atol=1e-12)


def test_sample_one_step_with_exact_u_is_exact():
    x0 = torch.randn(16, 1, dtype=DT)
    out = sample(_gauss_u, x0, steps=1)
    assert torch.allclose(out, M + S * x0, atol=1e-12)  # the flow map at t = 1 of N(0,1) -> N(M, S^2)
    traj = sample(_gauss_u, x0, steps=4, trajectory=True)
    assert traj.shape == (5, 16, 1) and torch.allclose(traj[-1], out, atol=1e-12)


def test_sample_times_ordering_fraction_and_logit_normal():
    t, r = sample_times(20000, torch.Generator().manual_seed(0), fraction_distinct=0.3)
    assert (t <= r).all() and ((t >= 0) & (r <= 1)).all()
    assert abs((t != r).double().mean().item() - 0.3) < 0.02
    t, r = sample_times(20000, torch.Generator().manual_seed(1), fraction_distinct=0.0, mean=0.0, std=1.0)
    # t is the smaller of two logit-normal draws: its median is sigmoid(Phi^{-1}(1 - 1/sqrt 2)) = 0.3670
    assert torch.equal(t, r) and abs(t.median().item() - 0.3670) < 0.01


def test_loss_weight_and_gradient():
    torch.manual_seed(0)
    model = VelocityMLP(dim=2, n_times=2).double()
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(32, 2, generator=g, dtype=DT), torch.randn(32, 2, generator=g, dtype=DT)
    t, r = sample_times(32, g, fraction_distinct=0.5)
    plain = meanflow_loss(model, x0, x1, t, r, p=0.0)
    # p = 0 with r = t is the CFM loss on CondOT
    cfm = ((model(t[:, None] * x1 + (1 - t[:, None]) * x0, t, t) - (x1 - x0)) ** 2).sum(1).mean()
    assert torch.allclose(meanflow_loss(model, x0, x1, t, t, p=0.0), cfm, atol=1e-12)
    weighted = meanflow_loss(model, x0, x1, t, r, p=1.0, c=1e-3)
    assert weighted.item() < 1.0 and plain.item() > 0
    weighted.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_fit_meanflow_learns_gaussian():
    torch.manual_seed(0)
    model = VelocityMLP(dim=1, hidden=32, depth=2, n_times=2)
    hist = fit_meanflow(model, lambda n, g: M + S * torch.randn(n, 1, generator=g), steps=800, batch_size=256,
                        lr=3e-3, seed=0, progress=False, fraction_distinct=0.75, time_mean=0.0, time_std=1.5)
    assert hist.steps == 800 and hist.ema_decay is not None
    z = torch.randn(4000, 1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        one, many = sample(model, z, steps=1), sample(model, z, steps=8)
    assert abs(one.mean().item() - M) < 0.1 and abs(many.std().item() - S) < 0.1
    assert 0.2 < one.std().item() < S + 0.05  # a short run: one step still shrinks the spread


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda: meanflow_target(_gauss_u, torch.zeros(3, 1, dtype=DT), 1.5, 1.0, torch.zeros(3, 1, dtype=DT)),
         ValueError),
        (lambda: meanflow_target(_gauss_u, torch.zeros(3, 1, dtype=DT), 0.5, 1.0, torch.zeros(3, 2, dtype=DT)),
         ValueError),
        (lambda: meanflow_target(_gauss_u, [[0.0]], 0.5, 1.0, torch.zeros(1, 1)), TypeError),
        (lambda: sample(_gauss_u, torch.zeros(3, 1), steps=0), ValueError),
        (lambda: sample(_gauss_u, [[0.0]]), TypeError),
        (lambda: meanflow_loss(VelocityMLP(n_times=2), torch.zeros(3, 2), torch.zeros(3, 2), 0.5, -0.1), ValueError),
        (lambda: sample_times(10, fraction_distinct=1.5), ValueError),
        (lambda: exact_average_velocity(CondOTPath(), torch.zeros(4, 1), torch.zeros(2, 1), 0.0, 2.0), ValueError),
    ],
)
def test_bad_input(call, err):
    with pytest.raises(err):
        call()


def test_cfg_loss_reduces_to_plain_loss():
    from fmlib.meanflow import meanflow_cfg_loss

    torch.manual_seed(0)
    model = VelocityMLP(dim=2, n_times=2, num_classes=3).double()
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(16, 2, generator=g, dtype=DT), torch.randn(16, 2, generator=g, dtype=DT)
    t, r = sample_times(16, g, fraction_distinct=0.5)
    y = torch.randint(0, 3, (16,), generator=g)
    # w = 1 (no guidance) is the plain MeanFlow loss of the conditional network
    plain = meanflow_loss(lambda x, a, b: model(x, a, b, y), x0, x1, t, r)
    assert torch.allclose(meanflow_cfg_loss(model, x0, x1, y, t, r, w=1.0, null_label=3), plain, atol=1e-12)
    # all labels dropped: guidance has no effect
    null = torch.full_like(y, 3)
    a = meanflow_cfg_loss(model, x0, x1, null, t, r, w=3.0, null_label=3)
    b = meanflow_cfg_loss(model, x0, x1, null, t, r, w=1.0, null_label=3)
    assert torch.allclose(a, b, atol=1e-12)
    assert not torch.allclose(meanflow_cfg_loss(model, x0, x1, y, t, r, w=3.0, null_label=3), plain)
