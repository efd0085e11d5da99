r"""Couplings of noise and data: minibatch optimal transport and reflow pairs.

Conditional flow matching trains on pairs :math:`(x_0, x_1)` drawn from a *coupling*, a joint distribution
whose marginals are the noise :math:`p` and the data :math:`q`. The independent coupling draws them
separately. :func:`ot_pairs` re-pairs a batch so that the total squared distance
:math:`\sum_i \|x_{0,i} - x_{1,\tau(i)}\|^2` is minimal over all permutations :math:`\tau` (minibatch optimal
transport, Tong et al. 2023; Pooladian et al. 2023). :func:`reflow_pairs` pairs each noise point with the end
point of its ODE trajectory under a trained velocity field (the reflow step of rectified flow, Liu et al.
2022).

Why a permutation. With ``n`` points on each side and weights ``1/n`` the transport polytope is the set of
doubly stochastic matrices scaled by ``1/n``; its vertices are permutation matrices (Birkhoff--von Neumann), and
a linear program attains its minimum at a vertex. So an exact optimal plan that is a permutation always exists,
and returning it keeps every point of the batch exactly once. TorchCFM instead draws ``n`` pairs from the plan
with replacement: that also works for non-permutation plans (entropic ones), but it drops some points of the
batch and duplicates others (about ``1/e`` of them for a permutation plan), which wastes samples and changes
the batch's marginals. The ``"exact"`` and ``"subbatch"`` methods here never do that.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ._checks import as_points, positive_int, real
from .solvers import integrate

__all__ = ["METHODS", "ot_pairs", "ot_cost", "reflow_pairs"]

METHODS = ("exact", "sinkhorn", "subbatch")
"""The pairing methods of :func:`ot_pairs`."""


def _check_pair(x0: object, x1: object) -> tuple[torch.Tensor, torch.Tensor]:
    x0 = as_points(x0, "x0")
    x1 = as_points(x1, "x1")
    if x0.shape != x1.shape:
        raise ValueError(
            f"x0 and x1 must have the same shape (batch, dim) (equal batch sizes, so that the plan is a "
            f"permutation); got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if x0.shape[0] == 0:
        raise ValueError("x0 and x1 must hold at least one point; got an empty batch")
    return x0, x1


def _cost(x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
    """Squared Euclidean distances ``C[i, j] = |x0_i - x1_j|^2`` in float64 on the CPU, shape ``(n, n)``."""
    a = x0.detach().to("cpu", torch.float64)
    b = x1.detach().to("cpu", torch.float64)
    cost = torch.cdist(a, b).pow_(2).numpy()
    if not np.isfinite(cost).all():
        raise ValueError("x0 and x1 must be finite (got NaN or inf)")
    return cost


def _exact(cost: np.ndarray) -> np.ndarray:
    """The optimal permutation: POT's network simplex (``ot.emd``), whose optimal plan is a vertex of the
    transport polytope and hence a permutation matrix; scipy's ``linear_sum_assignment`` if the plan returned
    is not one (degenerate ties)."""
    import ot

    n = cost.shape[0]
    w = np.full(n, 1.0 / n)
    plan = ot.emd(w, w, cost, numItermax=10_000_000)
    perm = plan.argmax(1)
    if np.allclose(plan[np.arange(n), perm], 1.0 / n) and len(np.unique(perm)) == n:
        return perm
    rows, cols = linear_sum_assignment(cost)  # pragma: no cover - fallback for a non-vertex plan
    perm = np.empty(n, dtype=np.int64)
    perm[rows] = cols
    return perm


def _subbatch(x0: torch.Tensor, x1: torch.Tensor, size: int, generator: torch.Generator) -> np.ndarray:
    """Exact OT within random blocks of ``size`` rows (the last block may be smaller).

    All block cost matrices come from one batched ``cdist``; each block is solved by scipy's
    ``linear_sum_assignment``, which is fast for small dense problems."""
    n = x0.shape[0]
    order = torch.randperm(n, generator=generator)
    a = x0.detach().to("cpu", torch.float64)[order]
    b = x1.detach().to("cpu", torch.float64)[order]
    full = (n // size) * size
    blocks = []
    if full:
        d = a.shape[1]
        blocks.append(torch.cdist(a[:full].reshape(-1, size, d), b[:full].reshape(-1, size, d)).pow_(2).numpy())
    if full < n:
        blocks.append(torch.cdist(a[full:], b[full:]).pow_(2).numpy()[None])
    local = np.empty(n, dtype=np.int64)
    start = 0
    for group in blocks:
        if not np.isfinite(group).all():
            raise ValueError("x0 and x1 must be finite (got NaN or inf)")
        for cost in group:
            _, cols = linear_sum_assignment(cost)  # rows come back sorted
            local[start:start + len(cols)] = start + cols
            start += len(cols)
    order = order.numpy()
    perm = np.empty(n, dtype=np.int64)
    perm[order] = order[local]  # row order[i] is paired with x1 row order[local[i]]
    return perm


def _sinkhorn(cost: np.ndarray, reg: float, generator: torch.Generator) -> np.ndarray:
    import ot

    n = cost.shape[0]
    w = np.full(n, 1.0 / n)
    eps = reg * max(float(cost.mean()), 1e-12)
    plan = ot.sinkhorn(w, w, cost, eps, numItermax=1000, stopThr=1e-6)
    rows = torch.from_numpy(np.nan_to_num(np.maximum(plan, 0.0)))
    rows = rows + 1e-300  # a row of zeros (underflow) falls back to a uniform draw
    return torch.multinomial(rows / rows.sum(1, keepdim=True), 1, generator=generator).squeeze(1).numpy()


def ot_pairs(
    x0: torch.Tensor,
    x1: torch.Tensor,
    method: str = "exact",
    *,
    labels: Optional[torch.Tensor] = None,
    reg: float = 0.05,
    sub_batch: int = 64,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Re-pair a batch of noise ``x0`` and data ``x1`` by minibatch optimal transport (squared distance).

    Returns ``(x0, x1[perm])``: ``x0`` unchanged and ``x1`` reordered so that row ``i`` of each forms a pair.
    With ``method="exact"`` the permutation :math:`\tau` minimises :math:`\sum_i \|x_{0,i} - x_{1,\tau(i)}\|^2`
    (POT's network simplex ``ot.emd``, checked to be a permutation, else scipy's ``linear_sum_assignment``;
    roughly :math:`O(n^3)`); with equal weights this is an optimal transport plan
    of the two empirical measures (see the module notes).

    Parameters
    ----------
    x0, x1:
        Noise and data, floating tensors of the same shape ``(n, d)``.
    method:
        ``"exact"``: the optimal permutation. ``"subbatch"``: the optimal permutation within consecutive blocks
        of ``sub_batch`` rows (cost :math:`O(n\,s^2)` instead of :math:`O(n^3)`); still a permutation, but only
        optimal inside each block, so pairs are less straight than with ``"exact"``. The blocks are random
        (drawn with ``generator``), because data samplers may return their points in order (TorchCFM's moons
        list the outer arc first). ``"sinkhorn"``: the entropic
        plan (POT's ``ot.sinkhorn``, regularisation ``reg`` times the mean cost), from which each ``x0`` row
        draws its partner; the plan is blurred, so pairs are less straight, and the draw is not a permutation
        (some ``x1`` rows appear twice, others not at all).
    labels:
        Optional integer labels, one per row, shape ``(n,)`` (the class of the data point in that row). If
        given, rows are only re-paired among rows with the same label: for each class ``c``, the ``x1`` rows of
        class ``c`` are matched to the ``x0`` rows of class ``c``. Because which rows belong to a class does not
        depend on ``x0``, the noise paired with each class is still an independent draw of the noise
        distribution. To keep the labels of ``x1`` in place, pass the data first and reorder the noise:
        ``x1, x0 = ot_pairs(x1, x0, labels=y)``.
    reg:
        Entropic regularisation relative to the mean cost (``"sinkhorn"`` only), positive.
    sub_batch:
        Block size of ``"subbatch"`` (positive int).
    generator:
        Random generator for the ``"sinkhorn"`` draws and the ``"subbatch"`` blocks (PyTorch's global one when
        ``None``).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``x0`` and the re-ordered ``x1``, both of shape ``(n, d)``, with ``x1``'s dtype and device.

    Raises
    ------
    TypeError
        If ``x0`` or ``x1`` is not a floating tensor, or ``labels`` is not an integer tensor.
    ValueError
        If the shapes differ, the values are not finite, ``labels`` has the wrong shape, or ``method`` is unknown.
    """
    x0, x1 = _check_pair(x0, x1)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if labels is not None:
        return x0, x1[_labelled_perm(x0, x1, labels, method, reg, sub_batch, generator)]
    return x0, x1[torch.from_numpy(_perm(x0, x1, method, reg, sub_batch, generator)).to(x1.device)]


