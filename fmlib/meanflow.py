r"""MeanFlow: average velocities, their training target and one-step sampling (book convention).

The book keeps :math:`t = 0` for noise and :math:`t = 1` for data. For a velocity field :math:`v(x, t)` with flow
:math:`x_\tau` (:math:`\dot x_\tau = v(x_\tau, \tau)`, :math:`x_t = x`), the **average velocity** from time
:math:`t` to a time :math:`r` is

.. math:: u(x, t, r) = \frac{1}{r - t}\int_t^r v(x_\tau, \tau)\,d\tau, \qquad x_r = x + (r - t)\,u(x, t, r),
          \qquad u(x, t, t) = v(x, t).

Differentiating :math:`(r - t)\,u(x_t, t, r) = \int_t^r v\,d\tau` in :math:`t` with :math:`r` fixed gives the
**MeanFlow identity**

.. math:: u(x, t, r) = v(x, t) + (r - t)\,\big(v(x, t)\cdot\nabla_x u(x, t, r) + \partial_t u(x, t, r)\big),

whose last factor is one Jacobian-vector product of :math:`u` with the tangent :math:`(v, 1, 0)` on
:math:`(x, t, r)`. Geng et al. (2025) write the same object with data at time 0:
:math:`u^{\mathrm{MF}}(z, r', t') = -u(z, 1 - t', 1 - r')`.

Two-time networks are called as ``model(x, t, r)`` (``fmlib.nets.VelocityMLP(n_times=2)`` takes
``model(x, t, r=r)``).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ._checks import TimeLike, as_points, as_time, positive_int, real, same_shape, skip_value_scans
from .paths import AffinePath, CondOTPath
from .targets import marginal_velocity
from .train import DataSampler, TrainHistory, check_data_sampler, fit, _first_parameter
from .utils import make_generator

__all__ = [
    "AverageVelocity",
    "meanflow_target",
    "meanflow_loss",
    "meanflow_cfg_loss",
    "sample_times",
    "sample",
    "fit_meanflow",
    "exact_average_velocity",
]

AverageVelocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""An average velocity ``u(x, t, r)``: ``x`` of shape ``(batch, d)``, ``t`` and ``r`` of shape ``(batch,)``."""


def _times(x: torch.Tensor, t: TimeLike, r: TimeLike) -> tuple[torch.Tensor, torch.Tensor]:
    return as_time(t, x, "t"), as_time(r, x, "r")


