"""Unit tests for fmlib.nets, fmlib.losses and fmlib.train."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from fmlib.data import eight_gaussians
from fmlib.losses import cfm_loss, squared_error
from fmlib.nets import VelocityMLP
from fmlib.paths import CondOTPath, CosinePath, VEPath, VPPath
from fmlib.train import TrainHistory, fit, fit_cfm, uniform_time

F64 = torch.float64




def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- nets
def test_default_architecture():
    torch.manual_seed(0)
    m = VelocityMLP()
    linears = [layer for layer in m.net if isinstance(layer, nn.Linear)]
    assert len(linears) == 4  # 3 hidden layers of width 64, then the output layer
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(3, 64), (64, 64), (64, 64), (64, 2)]
    acts = [layer for layer in m.net if not isinstance(layer, nn.Linear)]
    assert len(acts) == 3 and all(isinstance(a, nn.SELU) for a in acts)
    n_params = sum(p.numel() for p in m.parameters())
    assert n_params == (3 * 64 + 64) + 2 * (64 * 64 + 64) + (64 * 2 + 2)


def test_custom_architecture():
    m = VelocityMLP(dim=5, hidden=16, depth=1, activation="tanh", n_times=2)
    linears = [layer for layer in m.net if isinstance(layer, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(7, 16), (16, 5)]
    assert isinstance(m.net[1], nn.Tanh)


def test_output_shape_and_time_forms():
    torch.manual_seed(0)
    m = VelocityMLP(dim=3).double()
    x = torch.randn(6, 3, dtype=F64)
    out = m(x, 0.3)
    assert out.shape == (6, 3) and out.dtype == F64
    assert torch.equal(out, m(x, torch.full((6,), 0.3, dtype=F64)))
    assert torch.equal(out, m(x, torch.tensor(0.3, dtype=F64)))
    # t enters as the last input column: an explicit forward pass gives the same numbers
    manual = m.net(torch.cat([x, torch.full((6, 1), 0.3, dtype=F64)], 1))
    torch.testing.assert_close(out, manual, rtol=0, atol=0)
    # different times give different outputs
    assert not torch.allclose(out, m(x, 0.7))


def test_two_times_requires_r():
    torch.manual_seed(0)
    m = VelocityMLP(dim=2, n_times=2).double()
    x = torch.randn(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="n_times=2: call it as model"):
        m(x, 0.5)
    out = m(x, 0.5, r=0.2)
    manual = m.net(torch.cat([x, torch.full((4, 1), 0.5, dtype=F64), torch.full((4, 1), 0.2, dtype=F64)], 1))
    torch.testing.assert_close(out, manual, rtol=0, atol=0)
    with pytest.raises(ValueError, match="r must lie in"):
        m(x, 0.5, r=2.0)
    with pytest.raises(ValueError, match="takes no second time r"):
        VelocityMLP()(torch.zeros(2, 2), 0.5, r=0.1)


def test_labels():
    torch.manual_seed(0)
    m = VelocityMLP(dim=2, num_classes=3).double()
    x = torch.randn(4, 2, dtype=F64)
    y = torch.tensor([0, 1, 2, 3])
    out = m(x, 0.5, y=y)
    manual = m.net(torch.cat([x, torch.full((4, 1), 0.5, dtype=F64), m.label_embedding(y)], 1))
    torch.testing.assert_close(out, manual, rtol=0, atol=0)
    # no label means label num_classes ("unconditional")
    torch.testing.assert_close(m(x, 0.5), m(x, 0.5, y=torch.full((4,), 3)), rtol=0, atol=0)
    assert not torch.allclose(m(x, 0.5, y=torch.zeros(4, dtype=torch.long)), m(x, 0.5, y=torch.ones(4, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 3\]"):
        m(x, 0.5, y=torch.tensor([0, 1, 4, 0]))
    with pytest.raises(ValueError, match="y must be an integer tensor of shape"):
        m(x, 0.5, y=torch.zeros(4))
    with pytest.raises(ValueError, match="y must be an integer tensor of shape"):
        m(x, 0.5, y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="built without num_classes"):
        VelocityMLP()(torch.zeros(4, 2), 0.5, y=torch.zeros(4, dtype=torch.long))


def test_net_errors():
    with pytest.raises(ValueError, match="activation must be one of"):
        VelocityMLP(activation="sigmoid")
    with pytest.raises(ValueError, match="n_times must be 1 or 2"):
        VelocityMLP(n_times=3)
    with pytest.raises(ValueError, match="depth must be a positive int"):
        VelocityMLP(depth=0)
    with pytest.raises(TypeError, match="hidden must be a positive int"):
        VelocityMLP(hidden=3.5)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        VelocityMLP(dim=-1)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        VelocityMLP(num_classes=0)
    m = VelocityMLP(dim=2)
    with pytest.raises(ValueError, match="x must have dim = 2 columns"):
        m(torch.zeros(4, 3), 0.5)
    with pytest.raises(ValueError, match=r"t must be a float or a tensor of shape \(4,\)"):
        m(torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="t must lie in"):
        m(torch.zeros(4, 2), -1.0)


# -------------------------------------------------------------------------------------------------- losses
def test_squared_error_known_answer():
    p = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=F64)
    q = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=F64)
    assert float(squared_error(p, q)) == pytest.approx((5.0 + 25.0) / 2)
    assert float(squared_error(q, q)) == 0.0
    with pytest.raises(ValueError, match=r"model output must have the shape of its input x \(2, 2\); got \(2,\)"):
        squared_error(p[:, 0], q)
    with pytest.raises(TypeError, match="the model must return a tensor"):
        squared_error(p.numpy(), q)


@pytest.mark.parametrize("path", [CondOTPath(), CondOTPath(0.1), VPPath(), VEPath(), CosinePath()], ids=repr)
def test_cfm_loss_of_zero_model(path):
    g = _gen(1)
    x0 = torch.randn(64, 3, generator=g, dtype=F64)
    x1 = torch.randn(64, 3, generator=g, dtype=F64)
    t = torch.rand(64, generator=g, dtype=F64) * 0.99
    loss = cfm_loss(lambda x, t: torch.zeros_like(x), path, x0, x1, t)
    s = path.schedule(t)
    expected = ((s.d_alpha[:, None] * x1 + s.d_sigma[:, None] * x0) ** 2).sum(1).mean()
    assert loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)


def test_cfm_loss_condot_zero_model_explicit():
    # CondOT(0): target x1 - x0
    x0 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    x1 = torch.tensor([[0.0, 1.0], [3.0, 0.0]], dtype=F64)
    loss = cfm_loss(lambda x, t: torch.zeros_like(x), CondOTPath(), x0, x1, 0.3)
    assert float(loss) == pytest.approx((2.0 + 13.0) / 2, rel=1e-14)


def test_cfm_loss_oracle_for_single_data_point_is_zero():
    x1_star = torch.tensor([[1.5, -0.5]], dtype=F64)
    n = 50
    g = _gen(2)
    x0 = torch.randn(n, 2, generator=g, dtype=F64)
    x1 = x1_star.expand(n, 2)
    t = torch.rand(n, generator=g, dtype=F64) * 0.999

    def oracle(x, t):
        return (x1_star - x) / (1 - t)[:, None]

    loss = cfm_loss(oracle, CondOTPath(), x0, x1, t)
    assert float(loss) < 1e-20
    # any other model pays: shifting by c adds |c|^2
    loss_shift = cfm_loss(lambda x, t: oracle(x, t) + torch.tensor([0.3, 0.4], dtype=F64), CondOTPath(), x0, x1, t)
    assert float(loss_shift) == pytest.approx(0.25, rel=1e-9)


def test_cfm_loss_calls_model_with_xt_and_batch_times():
    seen = {}

    def model(x, t):
        seen["x"], seen["t"] = x, t
        return torch.zeros_like(x)

    x0 = torch.randn(5, 2, dtype=F64)
    x1 = torch.randn(5, 2, dtype=F64)
    cfm_loss(model, CosinePath(), x0, x1, 0.25)
    assert seen["t"].shape == (5,) and seen["t"].dtype == F64
    torch.testing.assert_close(seen["x"], CosinePath().sample(x0, x1, 0.25))


def test_cfm_loss_gradient_reaches_parameters():
    torch.manual_seed(0)
    m = VelocityMLP().double()
    loss = cfm_loss(m, CondOTPath(), torch.randn(8, 2, dtype=F64), torch.randn(8, 2, dtype=F64), 0.5)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_cfm_loss_errors():
    x = torch.zeros(4, 2, dtype=F64)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="x0 and x1 must have the same shape"):
        cfm_loss(zero, CondOTPath(), x, torch.zeros(5, 2, dtype=F64), 0.5)
    with pytest.raises(ValueError, match="model output must have the shape of its input x"):
        cfm_loss(lambda x, t: x[:, :1], CondOTPath(), x, x, 0.5)
    with pytest.raises(TypeError, match="the model must return a tensor"):
        cfm_loss(lambda x, t: 0.0, CondOTPath(), x, x, 0.5)
    with pytest.raises(TypeError, match="path must be an fmlib.paths.AffinePath"):
        cfm_loss(zero, "condot", x, x, 0.5)
    with pytest.raises(ValueError, match="t must lie in"):
        cfm_loss(zero, CondOTPath(), x, x, 1.5)
    with pytest.raises(ValueError, match=r"x0 must have shape \(batch, dim\)"):
        cfm_loss(zero, CondOTPath(), torch.zeros(4), torch.zeros(4), 0.5)


# --------------------------------------------------------------------------------------------------- train
def test_fit_linear_regression_reaches_least_squares_optimum():
    g = _gen(3)
    X = torch.randn(200, 3, generator=g, dtype=F64)
    w_true = torch.tensor([[1.0], [-2.0], [0.5]], dtype=F64)
    y = X @ w_true + 0.7 + 0.1 * torch.randn(200, 1, generator=g, dtype=F64)
    A = torch.cat([X, torch.ones(200, 1, dtype=F64)], 1)
    sol = torch.linalg.lstsq(A, y).solution
    opt_loss = float(((A @ sol - y) ** 2).mean())

    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    hist = fit(model, lambda step: ((model(X) - y) ** 2).mean(), 300, optimizer=opt, progress=False)
    assert isinstance(hist, TrainHistory) and hist.steps == 300 and len(hist.losses) == 300
    assert hist.seconds > 0
    torch.testing.assert_close(model.weight.detach().T, sol[:3], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.bias.detach(), sol[3], rtol=0, atol=1e-6)
    assert hist.losses[-1] == pytest.approx(opt_loss, rel=1e-8)
    assert not model.training  # fit leaves the model in eval mode


def test_fit_default_adamw_decreases_loss():
    torch.manual_seed(0)
    model = nn.Linear(1, 1).double()
    target = torch.tensor(3.0, dtype=F64)
    hist = fit(model, lambda step: (model.bias[0] - target) ** 2, 200, lr=0.05, progress=False)
    assert hist.losses[-1] < 1e-2 * hist.losses[0]


def test_train_history_smoothed_is_a_moving_average():
    h = TrainHistory(losses=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_allclose(h.smoothed(3), [1.0, 1.5, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(h.smoothed(1), h.losses)
    np.testing.assert_allclose(h.smoothed(100), np.cumsum(h.losses) / np.arange(1, 7))
    rng = np.random.default_rng(0)
    losses = rng.random(37).tolist()
    hand = [np.mean(losses[max(0, i + 1 - 5) : i + 1]) for i in range(37)]
    np.testing.assert_allclose(TrainHistory(losses).smoothed(5), hand, rtol=1e-12)
    assert h.steps == 6 and TrainHistory().smoothed().shape == (0,)
    with pytest.raises(ValueError, match="window must be a positive int"):
        h.smoothed(0)


def _eight(n, g):
    return eight_gaussians(n, generator=g, dtype=F64)


def test_fit_cfm_is_deterministic_given_seed():
    def run():
        torch.manual_seed(0)
        model = VelocityMLP(hidden=16).double()
        hist = fit_cfm(model, CondOTPath(), _eight, steps=20, batch_size=32, seed=7, progress=False)
        return hist.losses, [p.detach().clone() for p in model.parameters()]

    (l1, p1), (l2, p2) = run(), run()
    assert l1 == l2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    torch.manual_seed(0)
    model = VelocityMLP(hidden=16).double()
    l3 = fit_cfm(model, CondOTPath(), _eight, steps=20, batch_size=32, seed=8, progress=False).losses
    assert l3 != l1


def test_fit_cfm_first_loss_matches_manual_batch():
    torch.manual_seed(0)
    model = VelocityMLP(hidden=16).double()
    ref_state = {k: v.clone() for k, v in model.state_dict().items()}
    hist = fit_cfm(model, CondOTPath(), _eight, steps=1, batch_size=16, seed=3, progress=False)
    model.load_state_dict(ref_state)
    g = torch.Generator().manual_seed(3)
    x1 = _eight(16, g)
    x0 = torch.randn(x1.shape, generator=g, dtype=F64)
    t = uniform_time(16, g)
    with torch.no_grad():
        manual = cfm_loss(model, CondOTPath(), x0, x1, t)
    assert hist.losses[0] == pytest.approx(float(manual), rel=1e-12)


def test_fit_cfm_loss_decreases_on_eight_gaussians():
    torch.manual_seed(0)
    model = VelocityMLP(hidden=32)
    hist = fit_cfm(model, CondOTPath(), lambda n, g: eight_gaussians(n, generator=g), steps=200, batch_size=128,
                   lr=3e-3, seed=0, progress=False)
    assert hist.steps == 200
    # the first loss is ~ E|x1 - x0|^2 = 25 + 2 sqrt(0.1) + 2 ~ 27.6 for an untrained (near-zero) network
    first, last = hist.losses[0], np.mean(hist.losses[-20:])
    assert 20 < first < 40
    assert last < 0.6 * first, (first, last)


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True")
def test_fit_errors():
    model = nn.Linear(1, 1)
    ok = lambda step: model.weight.sum() ** 2  # noqa: E731
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fit(lambda x: x, ok, 3, progress=False)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        fit(model, 3.0, 3, progress=False)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        fit(model, ok, 0, progress=False)
    with pytest.raises(TypeError, match="steps must be a positive int"):
        fit(model, ok, 2.5, progress=False)
    with pytest.raises(ValueError, match="loss_fn must return a scalar tensor"):
        fit(model, lambda step: model.weight.reshape(1) * 2, 3, progress=False)
    with pytest.raises(ValueError, match="loss_fn must return a scalar tensor"):
        fit(model, lambda step: 1.0, 3, progress=False)
    with pytest.raises(ValueError, match="the loss became nan at step 2"):
        fit(model, lambda step: model.weight.sum() * (float("nan") if step == 2 else 1.0), 5, progress=False)
    with pytest.raises(ValueError, match="lr must be > 0"):
        fit(model, ok, 3, lr=0.0, progress=False)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fit_cfm("model", CondOTPath(), _eight, steps=2, progress=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fit_cfm(VelocityMLP(), CondOTPath(), _eight, steps=2, batch_size=0, progress=False)
    with pytest.raises(ValueError, match=r"sample_data\(n, generator\) must return a tensor of shape"):
        fit_cfm(VelocityMLP(), CondOTPath(), lambda n, g: torch.zeros(n), steps=2, batch_size=4, progress=False)