def _perm(x0, x1, method, reg, sub_batch, generator) -> np.ndarray:
    g = generator if generator is not None else torch.default_generator
    if method == "subbatch":
        return _subbatch(x0, x1, positive_int(sub_batch, "sub_batch"), g)
    cost = _cost(x0, x1)
    if method == "exact":
        return _exact(cost)
    return _sinkhorn(cost, real(reg, "reg", positive=True), g)


def _labelled_perm(x0, x1, labels, method, reg, sub_batch, generator) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer torch.Tensor of shape (n,); got {type(labels).__name__}"
                        + (f" of dtype {labels.dtype}" if isinstance(labels, torch.Tensor) else ""))
    if labels.shape != (x0.shape[0],):
        raise ValueError(f"labels must have shape ({x0.shape[0]},), one label per row; got {tuple(labels.shape)}")
    lab = labels.detach().cpu()
    perm = torch.arange(x0.shape[0])
    for c in torch.unique(lab):
        rows = (lab == c).nonzero().squeeze(1)
        local = _perm(x0[rows.to(x0.device)], x1[rows.to(x1.device)], method, reg, sub_batch, generator)
        perm[rows] = rows[torch.from_numpy(local)]
    return perm.to(x1.device)


def ot_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    r"""Mean squared distance of the pairs, :math:`\frac1n \sum_i \|x_{0,i} - x_{1,i}\|^2`.

    For the output of ``ot_pairs(x0, x1, "exact")`` this is the squared 2-Wasserstein distance
    :math:`W_2^2` of the two empirical measures.
    """
    x0, x1 = _check_pair(x0, x1)
    return float(((x0.detach().double() - x1.detach().to(x0.device).double()) ** 2).sum(1).mean())


