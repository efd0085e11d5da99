"""Tests for fmlib.timesampling: densities integrate to one, match their CDFs and their samplers, known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from fmlib.nets import VelocityMLP
from fmlib.paths import CondOTPath
from fmlib.timesampling import (
    BetaMixtureTime,
    CosMapTime,
    LogitNormalTime,
    ModeTime,
    UniformTime,
)
from fmlib.train import fit_cfm

SAMPLERS = [
    UniformTime(),
    LogitNormalTime(),
    LogitNormalTime(0.7, 0.5),
    LogitNormalTime.from_sd3(1.0, 0.6),
    ModeTime(1.29),
    ModeTime(-0.6),
    ModeTime(-1.0),
    CosMapTime(),
    BetaMixtureTime(),
    BetaMixtureTime(0.3, 0.5, 2.0, 3.0, 0.8),
]


def _quad(f, a=0.0, b=1.0):
    return integrate.quad(lambda s: float(f(s)), a, b, limit=200)[0]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_density_integrates_to_one(sampler):
    assert _quad(sampler.density) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_cdf_is_the_integral_of_the_density(sampler):
    for b in (0.1, 0.35, 0.5, 0.8, 0.97):
        assert float(sampler.cdf(b)) == pytest.approx(_quad(sampler.density, 0.0, b), abs=1e-7)
    assert float(sampler.cdf(0.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(sampler.cdf(1.0)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_samples_follow_the_density(sampler):
    x = sampler.sample(20_000, torch.Generator().manual_seed(0))
    assert x.shape == (20_000,) and x.dtype == torch.float64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    ks = stats.kstest(x.numpy(), lambda s: sampler.cdf(torch.as_tensor(s)).numpy())
    assert ks.pvalue > 1e-3, ks
    # a histogram against the bin averages of the density
    edges = np.linspace(0.05, 0.95, 10)
    counts, _ = np.histogram(x.numpy(), bins=edges)
    mass = np.diff(sampler.cdf(torch.tensor(edges)).numpy())
    se = np.sqrt(mass * (1 - mass) / x.numel())
    assert np.all(np.abs(counts / x.numel() - mass) < 5 * se + 1e-4)


def test_samplers_are_reproducible_and_fit_cfm_accepts_them():
    for sampler in SAMPLERS:
        a = sampler.sample(50, torch.Generator().manual_seed(3))
        b = sampler.sample(50, torch.Generator().manual_seed(3))
        assert torch.equal(a, b)
    model = VelocityMLP(dim=2, hidden=8, depth=1)
    hist = fit_cfm(model, CondOTPath(), lambda n, g: torch.randn(n, 2, generator=g), steps=2, batch_size=16, seed=0,
                   sample_time=LogitNormalTime().sample, progress=False)
    assert hist.steps == 2


def test_logit_normal_mean_by_quadrature():
    # symmetric case: the mean is exactly 1/2
    assert _quad(lambda s: s * LogitNormalTime(0.0, 1.3).density(s)) == pytest.approx(0.5, abs=1e-9)
    # general case: E[sigmoid(m + s n)] by Gauss-Hermite quadrature on the normal side
    m, s = 0.8, 0.6
    z, w = np.polynomial.hermite_e.hermegauss(80)
    expected = float(np.sum(w / (1 + np.exp(-(m + s * z)))) / np.sqrt(2 * np.pi))
    sampler = LogitNormalTime(m, s)
    assert _quad(lambda u: u * sampler.density(u)) == pytest.approx(expected, abs=1e-9)
    x = sampler.sample(100_000, torch.Generator().manual_seed(1))
    assert float(x.mean()) == pytest.approx(expected, abs=4 * float(x.std()) / math.sqrt(x.numel()))


def test_sd3_logit_normal_maps_to_reversed_time():
    """SD3's density w_SD3(s) (data at s = 0) becomes w(t) = w_SD3(1 - t)."""
    m, s = 0.5, 0.8
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    sd3 = lambda r: torch.exp(-((torch.logit(r) - m) ** 2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi) * r * (1 - r))  # noqa: E731
    assert torch.allclose(LogitNormalTime.from_sd3(m, s).density(t), sd3(1 - t), rtol=1e-12)
    assert LogitNormalTime.from_sd3(m, s).mean == -m


