"""One figure style for the book: samples, densities, vector fields, trajectories and animations.

Animations are returned as :class:`IPython.display.HTML` produced by ``FuncAnimation.to_jshtml()``: a
self-contained JavaScript player that keeps working in the static HTML book, with no kernel.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

from ._checks import as_points, positive_int

__all__ = [
    "use_style",
    "grid_points",
    "plot_samples",
    "plot_density",
    "plot_field",
    "plot_trajectories",
    "animate",
    "offline_player",
]

Lims = tuple[float, float]

COLORS = {"data": "#1f77b4", "model": "#d62728", "noise": "#7f7f7f", "exact": "#2ca02c"}
"""The book's colours for data, model samples, noise and exact (closed-form) quantities."""


def use_style() -> None:
    """Apply the book's matplotlib style (sizes, fonts, grid, colours)."""
    mpl.rcParams.update(
        {
            "figure.figsize": (6.0, 4.0),
            "figure.dpi": 90,
            "savefig.dpi": 90,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
            "axes.titlesize": 11,
            "legend.frameon": False,
            "image.cmap": "viridis",
            "animation.embed_limit": 40.0,  # MB; enough for the book's short animations
        }
    )


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def grid_points(
    xlim: Lims = (-4.0, 4.0),
    ylim: Optional[Lims] = None,
    n: int = 100,
    *,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """A regular ``n x n`` grid over ``xlim x ylim``.

    Returns
    -------
    (X, Y, points)
        ``X`` and ``Y`` of shape ``(n, n)`` (``np.meshgrid`` order, for ``contourf``/``quiver``) and the same points as
        a tensor of shape ``(n * n, 2)``.
    """
    n = positive_int(n, "n")
    ylim = xlim if ylim is None else ylim
    xs, ys = np.linspace(*xlim, n), np.linspace(*ylim, n)
    X, Y = np.meshgrid(xs, ys)
    pts = torch.tensor(np.stack([X.ravel(), Y.ravel()], axis=1), dtype=dtype, device=device)
    return X, Y, pts


def plot_samples(ax, x: torch.Tensor, *, color: str = COLORS["data"], s: float = 2.0, alpha: float = 0.5,
                 label: Optional[str] = None, lims: Optional[Lims] = None, **kwargs):
    """Scatter 2-D points ``x`` of shape ``(n, 2)`` on ``ax``; returns the artist."""
    as_points(x, "x", dim=2)
    p = _np(x)
    art = ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, color=color, label=label, linewidths=0, **kwargs)
    if lims is not None:
        ax.set_xlim(*lims)
        ax.set_ylim(*lims)
    ax.set_aspect("equal")
    return art


def plot_density(ax, log_prob: Callable[[torch.Tensor], torch.Tensor], *, lims: Lims = (-4.0, 4.0), n: int = 120,
                 log: bool = False, cmap: str = "viridis", dtype: torch.dtype = torch.float64, **kwargs):
    """Heat map of ``exp(log_prob(x))`` (or of ``log_prob`` when ``log=True``) over a square grid.

    ``log_prob`` maps points ``(m, 2)`` to log-densities ``(m,)``. Returns the ``pcolormesh`` artist.
    """
    X, Y, pts = grid_points(lims, n=n, dtype=dtype)
    with torch.no_grad():
        lp = log_prob(pts)
    if not isinstance(lp, torch.Tensor) or lp.shape != (pts.shape[0],):
        raise ValueError(f"log_prob must map points (m, 2) to a tensor of shape (m,); got {getattr(lp, 'shape', lp)}")
    z = _np(lp).reshape(n, n)
    art = ax.pcolormesh(X, Y, z if log else np.exp(z), cmap=cmap, shading="auto", **kwargs)
    ax.set_aspect("equal")
    ax.grid(False)
    return art


