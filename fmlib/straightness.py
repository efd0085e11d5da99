r"""How straight are ODE trajectories? Path energy, arc length and straightness.

A trajectory is a tensor of shape ``(steps + 1, batch, d)`` holding the states :math:`x(t_0), \dots, x(t_N)` of
``batch`` curves on a time grid :math:`t_0 < t_1 < \dots < t_N` (what
:func:`fmlib.solvers.integrate` returns with ``trajectory=True``; the default grid is uniform on ``[0, 1]``).
Between grid points a curve is taken to be linear, so every quantity below is the exact value for that
polygon and converges to the value of the smooth curve as the grid is refined.

With :math:`\Delta = x(t_N) - x(t_0)` the displacement and :math:`L = t_N - t_0` the duration,

* path energy :math:`E = \int_{t_0}^{t_N} \|\dot x(t)\|^2\, dt = \sum_n \|x_{n+1} - x_n\|^2 / (t_{n+1} - t_n)`;
* by Cauchy--Schwarz :math:`\|\Delta\|^2 = \|\int \dot x\, dt\|^2 \le L \int \|\dot x\|^2 dt = L\,E`, with equality
  exactly when the velocity is constant (a straight line at constant speed);
* straightness (a ratio in ``[0, 1]``, 1 for constant velocity)

  .. math:: S = \frac{\mathbb E\,\|\Delta\|^2}{L\, \mathbb E\,[E]};

* straightness gap (Liu et al., 2022, "rectified flow": zero for constant velocity)

  .. math:: G = \mathbb E \int_{t_0}^{t_N} \Big\|\dot x(t) - \frac{\Delta}{L}\Big\|^2 dt
              = \mathbb E\,[E] - \frac{\mathbb E\,\|\Delta\|^2}{L} \ \ge 0 .

Both penalise a change of speed as well as a change of direction: a straight segment run at varying speed
has :math:`S < 1`. The purely geometric ratio chord / arc length is :math:`\|\Delta\| / \text{arc length}`.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = ["squared_displacement", "path_energy", "arc_length", "straightness", "straightness_gap"]


def _check_trajectory(trajectory: object, name: str = "trajectory") -> torch.Tensor:
    if not isinstance(trajectory, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (steps + 1, batch, dim); got {type(trajectory).__name__}"
        )
    if trajectory.ndim != 3:
        raise ValueError(f"{name} must have shape (steps + 1, batch, dim); got shape {tuple(trajectory.shape)}")
    if not trajectory.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {trajectory.dtype}")
    if trajectory.shape[0] < 2:
        raise ValueError(
            f"{name} must hold at least 2 time points (shape (steps + 1, batch, dim) with steps >= 1); "
            f"got shape {tuple(trajectory.shape)}"
        )
    if trajectory.shape[1] == 0 or trajectory.shape[2] == 0:
        raise ValueError(f"{name} must have batch >= 1 and dim >= 1; got shape {tuple(trajectory.shape)}")
    if not torch.isfinite(trajectory).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return trajectory


def _check_times(times: object, n_points: int, like: torch.Tensor) -> torch.Tensor:
    """Return the time grid as a float64 tensor of shape ``(n_points,)`` (uniform on [0, 1] when ``None``)."""
    if times is None:
        return torch.linspace(0.0, 1.0, n_points, dtype=torch.float64, device=like.device)
    if not isinstance(times, torch.Tensor):
        raise TypeError(f"times must be None or a tensor of shape ({n_points},); got {type(times).__name__}")
    if times.shape != (n_points,):
        raise ValueError(
            f"times must have shape ({n_points},), one time per state of the trajectory; got {tuple(times.shape)}"
        )
    times = times.to(device=like.device, dtype=torch.float64)
    if not torch.isfinite(times).all():
        raise ValueError("times contains NaN or infinite values")
    dt = torch.diff(times)
    if not ((dt > 0).all() or (dt < 0).all()):
        raise ValueError("times must be strictly increasing (or strictly decreasing); got repeated or unsorted values")
    return times


def _check_reduction(reduction: object) -> str:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")
    return reduction


def squared_displacement(trajectory: torch.Tensor) -> torch.Tensor:
    r"""Squared end-to-end displacement :math:`\|x(t_N) - x(t_0)\|^2` of each curve.

    Parameters
    ----------
    trajectory:
        States of shape ``(steps + 1, batch, dim)``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``, in the trajectory's dtype.
    """
    tr = _check_trajectory(trajectory)
    return ((tr[-1] - tr[0]) ** 2).sum(-1)


def path_energy(trajectory: torch.Tensor, times: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Kinetic energy :math:`\int_{t_0}^{t_N} \|\dot x(t)\|^2 dt` of each curve (piecewise-linear in time).

    Computed as :math:`\sum_n \|x_{n+1} - x_n\|^2 / |t_{n+1} - t_n|`, exact for the polygon through the states.
    For :math:`x(t) = x_0 + t\, d` on ``[0, 1]`` it equals :math:`\|d\|^2`.

    Parameters
    ----------
    trajectory:
        States of shape ``(steps + 1, batch, dim)``.
    times:
        The times of the states, shape ``(steps + 1,)``, strictly monotone; ``None`` means the uniform grid
        on ``[0, 1]`` (the grid of ``integrate(..., t0=0., t1=1., trajectory=True)``).

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``, in the trajectory's dtype.
    """
    tr = _check_trajectory(trajectory)
    tt = _check_times(times, tr.shape[0], tr)
    dt = torch.diff(tt).abs().to(tr.dtype)
    steps_sq = (torch.diff(tr, dim=0) ** 2).sum(-1)  # (steps, batch)
    return (steps_sq / dt[:, None]).sum(0)