def _call_u(u: AverageVelocity, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    out = u(x, t, r)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"u(x, t, r) must return a tensor; got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"u(x, t, r) must return the shape of x {tuple(x.shape)}; got {tuple(out.shape)}")
    return out


def _u_and_dudt(
    u: AverageVelocity, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``u(x, t, r)`` and its total derivative ``v . grad_x u + d_t u`` along the flow, from one JVP.

    The first output keeps its autograd graph (to the parameters of ``u``); the inputs must already be validated.
    """
    with skip_value_scans():
        return torch.func.jvp(
            lambda xx, tt, rr: _call_u(u, xx, tt, rr),
            (x, t, r),
            (v, torch.ones_like(t), torch.zeros_like(r)),
        )


def meanflow_target(u: AverageVelocity, x: torch.Tensor, t: TimeLike, r: TimeLike, v: torch.Tensor) -> torch.Tensor:
    r"""The MeanFlow regression target :math:`v + (r - t)\,(v\cdot\nabla_x u + \partial_t u)`, detached.

    Parameters
    ----------
    u:
        The average velocity ``u(x, t, r)`` (a network or a closed form), differentiable in ``x`` and ``t``.
    x:
        Points, shape ``(batch, d)``.
    t, r:
        Start and end times: floats or tensors of shape ``(batch,)`` in ``[0, 1]``.
    v:
        The velocity at ``(x, t)``, shape ``(batch, d)``: the marginal :math:`v(x, t)` or, for training, the
        conditional velocity of the pair that produced ``x``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch, d)``, without gradient. The total derivative is computed with one forward-mode
        ``torch.func.jvp`` of ``u`` with tangent :math:`(v, 1, 0)` on :math:`(x, t, r)`.
    """
    if not callable(u):
        raise TypeError(f"u must be callable as u(x, t, r); got {type(u).__name__}")
    x = as_points(x, "x")
    v = as_points(v, "v")
    same_shape(x, v, "x", "v")
    tt, rr = _times(x, t, r)
    _, dudt = _u_and_dudt(u, x, tt, rr, v.to(x))
    return (v + (rr - tt)[:, None] * dudt).detach()


def _model_as_u(model: Callable) -> AverageVelocity:
    return lambda x, t, r: model(x, t, r)


def _pair_batch(x0: object, x1: object, t: TimeLike, r: TimeLike, path: Optional[AffinePath]):
    """Validate a training batch; return ``(x_t, v, t, r)`` with ``v`` the conditional velocity of each pair."""
    path = CondOTPath() if path is None else path
    if not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath or None; got {type(path).__name__}")
    x0 = as_points(x0, "x0")
    x1 = as_points(x1, "x1")
    same_shape(x0, x1, "x0", "x1")
    tt, rr = _times(x0, t, r)
    return path.sample(x0, x1, tt), path.target_velocity(x0, x1, tt), tt, rr


def _adaptive_loss(u: torch.Tensor, target: torch.Tensor, p: float, c: float) -> torch.Tensor:
    """Batch mean of ``sg((||u - target||^2 + c)^-p) ||u - target||^2`` (``target`` already detached)."""
    sq = ((u - target) ** 2).sum(dim=1)
    return ((sq.detach() + c) ** (-p) * sq).mean()


def meanflow_loss(
    model: Callable,
    x0: torch.Tensor,
    x1: torch.Tensor,
    t: TimeLike,
    r: TimeLike,
    *,
    path: Optional[AffinePath] = None,
    p: float = 1.0,
    c: float = 1e-3,
) -> torch.Tensor:
    r"""MeanFlow loss on one batch, with the adaptive weight of Geng et al. (2025).

    With :math:`x_t = \alpha_t x_1 + \sigma_t x_0`, the conditional velocity :math:`v = \dot\alpha_t x_1 +
    \dot\sigma_t x_0` and :math:`\Delta = u_\theta(x_t, t, r) - \mathrm{sg}(v + (r - t)(v\cdot\nabla_x u_\theta +
    \partial_t u_\theta))`, the loss is

    .. math:: \frac1B \sum_i \mathrm{sg}\!\left(\frac{1}{(\|\Delta_i\|^2 + c)^p}\right) \|\Delta_i\|^2 .

    ``p = 0`` is the plain squared error; ``p = 1/2`` has the gradient of the Pseudo-Huber loss
    :math:`\sqrt{\|\Delta\|^2 + c}`; ``p = 1`` that of :math:`\log(\|\Delta\|^2 + c)`.

    Parameters
    ----------
    model:
        A two-time network called as ``model(x, t, r)``.
    x0, x1:
        Noise and data, shape ``(batch, d)``.
    t, r:
        Floats or tensors of shape ``(batch,)`` in ``[0, 1]`` (usually ``t <= r``, :func:`sample_times`).
    path:
        Any affine path (:mod:`fmlib.paths`); ``None`` means CondOT (``x_t = t x1 + (1 - t) x0``).
    p, c:
        Power (>= 0) and offset (> 0) of the adaptive weight.

    Returns
    -------
    torch.Tensor
        A scalar; the model's output enters with its gradient, the target and the weight without.
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t, r); got {type(model).__name__}")
    p = real(p, "p", nonnegative=True)
    c = real(c, "c", positive=True)
    xt, v, tt, rr = _pair_batch(x0, x1, t, r, path)
    u, dudt = _u_and_dudt(_model_as_u(model), xt, tt, rr, v)
    return _adaptive_loss(u, (v + (rr - tt)[:, None] * dudt).detach(), p, c)


