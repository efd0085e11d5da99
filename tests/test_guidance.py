"""Unit tests for labelled mixtures (fmlib.targets), classifier-free guidance (fmlib.guidance) and the
class-conditional path through fmlib.train.fit_cfm.

Known answers used here:

* the unconditional mixture of a labelled mixture has the components of all classes with weights pi_c w_cj;
* a class's field is the :func:`marginal_velocity` of its own mixture (a single Gaussian class has the closed-form
  affine field u = d/dt mean + (d/dt std)/std (x - mean));
* the unconditional field is the posterior average sum_c p_t(c | x) u_t(x | c), with the posterior computed here
  by SciPy from the class densities;
* at t = 0 of CondOT every class has the density N(0, I), so the posterior equals the prior;
* guided fields are the stated linear combinations; a network's doubled-batch call equals two separate calls;
* label dropout replaces a fraction p of the labels (binomial tolerance) and nothing else.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import multivariate_normal

from fmlib.guidance import ExactClassField, drop_labels, guided_field, guided_velocity
from fmlib.losses import cfm_loss
from fmlib.nets import VelocityMLP
from fmlib.paths import CondOTPath, VPPath
from fmlib.solvers import integrate
from fmlib.targets import (GaussianMixture, LabelledMixture, class_log_posterior, class_score, class_velocity,
                           marginal_score, marginal_velocity)
from fmlib.train import fit_cfm, uniform_time

F64 = torch.float64




def _labelled() -> LabelledMixture:
    a = GaussianMixture(torch.tensor([[-2.0, 0.0], [0.0, 2.0]], dtype=F64), torch.tensor([0.5, 0.3], dtype=F64),
                        torch.tensor([0.7, 0.3], dtype=F64))
    b = GaussianMixture(torch.tensor([[2.0, -1.0]], dtype=F64), 0.4)
    c = GaussianMixture(torch.tensor([[0.5, 0.5], [1.0, 3.0]], dtype=F64), 0.6)
    return LabelledMixture([a, b, c], torch.tensor([0.5, 0.2, 0.3], dtype=F64))


def _points(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(n, 2, generator=g, dtype=F64), 0.05 + 0.9 * torch.rand(n, generator=g, dtype=F64)


# -- LabelledMixture -------------------------------------------------------------------------------------------
def test_unconditional_mixture_weights_and_components():
    q = _labelled()
    u = q.unconditional()
    assert u.n_components == 5 and q.num_classes == 3 and q.dim == 2
    expected = torch.tensor([0.5 * 0.7, 0.5 * 0.3, 0.2, 0.3 * 0.5, 0.3 * 0.5], dtype=F64)
    assert torch.allclose(u.weights, expected, atol=1e-15)
    assert torch.equal(u.means[2], torch.tensor([2.0, -1.0], dtype=F64))
    assert torch.allclose(u.stds, torch.tensor([0.5, 0.3, 0.4, 0.6, 0.6], dtype=F64))
    # density of the union = sum_c pi_c q(x | c)
    x, _ = _points()
    direct = torch.logsumexp(torch.stack([math.log(p) + q.mixture(c).log_prob(x)
                                          for c, p in enumerate(q.class_weights.tolist())]), 0)
    assert torch.allclose(u.log_prob(x), direct, atol=1e-12)


def test_labelled_sample_frequencies_and_class_membership():
    q = _labelled()
    x, y = q.sample(20_000, seed=1)
    assert x.shape == (20_000, 2) and y.shape == (20_000,) and y.dtype == torch.long
    freq = torch.bincount(y, minlength=3).double() / len(y)
    assert torch.allclose(freq, q.class_weights, atol=0.015)  # ~4 binomial standard errors
    # every point of class 1 comes from N((2, -1), 0.4^2 I)
    pts = x[y == 1]
    assert torch.allclose(pts.mean(0), torch.tensor([2.0, -1.0], dtype=F64), atol=0.03)
    assert abs(float(pts.std(0).mean()) - 0.4) < 0.02
    x2, y2 = q.sample(100, seed=1)
    x3, y3 = q.sample(100, seed=1)
    assert torch.equal(x2, x3) and torch.equal(y2, y3)


def test_labelled_mixture_errors():
    a = GaussianMixture(torch.zeros(1, 2, dtype=F64), 1.0)
    with pytest.raises(TypeError, match="classes must be a non-empty list"):
        LabelledMixture(a)
    with pytest.raises(TypeError, match="classes must be a non-empty list"):
        LabelledMixture([])
    with pytest.raises(TypeError, match=r"classes\[1\] must be a GaussianMixture"):
        LabelledMixture([a, torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="same dim"):
        LabelledMixture([a, GaussianMixture(torch.zeros(1, 3, dtype=F64), 1.0)])
    with pytest.raises(ValueError, match=r"class_weights must have shape \(2,\)"):
        LabelledMixture([a, a], torch.ones(3))
    with pytest.raises(ValueError, match="class_weights must be >= 0"):
        LabelledMixture([a, a], torch.tensor([-1.0, 2.0]))
    with pytest.raises(ValueError, match="class_weights must not all be zero"):
        LabelledMixture([a, a], torch.zeros(2))
    with pytest.raises(ValueError, match=r"c must be a class label in \[0, 1\]; got 2"):
        LabelledMixture([a, a]).mixture(2)
    with pytest.raises(TypeError, match="c must be an int"):
        LabelledMixture([a, a]).mixture(0.0)


# -- exact class fields ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [CondOTPath(), VPPath()], ids=["condot", "vp"])
def test_class_velocity_matches_each_class_mixture(path):
    q = _labelled()
    x, t = _points()
    y = torch.arange(64) % 3
    got = class_velocity(path, q, x, t, y)
    for c in range(3):
        m = y == c
        assert torch.allclose(got[m], marginal_velocity(path, q.mixture(c), x[m], t[m]), atol=1e-12)
    got_s = class_score(path, q, x, t, y)
    for c in range(3):
        m = y == c
        assert torch.allclose(got_s[m], marginal_score(path, q.mixture(c), x[m], t[m]), atol=1e-12)


def test_single_gaussian_class_has_the_affine_closed_form():
    # class 1 is N(m, s^2 I): under CondOT, p_t(x | 1) = N(t m, (t^2 s^2 + (1 - t)^2) I) and
    # u = m + (t s^2 - (1 - t)) / (t^2 s^2 + (1 - t)^2) (x - t m)
    q = _labelled()
    x, t = _points()
    m, s2 = torch.tensor([2.0, -1.0], dtype=F64), 0.16
    v = t**2 * s2 + (1 - t) ** 2
    expected = m + ((t * s2 - (1 - t)) / v)[:, None] * (x - t[:, None] * m)
    got = class_velocity(CondOTPath(), q, x, t, torch.ones(64, dtype=torch.long))
    assert torch.allclose(got, expected, atol=1e-12)


def test_null_label_is_the_posterior_average_of_class_fields():
    q, path = _labelled(), CondOTPath()
    x, t = _points()
    null = torch.full((64,), 3)
    u = class_velocity(path, q, x, t, null)
    # posterior from SciPy class densities: p_t(x | c) is the class mixture pushed through the path
    logp = np.zeros((64, 3))
    for c in range(3):
        mix = q.mixture(c)
        for i in range(64):
            a, s = float(t[i]), 1 - float(t[i])
            dens = sum(float(w) * multivariate_normal(a * mu.numpy(), (a**2 * sd**2 + s**2) * np.eye(2)).pdf(x[i].numpy())
                       for mu, sd, w in zip(mix.means, mix.stds.tolist(), mix.weights))
            logp[i, c] = math.log(float(q.class_weights[c])) + math.log(dens)
    post = torch.from_numpy(softmax(logp, axis=1))
    assert torch.allclose(class_log_posterior(path, q, x, t).exp(), post, atol=1e-10)
    per_class = torch.stack([class_velocity(path, q, x, t, torch.full((64,), c)) for c in range(3)], 1)
    assert torch.allclose(u, (post[..., None] * per_class).sum(1), atol=1e-10)
    assert torch.allclose(u, marginal_velocity(path, q.unconditional(), x, t), atol=1e-12)
    # the prior-weighted average is a different field (what a literal E_c over the prior would give)
    prior_avg = (q.class_weights[None, :, None] * per_class).sum(1)
    assert (u - prior_avg).abs().max() > 0.1


def test_class_posterior_at_t0_is_the_prior():
    q = _labelled()
    x, _ = _points()
    lp = class_log_posterior(CondOTPath(), q, x, 0.0)
    assert lp.shape == (64, 3)
    assert torch.allclose(lp.exp(), q.class_weights.expand(64, 3), atol=1e-12)


def test_class_field_errors():
    q, path = _labelled(), CondOTPath()
    x, t = _points(8)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\] \(3 = null label\); got values in \[0, 4\]"):
        class_velocity(path, q, x, t, torch.tensor([0, 1, 2, 3, 4, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"y must have shape \(8,\)"):
        class_velocity(path, q, x, t, torch.zeros(7, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class labels"):
        class_velocity(path, q, x, t, torch.zeros(8))
    with pytest.raises(TypeError, match="q must be an fmlib.targets.LabelledMixture"):
        class_velocity(path, q.unconditional(), x, t, torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="x must have dim = 2"):
        class_log_posterior(path, q, torch.zeros(8, 3, dtype=F64), t)


# -- guidance --------------------------------------------------------------------------------------------------
def test_guided_velocity_of_exact_field_is_the_linear_combination():
    q, path = _labelled(), CondOTPath()
    field = ExactClassField(path, q)
    x, t = _points()
    y = torch.arange(64) % 3
    cond = class_velocity(path, q, x, t, y)
    uncond = marginal_velocity(path, q.unconditional(), x, t)
    assert torch.allclose(guided_velocity(field, x, t, y, 0.0), uncond, atol=1e-12)
    assert torch.allclose(guided_velocity(field, x, t, y, 1.0), cond, atol=1e-12)
    for w in (-0.5, 2.5, 7.0):
        assert torch.allclose(guided_velocity(field, x, t, y, w), w * cond + (1 - w) * uncond, atol=1e-11)
    # an int label is broadcast; the field without labels is the unconditional one
    assert torch.allclose(guided_velocity(field, x, t, 2, 3.0),
                          guided_velocity(field, x, t, torch.full((64,), 2), 3.0))
    assert torch.allclose(field(x, t), uncond, atol=1e-12)


def test_guided_score_is_classifier_guidance_with_the_exact_classifier():
    # w s(x | c) + (1 - w) s(x) = s(x) + w grad log p_t(c | x)
    q, path = _labelled(), CondOTPath()
    x, t = _points()
    y, w = torch.zeros(64, dtype=torch.long), 3.0
    xr = x.clone().requires_grad_(True)
    (grad_post,) = torch.autograd.grad(class_log_posterior(path, q, xr, t)[:, 0].sum(), xr)
    s_u = marginal_score(path, q.unconditional(), x, t)
    lhs = w * class_score(path, q, x, t, y) + (1 - w) * s_u
    assert torch.allclose(lhs, s_u + w * grad_post, atol=1e-10)


def test_guided_velocity_with_a_network_equals_two_calls():
    torch.manual_seed(0)
    net = VelocityMLP(dim=2, hidden=16, num_classes=3).double()
    x, t = _points(10)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    with torch.no_grad():
        cond, uncond = net(x, t, y=y), net(x, t, y=torch.full((10,), 3))
        got = guided_velocity(net, x, t, y, 2.0)  # null label from net.num_classes
    assert torch.allclose(got, 2 * cond - uncond, atol=1e-12)


def test_guided_field_integrates():
    q, path = _labelled(), CondOTPath()
    field = ExactClassField(path, q)
    x0 = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    # w = 1: the exact class-conditional flow carries N(0, I) to class 1 = N((2, -1), 0.16 I)
    x1 = integrate(guided_field(field, 1, 1.0), x0, steps=100, method="rk4")
    assert torch.allclose(x1.mean(0), torch.tensor([2.0, -1.0], dtype=F64), atol=0.1)
    assert abs(float(x1.std(0).mean()) - 0.4) < 0.06


def test_guidance_errors():
    q, path = _labelled(), CondOTPath()
    field = ExactClassField(path, q)
    x, t = _points(8)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\]"):
        guided_velocity(field, x, t, 5, 2.0)
    with pytest.raises(ValueError, match=r"y must have shape \(8,\)"):
        guided_velocity(field, x, t, torch.zeros(9, dtype=torch.long), 2.0)
    with pytest.raises(ValueError, match=r"t must be a float or a tensor of shape \(8,\)"):
        guided_velocity(field, x, torch.rand(9), 0, 2.0)
    with pytest.raises(TypeError, match="w must be a real number"):
        guided_velocity(field, x, t, 0, "2")
    with pytest.raises(TypeError, match="field must be callable"):
        guided_velocity(3, x, t, 0, 2.0)
    with pytest.raises(ValueError, match="null_label is needed"):
        guided_velocity(lambda x, t, y=None: x, x, t, 0, 2.0)
    with pytest.raises(ValueError, match="must return the shape of x"):
        guided_velocity(lambda x, t, y=None: x[:, :1], x, t, 0, 2.0, null_label=3)
    with pytest.raises(TypeError, match="path must be an fmlib.paths.AffinePath"):
        ExactClassField("condot", q)
    with pytest.raises(TypeError, match="q must be an fmlib.targets.LabelledMixture"):
        ExactClassField(path, q.unconditional())


# -- label dropout ---------------------------------------------------------------------------------------------
def test_drop_labels_known_answers():
    y = torch.arange(10_000) % 4
    y_copy = y.clone()
    assert torch.equal(drop_labels(y, 0.0, 4), y)
    assert torch.equal(drop_labels(y, 1.0, 4), torch.full_like(y, 4))
    out = drop_labels(y, 0.2, 4, torch.Generator().manual_seed(0))
    assert torch.equal(y, y_copy)  # not modified in place
    dropped = out == 4
    assert abs(float(dropped.double().mean()) - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 10_000)
    assert torch.equal(out[~dropped], y[~dropped]) and out.dtype == y.dtype
    again = drop_labels(y, 0.2, 4, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_drop_labels_errors():
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\]; got values in \[0, 4\]"):
        drop_labels(torch.tensor([0, 4]), 0.1, 4)
    with pytest.raises(ValueError, match=r"p \(the label dropout probability\) must lie in \[0, 1\]"):
        drop_labels(torch.tensor([0, 1]), 1.5, 4)
    with pytest.raises(TypeError, match="y must be an integer tensor"):
        drop_labels([0, 1], 0.1, 4)
    with pytest.raises(ValueError, match=r"y must have shape \(batch,\)"):
        drop_labels(torch.zeros(2, 2, dtype=torch.long), 0.1, 4)


# -- class-conditional fit_cfm ---------------------------------------------------------------------------------
class _Recorder(torch.nn.Module):
    """A linear model that records the labels it is called with."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2).double()
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t, y=None):
        self.seen.append(y.clone())
        return self.lin(x)