def plot_field(ax, velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], t: float, *,
               lims: Lims = (-4.0, 4.0), n: int = 21, color: str = "k", dtype: torch.dtype = torch.float32,
               device=None, **kwargs):
    """Quiver plot of a velocity field ``velocity(x, t)`` at time ``t`` on an ``n x n`` grid; returns the artist.

    When ``velocity`` is a ``torch.nn.Module`` with parameters, the grid takes the dtype and device of its
    parameters (a float64 model is evaluated on a float64 grid); otherwise ``dtype`` and ``device`` are used.
    """
    if isinstance(velocity, torch.nn.Module):
        param = next(velocity.parameters(), None)
        if param is not None:
            dtype, device = param.dtype, param.device
    X, Y, pts = grid_points(lims, n=n, dtype=dtype, device=device)
    with torch.no_grad():
        v = velocity(pts, torch.full((pts.shape[0],), float(t), dtype=dtype, device=device))
    if not isinstance(v, torch.Tensor) or v.shape != pts.shape:
        raise ValueError(f"velocity must return shape {tuple(pts.shape)}; got {getattr(v, 'shape', v)}")
    V = _np(v)
    art = ax.quiver(X, Y, V[:, 0].reshape(n, n), V[:, 1].reshape(n, n), color=color, angles="xy", **kwargs)
    ax.set_aspect("equal")
    return art


def plot_trajectories(ax, trajectory: torch.Tensor, *, n_show: int = 200, color: str = "0.3",
                      start_color: str = COLORS["noise"], end_color: str = COLORS["model"], lw: float = 0.5,
                      alpha: float = 0.4):
    """Draw ODE trajectories of shape ``(steps + 1, batch, 2)`` (as returned by ``integrate(..., trajectory=True)``).

    The first ``n_show`` paths are drawn as lines, their start points in ``start_color`` and end points in
    ``end_color``.
    """
    if not isinstance(trajectory, torch.Tensor) or trajectory.ndim != 3 or trajectory.shape[2] != 2:
        raise ValueError(
            f"trajectory must be a tensor of shape (steps + 1, batch, 2); got {getattr(trajectory, 'shape', trajectory)}"
        )
    tr = _np(trajectory[:, :n_show])
    ax.plot(tr[:, :, 0], tr[:, :, 1], color=color, lw=lw, alpha=alpha)
    ax.scatter(tr[0, :, 0], tr[0, :, 1], s=4, color=start_color, zorder=3, label="t = 0")
    ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=4, color=end_color, zorder=3, label="t = 1")
    ax.set_aspect("equal")


def animate(fig, update: Callable[[int], Sequence], frames: int, *, interval: int = 80, close: bool = True):
    """Animate ``fig`` by calling ``update(i)`` for ``i`` in ``range(frames)``; return an HTML player.

    The player is made by ``to_jshtml`` (frames embedded as images), so it plays in the static book. The
    figure is closed afterwards (``close=True``) so that notebooks do not also show a still copy.
    """
    from IPython.display import HTML

    frames = positive_int(frames, "frames")
    anim = animation.FuncAnimation(fig, update, frames=frames, interval=interval, blit=False)
    html = HTML(offline_player(anim.to_jshtml(default_mode="loop")))
    if close:
        plt.close(fig)
    return html


_CDN_LINK = re.compile(r'<link\s+rel="stylesheet"\s+href="https?://[^"]*"\s*/?>\s*')
_ICON = re.compile(r'<i class="fa ([a-z\- ]+)"></i>')
_ICON_TEXT = {
    "fa-minus": "&minus;", "fa-fast-backward": "&#8676;", "fa-step-backward": "&lsaquo;",
    "fa-play fa-flip-horizontal": "&#9664;", "fa-pause": "&#10074;&#10074;", "fa-play": "&#9654;",
    "fa-step-forward": "&rsaquo;", "fa-fast-forward": "&#8677;", "fa-plus": "+",
}


def offline_player(html: str) -> str:
    """Make a ``to_jshtml`` player self-contained.

    matplotlib's player links a Font Awesome stylesheet from a CDN for its button icons; offline (and in the
    book's browser test, which blocks the network) that request fails. This removes the link and replaces
    each icon by an equivalent Unicode character.
    """
    if not isinstance(html, str):
        raise TypeError(f"html must be a str (the output of to_jshtml); got {type(html).__name__}")
    html = _CDN_LINK.sub("", html)
    return _ICON.sub(lambda m: _ICON_TEXT.get(m.group(1).strip(), "&bull;"), html)
