r"""Explorers for probability paths: a live ``t`` slider in Jupyter and a static animation for the HTML book.

Both views draw the same two panels at a time :math:`t` for an affine Gaussian path and a 2-D target ``q``
(a :class:`~fmlib.targets.GaussianMixture` or a data tensor of shape ``(N, 2)``):

* **marginal** -- a heat map of :math:`p_t(x) = \int p_t(x \mid x_1)\, q(x_1)\, dx_1`, the exact marginal
  velocity :math:`u_t(x) = \mathbb E[u_t(X_t \mid X_1) \mid X_t = x]` as arrows, and particles that started as
  noise at :math:`t = 0` and follow :math:`\dot x = u_t(x)`;
* **conditional** -- for one data point :math:`x_1`, the heat map of
  :math:`p_t(x \mid x_1) = \mathcal N(\alpha_t x_1, \sigma_t^2 I)`, the conditional velocity
  :math:`u_t(x \mid x_1)` (coloured arrows) next to the marginal one (grey arrows), and the same noise
  particles moved by the conditional flow :math:`x_t = \alpha_t x_1 + \sigma_t x_0` (straight lines for
  CondOT).

:func:`scene_explorer` makes this picture one use of the book's generic explorer
(:class:`fmlib.explorer.Explorer`, parameter ``t``): displaying it shows a self-contained JavaScript player
(the static view, what the HTML book shows) and a live ``t`` slider (in a running Jupyter kernel).
:func:`path_animation` and :func:`path_explorer` return those two views on their own. :func:`render_frame`
draws one still frame with the same drawing code.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ._checks import as_points, positive_int, real
from .paths import AffinePath
from .explorer import Explorer
from .plotting import COLORS, grid_points
from .solvers import integrate
from .targets import GaussianMixture, marginal_log_prob, marginal_velocity

__all__ = ["PathScene", "prepare_scene", "render_frame", "scene_explorer", "path_animation", "path_explorer"]

Target = Union[GaussianMixture, torch.Tensor]
Lims = tuple[float, float]

_COND_COLOR = "#ff7f0e"
# Fixed margins (cheaper than a layout engine, which would run again for every animation frame).
_GRID = {"left": 0.01, "right": 0.99, "bottom": 0.01, "top": 0.92, "wspace": 0.04}


@dataclass
class PathScene:
    """Everything the explorer draws that does not depend on the frame (built by :func:`prepare_scene`).

    Attributes
    ----------
    path, q:
        The affine path and the target (``q`` in float64).
    x1:
        The data point the conditional panel conditions on, shape ``(1, 2)``.
    x0:
        The noise particles, shape ``(n_particles, 2)``.
    times:
        The solver's time grid, shape ``(steps + 1,)``, from 0 to ``t_max``.
    trajectory:
        The particles moved by the exact marginal field, shape ``(steps + 1, n_particles, 2)``.
    t_max:
        The last time shown (1 when the marginal path is defined there, slightly less otherwise).
    lims:
        Plot limits ``(lo, hi)`` used for both axes.
    speed_clip:
        Arrows longer than this speed are drawn at this length (so that fields near ``t = 1`` stay readable).
    """

    path: AffinePath
    q: Target
    x1: torch.Tensor
    x0: torch.Tensor
    times: torch.Tensor
    trajectory: torch.Tensor
    t_max: float
    lims: Lims
    speed_clip: float


def _check_path_target(path: Any, q: Any) -> tuple[AffinePath, Target]:
    if not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath (e.g. CondOTPath()); got {type(path).__name__}")
    if isinstance(q, GaussianMixture):
        if q.dim != 2:
            raise ValueError(f"q must be a 2-D target (dim = 2); got a GaussianMixture with dim = {q.dim}")
        return path, q.to(dtype=torch.float64)
    if isinstance(q, torch.Tensor):
        as_points(q, "q (data tensor)", dim=2)
        return path, q.to(dtype=torch.float64)
    raise TypeError(f"q must be a GaussianMixture or a data tensor of shape (N, 2); got {type(q).__name__}")


def _check_lims(lims: Any) -> Lims:
    if not isinstance(lims, (tuple, list)) or len(lims) != 2:
        raise ValueError(f"lims must be a pair (lo, hi) with lo < hi; got {lims!r}")
    lo, hi = real(lims[0], "lims[0]"), real(lims[1], "lims[1]")
    if not lo < hi:
        raise ValueError(f"lims must be a pair (lo, hi) with lo < hi; got {lims!r}")
    return lo, hi


def _device_of(q: Target) -> torch.device:
    return q.means.device if isinstance(q, GaussianMixture) else q.device


def _default_t_max(path: AffinePath, q: Target) -> float:
    """1 if the marginal path (and field) is defined at t = 1, else 0.98."""
    sigma_1 = float(path.schedule(1.0).sigma)
    return 1.0 if (sigma_1 > 0 or isinstance(q, GaussianMixture)) else 0.98


def prepare_scene(
    path: AffinePath,
    q: Target,
    *,
    x1: Optional[torch.Tensor] = None,
    n_particles: int = 300,
    steps: int = 100,
    t_max: Optional[float] = None,
    lims: Lims = (-4.0, 4.0),
    seed: int = 0,
) -> PathScene:
    r"""Precompute the particles and settings shared by every frame.

    Parameters
    ----------
    path:
        An affine Gaussian path (:class:`fmlib.paths.CondOTPath`, ...).
    q:
        The 2-D data distribution: a :class:`~fmlib.targets.GaussianMixture` or a data tensor ``(N, 2)``.
    x1:
        The data point of the conditional panel, shape ``(2,)`` or ``(1, 2)``. Default: the mean of the heaviest
        mixture component, or the first data point.
    n_particles:
        Number of noise particles :math:`x_0 \sim \mathcal N(0, I)` (drawn from a generator seeded with ``seed``).
    steps:
        RK4 steps used to move the particles with the exact marginal field from 0 to ``t_max``.
    t_max:
        Last time shown, in ``(0, 1]``. Default: 1 when :math:`p_1` has a density (``sigma_1 > 0`` or a mixture
        target), otherwise 0.98 (the empirical marginal collapses onto the data points at ``t = 1``).
    lims:
        Plot limits ``(lo, hi)`` for both axes.
    seed:
        Seed of the noise particles.

    Returns
    -------
    PathScene
    """
    path, q = _check_path_target(path, q)
    n_particles = positive_int(n_particles, "n_particles")
    steps = positive_int(steps, "steps")
    lims = _check_lims(lims)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    if t_max is None:
        t_max = _default_t_max(path, q)
    t_max = real(t_max, "t_max", positive=True)
    if t_max > 1:
        raise ValueError(f"t_max must lie in (0, 1]; got {t_max}")
    device = _device_of(q)
    if x1 is None:
        if isinstance(q, GaussianMixture):
            x1 = q.means[int(torch.argmax(q.weights))][None]
        else:
            x1 = q[:1]
    if not isinstance(x1, torch.Tensor):
        raise TypeError(f"x1 must be a tensor of shape (2,) or (1, 2); got {type(x1).__name__}")
    if x1.shape not in ((2,), (1, 2)):
        raise ValueError(f"x1 must have shape (2,) or (1, 2); got {tuple(x1.shape)}")
    x1 = x1.reshape(1, 2).to(device=device, dtype=torch.float64)
    g = torch.Generator().manual_seed(int(seed))
    x0 = torch.randn(n_particles, 2, generator=g, dtype=torch.float64).to(device)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return marginal_velocity(path, q, x, t)

    with torch.no_grad():
        trajectory = integrate(velocity, x0, 0.0, t_max, steps=steps, method="rk4", trajectory=True)
        # A speed scale for the arrows: a high quantile of |u_t| over the plot window at a few times.
        _, _, pts = grid_points(lims, n=15, dtype=torch.float64, device=device)
        speeds = [marginal_velocity(path, q, pts, t).norm(dim=1) for t in np.linspace(0, 0.9 * t_max, 4)]
        speed_clip = float(torch.quantile(torch.cat(speeds), 0.9))
    times = torch.linspace(0.0, t_max, steps + 1, dtype=torch.float64)
    return PathScene(path, q, x1, x0, times, trajectory.cpu(), float(t_max), lims, max(speed_clip, 1e-12))


def _clip_arrows(v: np.ndarray, clip: float) -> np.ndarray:
    speed = np.linalg.norm(v, axis=1, keepdims=True)
    return v * np.minimum(1.0, clip / np.maximum(speed, 1e-300))


def _frame_index(scene: PathScene, t: float) -> int:
    steps = scene.times.shape[0] - 1
    return int(round(t / scene.t_max * steps))


def _draw(scene: PathScene, axes: Sequence, t: float, *, density_res: int, quiver_res: int) -> list:
    """Draw both panels at time t on two axes (cleared first)."""
    path, q = scene.path, scene.q
    device = _device_of(q)
    lo, hi = scene.lims
    sched = path.schedule(float(t))
    alpha, sigma = float(sched.alpha), float(sched.sigma)
    X, Y, pts = grid_points(scene.lims, n=density_res, dtype=torch.float64, device=device)
    Xq, Yq, qpts = grid_points(scene.lims, n=quiver_res, dtype=torch.float64, device=device)
    spacing = (hi - lo) / (quiver_res - 1)
    scale = scene.speed_clip / (0.9 * spacing)  # speed_clip is drawn as 0.9 grid cells
    with torch.no_grad():
        dens = marginal_log_prob(path, q, pts, t).exp().cpu().numpy().reshape(density_res, density_res)
        u = _clip_arrows(marginal_velocity(path, q, qpts, t).cpu().numpy(), scene.speed_clip)
    particles = scene.trajectory[_frame_index(scene, t)].numpy()
    x1 = scene.x1.cpu().numpy()[0]
    artists = []
    ax_m, ax_c = axes
    for ax in axes:
        ax.clear()
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])

    # Marginal panel.
    extent = (lo, hi, lo, hi)
    artists.append(ax_m.imshow(dens, origin="lower", extent=extent, cmap="viridis", vmin=0.0, vmax=float(dens.max()),
                               interpolation="bilinear", aspect="equal"))
    artists.append(ax_m.quiver(Xq, Yq, u[:, 0].reshape(Xq.shape), u[:, 1].reshape(Xq.shape), color="white",
                               angles="xy", scale_units="xy", scale=scale, width=0.004, alpha=0.85))
    artists.append(ax_m.scatter(particles[:, 0], particles[:, 1], s=4, color=COLORS["model"], linewidths=0))
    ax_m.set_title(f"marginal $p_t$, $u_t$ and particles   (t = {t:.2f})", fontsize=9)

    # Conditional panel; thin contours of the marginal density give the context.
    if float(dens.max()) > 0:
        artists.append(ax_c.contour(X, Y, dens, levels=float(dens.max()) * np.array([0.05, 0.3]),
                                    colors=[COLORS["data"]], linewidths=0.6, alpha=0.7))
    if sigma > 1e-3:
        cond = torch.exp(-0.5 * ((pts - alpha * scene.x1) ** 2).sum(1) / sigma**2) / (2 * math.pi * sigma**2)
        artists.append(ax_c.imshow(cond.cpu().numpy().reshape(density_res, density_res), origin="lower",
                                   extent=extent, cmap="Greys", vmin=0.0, interpolation="bilinear", aspect="equal"))
        with torch.no_grad():
            uc = path.cond_velocity(qpts, scene.x1.expand_as(qpts), t).cpu().numpy()
        uc = _clip_arrows(uc, scene.speed_clip)
        artists.append(ax_c.quiver(Xq, Yq, u[:, 0].reshape(Xq.shape), u[:, 1].reshape(Xq.shape), color="0.6",
                                   angles="xy", scale_units="xy", scale=scale, width=0.004))
        artists.append(ax_c.quiver(Xq, Yq, uc[:, 0].reshape(Xq.shape), uc[:, 1].reshape(Xq.shape),
                                   color=_COND_COLOR, angles="xy", scale_units="xy", scale=scale, width=0.004))
    else:
        artists.append(ax_c.text(0.5, 0.04, r"$\sigma_t \approx 0$: $p_t(x|x_1) \approx \delta(x - x_1)$, all particles at $x_1$",
                                 transform=ax_c.transAxes, ha="center", fontsize=8))
    cond_particles = alpha * x1[None] + sigma * scene.x0.cpu().numpy()
    artists.append(ax_c.scatter(cond_particles[:, 0], cond_particles[:, 1], s=4, color=COLORS["model"],
                                linewidths=0))
    artists.append(ax_c.scatter([x1[0]], [x1[1]], marker="*", s=90, color=_COND_COLOR, edgecolors="k",
                                linewidths=0.5, zorder=4))
    ax_c.set_title(r"conditional on $x_1$ (star): $u_t(x|x_1)$ orange, $u_t(x)$ grey", fontsize=9)
    return artists


def _check_t(scene: PathScene, t: Any) -> float:
    t = real(t, "t", nonnegative=True)
    if t > scene.t_max + 1e-9:
        raise ValueError(f"t must lie in [0, t_max = {scene.t_max:g}]; got {t}")
    return t


def render_frame(
    scene: PathScene,
    t: float,
    *,
    figsize: tuple[float, float] = (7.6, 3.8),
    density_res: int = 90,
    quiver_res: int = 15,
) -> Figure:
    """Draw the two panels (marginal and conditional) at time ``t`` and return the matplotlib figure.

    Parameters
    ----------
    scene:
        From :func:`prepare_scene`.
    t:
        A time in ``[0, scene.t_max]``; particles are shown at the nearest solver time.
    figsize:
        Figure size in inches.
    density_res, quiver_res:
        Grid sizes of the heat maps and of the arrows (positive ints; ``quiver_res >= 2``).
    """
    if not isinstance(scene, PathScene):
        raise TypeError(f"scene must be a PathScene from prepare_scene(...); got {type(scene).__name__}")
    t = _check_t(scene, t)
    density_res = positive_int(density_res, "density_res")
    quiver_res = positive_int(quiver_res, "quiver_res")
    if quiver_res < 2:
        raise ValueError(f"quiver_res must be >= 2; got {quiver_res}")
    fig, axes = plt.subplots(1, 2, figsize=figsize, gridspec_kw=_GRID)
    _draw(scene, axes, t, density_res=density_res, quiver_res=quiver_res)
    return fig


def scene_explorer(
    scene: PathScene,
    *,
    frames: Optional[int] = None,
    figsize: tuple[float, float] = (7.6, 3.8),
    dpi: int = 72,
    density_res: int = 80,
    quiver_res: int = 15,
    title: str = "",
) -> Explorer:
    """The path explorer as one use of :class:`fmlib.explorer.Explorer`: a single parameter ``t``.

    Parameters
    ----------
    scene:
        From :func:`prepare_scene`.
    frames:
        Number of equally spaced times in ``[0, scene.t_max]`` (an int >= 2); default: every solver time of the
        scene (``steps + 1`` values).
    figsize, dpi, density_res, quiver_res:
        As in :func:`render_frame`; ``dpi`` is the resolution of the rendered images.
    title:
        One line shown above the views.

    Returns
    -------
    fmlib.explorer.Explorer
        Displaying it shows the static player over ``t`` and the live ``t`` slider; ``png(t=...)`` renders one
        frame (``t`` must be one of ``explorer.params["t"]``).
    """
    if not isinstance(scene, PathScene):
        raise TypeError(f"scene must be a PathScene from prepare_scene(...); got {type(scene).__name__}")
    if frames is None:
        times = scene.times.numpy()
    else:
        frames = positive_int(frames, "frames")
        if frames < 2:
            raise ValueError(f"frames must be >= 2; got {frames}")
        times = np.linspace(0.0, scene.t_max, frames)
    density_res = positive_int(density_res, "density_res")
    quiver_res = positive_int(quiver_res, "quiver_res")
    if quiver_res < 2:
        raise ValueError(f"quiver_res must be >= 2; got {quiver_res}")

    def draw(fig: Figure, t: float) -> None:
        axes = fig.subplots(1, 2, gridspec_kw=_GRID)
        _draw(scene, axes, float(t), density_res=density_res, quiver_res=quiver_res)

    values = [round(float(t), 6) for t in times]
    return Explorer(draw, {"t": values}, figsize=figsize, dpi=positive_int(dpi, "dpi"), title=title)


def path_animation(
    path: AffinePath,
    q: Target,
    *,
    frames: int = 30,
    interval: int = 150,
    dpi: int = 72,
    frame_format: str = "jpeg",
    figsize: tuple[float, float] = (7.6, 3.8),
    density_res: int = 80,
    quiver_res: int = 15,
    **scene_options: Any,
):
    """Static view of the path explorer: a player over ``frames`` equally spaced times in ``[0, t_max]``.

    It is the static view of :func:`scene_explorer` (:meth:`fmlib.explorer.Explorer.static`): the frames are
    rendered once and embedded in a JavaScript player that plays in the HTML book without a kernel and makes no
    network request. JPEG frames keep the page small (about 50 kB a frame at the defaults).

    Parameters
    ----------
    path, q:
        The path and the 2-D target, as in :func:`prepare_scene`.
    frames:
        Number of frames (positive int, at least 2).
    interval:
        Milliseconds between frames.
    dpi:
        Resolution of the embedded frames.
    frame_format:
        ``"jpeg"`` or ``"png"``.
    figsize, density_res, quiver_res:
        As in :func:`render_frame`.
    **scene_options:
        Passed to :func:`prepare_scene` (``x1``, ``n_particles``, ``steps``, ``t_max``, ``lims``, ``seed``).

    Returns
    -------
    IPython.display.HTML
        The player; ``.data`` holds the HTML string.
    """
    frames = positive_int(frames, "frames")
    if frames < 2:
        raise ValueError(f"frames must be >= 2; got {frames}")
    interval = positive_int(interval, "interval")
    if frame_format not in ("jpeg", "png"):
        raise ValueError(f"frame_format must be 'jpeg' or 'png'; got {frame_format!r}")
    scene = prepare_scene(path, q, **scene_options)
    explorer = scene_explorer(scene, frames=frames, figsize=figsize, dpi=dpi, density_res=density_res,
                              quiver_res=quiver_res)
    return explorer.static(interval=interval, frame_format=frame_format)


def path_explorer(
    path: AffinePath,
    q: Target,
    *,
    figsize: tuple[float, float] = (7.6, 3.8),
    dpi: int = 72,
    density_res: int = 90,
    quiver_res: int = 15,
    **scene_options: Any,
):
    """Live view of the path explorer: a ``t`` slider that redraws both panels (needs ``ipywidgets`` and a kernel).

    It is the live view of :func:`scene_explorer` (:meth:`fmlib.explorer.Explorer.live`), with one slider
    position per solver time of the scene. In the static HTML book a widget shows nothing (there is no kernel),
    so pair it with :func:`path_animation`, or display :func:`scene_explorer` to get both views.

    Parameters
    ----------
    path, q:
        The path and the 2-D target, as in :func:`prepare_scene`.
    figsize, dpi, density_res, quiver_res:
        Figure size (inches), resolution and grid sizes of the rendered image.
    **scene_options:
        Passed to :func:`prepare_scene` (``x1``, ``n_particles``, ``steps``, ``t_max``, ``lims``, ``seed``).

    Returns
    -------
    ipywidgets.VBox
        The slider above the image; ``.children`` is ``(slider, image)``.

    Raises
    ------
    ImportError
        If ``ipywidgets`` is not installed.
    """
    try:
        import ipywidgets  # noqa: F401
    except ImportError as err:  # pragma: no cover - ipywidgets is a dependency of the book
        raise ImportError("path_explorer needs ipywidgets (pip install ipywidgets); "
                          "use path_animation(...) for a static view") from err
    scene = prepare_scene(path, q, **scene_options)
    explorer = scene_explorer(scene, figsize=figsize, dpi=dpi, density_res=density_res, quiver_res=quiver_res)
    return explorer.live()