def _labelled_sampler(n, g):
    return _labelled().sample(n, generator=g)


def test_fit_cfm_passes_labels_and_drops_them():
    model = _Recorder()
    fit_cfm(model, CondOTPath(), _labelled_sampler, steps=20, batch_size=500, seed=0, label_dropout=0.25,
            progress=False, ema_decay=None)
    seen = torch.cat(model.seen)
    frac_null = float((seen == 3).double().mean())
    assert abs(frac_null - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(seen))
    # without dropout the labels are the sampler's labels, unchanged
    model = _Recorder()
    fit_cfm(model, CondOTPath(), _labelled_sampler, steps=1, batch_size=64, seed=3, progress=False)
    assert torch.equal(model.seen[0], _labelled_sampler(64, torch.Generator().manual_seed(3))[1])


def test_fit_cfm_labelled_first_loss_matches_manual_batch():
    torch.manual_seed(0)
    model = VelocityMLP(hidden=16, num_classes=3).double()
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    hist = fit_cfm(model, CondOTPath(), _labelled_sampler, steps=1, batch_size=32, seed=5, label_dropout=0.5,
                   progress=False)
    model.load_state_dict(ref)
    g = torch.Generator().manual_seed(5)
    x1, y = _labelled_sampler(32, g)
    x0 = torch.randn(x1.shape, generator=g, dtype=F64)
    t = uniform_time(32, g)
    y = drop_labels(y, 0.5, 3, g)
    with torch.no_grad():
        manual = cfm_loss(lambda x, tt: model(x, tt, y=y), CondOTPath(), x0, x1, t)
    assert hist.losses[0] == pytest.approx(float(manual), rel=1e-12)


