"""Tests of fmlib.flows against known answers."""

from __future__ import annotations

import math

import pytest
import torch

from fmlib.flows import (
    AffineCoupling,
    ElementwiseAffine,
    RealNVP,
    SequentialFlow,
    alternating_masks,
    jacobian_log_det,
    standard_normal_log_prob,
)


@pytest.fixture(autouse=True)
def _seed():
    """Layers are initialised from PyTorch's global generator: seed it so every test is deterministic."""
    torch.manual_seed(0)


def _randomize(module: torch.nn.Module, scale: float = 0.4, seed: int = 0) -> torch.nn.Module:
    """Perturb all parameters (new coupling layers start as the identity, which would make tests trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _points(n: int = 32, d: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


# --- known answers -------------------------------------------------------------------------------------------


def test_standard_normal_log_prob_matches_torch_distributions():
    z = _points(10, 3)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=1)
    torch.testing.assert_close(standard_normal_log_prob(z), expected)


def test_jacobian_log_det_of_a_linear_map():
    a = torch.tensor([[2.0, 1.0], [0.5, -3.0]], dtype=torch.float64)
    x = _points(5)
    ld = jacobian_log_det(lambda v: v @ a.T, x)
    torch.testing.assert_close(ld, torch.full((5,), math.log(abs(2.0 * -3.0 - 1.0 * 0.5)), dtype=torch.float64))


def test_jacobian_log_det_accepts_tuple_outputs():
    x = _points(4)
    ld = jacobian_log_det(lambda v: (torch.sinh(v), None), x)
    torch.testing.assert_close(ld, torch.log(torch.cosh(x)).sum(dim=1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ElementwiseAffine(2, torch.tensor([0.3, -1.0]), torch.tensor([0.5, -0.2])),
        lambda: _randomize(AffineCoupling(2, [True, False], hidden=16)),
        lambda: _randomize(AffineCoupling(3, [False, True, False], hidden=16, activation="tanh")),
        lambda: _randomize(RealNVP(2, n_layers=4, hidden=16)),
        lambda: _randomize(RealNVP(5, n_layers=3, hidden=16)),
    ],
)
def test_log_det_equals_autograd_log_abs_det_jacobian(make):
    flow = make().double()
    x = _points(16, flow.dim)
    z, ld = flow(x)
    torch.testing.assert_close(ld, jacobian_log_det(flow, x), atol=1e-10, rtol=1e-10)
    # the inverse's log-det is log|det dx/dz| at z
    _, ld_inv = flow.inverse(z)
    torch.testing.assert_close(ld_inv, jacobian_log_det(flow.inverse, z), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_inverse_of_forward_is_identity(dim):
    flow = _randomize(RealNVP(dim, n_layers=6, hidden=32), scale=0.2).double()
    x = 2 * _points(64, dim)
    z, _ = flow(x)
    x_back, _ = flow.inverse(z)
    # six layers with scales up to e^3 amplify round-off, hence 1e-8 rather than machine precision
    torch.testing.assert_close(x_back, x, atol=1e-8, rtol=1e-8)
    z2, _ = flow(flow.inverse(z)[0])
    torch.testing.assert_close(z2, z, atol=1e-8, rtol=1e-8)


def test_coupling_jacobian_is_triangular_and_pass_through_is_identity():
    layer = _randomize(AffineCoupling(4, [True, True, False, False], hidden=16)).double()
    x = _points(3, 4)
    z, _ = layer(x)
    torch.testing.assert_close(z[:, :2], x[:, :2], atol=0, rtol=0)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: layer(v[None])[0][0]))(x)
    assert torch.all(jac[:, :2, 2:] == 0)  # kept coordinates do not depend on the transformed ones
    torch.testing.assert_close(jac[:, :2, :2], torch.eye(2, dtype=torch.float64).expand(3, 2, 2))


def test_new_coupling_layer_is_identity():
    layer = AffineCoupling(2, [True, False])
    x = _points(8).float()
    z, ld = layer(x)
    torch.testing.assert_close(z, x)
    assert torch.all(ld == 0)


def test_log_prob_integrates_to_one_in_2d():
    flow = _randomize(RealNVP(2, n_layers=4, hidden=16), scale=0.2).double()
    xs = torch.linspace(-15, 15, 601, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], dim=1)
    with torch.no_grad():
        p = flow.log_prob(pts).exp()
    h = float(xs[1] - xs[0])
    assert abs(float(p.sum()) * h * h - 1.0) < 1e-3


def test_affine_flow_log_prob_is_the_gaussian_closed_form():
    loc = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    log_scale = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64)
    flow = SequentialFlow([ElementwiseAffine(3, loc, log_scale)]).double()
    x = _points(20, 3)
    expected = torch.distributions.Normal(loc, log_scale.exp()).log_prob(x).sum(dim=1)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-12, rtol=1e-12)


def test_affine_flow_samples_have_the_right_moments():
    loc = torch.tensor([1.0, -2.0], dtype=torch.float64)
    log_scale = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)
    flow = SequentialFlow([ElementwiseAffine(2, loc, log_scale)]).double()
    with torch.no_grad():
        x = flow.sample(200_000, seed=0)
    assert x.shape == (200_000, 2) and x.dtype == torch.float64
    torch.testing.assert_close(x.mean(0), loc, atol=0.03, rtol=0)
    torch.testing.assert_close(x.std(0), log_scale.exp(), atol=0.03, rtol=0)


def test_sample_is_reproducible_with_seed_and_generator():
    flow = _randomize(RealNVP(2, n_layers=2, hidden=8))
    with torch.no_grad():
        a = flow.sample(10, seed=3)
        b = flow.sample(10, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert a.dtype == torch.float32


def test_initialize_from_data_standardizes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 2, generator=g, dtype=torch.float64) * torch.tensor([5.0, 0.1]) + torch.tensor([3.0, -1.0])
    flow = RealNVP(2, n_layers=2, hidden=8).double().initialize_from_data(x)
    z, _ = flow(x)  # coupling layers are the identity at initialisation
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(2, dtype=torch.float64), atol=1e-10, rtol=0)


def test_elementwise_affine_maximum_likelihood_is_mean_and_std():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64) * 2 + 1
    layer = ElementwiseAffine(2, x.mean(0), x.std(0, unbiased=False).log())
    flow = SequentialFlow([layer]).double()
    nll = -flow.log_prob(x).mean()
    nll.backward()
    assert layer.loc.grad.abs().max() < 1e-10 and layer.log_scale.grad.abs().max() < 1e-10


def test_alternating_masks():
    masks = alternating_masks(3, 3)
    assert [m.tolist() for m in masks] == [[True, False, True], [False, True, False], [True, False, True]]


def test_gradients_flow_to_parameters():
    flow = _randomize(RealNVP(2, n_layers=2, hidden=8))
    loss = -flow.log_prob(torch.randn(16, 2)).mean()
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters())


# --- bad inputs --------------------------------------------------------------------------------------------


def test_bad_inputs_raise_with_names():
    flow = RealNVP(2, n_layers=2, hidden=8)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        flow([[1.0, 2.0]])
    with pytest.raises(ValueError, match="x must have dim = 2"):
        flow(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim\)"):
        flow.log_prob(torch.zeros(2))
    with pytest.raises(ValueError, match="z must have dim = 2"):
        flow.inverse(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="floating-point"):
        flow(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="n must be a positive int"):
        flow.sample(0)
    with pytest.raises(TypeError, match="n must be a positive int"):
        flow.sample(2.5)
    with pytest.raises(ValueError, match="either seed or generator"):
        flow.sample(3, generator=torch.Generator(), seed=1)


def test_bad_masks_raise():
    with pytest.raises(ValueError, match=r"mask must have shape \(3,\)"):
        AffineCoupling(3, [True, False])
    with pytest.raises(ValueError, match="at least one coordinate"):
        AffineCoupling(2, [True, True])
    with pytest.raises(ValueError, match="at least one coordinate"):
        AffineCoupling(2, torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="booleans or 0/1"):
        AffineCoupling(2, torch.tensor([2, 0]))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        AffineCoupling(2, "10")
    with pytest.raises(ValueError, match="dim must be >= 2"):
        AffineCoupling(1, [True])


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match="activation must be one of"):
        AffineCoupling(2, [True, False], activation="sigmoid")
    with pytest.raises(ValueError, match="max_log_scale must be > 0"):
        AffineCoupling(2, [True, False], max_log_scale=0.0)
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        AffineCoupling(2, [True, False], hidden=0)
    with pytest.raises(TypeError, match="dim must be a positive int"):
        ElementwiseAffine(2.0)
    with pytest.raises(ValueError, match=r"loc must be a floating tensor of shape \(2,\)"):
        ElementwiseAffine(2, loc=torch.zeros(3))
    with pytest.raises(TypeError, match="log_scale must be a tensor"):
        ElementwiseAffine(2, log_scale=[0.0, 0.0])
    with pytest.raises(ValueError, match="at least one layer"):
        SequentialFlow([])
    with pytest.raises(TypeError, match=r"layers\[1\] must be an fmlib.flows.Bijection"):
        SequentialFlow([ElementwiseAffine(2), torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="same dim"):
        SequentialFlow([ElementwiseAffine(2), ElementwiseAffine(3)])
    with pytest.raises(TypeError, match="layers must be a list"):
        SequentialFlow(ElementwiseAffine(2))
    with pytest.raises(ValueError, match="n_layers must be a positive int"):
        alternating_masks(2, 0)
    with pytest.raises(ValueError, match="dim must be >= 2"):
        alternating_masks(1, 2)


def test_initialize_from_data_rejects_bad_data():
    layer = ElementwiseAffine(2)
    with pytest.raises(ValueError, match="at least 2 points"):
        layer.initialize_from_data(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="standard deviation is 0"):
        layer.initialize_from_data(torch.zeros(5, 2))


def test_jacobian_log_det_rejects_bad_input():
    with pytest.raises(TypeError, match="fn must be a function"):
        jacobian_log_det(3, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="x must have shape"):
        jacobian_log_det(torch.sinh, torch.zeros(2))
    with pytest.raises(ValueError, match="fn must map points"):
        jacobian_log_det(lambda v: v[:, :1], torch.zeros(2, 2))


def test_standard_normal_log_prob_rejects_bad_input():
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        standard_normal_log_prob([0.0, 1.0])