def reflow_pairs(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    steps: int = 100,
    method: str = "rk4",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Pairs :math:`(x_0, \phi_1(x_0))` of noise and the end point of its trajectory (one reflow step).

    :math:`\phi_1` is the flow of ``velocity`` from ``t = 0`` to ``t = 1``, computed by
    :func:`fmlib.solvers.integrate` with the given ``steps`` and ``method`` under ``torch.no_grad()``.
    Training a new flow on these pairs with straight conditional paths gives the 2-rectified flow
    (Liu et al., 2022): its marginals are those of the first flow, and its trajectories are straighter.

    Parameters
    ----------
    velocity:
        ``velocity(x, t)`` with ``x`` of shape ``(n, d)`` and ``t`` of shape ``(n,)``; returns ``(n, d)``.
    x0:
        Noise, shape ``(n, d)``.
    steps, method:
        Passed to :func:`fmlib.solvers.integrate` (``"euler"``, ``"midpoint"``, ``"rk4"`` or ``"dopri5"``).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``x0`` (detached) and ``x1``, both of shape ``(n, d)``.
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(x, t); got {type(velocity).__name__}")
    x0 = as_points(x0, "x0")
    with torch.no_grad():
        x1 = integrate(velocity, x0, 0.0, 1.0, steps=steps, method=method)
    return x0.detach(), x1.detach()