def test_fit_cfm_label_errors():
    net = VelocityMLP(hidden=8, num_classes=3).double()
    bad = lambda n, g: (_labelled_sampler(n, g)[0], torch.full((n,), 3))  # noqa: E731  null label in the data
    with pytest.raises(ValueError, match=r"the labels returned by sample_data must lie in \[0, 2\]"):
        fit_cfm(net, CondOTPath(), bad, steps=1, batch_size=8, progress=False)
    short = lambda n, g: (_labelled_sampler(n, g)[0], torch.zeros(n - 1, dtype=torch.long))  # noqa: E731
    with pytest.raises(ValueError, match=r"must have shape \(8,\)"):
        fit_cfm(net, CondOTPath(), short, steps=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="the model has no num_classes"):
        fit_cfm(VelocityMLP(hidden=8).double(), CondOTPath(), _labelled_sampler, steps=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="need labelled data"):
        fit_cfm(net, CondOTPath(), lambda n, g: _labelled_sampler(n, g)[0], steps=1, batch_size=8,
                label_dropout=0.1, progress=False)
    with pytest.raises(ValueError, match=r"label_dropout must lie in \[0, 1\]"):
        fit_cfm(net, CondOTPath(), _labelled_sampler, steps=1, batch_size=8, label_dropout=-0.1, progress=False)