def meanflow_cfg_loss(
    model: Callable,
    x0: torch.Tensor,
    x1: torch.Tensor,
    y: torch.Tensor,
    t: TimeLike,
    r: TimeLike,
    *,
    w: float,
    null_label: int,
    path: Optional[AffinePath] = None,
    p: float = 1.0,
    c: float = 1e-3,
) -> torch.Tensor:
    r"""MeanFlow loss with classifier-free guidance built into the target (Geng et al. 2025, in the book's time).

    The network ``model(x, t, r, y)`` learns the average velocity of the guided field
    :math:`v^{\mathrm{cfg}}(x, t \mid y) = w\,v(x, t \mid y) + (1 - w)\,v(x, t)`. The unconditional
    :math:`v(x, t)` is not available in closed form, so the target uses the network's own **unconditional**
    output at :math:`r = t`, without gradient:

    .. math:: \tilde v = w\,v_t + (1 - w)\,\mathrm{sg}\big(u_\theta(x_t, t, t \mid \varnothing)\big), \qquad
              \text{target} = \tilde v + (r - t)\,(\tilde v\cdot\nabla_x u_\theta + \partial_t u_\theta),

    with :math:`v_t` the conditional velocity of the pair. Rows whose label is ``null_label`` (dropped labels)
    train the unconditional field with :math:`\tilde v = v_t`. Other arguments as in :func:`meanflow_loss`;
    ``y`` is an integer tensor of shape ``(batch,)``.
    """
    w = real(w, "w")
    x0 = as_points(x0, "x0")
    if not isinstance(y, torch.Tensor) or y.shape != (x0.shape[0],) or y.is_floating_point():
        raise ValueError(f"y must be an integer tensor of shape ({x0.shape[0]},); got {y!r:.60}")
    p = real(p, "p", nonnegative=True)
    c = real(c, "c", positive=True)
    xt, v, tt, rr = _pair_batch(x0, x1, t, r, path)
    dropped = (y == null_label)[:, None]
    with torch.no_grad():
        v_uncond = model(xt, tt, tt, torch.full_like(y, null_label))
    v_tilde = torch.where(dropped, v, w * v + (1 - w) * v_uncond)
    u, dudt = _u_and_dudt(lambda xx, ts, rs: model(xx, ts, rs, y), xt, tt, rr, v_tilde)
    return _adaptive_loss(u, (v_tilde + (rr - tt)[:, None] * dudt).detach(), p, c)


