"""Reliability of fmlib under bad input: one test per class of problem (no silently wrong answer, checkers
that cannot be fooled or escaped, explanations instead of raw framework errors, checkers an instructor finds)."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest
import torch
from torch import nn

import fmlib.exercises as exercises
from fmlib.data import moons
from fmlib.exercises import check_cfm_loss
from fmlib.losses import cfm_loss
from fmlib.metrics import mmd, wasserstein2
from fmlib.nets import VelocityMLP
from fmlib.paths import CondOTPath, CustomPath
from fmlib.plotting import plot_field
from fmlib.solvers import divergence, hutchinson_divergence, integrate, log_prob
from fmlib.targets import GaussianMixture, marginal_velocity
from fmlib.train import fit_cfm
from fmlib.utils import get_device


def _std_normal_log_prob(x):
    return -0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * np.log(2 * np.pi)


# ------------------------------------------------------------------------------------ silent wrong results
def test_divergence_of_a_field_autograd_cannot_see_is_an_error_not_zero():
    torch.manual_seed(0)
    model = VelocityMLP()
    x = torch.randn(6, 2)

    def no_grad_field(x, t):
        with torch.no_grad():
            return model(x, t)

    def numpy_field(x, t):
        return torch.from_numpy(np.tanh(x.detach().numpy()))

    for field in (no_grad_field, numpy_field):
        with pytest.raises(ValueError, match="autograd cannot see it"):
            divergence(field, x, 0.5)
        with pytest.raises(ValueError, match="autograd cannot see it"):
            hutchinson_divergence(field, x, 0.5, generator=torch.Generator().manual_seed(0))
        with pytest.raises(ValueError, match="autograd cannot see it"):
            log_prob(field, x, _std_normal_log_prob, steps=2)
    # a field that truly does not depend on x has divergence 0
    assert torch.equal(divergence(lambda x, t: torch.ones_like(x), x, 0.5), torch.zeros(6))
    # and the model itself, called normally, is fine (and sampling under no_grad still works)
    assert divergence(model, x, 0.5).shape == (6,)
    with torch.no_grad():
        assert integrate(model, x, steps=3).shape == x.shape


def test_integrate_checks_every_call_not_only_the_first():
    calls = []

    def field(x, t):
        calls.append(1)
        return -x if len(calls) < 3 else -x[:1]  # broadcastable, wrong shape from the third call on

    with pytest.raises(ValueError, match=r"must return the shape of x \(4, 2\); got \(1, 2\) \(call 3\)"):
        integrate(field, torch.randn(4, 2), steps=5)


def test_custom_path_rejects_bad_schedules():
    with pytest.raises(ValueError, match="sigma\\(t\\) must be >= 0"):
        CustomPath(lambda t: t, lambda t: 0.5 - t)
    with pytest.raises(ValueError, match="must return a tensor shaped like t"):
        CustomPath(lambda t: t, lambda t: (1 - t).mean())
    with pytest.raises(ValueError, match="NaN or infinite"):
        CustomPath(lambda t: t, lambda t: torch.log(t - 0.5).nan_to_num(nan=float("nan")).abs())
    path = CustomPath(lambda t: t, lambda t: 1 - t)
    torch.testing.assert_close(path.schedule(0.3).sigma, torch.tensor(0.7, dtype=torch.float64))


def test_mixture_rejects_nan_means():
    with pytest.raises(ValueError, match="means contains NaN"):
        GaussianMixture(torch.tensor([[0.0, float("nan")]]), 1.0)


# -------------------------------------------------------------------------- checkers cannot be fooled/escaped
def _correct_cfm_loss(model, path, x0, x1, t):
    return cfm_loss(model, path, x0, x1, t)


def test_checker_reports_in_place_corruption_of_its_inputs():
    def corrupting(model, path, x0, x1, t):
        loss = cfm_loss(model, path, x0, x1, t)
        x1.zero_()  # corrupts the inputs after computing the right answer
        return loss

    assert check_cfm_loss(_correct_cfm_loss)
    fb = check_cfm_loss(corrupting)
    assert not fb and "in place" in fb.message
    assert check_cfm_loss(_correct_cfm_loss)  # the checker's own data were not damaged


@pytest.mark.parametrize("escape", [lambda: sys.exit(0), lambda: (_ for _ in ()).throw(GeneratorExit()),
                                    lambda: 1 / 0])
def test_checker_survives_anything_the_student_code_raises(escape):
    fb = check_cfm_loss(lambda *args: escape())
    assert not fb and "raised" in fb.message


def test_shape_1_loss_and_wrong_scalar_get_precise_messages():
    fb = check_cfm_loss(lambda *a: cfm_loss(*a).reshape(1))
    assert not fb and "right value" in fb.message and "shape (1,)" in fb.message
    fb = check_cfm_loss(lambda *a: cfm_loss(*a) + 1.0)
    assert not fb and "entry ()" not in fb.message and "your value is" in fb.message


def test_every_checker_is_exported_by_name_and_documented():
    names = [n for group in exercises.CHECKERS.values() for n in group]
    assert len(names) == len(set(names)) >= 19
    for name in names:
        fn = getattr(exercises, name)
        assert callable(fn) and fn.__doc__, name
        assert name in exercises.__all__
    # every check_* defined in a submodule is listed
    import pkgutil, importlib  # noqa: E401
    for info in pkgutil.iter_modules(exercises.__path__):
        module = importlib.import_module(f"fmlib.exercises.{info.name}")
        for name, obj in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("check_") and obj.__module__ == module.__name__:
                assert name in names, f"{info.name}.{name} is not re-exported by fmlib.exercises"


# ---------------------------------------------------------------- explanations instead of framework errors
def test_dtype_mismatch_is_explained():
    model = VelocityMLP()  # float32
    x = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="must share device and dtype"):
        integrate(model, x, steps=2)
    with pytest.raises(ValueError, match="must share device and dtype"):
        cfm_loss(model, CondOTPath(), x, x, 0.5)


def test_plot_field_follows_the_model_dtype():
    import matplotlib.pyplot as plt

    model = VelocityMLP().double()
    fig, ax = plt.subplots()
    art = plot_field(ax, model, 0.5, n=5)
    plt.close(fig)
    assert art is not None


def test_fit_cfm_errors_name_the_problem():
    with pytest.raises(ValueError, match="no parameters"):
        fit_cfm(nn.Identity(), CondOTPath(), lambda n, g: moons(n, generator=g), steps=2, progress=False)
    with pytest.raises(TypeError, match=r"sample_data\(n, generator\)"):
        fit_cfm(VelocityMLP(), CondOTPath(), lambda n: moons(n), steps=2, progress=False)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_cfm(VelocityMLP(), CondOTPath(), lambda n, g: torch.full((n, 2), float("nan")), steps=2, progress=False)


def test_empty_batches_are_errors():
    empty = torch.zeros(0, 2)
    some = torch.randn(4, 2)
    for call in (lambda: cfm_loss(VelocityMLP(), CondOTPath(), empty, empty, 0.5),
                 lambda: wasserstein2(empty, some), lambda: mmd(some, empty),
                 lambda: marginal_velocity(CondOTPath(), empty, some, 0.5),
                 lambda: marginal_velocity(CondOTPath(), some, empty, 0.5)):
        with pytest.raises(ValueError, match="at least one point"):
            call()


def test_unknown_or_unavailable_devices(monkeypatch):
    with pytest.raises(ValueError, match="device must be"):
        get_device("gpu")
    with pytest.raises(ValueError, match="device must be"):
        moons(4, device="gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        moons(4, device="cuda")
