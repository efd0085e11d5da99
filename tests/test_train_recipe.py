"""The training recipe of fmlib.train: schedule shape, weight averaging, time budget, validation, and the
i.i.d. noise floor of fmlib.data.moons / fmlib.metrics.noise_floor."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from fmlib.data import moons
from fmlib.metrics import noise_floor, wasserstein2
from fmlib.nets import VelocityMLP
from fmlib.paths import CondOTPath
from fmlib.train import EMA, adamw, cosine_schedule, fit, fit_cfm




def _moons(n, g):
    return moons(n, generator=g)


# ------------------------------------------------------------------------------------------------- schedule
def test_cosine_schedule_known_values():
    assert cosine_schedule(0.0, 0.1) == 0.0
    assert cosine_schedule(0.05, 0.1) == pytest.approx(0.5)  # half-way through the linear warm-up
    assert cosine_schedule(0.1, 0.1) == pytest.approx(1.0)  # peak
    assert cosine_schedule(0.55, 0.1) == pytest.approx(0.5)  # half-way through the cosine
    assert cosine_schedule(1.0, 0.1) == pytest.approx(0.0, abs=1e-15)
    assert cosine_schedule(1.0, 0.1, final=0.2) == pytest.approx(0.2)
    assert cosine_schedule(0.5, 0.0) == pytest.approx(0.5)  # no warm-up: pure cosine
    for bad, match in (((1.5,), "progress must lie in"), ((0.5, 1.0), "warmup must be a fraction"),
                       ((0.5, 0.1, 2.0), "final must lie in")):
        with pytest.raises(ValueError, match=match):
            cosine_schedule(*bad)


def test_fit_follows_the_schedule_step_by_step():
    model = nn.Linear(2, 1)
    h = fit(model, lambda step: model.weight.pow(2).sum(), 200, lr=0.01, warmup=0.1, progress=False, ema_decay=None)
    expected = [0.01 * cosine_schedule((k + 0.5) / 200, 0.1) for k in range(200)]
    np.testing.assert_allclose(h.lrs, expected, rtol=1e-12)
    assert np.argmax(h.lrs) in (19, 20) and h.lrs[-1] < 1e-6 and h.lrs[0] < 0.001
    h2 = fit(model, lambda step: model.weight.pow(2).sum(), 10, lr=0.01, schedule="constant", progress=False)
    assert h2.lrs == [0.01] * 10


# ------------------------------------------------------------------------------------------------ averaging
def test_ema_known_answer_with_warmup():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    expected = 0.0
    for k, w in enumerate([1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            model.weight.fill_(w)
        ema.update()
        beta = min(0.5, (1 + k) / (10 + k))
        expected = beta * expected + (1 - beta) * w
    assert float(ema.shadow[0]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="ema_decay must lie in"):
        EMA(model, 1.0)


def test_model_holds_the_averaged_weights_and_raw_ones_are_kept():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x = torch.randn(64, 3)
    y = torch.randn(64, 1)

    def loss_fn(step):
        return ((model(x) - y) ** 2).mean()

    h = fit(model, loss_fn, 50, lr=0.05, ema_decay=0.9, progress=False)
    raw = {k: v.clone() for k, v in h.raw_state_dict.items()}
    averaged = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)  # the model does not hold the raw weights
    model.load_state_dict(h.raw_state_dict)
    assert all(torch.equal(model.state_dict()[k], raw[k]) for k in raw)
    # rerun with the average written out by hand: same numbers
    torch.manual_seed(0)
    model2 = nn.Linear(3, 1)
    opt = adamw(model2, lr=0.05)
    shadow = [p.detach().clone() for p in model2.parameters()]
    for k in range(50):
        for group in opt.param_groups:
            group["lr"] = 0.05 * cosine_schedule((k + 0.5) / 50, 0.05)
        loss = ((model2(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        beta = min(0.9, (1 + k) / (10 + k))
        shadow = [beta * s + (1 - beta) * p.detach() for s, p in zip(shadow, model2.parameters())]
    for (name, value), s in zip(averaged.items(), shadow):
        torch.testing.assert_close(value, s, rtol=1e-5, atol=1e-6)


def test_no_average_leaves_the_raw_weights():
    model = nn.Linear(2, 1)
    h = fit(model, lambda step: model.weight.pow(2).sum(), 5, ema_decay=None, progress=False)
    assert h.raw_state_dict is None and h.ema_decay is None


# ---------------------------------------------------------------------------------------------- time budget
def test_time_budget_is_honoured():
    model = VelocityMLP(hidden=32, depth=2)
    start = time.perf_counter()
    h = fit_cfm(model, CondOTPath(), _moons, seconds=0.6, batch_size=64, progress=False, seed=0)
    wall = time.perf_counter() - start
    assert 0.6 <= h.seconds < 0.6 + 0.5  # stops at the first step past the budget
    assert wall < 5.0 and h.steps > 10 and len(h.lrs) == h.steps
    assert h.lrs[-1] < 0.2 * max(h.lrs)  # the cosine ran on elapsed time down to near zero
    assert h.steps_per_second == pytest.approx(h.steps / h.seconds)


def test_exactly_one_of_steps_and_seconds():
    model = nn.Linear(2, 1)
    ok = lambda step: model.weight.sum() ** 2  # noqa: E731
    with pytest.raises(ValueError, match="give exactly one of steps and seconds"):
        fit(model, ok, 3, seconds=1.0, progress=False)
    with pytest.raises(ValueError, match="give exactly one of steps and seconds"):
        fit(model, ok, progress=False)
    with pytest.raises(ValueError, match="seconds must be > 0"):
        fit(model, ok, seconds=0.0, progress=False)
    with pytest.raises(ValueError, match="give exactly one of steps and seconds"):
        fit_cfm(VelocityMLP(), CondOTPath(), _moons, steps=3, seconds=1.0, progress=False)


# ------------------------------------------------------------------------------------- errors at the boundary
def test_clear_errors_for_bad_models_and_samplers():
    with pytest.raises(ValueError, match="no parameters"):
        fit_cfm(nn.Identity(), CondOTPath(), _moons, steps=2, progress=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(nn.Identity(), lambda step: torch.tensor(0.0, requires_grad=True), 2, progress=False)
    with pytest.raises(TypeError, match=r"sample_data must be a function sample_data\(n, generator\)"):
        fit_cfm(VelocityMLP(), CondOTPath(), "moons", steps=2, progress=False)
    with pytest.raises(TypeError, match=r"callable as sample_data\(n, generator\)"):
        fit_cfm(VelocityMLP(), CondOTPath(), lambda n: moons(n), steps=2, progress=False)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_cfm(VelocityMLP(), CondOTPath(), lambda n, g: torch.full((n, 2), float("nan")), steps=2, progress=False)
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="does not depend on the model's parameters"):
        fit(model, lambda step: model.weight.detach().sum(), 2, progress=False)
    with pytest.raises(ValueError, match="the loss became nan at step 3: the data, the model's output or the weights"):
        fit(model, lambda step: model.weight.sum() * (float("nan") if step == 3 else 1.0), 5, progress=False)


def test_times_are_validated_on_the_first_step_and_clamped_later():
    seen = []

    def sample_time(n, g):
        seen.append(len(seen))
        t = torch.rand(n, generator=g, dtype=torch.float64)
        return t if len(seen) == 1 else t + 1.5  # out of range after the first step: clamped, not scanned

    bad_first = lambda n, g: torch.full((n,), 2.0, dtype=torch.float64)  # noqa: E731
    with pytest.raises(ValueError, match=r"times from sample_time\(n, generator\) must lie in \[0.0, 1.0\]"):
        fit_cfm(VelocityMLP(), CondOTPath(), _moons, steps=3, progress=False, sample_time=bad_first)
    h = fit_cfm(VelocityMLP(), CondOTPath(), _moons, steps=3, progress=False, sample_time=sample_time)
    assert len(seen) == 3 and all(np.isfinite(h.losses))


# ------------------------------------------------------------------------------------------- noise floor
def test_iid_moons_have_the_same_distribution():
    a = moons(20000, seed=0, iid=True).double()
    b = moons(20000, seed=1).double()
    torch.testing.assert_close(a.mean(0), b.mean(0), rtol=0, atol=0.03)
    torch.testing.assert_close(a.std(0), b.std(0), rtol=0, atol=0.03)
    # the same distribution up to sampling noise (an i.i.d. draw of 2000 points lands about 0.2 away)
    assert wasserstein2(moons(2000, seed=2, iid=True), moons(2000, seed=3)) < 0.35
    assert not torch.equal(moons(10, seed=0, iid=True), moons(10, seed=0))
    with pytest.raises(TypeError, match="iid must be a bool"):
        moons(10, iid=1)


def test_noise_floor_known_answer_and_moons_gap():
    shift = lambda n, g: torch.zeros(n, 2) + torch.tensor([3.0, 4.0])  # noqa: E731
    zero = lambda n, g: torch.zeros(n, 2)  # noqa: E731
    assert noise_floor(shift, zero, n=10, repeats=2) == pytest.approx((5.0, 0.0))
    iid = noise_floor(lambda n, g: moons(n, generator=g, iid=True), _moons, n=500, repeats=3)
    coupled = noise_floor(_moons, n=500, repeats=3)
    assert iid[0] > 1.5 * coupled[0]  # two TorchCFM draws are closer than any i.i.d. sampler gets
    with pytest.raises(TypeError, match="sample must be a function"):
        noise_floor(3)