def sample_times(
    n: int,
    generator: Optional[torch.Generator] = None,
    *,
    fraction_distinct: float = 0.25,
    mean: float = 0.4,
    std: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Draw ``n`` time pairs ``(t, r)`` with ``0 <= t <= r <= 1`` (book convention: ``r`` is nearer the data).

    Two times are drawn from the logit-normal density (``sigmoid`` of :math:`\mathcal N(\text{mean}, \text{std}^2)`)
    and sorted, ``t`` the smaller; then all but a fraction ``fraction_distinct`` of the pairs (chosen at random)
    get ``r = t``, which trains the instantaneous velocity :math:`u(x, t, t) = v(x, t)` as flow matching does.
    Geng et al. use a logit-normal with mean ``-0.4`` in their time (data at 0), which is mean ``+0.4`` here,
    and 25 % distinct pairs.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``t`` and ``r``, each of shape ``(n,)`` (CPU, ``dtype``).
    """
    n = positive_int(n, "n")
    frac = real(fraction_distinct, "fraction_distinct")
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"fraction_distinct must lie in [0, 1]; got {frac}")
    mean = real(mean, "mean")
    std = real(std, "std", positive=True)
    g = make_generator(None, generator)
    a = torch.sigmoid(mean + std * torch.randn(n, generator=g, dtype=torch.float64))
    b = torch.sigmoid(mean + std * torch.randn(n, generator=g, dtype=torch.float64))
    t, r = torch.minimum(a, b), torch.maximum(a, b)
    same = torch.rand(n, generator=g, dtype=torch.float64) >= frac
    r = torch.where(same, t, r)
    return t.to(dtype), r.to(dtype)


def sample(u: AverageVelocity, x0: torch.Tensor, steps: int = 1, *, trajectory: bool = False) -> torch.Tensor:
    r"""Generate with an average velocity: ``steps`` equal jumps from ``t = 0`` to ``t = 1``.

    Each jump from :math:`t` to :math:`r = t + 1/\text{steps}` is :math:`x \leftarrow x + (r - t)\,u(x, t, r)`
    (one network evaluation per step, so NFE = ``steps``).

    Parameters
    ----------
    u:
        The average velocity ``u(x, t, r)``.
    x0:
        Noise, shape ``(batch, d)``.
    steps:
        Number of jumps (>= 1).
    trajectory:
        If true, return all ``steps + 1`` states, shape ``(steps + 1, batch, d)``.

    Returns
    -------
    torch.Tensor
        The samples ``(batch, d)`` (or the trajectory). Wrap the call in ``torch.no_grad()`` for sampling.
    """
    if not callable(u):
        raise TypeError(f"u must be callable as u(x, t, r); got {type(u).__name__}")
    x = as_points(x0, "x0")
    steps = positive_int(steps, "steps")
    if not isinstance(trajectory, bool):
        raise TypeError(f"trajectory must be a bool; got {type(trajectory).__name__}")
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    states = [x]
    for k in range(steps):
        t = torch.full((x.shape[0],), float(grid[k]), dtype=x.dtype, device=x.device)
        r = torch.full((x.shape[0],), float(grid[k + 1]), dtype=x.dtype, device=x.device)
        x = x + (r - t)[:, None] * _call_u(u, x, t, r)
        states.append(x)
    return torch.stack(states) if trajectory else x


def exact_average_velocity(
    path: AffinePath, q, x: torch.Tensor, t: TimeLike, r: TimeLike, *, steps: int = 200
) -> torch.Tensor:
    r"""Exact average velocity of the marginal field of :func:`fmlib.targets.marginal_velocity`.

    Integrates :math:`\dot x_\tau = u_\tau(x_\tau)` (the exact marginal velocity of the data ``q`` under
    ``path``) from :math:`x_t = x` to time ``r`` with ``steps`` classical RK4 steps per sample, and returns
    :math:`(x_r - x)/(r - t)`; where ``r == t`` it returns the velocity itself. The RK4 error is
    :math:`O(((r - t)/\text{steps})^4)`.

    Parameters
    ----------
    path:
        An affine path.
    q:
        A :class:`fmlib.targets.GaussianMixture` or a data tensor ``(N, d)``.
    x:
        Start points at time ``t``, shape ``(batch, d)``.
    t, r:
        Floats or tensors of shape ``(batch,)`` in ``[0, 1]`` (either order; ``r < t`` integrates backward).
    steps:
        RK4 steps per sample.

    Returns
    -------
    torch.Tensor
        Shape ``(batch, d)``.
    """
    if not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath; got {type(path).__name__}")
    x = as_points(x, "x")
    tt, rr = _times(x, t, r)
    steps = positive_int(steps, "steps")
    h = (rr - tt) / steps

    def field(y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return marginal_velocity(path, q, y, s.clamp(0.0, 1.0))

    y, s = x, tt
    for _ in range(steps):
        k1 = field(y, s)
        k2 = field(y + 0.5 * h[:, None] * k1, s + 0.5 * h)
        k3 = field(y + 0.5 * h[:, None] * k2, s + 0.5 * h)
        k4 = field(y + h[:, None] * k3, s + h)
        y = y + h[:, None] / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        s = s + h
    gap = (rr - tt)[:, None]
    same = gap.abs() < 1e-12
    avg = (y - x) / torch.where(same, torch.ones_like(gap), gap)
    return torch.where(same, field(x, tt), avg)


def fit_meanflow(
    model: nn.Module,
    sample_data: DataSampler,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    generator: Optional[torch.Generator] = None,
    seed: Optional[int] = None,
    progress: bool = True,
    path: Optional[AffinePath] = None,
    p: float = 1.0,
    c: float = 1e-3,
    fraction_distinct: float = 0.25,
    time_mean: float = 0.4,
    time_std: float = 1.0,
    **fit_options,
) -> TrainHistory:
    r"""Train a two-time network ``model(x, t, r)`` with :func:`meanflow_loss`, using :func:`fmlib.train.fit`.

    Each step draws ``x1 = sample_data(batch_size, generator)``, noise ``x0 ~ N(0, I)`` and times from
    :func:`sample_times` on the CPU generator, moves them to the model's device and dtype, and takes one step of
    the book's recipe (AdamW, warm-up + cosine learning rate, weight EMA; ``fit_options`` such as
    ``weight_decay``, ``ema_decay``, ``warmup`` or ``schedule`` are passed to :func:`fmlib.train.fit`).

    Returns
    -------
    TrainHistory
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    steps = positive_int(steps, "steps")
    batch_size = positive_int(batch_size, "batch_size")
    if path is not None and not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath or None; got {type(path).__name__}")
    g = make_generator(seed, generator)
    param = _first_parameter(model)
    first = check_data_sampler(sample_data, batch_size, g)
    sample_times(1, torch.Generator(), fraction_distinct=fraction_distinct, mean=time_mean, std=time_std)
    real(p, "p", nonnegative=True)
    real(c, "c", positive=True)

    def loss_fn(step: int) -> torch.Tensor:
        x1 = first if step == 0 else sample_data(batch_size, g)
        if x1.shape != first.shape:
            raise ValueError(f"sample_data returned shape {tuple(x1.shape)} at step {step}; expected {tuple(first.shape)}")
        x1 = x1.to(param)
        x0 = torch.randn(x1.shape, generator=g, dtype=torch.float64).to(param)
        t, r = sample_times(batch_size, g, fraction_distinct=fraction_distinct, mean=time_mean, std=time_std)
        return meanflow_loss(model, x0, x1, t.to(param), r.to(param), path=path, p=p, c=c)

    return fit(model, loss_fn, steps, lr=lr, progress=progress, desc="MeanFlow", **fit_options)
