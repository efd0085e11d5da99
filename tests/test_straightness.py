"""Known answers for fmlib.straightness."""

import math

import pytest
import torch

from fmlib.solvers import integrate
from fmlib.straightness import arc_length, path_energy, squared_displacement, straightness, straightness_gap


def line(x0, d, steps, times=None):
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64) if times is None else times
    return x0[None] + t[:, None, None] * d[None]


def semicircle(r, steps):
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    pts = r * torch.stack([torch.cos(math.pi * t), torch.sin(math.pi * t)], dim=-1)
    return pts[:, None, :]  # (steps + 1, 1, 2)


def test_line_energy_is_squared_speed():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    d = torch.randn(5, 3, generator=g, dtype=torch.float64)
    tr = line(x0, d, 10)
    torch.testing.assert_close(path_energy(tr), (d**2).sum(-1))
    torch.testing.assert_close(squared_displacement(tr), (d**2).sum(-1))
    torch.testing.assert_close(arc_length(tr), torch.linalg.vector_norm(d, dim=-1))
    assert straightness(tr) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(straightness(tr, reduction="none"), torch.ones(5, dtype=torch.float64))
    assert straightness_gap(tr) == pytest.approx(0.0, abs=1e-12)


def test_line_from_solver_with_constant_velocity():
    d = torch.tensor([[1.0, -2.0]])
    tr = integrate(lambda x, t: d.expand_as(x), torch.zeros(4, 2), steps=7, method="euler", trajectory=True)
    assert tr.shape == (8, 4, 2)
    torch.testing.assert_close(path_energy(tr), torch.full((4,), 5.0))
    assert straightness(tr) == pytest.approx(1.0, abs=1e-6)


def test_nonuniform_grid_and_other_interval():
    # x(t) = t d on [0.2, 0.7] at uneven times: energy = ||d||^2 * 0.5, displacement = 0.5 d.
    times = torch.tensor([0.2, 0.25, 0.4, 0.41, 0.7], dtype=torch.float64)
    d = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    tr = line(torch.zeros(1, 2, dtype=torch.float64), d, 4, times)
    torch.testing.assert_close(path_energy(tr, times), torch.tensor([25.0 * 0.5], dtype=torch.float64))
    assert straightness(tr, times) == pytest.approx(1.0)
    # Backward in time (e.g. a likelihood solve) gives the same values.
    assert path_energy(tr.flip(0), times.flip(0)).item() == pytest.approx(12.5)


def test_semicircle_known_ratio():
    r, n = 2.0, 4000
    tr = semicircle(r, n)
    # Exact for the inscribed polygon; tends to pi^2 r^2 and 4 / pi^2.
    chord = 2 * r * math.sin(math.pi / (2 * n))
    assert path_energy(tr).item() == pytest.approx(n**2 * chord**2, rel=1e-10)
    assert path_energy(tr).item() == pytest.approx(math.pi**2 * r**2, rel=1e-6)
    assert straightness(tr) == pytest.approx(4 / math.pi**2, rel=1e-6)
    assert straightness_gap(tr) == pytest.approx(math.pi**2 * r**2 - 4 * r**2, rel=1e-6)
    assert arc_length(tr).item() == pytest.approx(math.pi * r, rel=1e-6)


def test_varying_speed_on_a_straight_line():
    # x(t) = t^2 d: straight but accelerating; energy = 4/3 ||d||^2, so S = 3/4.
    n = 2000
    t = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    d = torch.tensor([1.0, 1.0], dtype=torch.float64)
    tr = (t**2)[:, None, None] * d
    assert straightness(tr) == pytest.approx(0.75, rel=1e-5)
    assert arc_length(tr).item() == pytest.approx(math.sqrt(2), rel=1e-12)


def test_mean_is_ratio_of_means():
    tr = torch.cat([semicircle(1.0, 200), line(torch.zeros(1, 2, dtype=torch.float64),
                                               torch.tensor([[3.0, 0.0]], dtype=torch.float64), 200)], dim=1)
    e, s = path_energy(tr), squared_displacement(tr)
    assert straightness(tr) == pytest.approx(float(s.mean() / e.mean()))
    assert straightness_gap(tr) == pytest.approx(float((e - s).mean()))


@pytest.mark.parametrize(
    "bad, err, match",
    [
        ([[0.0]], TypeError, "trajectory must be a torch.Tensor"),
        (torch.zeros(3, 2), ValueError, r"shape \(steps \+ 1, batch, dim\)"),
        (torch.zeros(3, 2, 2, dtype=torch.long), TypeError, "floating-point"),
        (torch.zeros(1, 2, 2), ValueError, "at least 2 time points"),
        (torch.full((3, 2, 2), float("nan")), ValueError, "NaN"),
        (torch.zeros(3, 0, 2), ValueError, "batch >= 1"),
    ],
)
def test_bad_trajectory(bad, err, match):
    for fn in (path_energy, squared_displacement, arc_length, straightness, straightness_gap):
        with pytest.raises(err, match=match):
            fn(bad)


def test_bad_times():
    tr = semicircle(1.0, 4)
    with pytest.raises(TypeError, match="times must be None or a tensor"):
        path_energy(tr, [0, 0.25, 0.5, 0.75, 1])
    with pytest.raises(ValueError, match=r"times must have shape \(5,\)"):
        path_energy(tr, torch.linspace(0, 1, 4))
    with pytest.raises(ValueError, match="strictly increasing"):
        path_energy(tr, torch.tensor([0.0, 0.5, 0.5, 0.7, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        straightness(tr, torch.tensor([0.0, float("nan"), 0.5, 0.7, 1.0]))


def test_bad_reduction_and_static_curve():
    tr = semicircle(1.0, 4)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'none'"):
        straightness(tr, reduction="sum")
    with pytest.raises(ValueError, match="reduction must be"):
        straightness_gap(tr, reduction=None)
    still = torch.zeros(3, 2, 2)
    with pytest.raises(ValueError, match="does not move"):
        straightness(still)
    mixed = torch.cat([still[:, :1], semicircle(1.0, 2).float()], dim=1)
    with pytest.raises(ValueError, match="1 curve"):
        straightness(mixed, reduction="none")
    assert straightness(mixed) > 0