def arc_length(trajectory: torch.Tensor) -> torch.Tensor:
    r"""Length :math:`\sum_n \|x_{n+1} - x_n\|` of each polygonal curve, shape ``(batch,)``.

    Parameters
    ----------
    trajectory:
        States of shape ``(steps + 1, batch, dim)``.
    """
    tr = _check_trajectory(trajectory)
    return torch.linalg.vector_norm(torch.diff(tr, dim=0), dim=-1).sum(0)


def _duration(times: torch.Tensor) -> float:
    return float((times[-1] - times[0]).abs())


def straightness(
    trajectory: torch.Tensor, times: Optional[torch.Tensor] = None, reduction: str = "mean"
) -> Union[float, torch.Tensor]:
    r"""Straightness :math:`S = \mathbb E\|x(t_N) - x(t_0)\|^2 / (L\, \mathbb E\int\|\dot x\|^2 dt)`, in ``[0, 1]``.

    :math:`L = |t_N - t_0|`. ``S = 1`` exactly when every curve moves with constant velocity (straight, constant
    speed); a semicircle run at constant speed has :math:`S = 4/\pi^2`.

    Parameters
    ----------
    trajectory:
        States of shape ``(steps + 1, batch, dim)``.
    times:
        Times of shape ``(steps + 1,)`` (strictly monotone) or ``None`` for the uniform grid on ``[0, 1]``.
    reduction:
        ``"mean"``: the ratio of the batch means (a float); ``"none"``: the ratio for each curve, shape
        ``(batch,)``.

    Raises
    ------
    ValueError
        If a curve (``"none"``) or every curve (``"mean"``) has zero energy: the ratio is 0/0 for a point that
        does not move.
    """
    reduction = _check_reduction(reduction)
    tr = _check_trajectory(trajectory)
    tt = _check_times(times, tr.shape[0], tr)
    energy = path_energy(tr, tt)
    disp = squared_displacement(tr)
    length = _duration(tt)
    if reduction == "mean":
        if float(energy.mean()) <= 0:
            raise ValueError("trajectory does not move (zero path energy): straightness is undefined")
        return float(disp.mean() / (length * energy.mean()))
    if (energy <= 0).any():
        raise ValueError(
            f"trajectory has {int((energy <= 0).sum())} curve(s) that do not move (zero path energy): "
            "straightness is undefined for them"
        )
    return disp / (length * energy)


def straightness_gap(
    trajectory: torch.Tensor, times: Optional[torch.Tensor] = None, reduction: str = "mean"
) -> Union[float, torch.Tensor]:
    r"""Liu et al.'s straightness :math:`\int \mathbb E\|\dot x(t) - \Delta/L\|^2 dt = \mathbb E[E] - \mathbb E\|\Delta\|^2/L \ge 0`.

    Zero exactly for constant velocity; it has the units of a squared speed times time, so unlike
    :func:`straightness` it grows with the scale of the data.

    Parameters
    ----------
    trajectory:
        States of shape ``(steps + 1, batch, dim)``.
    times:
        Times of shape ``(steps + 1,)`` (strictly monotone) or ``None`` for the uniform grid on ``[0, 1]``.
    reduction:
        ``"mean"`` (a float) or ``"none"`` (one value per curve, shape ``(batch,)``).
    """
    reduction = _check_reduction(reduction)
    tr = _check_trajectory(trajectory)
    tt = _check_times(times, tr.shape[0], tr)
    gap = path_energy(tr, tt) - squared_displacement(tr) / _duration(tt)
    gap = gap.clamp_min(0.0)  # >= 0 exactly; clamp the rounding error
    return float(gap.mean()) if reduction == "mean" else gap
