r"""Continuity-equation utilities: divergences, continuity residuals, 1-D mixture CDFs and density animations.

A velocity field :math:`u_t(x)` *generates* a probability path :math:`p_t(x)` when the particles
:math:`\dot x_t = u_t(x_t)`, started from :math:`x_0 \sim p_0`, are distributed as :math:`p_t` at every time. For
smooth fields this is expressed by the continuity equation

.. math::

   \partial_t p_t(x) + \nabla\cdot\big(p_t(x)\, u_t(x)\big) = 0
   \quad\Longleftrightarrow\quad
   \partial_t \log p_t(x) + \nabla\cdot u_t(x) + u_t(x)\cdot\nabla \log p_t(x) = 0 \quad (p_t(x) > 0),

whose left-hand sides this module evaluates, either exactly with autograd or with second-order central
differences. Conventions as in the rest of fmlib: points are tensors of shape ``(batch, dim)``; a time ``t`` is a
float or a tensor of shape ``(batch,)`` in ``[0, 1]``; a log-density is a function ``log_prob(x, t) -> (batch,)``
and a velocity a function ``velocity(x, t) -> (batch, dim)``, both called with ``t`` of shape ``(batch,)``.
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ._checks import TimeLike, as_points, as_time, call_field, positive_int, real
from .paths import AffinePath
from .solvers import divergence as _exact_divergence
from .targets import GaussianMixture

__all__ = [
    "divergence",
    "continuity_residual",
    "marginal_cdf_1d",
    "animate_density_1d",
]

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A time-dependent vector field ``f(x, t)``: ``x`` (batch, dim), ``t`` (batch,) -> (batch, dim)."""

