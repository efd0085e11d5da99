"""Conversions between velocity, score, x1-prediction and noise-prediction (fmlib.paths.AffinePath).

Known answers: for Gaussian-mixture data (and empirical data) fmlib.targets gives the exact marginal velocity,
score and posterior mean; the noise-prediction follows from x = alpha x1_hat + sigma eps_hat. Every conversion
must map these exact fields into each other for every path class.
"""

import itertools
import math

import pytest
import torch

from fmlib.paths import AffinePath, CondOTPath, CosinePath, CustomPath, VEPath, VPPath
from fmlib.targets import GaussianMixture, marginal_score, marginal_velocity, posterior_mean

F64 = torch.float64
KINDS = AffinePath.PREDICTIONS
PAIRS = list(itertools.product(KINDS, KINDS))
NAMED = {
    ("score", "velocity"): "score_to_velocity",
    ("velocity", "score"): "velocity_to_score",
    ("x1", "velocity"): "x1_to_velocity",
    ("velocity", "x1"): "velocity_to_x1",
    ("noise", "velocity"): "noise_to_velocity",
    ("velocity", "noise"): "velocity_to_noise",
    ("score", "noise"): "score_to_noise",
    ("noise", "score"): "noise_to_score",
    ("x1", "noise"): "x1_to_noise",
    ("noise", "x1"): "noise_to_x1",
    ("score", "x1"): "score_to_x1",
    ("x1", "score"): "x1_to_score",
}

PATHS = {
    "condot": lambda: CondOTPath(),
    "condot_sigma_min": lambda: CondOTPath(sigma_min=0.05),
    "vp": lambda: VPPath(),
    "ve": lambda: VEPath(0.05, 8.0),
    "cosine": lambda: CosinePath(),
    "custom": lambda: CustomPath(lambda t: t**2, lambda t: 1 - t**2 * 0.9),  # autograd derivatives
}


def _mixture() -> GaussianMixture:
    means = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.5, -2.0]], dtype=F64)
    return GaussianMixture(means, torch.tensor([0.3, 0.5, 0.4], dtype=F64), torch.tensor([0.5, 0.3, 0.2], dtype=F64))


def _exact_fields(path, q, n=300, seed=0, t_lo=0.02, t_hi=0.98):
    g = torch.Generator().manual_seed(seed)
    t = t_lo + (t_hi - t_lo) * torch.rand(n, generator=g, dtype=F64)
    if isinstance(q, GaussianMixture):
        x1 = q.sample(n, generator=g)
    else:
        x1 = q[torch.randint(0, q.shape[0], (n,), generator=g)]
    x = path.sample(torch.randn(n, 2, generator=g, dtype=F64), x1, t)
    s = path.schedule(t)
    fields = {
        "velocity": marginal_velocity(path, q, x, t),
        "score": marginal_score(path, q, x, t),
        "x1": posterior_mean(path, q, x, t),
    }
    fields["noise"] = (x - s.alpha[:, None] * fields["x1"]) / s.sigma[:, None]
    return x, t, fields


@pytest.mark.parametrize("name", sorted(PATHS))
@pytest.mark.parametrize("data", ["mixture", "empirical"])
def test_exact_fields_map_into_each_other(name, data):
    path = PATHS[name]()
    q = _mixture() if data == "mixture" else _mixture().sample(40, seed=3)
    x, t, fields = _exact_fields(path, q)
    # Tweedie: the noise prediction is also -sigma times the exact score
    torch.testing.assert_close(fields["noise"], -path.schedule(t).sigma[:, None] * fields["score"],
                               rtol=1e-9, atol=1e-9)
    for source, target in PAIRS:
        got = path.convert(fields[source], x, t, source=source, target=target)
        torch.testing.assert_close(got, fields[target], rtol=1e-8, atol=1e-8,
                                   msg=lambda m: f"{name} {source}->{target}: {m}")
        if (source, target) in NAMED:
            named = getattr(path, NAMED[(source, target)])(fields[source], x, t)
            torch.testing.assert_close(named, got, rtol=0, atol=0)


def test_named_methods_cover_all_pairs():
    assert set(NAMED) == {(a, b) for a, b in PAIRS if a != b}
    for method in NAMED.values():
        doc = (getattr(AffinePath, method).__doc__ or "").lower()
        assert "shape" in doc and "defined" in doc and "math:" in doc, method


@pytest.mark.parametrize("name", sorted(PATHS))
def test_round_trips_are_identities(name):
    path = PATHS[name]()
    g = torch.Generator().manual_seed(1)
    n = 64
    x = 2 * torch.randn(n, 3, generator=g, dtype=F64)
    pred = torch.randn(n, 3, generator=g, dtype=F64)  # an arbitrary (learned, imperfect) prediction
    t = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=F64)
    for source, target in PAIRS:
        there = path.convert(pred, x, t, source=source, target=target)
        back = path.convert(there, x, t, source=target, target=source)
        torch.testing.assert_close(back, pred, rtol=1e-9, atol=1e-9, msg=lambda m: f"{source}->{target}->{source}: {m}")
    # chains: score -> x1 -> noise -> velocity equals score -> velocity
    chain = path.noise_to_velocity(path.x1_to_noise(path.score_to_x1(pred, x, t), x, t), x, t)
    torch.testing.assert_close(chain, path.score_to_velocity(pred, x, t), rtol=1e-9, atol=1e-9)