def test_mode_sampler_known_cases():
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    assert torch.allclose(ModeTime(0.0).density(t), torch.ones_like(t), atol=1e-12)
    arcsine = 1.0 / (math.pi * torch.sqrt(t * (1 - t)))
    assert torch.allclose(ModeTime(-1.0).density(t), arcsine, rtol=1e-9)
    # symmetric about 1/2, and SD3's map f_mode(u) = 1 - u - s (cos^2(pi u / 2) - 1 + u) gives 1 - t
    sampler = ModeTime(0.8)
    assert torch.allclose(sampler.density(t), sampler.density(1 - t), rtol=1e-9)
    u = torch.rand(100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f_mode = 1 - u - 0.8 * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    assert torch.allclose(sampler.sample(100, torch.Generator().manual_seed(0)), 1 - f_mode, atol=1e-14)


def test_cosmap_known_values():
    w = CosMapTime().density(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([2 / math.pi, 4 / math.pi, 2 / math.pi], dtype=torch.float64))
    # SD3: s = 1 - 1 / (tan(pi u / 2) + 1); the book's t = 1 - s
    u = torch.rand(100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = 1 - 1 / (torch.tan(math.pi * u / 2) + 1)
    assert torch.allclose(CosMapTime().sample(100, torch.Generator().manual_seed(0)), 1 - s, atol=1e-14)


def test_beta_mixture_reduces_to_scipy_beta():
    t = np.linspace(0.01, 0.99, 40)
    one = BetaMixtureTime(1.0, 2.5, 4.0, 1.0, 1.0)
    assert np.allclose(one.density(torch.tensor(t)).numpy(), stats.beta.pdf(t, 2.5, 4.0), rtol=1e-10)
    mix = BetaMixtureTime(0.3, 2.0, 6.0, 6.0, 2.0)
    expected = 0.3 * stats.beta.pdf(t, 2, 6) + 0.7 * stats.beta.pdf(t, 6, 2)
    assert np.allclose(mix.density(torch.tensor(t)).numpy(), expected, rtol=1e-10)
    # the default mixture is bimodal: more mass near the ends than in the middle
    d = BetaMixtureTime().density(torch.tensor([1 / 6, 0.5, 5 / 6], dtype=torch.float64))
    assert d[0] > 2 * d[1] and d[2] > 2 * d[1]


def test_density_keeps_dtype_and_shape():
    t = torch.rand(3, 4, dtype=torch.float32)
    for sampler in SAMPLERS:
        w = sampler.density(t)
        assert w.shape == (3, 4) and w.dtype == torch.float32
    assert UniformTime().density(0.3).shape == ()


def test_bad_inputs():
    with pytest.raises(ValueError, match="n must be a positive int"):
        UniformTime().sample(0)
    with pytest.raises(TypeError, match="n must be a positive int"):
        CosMapTime().sample(2.5)
    with pytest.raises(TypeError, match="generator"):
        LogitNormalTime().sample(4, generator=3)
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        CosMapTime().density(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        BetaMixtureTime().cdf(-0.2)
    with pytest.raises(TypeError, match="t must be a float or a tensor"):
        ModeTime().density("0.5")
    with pytest.raises(ValueError, match="std must be > 0"):
        LogitNormalTime(0.0, 0.0)
    with pytest.raises(TypeError, match="mean must be a real number"):
        LogitNormalTime("0")
    with pytest.raises(ValueError, match="scale must lie in"):
        ModeTime(2.0)
    with pytest.raises(ValueError, match="scale must lie in"):
        ModeTime(-1.5)
    with pytest.raises(ValueError, match=r"weight must lie in \[0, 1\]"):
        BetaMixtureTime(weight=1.5)
    with pytest.raises(ValueError, match="b2 must be > 0"):
        BetaMixtureTime(b2=-1.0)