LogProb = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A time-dependent log-density ``log_prob(x, t)``: ``x`` (batch, dim), ``t`` (batch,) -> (batch,)."""

_FORMS = ("density", "log")


def _step(h: object, name: str = "h") -> Optional[float]:
    if h is None:
        return None
    return real(h, name, positive=True)


def _call_log_prob(log_prob: LogProb, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    out = log_prob(x, t)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"log_prob_fn(x, t) must return a tensor of shape ({x.shape[0]},); got {type(out).__name__}")
    if out.shape != (x.shape[0],):
        raise ValueError(f"log_prob_fn(x, t) must return shape ({x.shape[0]},); got {tuple(out.shape)}")
    return out


def _check_callable(fn: object, name: str, signature: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be a function {signature}; got {type(fn).__name__}")


def _fd_time(tt: torch.Tensor, h: float) -> None:
    lo, hi = float(tt.min()), float(tt.max())
    if lo - h < -1e-12 or hi + h > 1 + 1e-12:
        raise ValueError(
            f"t must lie in [h, 1 - h] = [{h:g}, {1 - h:g}] so that the central difference t +- h stays in [0, 1]; "
            f"got values in [{lo:.6g}, {hi:.6g}]"
        )


def divergence(field: Field, x: torch.Tensor, t: TimeLike, h: Optional[float] = None) -> torch.Tensor:
    r"""Divergence :math:`\nabla\cdot f(x, t) = \sum_i \partial f_i / \partial x_i = \operatorname{tr} \partial_x f`.

    The divergence is a scalar at every point (the trace of the Jacobian, not the Jacobian itself).

    Parameters
    ----------
    field:
        ``field(x, t)`` mapping ``x`` of shape ``(batch, dim)`` and ``t`` of shape ``(batch,)`` to ``(batch, dim)``.
    x:
        Points, shape ``(batch, dim)``.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.
    h:
        ``None`` (default): exact derivatives with autograd, by :func:`fmlib.solvers.divergence` (``dim``
        backward passes; ``field`` must be written with differentiable torch operations). A positive float: second-order central differences
        :math:`\sum_i [f_i(x + h e_i) - f_i(x - h e_i)] / (2h)`, with error :math:`O(h^2)`.

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``, detached from the autograd graph.
    """
    _check_callable(field, "field", "field(x, t) -> (batch, dim)")
    x = as_points(x, "x")
    tt = as_time(t, x)
    h = _step(h)
    d = x.shape[1]
    if h is not None:
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(d):
            e = torch.zeros_like(x)
            e[:, i] = h
            plus = call_field(field, x + e, tt, "field")[:, i]
            minus = call_field(field, x - e, tt, "field")[:, i]
            total = total + (plus - minus) / (2 * h)
        return total.detach()
    # exact divergence: the autograd implementation of fmlib.solvers (one backward pass per dimension)
    return _exact_divergence(field, x.detach(), tt.detach(), create_graph=False)


def continuity_residual(
    log_prob_fn: LogProb,
    velocity_fn: Field,
    x: torch.Tensor,
    t: TimeLike,
    h: Optional[float] = None,
    *,
    form: str = "density",
) -> torch.Tensor:
    r"""Residual of the continuity equation for a density path and a velocity field, at points ``x`` and times ``t``.

    ``form="density"`` returns :math:`r = \partial_t p_t + \nabla\cdot(p_t u_t)` and ``form="log"`` returns
    :math:`r / p_t = \partial_t \log p_t + \nabla\cdot u_t + u_t\cdot\nabla\log p_t`. Both vanish everywhere iff
    ``velocity_fn`` generates ``exp(log_prob_fn)`` (for smooth, integrable fields; see the book's chapter on the
    continuity equation for the precise conditions).

    Parameters
    ----------
    log_prob_fn:
        ``log_prob_fn(x, t)`` -> ``(batch,)``, the log-density :math:`\log p_t(x)`.
    velocity_fn:
        ``velocity_fn(x, t)`` -> ``(batch, dim)``, the field :math:`u_t(x)`.
    x:
        Points, shape ``(batch, dim)``.
    t:
        A float or a tensor of shape ``(batch,)``; in ``[0, 1]``, and in ``[h, 1 - h]`` for finite differences.
    h:
        ``None`` (default): exact derivatives in ``t`` and ``x`` with autograd (both functions must be
        differentiable torch code). A positive float: second-order central differences with step ``h`` in ``t``
        and in each coordinate of ``x`` (error :math:`O(h^2)` plus round-off of order :math:`\epsilon / h`; use
        float64).
    form:
        ``"density"`` or ``"log"``.

    Returns
    -------
    torch.Tensor
        The residual, shape ``(batch,)``, detached.
    """
    _check_callable(log_prob_fn, "log_prob_fn", "log_prob_fn(x, t) -> (batch,)")
    _check_callable(velocity_fn, "velocity_fn", "velocity_fn(x, t) -> (batch, dim)")
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}; got {form!r}")
    x = as_points(x, "x")
    tt = as_time(t, x)
    h = _step(h)
    d = x.shape[1]
    if h is None:
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            ts = tt.detach().requires_grad_(True)
            logp = _call_log_prob(log_prob_fn, xx, ts)
            if logp.requires_grad:
                d_t, grad_x = torch.autograd.grad(logp.sum(), (ts, xx), allow_unused=True)
            else:  # a log-density that depends on neither x nor t
                d_t, grad_x = None, None
            d_t = torch.zeros_like(ts) if d_t is None else d_t
            grad_x = torch.zeros_like(xx) if grad_x is None else grad_x
        u = call_field(velocity_fn, x, tt, "velocity_fn")
        div_u = divergence(velocity_fn, x, tt)
        r_log = d_t.detach() + div_u + (u.detach() * grad_x.detach()).sum(1)
        if form == "log":
            return r_log
        return (torch.exp(logp.detach()) * r_log).detach()

    _fd_time(tt, h)
    with torch.no_grad():
        if form == "density":
            def p(y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
                return torch.exp(_call_log_prob(log_prob_fn, y, s))

            r = (p(x, tt + h) - p(x, tt - h)) / (2 * h)
            for i in range(d):
                e = torch.zeros_like(x)
                e[:, i] = h
                flux_plus = p(x + e, tt) * call_field(velocity_fn, x + e, tt, "velocity_fn")[:, i]
                flux_minus = p(x - e, tt) * call_field(velocity_fn, x - e, tt, "velocity_fn")[:, i]
                r = r + (flux_plus - flux_minus) / (2 * h)
            return r
        logp_t = (_call_log_prob(log_prob_fn, x, tt + h) - _call_log_prob(log_prob_fn, x, tt - h)) / (2 * h)
        u = call_field(velocity_fn, x, tt, "velocity_fn")
        r = logp_t + divergence(velocity_fn, x, tt, h=h)
        for i in range(d):
            e = torch.zeros_like(x)
            e[:, i] = h
            dlogp = (_call_log_prob(log_prob_fn, x + e, tt) - _call_log_prob(log_prob_fn, x - e, tt)) / (2 * h)
            r = r + u[:, i] * dlogp
        return r


def marginal_cdf_1d(path: AffinePath, q: Union[GaussianMixture, torch.Tensor], x: torch.Tensor, t: TimeLike
                    ) -> torch.Tensor:
    r"""Exact CDF :math:`F_t(x) = P(X_t \le x)` of a 1-D marginal path (differentiable in ``x`` and ``t``).

    Under ``x_t = alpha_t x1 + sigma_t x0`` a 1-D mixture :math:`\sum_k w_k N(m_k, s_k^2)` becomes
    :math:`\sum_k w_k N(\alpha_t m_k, \alpha_t^2 s_k^2 + \sigma_t^2)`, so

    .. math:: F_t(x) = \sum_k w_k\, \Phi\Big(\frac{x - \alpha_t m_k}{\sqrt{\alpha_t^2 s_k^2 + \sigma_t^2}}\Big).

    The mass in an interval is :math:`F_t(b) - F_t(a)`, and the probability flux through a point is
    :math:`J_t(x) = p_t(x) u_t(x) = -\partial_t F_t(x)`.

    Parameters
    ----------
    path:
        An affine Gaussian path (e.g. :class:`fmlib.paths.CondOTPath`).
    q:
        A 1-D :class:`fmlib.targets.GaussianMixture`, or data points of shape ``(N, 1)`` (empirical distribution).
    x:
        Points, shape ``(batch, 1)``.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``.
    """
    if not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath (e.g. CondOTPath()); got {type(path).__name__}")
    x = as_points(x, "x", dim=1)
    tt = as_time(t, x)
    if isinstance(q, GaussianMixture):
        if q.dim != 1:
            raise ValueError(f"q must be a 1-D mixture (dim = 1); got dim = {q.dim}")
        means, comp_var, w = q.means[:, 0].to(x), q.stds.to(x) ** 2, q.weights.to(x)
    elif isinstance(q, torch.Tensor):
        data = as_points(q, "q (data tensor)", dim=1)
        means = data[:, 0].to(x)
        comp_var = torch.zeros_like(means)
        w = torch.full_like(means, 1.0 / data.shape[0])
    else:
        raise TypeError(f"q must be a GaussianMixture or a data tensor of shape (N, 1); got {type(q).__name__}")
    s = path.schedule(tt)
    alpha, sigma = s.alpha[:, None], s.sigma[:, None]
    var = alpha**2 * comp_var[None] + sigma**2  # (B, K)
    if (var <= 0).any():
        raise ValueError("the marginal path has a point mass at this t (sigma_t = 0 and zero-width components); use t < 1")
    z = (x - alpha * means[None]) / torch.sqrt(var)
    return (w[None] * torch.special.ndtr(z)).sum(1)


def animate_density_1d(
    trajectory: torch.Tensor,
    times: Union[torch.Tensor, Sequence[float]],
    log_prob_fn: LogProb,
    *,
    xlim: tuple[float, float] = (-4.0, 4.0),
    bins: int = 60,
    frames: Optional[int] = None,
    figsize: tuple[float, float] = (5.0, 2.4),
    dpi: int = 72,
    ymax: Optional[float] = None,
    interval: int = 100,
):
    r"""Animate 1-D particles (histogram) over the exact density they should follow; returns an HTML player.

    Frame ``j`` shows the histogram of ``trajectory[k_j]`` (normalised as a density) and the curve
    :math:`p_{t}(x) = \exp(\text{log\_prob\_fn}(x, t))` at ``t = times[k_j]``, for ``frames`` indices ``k_j`` spread
    evenly over the trajectory. The player is :func:`fmlib.plotting.animate` (``to_jshtml``), so it plays in the
    static book; keep ``frames``, ``figsize`` and ``dpi`` small to keep the page light.

    Parameters
    ----------
    trajectory:
        Particle positions, shape ``(steps + 1, batch, 1)`` as returned by
        ``fmlib.solvers.integrate(..., trajectory=True)`` in 1-D.
    times:
        The ``steps + 1`` times of the trajectory, in ``[0, 1]``.
    log_prob_fn:
        ``log_prob_fn(x, t)`` with ``x`` of shape ``(m, 1)`` and ``t`` of shape ``(m,)`` -> ``(m,)``.
    xlim:
        Plotting range, also the histogram range.
    bins:
        Number of histogram bins.
    frames:
        Number of frames (at most ``steps + 1``); all time steps when ``None``.
    figsize, dpi:
        Size of each frame in inches and its resolution (the page size grows with both).
    ymax:
        Upper limit of the y axis; 1.15 times the largest value shown when ``None``.
    interval:
        Milliseconds between frames.

    Returns
    -------
    IPython.display.HTML
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    from .plotting import COLORS, animate

    if not isinstance(trajectory, torch.Tensor) or trajectory.ndim != 3 or trajectory.shape[2] != 1:
        raise ValueError(
            "trajectory must be a tensor of shape (steps + 1, batch, 1); "
            f"got {getattr(trajectory, 'shape', type(trajectory).__name__)}"
        )
    times = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    n_t = trajectory.shape[0]
    if times.shape[0] != n_t:
        raise ValueError(f"times must hold one time per trajectory step ({n_t}); got {times.shape[0]}")
    _check_callable(log_prob_fn, "log_prob_fn", "log_prob_fn(x, t) -> (m,)")
    if (not isinstance(xlim, (tuple, list)) or len(xlim) != 2
            or not all(isinstance(v, numbers.Real) for v in xlim) or not xlim[0] < xlim[1]):
        raise ValueError(f"xlim must be a pair (lo, hi) with lo < hi; got {xlim!r}")
    bins = positive_int(bins, "bins")
    frames = n_t if frames is None else positive_int(frames, "frames")
    if frames > n_t:
        raise ValueError(f"frames must be at most the number of trajectory steps {n_t}; got {frames}")
    dpi = positive_int(dpi, "dpi")
    idx = np.unique(np.round(np.linspace(0, n_t - 1, frames)).astype(int))

    xs = torch.linspace(float(xlim[0]), float(xlim[1]), 300, dtype=torch.float64)
    edges = np.linspace(float(xlim[0]), float(xlim[1]), bins + 1)
    pos = trajectory.detach().to("cpu", torch.float64).numpy()[:, :, 0]
    n = pos.shape[1]
    hists, curves = [], []
    for k in idx:
        counts, _ = np.histogram(pos[k], bins=edges)
        hists.append(counts / (n * np.diff(edges)))
        with torch.no_grad():
            lp = _call_log_prob(log_prob_fn, xs[:, None], torch.full((xs.shape[0],), float(times[k]),
                                                                    dtype=torch.float64))
        curves.append(torch.exp(lp).numpy())
    top = ymax if ymax is not None else 1.15 * max(max(h.max() for h in hists), max(c.max() for c in curves))

    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    bars = ax.stairs(hists[0], edges, fill=True, color=COLORS["model"], alpha=0.45, label="particles (histogram)")
    (line,) = ax.plot(xs.numpy(), curves[0], color=COLORS["exact"], lw=2, label=r"exact $p_t$")
    title = ax.set_title(f"t = {float(times[idx[0]]):.2f}")
    ax.set_xlim(*xlim)
    ax.set_ylim(0, top)
    ax.set_xlabel("x")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()

    def update(j: int):
        bars.set_data(hists[j], edges)
        line.set_ydata(curves[j])
        title.set_text(f"t = {float(times[idx[j]]):.2f}")
        return bars, line, title

    with mpl.rc_context({"savefig.dpi": dpi}):
        return animate(fig, update, len(idx), interval=interval)