def test_closed_forms():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(10, 2, generator=g, dtype=F64)
    s = torch.randn(10, 2, generator=g, dtype=F64)
    t = 0.1 + 0.8 * torch.rand(10, generator=g, dtype=F64)
    tc = t[:, None]
    # CondOT (alpha = t, sigma = 1 - t): u = (x + (1 - t) s) / t = (x - eps) / t
    p = CondOTPath()
    torch.testing.assert_close(p.score_to_velocity(s, x, t), (x + (1 - tc) * s) / tc)
    torch.testing.assert_close(p.noise_to_velocity(s, x, t), (x - s) / tc)
    torch.testing.assert_close(p.x1_to_velocity(s, x, t), (s - x) / (1 - tc))
    # variance-preserving paths (alpha^2 + sigma^2 = 1): u = (alpha'/alpha) (x + s)
    for path in (VPPath(), CosinePath()):
        sch = path.schedule(t)
        torch.testing.assert_close(path.score_to_velocity(s, x, t), (sch.d_alpha / sch.alpha)[:, None] * (x + s))
    # VE (alpha = 1): u = -sigma sigma' s, independent of x; x1-prediction = x + sigma^2 s
    p = VEPath(0.01, 10.0)
    sch = p.schedule(t)
    torch.testing.assert_close(p.score_to_velocity(s, x, t), -(sch.sigma * sch.d_sigma)[:, None] * s)
    torch.testing.assert_close(p.score_to_x1(s, x, t), x + (sch.sigma**2)[:, None] * s)
    # score <-> noise: eps = -sigma s
    torch.testing.assert_close(p.score_to_noise(s, x, t), -sch.sigma[:, None] * s)


def test_float_time_and_dtype():
    p = CosinePath()
    x = torch.randn(5, 2)
    s = torch.randn(5, 2)
    out = p.score_to_velocity(s, x, 0.5)
    assert out.dtype == torch.float32 and out.shape == (5, 2)
    h = math.pi / 2
    expected = (h * math.cos(h * 0.5) / math.sin(h * 0.5)) * (x + s)
    torch.testing.assert_close(out, expected)
    # a 0-d tensor time works as well
    torch.testing.assert_close(p.score_to_velocity(s, x, torch.tensor(0.5)), out)


def test_gradients_flow_through_the_prediction():
    p = CondOTPath()
    x = torch.randn(4, 2, dtype=F64)
    s = torch.randn(4, 2, dtype=F64, requires_grad=True)
    p.score_to_velocity(s, x, 0.25).sum().backward()
    torch.testing.assert_close(s.grad, torch.full_like(s, 0.75 / 0.25))


# --- endpoints: where the conversions are (and are not) defined -------------------------------------------

def test_condot_at_t_zero_from_velocity_is_defined():
    # At t = 0, x = x0 ~ N(0, I): the score is -x, the noise-prediction is x and E[x1 | x] = E[x1].
    p, q = CondOTPath(), _mixture()
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    u = marginal_velocity(p, q, x, 0.0)
    torch.testing.assert_close(p.velocity_to_score(u, x, 0.0), -x)
    torch.testing.assert_close(p.velocity_to_noise(u, x, 0.0), x)
    mean = (q.weights[:, None] * q.means).sum(0).expand_as(x)
    torch.testing.assert_close(p.velocity_to_x1(u, x, 0.0), mean)
    torch.testing.assert_close(posterior_mean(p, q, x, 0.0), mean)


@pytest.mark.parametrize("method", ["score_to_velocity", "noise_to_velocity", "noise_to_x1", "score_to_x1"])
@pytest.mark.parametrize("path", [CondOTPath(), CosinePath()], ids=["condot", "cosine"])
def test_alpha_zero_raises(method, path):
    x = torch.randn(3, 2, dtype=F64)
    t = torch.tensor([0.5, 0.0, 0.2], dtype=F64)
    message = rf"{type(path).__name__}\.{method} is undefined where alpha_t = 0 \(got t = 0\)"
    with pytest.raises(ValueError, match=message):
        getattr(path, method)(torch.randn(3, 2, dtype=F64), x, t)


@pytest.mark.parametrize("method", ["noise_to_score", "x1_to_noise", "x1_to_score", "x1_to_velocity"])
@pytest.mark.parametrize("path", [CondOTPath(), VPPath(), CosinePath()], ids=["condot", "vp", "cosine"])
def test_sigma_zero_raises(method, path):
    x = torch.randn(2, 2, dtype=F64)
    with pytest.raises(ValueError, match=rf"{method} is undefined where sigma_t = 0 \(got t = 1\)"):
        getattr(path, method)(torch.randn(2, 2, dtype=F64), x, torch.tensor([0.3, 1.0], dtype=F64))


