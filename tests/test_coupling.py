"""Tests of fmlib.coupling (minibatch OT pairs, reflow pairs) and fit_cfm's coupling keyword."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from fmlib.coupling import ot_cost, ot_pairs, reflow_pairs
from fmlib.data import moons
from fmlib.nets import VelocityMLP
from fmlib.paths import CondOTPath
from fmlib.solvers import integrate
from fmlib.train import fit_cfm


def _batch(n=60, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), 3 * torch.rand(n, d, generator=g, dtype=torch.float64)


def _row_index(x1, y1):
    """Index of each row of y1 in x1 (rows are distinct)."""
    eq = (y1[:, None, :] == x1[None, :, :]).all(-1)  # exact equality: a re-paired row is a copy
    return eq.float().argmax(1), (~eq.any(1)).double()


def _lsa_optimum(x0, x1):
    cost = torch.cdist(x0, x1).pow(2).numpy()
    r, c = linear_sum_assignment(cost)
    return cost[r, c].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_matches_scipy_optimum_and_is_permutation(seed):
    x0, x1 = _batch(seed=seed)
    y0, y1 = ot_pairs(x0, x1)
    assert torch.equal(y0, x0)
    idx, dist = _row_index(x1, y1)
    assert float(dist.max()) == 0.0
    assert sorted(idx.tolist()) == list(range(len(x1)))  # every point exactly once
    assert ot_cost(y0, y1) == pytest.approx(_lsa_optimum(x0, x1), rel=1e-12)
    assert ot_cost(y0, y1) < ot_cost(x0, x1)


def test_exact_known_answer_two_points():
    x0 = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    x1 = torch.tensor([[1.1, 0.0], [-0.1, 0.0]])
    _, y1 = ot_pairs(x0, x1)
    assert torch.equal(y1, x1.flip(0))
    assert ot_cost(x0, y1) == pytest.approx(0.01, rel=1e-6)


def test_exact_on_ordered_moons_with_ties():
    g = torch.Generator().manual_seed(3)
    x1 = moons(128, generator=g).double()
    x0 = torch.randn(128, 2, generator=g, dtype=torch.float64)
    _, y1 = ot_pairs(x0, x1)
    assert ot_cost(x0, y1) == pytest.approx(_lsa_optimum(x0, x1), rel=1e-10)


def test_subbatch_is_permutation_between_exact_and_independent():
    x0, x1 = _batch(n=128, seed=4)
    g = torch.Generator().manual_seed(0)
    y0, y1 = ot_pairs(x0, x1, "subbatch", sub_batch=32, generator=g)
    idx, dist = _row_index(x1, y1)
    assert float(dist.max()) == 0.0 and sorted(idx.tolist()) == list(range(128))
    exact = _lsa_optimum(x0, x1)
    assert exact < ot_cost(y0, y1) < ot_cost(x0, x1)
    # a block as large as the batch is the exact plan
    _, z1 = ot_pairs(x0, x1, "subbatch", sub_batch=128, generator=g)
    assert ot_cost(x0, z1) == pytest.approx(exact, rel=1e-12)


def test_sinkhorn_small_reg_approaches_exact_and_large_reg_independent():
    x0, x1 = _batch(n=64, seed=5)
    g = torch.Generator().manual_seed(0)
    exact = _lsa_optimum(x0, x1)
    _, sharp = ot_pairs(x0, x1, "sinkhorn", reg=0.01, generator=g)
    _, blurred = ot_pairs(x0, x1, "sinkhorn", reg=100.0, generator=g)
    assert ot_cost(x0, sharp) < 1.2 * exact
    mean_cost = float(torch.cdist(x0, x1).pow(2).mean())  # a uniform plan pairs at random
    assert abs(ot_cost(x0, blurred) - mean_cost) < 0.2 * mean_cost and ot_cost(x0, blurred) > 1.4 * exact


def test_labels_pair_within_class():
    x0, x1 = _batch(n=80, seed=6)
    labels = torch.arange(80) % 3
    _, y1 = ot_pairs(x0, x1, labels=labels)
    idx, dist = _row_index(x1, y1)
    assert float(dist.max()) == 0.0 and sorted(idx.tolist()) == list(range(80))
    assert torch.equal(labels[idx], labels)  # each row keeps a data point of its own class
    # within each class, the pairing is the exact optimum of that class
    for c in range(3):
        rows = labels == c
        assert ot_cost(x0[rows], y1[rows]) == pytest.approx(_lsa_optimum(x0[rows], x1[rows]), rel=1e-12)


def test_errors():
    x0, x1 = _batch(n=10)
    with pytest.raises(ValueError, match="same shape"):
        ot_pairs(x0, x1[:9])
    with pytest.raises(ValueError, match="same shape"):
        ot_pairs(x0, torch.cat([x1, x1], 1))
    with pytest.raises(TypeError, match="x1 must be a torch.Tensor"):
        ot_pairs(x0, x1.numpy())
    with pytest.raises(TypeError, match="floating-point"):
        ot_pairs(x0.long(), x1)
    with pytest.raises(ValueError, match="method must be one of"):
        ot_pairs(x0, x1, "hungarian")
    with pytest.raises(ValueError, match="finite"):
        ot_pairs(x0, x1 * float("nan"))
    with pytest.raises(TypeError, match="labels must be an integer"):
        ot_pairs(x0, x1, labels=torch.zeros(10))
    with pytest.raises(ValueError, match="labels must have shape"):
        ot_pairs(x0, x1, labels=torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="sub_batch"):
        ot_pairs(x0, x1, "subbatch", sub_batch=0)
    with pytest.raises(ValueError, match="reg"):
        ot_pairs(x0, x1, "sinkhorn", reg=-1.0)
    with pytest.raises(TypeError, match="velocity must be callable"):
        reflow_pairs(None, x0)
    with pytest.raises(ValueError, match="steps"):
        reflow_pairs(lambda x, t: x, x0, steps=0)


def test_reflow_pairs_known_flow():
    x0, _ = _batch(n=20)
    shift = torch.tensor([1.0, -2.0], dtype=torch.float64)
    y0, y1 = reflow_pairs(lambda x, t: shift.expand_as(x), x0, steps=3, method="euler")
    assert torch.equal(y0, x0)
    assert torch.allclose(y1, x0 + shift, atol=1e-12)
    # a rotation field: same end points as integrate with the same settings
    rot = lambda x, t: torch.stack([-x[:, 1], x[:, 0]], 1)  # noqa: E731
    _, z1 = reflow_pairs(rot, x0, steps=50, method="rk4")
    assert torch.equal(z1, integrate(rot, x0, steps=50, method="rk4"))
    c, s = np.cos(1.0), np.sin(1.0)
    exact = x0 @ torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    assert torch.allclose(z1, exact, atol=1e-8)


def test_fit_cfm_coupling_is_used_and_checked():
    calls = []

    def coupling(x0, x1):
        calls.append(x0.shape)
        return ot_pairs(x0, x1)

    model = VelocityMLP(hidden=16, depth=1)
    sample = lambda n, g: moons(n, generator=g)  # noqa: E731
    hist = fit_cfm(model, CondOTPath(), sample, steps=5, batch_size=32, seed=0, progress=False, coupling=coupling)
    assert hist.steps == 5 and len(calls) == 5 and calls[0] == (32, 2)
    with pytest.raises(TypeError, match="coupling must be a function"):
        fit_cfm(model, CondOTPath(), sample, steps=2, batch_size=8, progress=False, coupling=3)
    with pytest.raises(ValueError, match="coupling"):
        fit_cfm(model, CondOTPath(), sample, steps=2, batch_size=8, progress=False, coupling=lambda a, b: a)


def test_fit_cfm_without_coupling_unchanged():
    """The keyword is additive: without it, training draws exactly what it drew before."""
    sample = lambda n, g: moons(n, generator=g)  # noqa: E731
    torch.manual_seed(0)
    m1 = VelocityMLP(hidden=16, depth=1)
    m2 = VelocityMLP(hidden=16, depth=1)
    m2.load_state_dict(m1.state_dict())
    h1 = fit_cfm(m1, CondOTPath(), sample, steps=5, batch_size=16, seed=1, progress=False)
    h2 = fit_cfm(m2, CondOTPath(), sample, steps=5, batch_size=16, seed=1, progress=False,
                 coupling=lambda a, b: (a, b))
    assert h1.losses == h2.losses