@pytest.mark.parametrize("method", ["velocity_to_score", "velocity_to_noise", "velocity_to_x1"])
@pytest.mark.parametrize("path", [CondOTPath(), CosinePath()], ids=["condot", "cosine"])
def test_from_velocity_raises_where_snr_rate_vanishes(method, path):
    x = torch.randn(2, 2, dtype=F64)
    with pytest.raises(ValueError, match=rf"{method} is undefined where d_alpha_t sigma_t\^2 - alpha_t sigma_t "
                                         rf"d_sigma_t = 0 \(got t = 1\)"):
        getattr(path, method)(torch.randn(2, 2, dtype=F64), x, 1.0)


def test_float32_cosine_endpoint_is_caught():
    # float32 cos(pi/2) is -4.4e-8, not 0: still recognised as sigma_t = 0
    with pytest.raises(ValueError, match="sigma_t = 0"):
        CosinePath().noise_to_score(torch.randn(2, 2), torch.randn(2, 2), 1.0)


def test_vp_at_t_one_score_and_velocity_convert_exactly():
    # sigma_1 = 0 but sigma * sigma' -> -beta_min / 2: the score <-> velocity maps stay defined and exact.
    p, q = VPPath(), _mixture()
    x = q.sample(50, seed=5)
    u, s = marginal_velocity(p, q, x, 1.0), marginal_score(p, q, x, 1.0)
    torch.testing.assert_close(s, q.score(x))
    torch.testing.assert_close(p.score_to_velocity(s, x, 1.0), u)
    torch.testing.assert_close(p.velocity_to_score(u, x, 1.0), s)
    torch.testing.assert_close(p.velocity_to_x1(u, x, 1.0), x)  # no noise left: E[x1 | x] = x
    with pytest.raises(ValueError, match=r"VPPath\.noise_to_velocity is undefined where d_sigma_t is infinite"):
        p.noise_to_velocity(torch.zeros_like(x), x, 1.0)


def test_ve_defined_everywhere():
    p = VEPath(0.01, 10.0)
    x = torch.randn(3, 2, dtype=F64)
    pred = torch.randn(3, 2, dtype=F64)
    for t in (0.0, 1.0):
        for source, target in PAIRS:
            assert torch.isfinite(p.convert(pred, x, t, source=source, target=target)).all()


def test_condot_with_sigma_min_defined_at_one():
    p = CondOTPath(sigma_min=0.1)
    x = torch.randn(3, 2, dtype=F64)
    pred = torch.randn(3, 2, dtype=F64)
    for source, target in PAIRS:
        assert torch.isfinite(p.convert(pred, x, 1.0, source=source, target=target)).all()


# --- bad input ---------------------------------------------------------------------------------------------

def test_error_shapes():
    p = CondOTPath()
    with pytest.raises(ValueError,
                       match=r"score and x must have the same shape \(batch, dim\); got \(3, 2\) and \(4, 2\)"):
        p.score_to_velocity(torch.randn(3, 2), torch.randn(4, 2), 0.5)
    with pytest.raises(ValueError, match=r"velocity must have shape \(batch, dim\); got shape \(3,\)"):
        p.velocity_to_score(torch.randn(3), torch.randn(3, 2), 0.5)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim\)"):
        p.x1_to_velocity(torch.randn(3, 2), torch.randn(3, 2, 1), 0.5)
    with pytest.raises(TypeError, match="eps_pred must be a torch.Tensor"):
        p.noise_to_velocity([[0.0, 1.0]], torch.randn(1, 2), 0.5)
    with pytest.raises(TypeError, match="x1_pred must be a floating-point tensor"):
        p.x1_to_score(torch.ones(2, 2, dtype=torch.long), torch.randn(2, 2), 0.5)
    with pytest.raises(ValueError, match=r"t must be a float or a tensor of shape \(3,\)"):
        p.score_to_noise(torch.randn(3, 2), torch.randn(3, 2), torch.rand(4))


@pytest.mark.parametrize("t", [-0.1, 1.5, float("nan")])
def test_error_time_range(t):
    with pytest.raises(ValueError, match="t "):
        VPPath().score_to_velocity(torch.randn(2, 2), torch.randn(2, 2), t)


def test_error_unknown_kind():
    p = CondOTPath()
    with pytest.raises(ValueError, match=r"source must be one of \['velocity', 'score', 'x1', 'noise'\]; got 'eps'"):
        p.convert(torch.randn(2, 2), torch.randn(2, 2), 0.5, source="eps", target="score")
    with pytest.raises(ValueError, match=r"target must be one of .*; got 'x0'"):
        p.convert(torch.randn(2, 2), torch.randn(2, 2), 0.5, source="score", target="x0")
