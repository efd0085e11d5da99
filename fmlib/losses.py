r"""Training objectives.

The conditional flow matching loss regresses the network on the velocity of the conditional path,

.. math:: \mathcal L_{\mathrm{CFM}}(\theta) = \mathbb E_{t, x_0, x_1}
          \big\| v_\theta(x_t, t) - (\dot\alpha_t x_1 + \dot\sigma_t x_0) \big\|^2 ,
          \qquad x_t = \alpha_t x_1 + \sigma_t x_0 .

The denoising score matching loss (:func:`dsm_loss`) regresses a score model on the conditional score
:math:`\nabla_x \log p_t(x_t \mid x_1) = -x_0/\sigma_t`.

The (marginal) flow matching loss regresses it on the exact marginal velocity instead,

.. math:: \mathcal L_{\mathrm{FM}}(\theta) = \mathbb E_{t,\ x \sim p_t} \big\| v_\theta(x, t) - u_t(x) \big\|^2 ,

which is computable only when :math:`u_t` is known in closed form (:func:`fmlib.targets.marginal_velocity`).
Both have the same gradient in :math:`\theta`; so does any Bregman divergence
:math:`D_\Phi(u, v) = \Phi(u) - \Phi(v) - \langle \nabla\Phi(v), u - v\rangle` used in place of the squared error
(with the model in the second argument).
"""

from __future__ import annotations

from typing import Callable, Union

import torch

from ._checks import TimeLike, as_points, as_time, explain_mismatch, same_shape, value_scans_enabled
from .paths import AffinePath
from .targets import GaussianMixture, marginal_velocity

__all__ = [
    "cfm_loss",
    "squared_error",
    "cfm_loss_per_sample",
    "fm_loss",
    "bregman_divergence",
    "bregman_cfm_loss",
    "dsm_loss",
]

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch mean of the squared Euclidean error ``mean_i ||prediction_i - target_i||^2`` (a scalar)."""
    _check_output(prediction, target)
    return ((prediction - target) ** 2).sum(dim=1).mean()


def _check_output(prediction: object, like: torch.Tensor) -> None:
    if not isinstance(prediction, torch.Tensor):
        raise TypeError(f"the model must return a tensor; got {type(prediction).__name__}")
    if prediction.shape != like.shape:
        raise ValueError(
            f"the model output must have the shape of its input x {tuple(like.shape)}; got {tuple(prediction.shape)}"
        )


def cfm_loss(model: Model, path: AffinePath, x0: torch.Tensor, x1: torch.Tensor, t: TimeLike) -> torch.Tensor:
    r"""Conditional flow matching loss on one batch.

    Parameters
    ----------
    model:
        Called as ``model(x_t, t)`` with ``x_t`` of shape ``(batch, d)`` and ``t`` of shape ``(batch,)``.
    path:
        The probability path (:mod:`fmlib.paths`).
    x0, x1:
        Noise and data, shape ``(batch, d)``; row ``i`` of each forms a pair.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        The scalar :math:`\frac1B\sum_i \|v_\theta(x_{t_i}, t_i) - (\dot\alpha_{t_i} x_{1,i} + \dot\sigma_{t_i} x_{0,i})\|^2`.
    """
    if not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath; got {type(path).__name__}")
    as_points(x0, "x0")
    as_points(x1, "x1")
    same_shape(x0, x1, "x0", "x1")
    tt, a, s, da, ds = path._coefficients(x1, t)  # one schedule evaluation for x_t and its target
    if value_scans_enabled() and not torch.isfinite(ds).all():
        raise ValueError(f"{type(path).__name__}: d_sigma/dt is infinite at t = 1; use t < 1")
    x_t = a * x1 + s * x0
    try:
        prediction = model(x_t, tt)
    except RuntimeError as err:
        raise explain_mismatch(err, "model(x_t, t)", x_t) from err
    return squared_error(prediction, da * x1 + ds * x0)


def _check_path(path: object) -> None:
    if not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath; got {type(path).__name__}")


def _check_model(model: object) -> None:
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t); got {type(model).__name__}")


def cfm_loss_per_sample(
    model: Model, path: AffinePath, x0: torch.Tensor, x1: torch.Tensor, t: TimeLike
) -> torch.Tensor:
    r"""Per-sample conditional flow matching errors (the terms that :func:`cfm_loss` averages).

    Arguments as in :func:`cfm_loss`.

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``: entry ``i`` is
        :math:`\|v_\theta(x_{t_i}, t_i) - (\dot\alpha_{t_i} x_{1,i} + \dot\sigma_{t_i} x_{0,i})\|^2`. Weighting
        these by :math:`w(t_i)` and averaging gives the time-weighted loss
        :math:`\mathbb E_{t\sim U}[w(t)\,\cdot]`, which equals the loss with times drawn from the density :math:`w`.
    """
    _check_path(path)
    _check_model(model)
    as_points(x0, "x0")
    as_points(x1, "x1")
    same_shape(x0, x1, "x0", "x1")
    tt = as_time(t, x1)
    x_t = path.sample(x0, x1, tt)
    target = path.target_velocity(x0, x1, tt)
    pred = model(x_t, tt)
    _check_output(pred, target)
    return ((pred - target) ** 2).sum(dim=1)


def fm_loss(
    model: Model,
    path: AffinePath,
    target: Union[GaussianMixture, torch.Tensor],
    x: torch.Tensor,
    t: TimeLike,
) -> torch.Tensor:
    r"""(Marginal) flow matching loss on one batch, with the exact marginal velocity as the regression target.

    Parameters
    ----------
    model:
        Called as ``model(x, t)`` with ``x`` of shape ``(batch, d)`` and ``t`` of shape ``(batch,)``.
    path:
        The probability path (:mod:`fmlib.paths`).
    target:
        The data distribution ``q``: a :class:`fmlib.targets.GaussianMixture`, or a data tensor ``(N, d)`` (the
        empirical distribution; every evaluation then costs ``O(N)`` per point).
    x:
        Points of shape ``(batch, d)``, meant to be samples of the marginal path ``p_t`` (e.g.
        ``path.sample(x0, x1, t)``).
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        The scalar :math:`\frac1B\sum_i \|v_\theta(x_i, t_i) - u_{t_i}(x_i)\|^2` with :math:`u_t` from
        :func:`fmlib.targets.marginal_velocity`.
    """
    _check_path(path)
    _check_model(model)
    if not isinstance(target, (GaussianMixture, torch.Tensor)):
        raise TypeError(
            f"target must be a GaussianMixture or a data tensor of shape (N, d); got {type(target).__name__}"
        )
    as_points(x, "x")
    tt = as_time(t, x)
    u = marginal_velocity(path, target, x, tt)
    return squared_error(model(x, tt), u)


_DSM_WEIGHTINGS = ("noise", "none")


def dsm_loss(
    model: Model, path: AffinePath, x0: torch.Tensor, x1: torch.Tensor, t: TimeLike, weighting: str = "noise"
) -> torch.Tensor:
    r"""Denoising score matching loss on one batch, for a score model :math:`s_\theta(x, t)`.

    At :math:`x_t = \alpha_t x_1 + \sigma_t x_0` the conditional score of a Gaussian path is
    :math:`\nabla_x \log p_t(x_t \mid x_1) = -x_0/\sigma_t`, so

    * ``weighting="noise"`` (default): :math:`\frac1B\sum_i \sigma_{t_i}^2 \|s_\theta(x_{t_i}, t_i) + x_{0,i}/\sigma_{t_i}\|^2
      = \frac1B\sum_i \|\sigma_{t_i} s_\theta(x_{t_i}, t_i) + x_{0,i}\|^2`, the :math:`\sigma_t^2`-weighted loss, equal
      to noise prediction with :math:`\hat\varepsilon = -\sigma_t s_\theta`; finite for every ``t`` in ``[0, 1]``;
    * ``weighting="none"``: :math:`\frac1B\sum_i \|s_\theta(x_{t_i}, t_i) + x_{0,i}/\sigma_{t_i}\|^2`, the plain loss,
      whose target has mean square :math:`d/\sigma_t^2` and explodes where :math:`\sigma_t \to 0`.

    Parameters
    ----------
    model:
        The score model, called as ``model(x_t, t)`` with ``x_t`` of shape ``(batch, d)`` and ``t`` of shape
        ``(batch,)``; returns ``(batch, d)``.
    path:
        An affine Gaussian path (:mod:`fmlib.paths`).
    x0, x1:
        Noise and data, shape ``(batch, d)``; row ``i`` of each forms a pair.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.
    weighting:
        ``"noise"`` or ``"none"`` (see above).

    Raises
    ------
    ValueError
        For an unknown ``weighting``, or ``weighting="none"`` at a time where ``sigma_t = 0`` (the target is
        infinite there).
    """
    _check_path(path)
    _check_model(model)
    if weighting not in _DSM_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {_DSM_WEIGHTINGS}; got {weighting!r}")
    as_points(x0, "x0")
    as_points(x1, "x1")
    same_shape(x0, x1, "x0", "x1")
    tt = as_time(t, x1)
    sigma = path.schedule(tt)[1][:, None]
    x_t = path.sample(x0, x1, tt)
    pred = model(x_t, tt)
    _check_output(pred, x_t)
    if weighting == "noise":
        return squared_error(sigma * pred, -x0)
    if bool((sigma == 0).any()):
        raise ValueError(
            "weighting='none' needs sigma_t > 0: the conditional score -x0/sigma_t is infinite where sigma_t = 0 "
            f"(got {int((sigma == 0).sum())} such time(s)); use t < 1, a path with sigma_min > 0, or weighting='noise'"
        )
    return squared_error(pred, -x0 / sigma)


ConvexFunction = Callable[[torch.Tensor], torch.Tensor]


def _eval_phi(phi: ConvexFunction, v: torch.Tensor, name: str) -> torch.Tensor:
    out = phi(v)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"phi must return a tensor of shape (batch,); got {type(out).__name__} for {name}")
    if out.shape != (v.shape[0],):
        raise ValueError(
            f"phi must map points of shape (batch, d) to values of shape (batch,) = ({v.shape[0]},); "
            f"got shape {tuple(out.shape)} for {name}"
        )
    return out


def bregman_divergence(phi: ConvexFunction, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Bregman divergence :math:`D_\Phi(u, v) = \Phi(u) - \Phi(v) - \langle \nabla\Phi(v),\, u - v \rangle`, row by row.

    :math:`\nabla\Phi(v)` is computed with autograd (with ``create_graph`` when ``v`` requires a gradient, so the
    result can be differentiated again, e.g. through a model output ``v = v_\theta(x, t)``). For a strictly convex
    twice-differentiable :math:`\Phi`, :math:`D_\Phi(u, v) \ge 0` with equality iff ``u = v``, and
    :math:`\nabla_v D_\Phi(u, v) = \nabla^2\Phi(v)\,(v - u)`, which is affine in ``u``: this is why regressing a
    model (in the second argument) on conditional targets recovers their conditional mean.
    :math:`\Phi(v) = \|v\|^2` gives the squared Euclidean distance :math:`\|u - v\|^2`.

    Parameters
    ----------
    phi:
        A convex function written with torch operations, mapping points ``(batch, d)`` to values ``(batch,)``.
    u, v:
        Tensors of shape ``(batch, d)``: ``u`` the target, ``v`` the prediction.

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``.
    """
    if not callable(phi):
        raise TypeError(f"phi must be callable as phi(v) -> (batch,); got {type(phi).__name__}")
    as_points(u, "u")
    as_points(v, "v")
    same_shape(u, v, "u", "v")
    with torch.enable_grad():
        keep_graph = v.requires_grad
        vv = v if keep_graph else v.detach().requires_grad_(True)
        phi_v = _eval_phi(phi, vv, "v")
        (grad_v,) = torch.autograd.grad(phi_v.sum(), vv, create_graph=keep_graph)
    if not keep_graph:
        phi_v = phi_v.detach()
    phi_u = _eval_phi(phi, u, "u")
    return phi_u - phi_v - (grad_v * (u - v)).sum(dim=1)


def bregman_cfm_loss(
    model: Model,
    path: AffinePath,
    x0: torch.Tensor,
    x1: torch.Tensor,
    t: TimeLike,
    phi: ConvexFunction,
) -> torch.Tensor:
    r"""Conditional flow matching with a Bregman divergence: :math:`\frac1B\sum_i D_\Phi(u_i,\ v_\theta(x_{t_i}, t_i))`.

    The conditional target :math:`u_i = \dot\alpha_{t_i} x_{1,i} + \dot\sigma_{t_i} x_{0,i}` goes in the FIRST
    argument and the model in the second; then the gradient equals that of the marginal loss
    :math:`\mathbb E\, D_\Phi(u_t(x), v_\theta(x, t))`. With ``phi = lambda v: (v ** 2).sum(1)`` this is
    :func:`cfm_loss`. Other arguments as in :func:`cfm_loss`.

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    _check_path(path)
    _check_model(model)
    as_points(x0, "x0")
    as_points(x1, "x1")
    same_shape(x0, x1, "x0", "x1")
    tt = as_time(t, x1)
    x_t = path.sample(x0, x1, tt)
    target = path.target_velocity(x0, x1, tt)
    pred = model(x_t, tt)
    _check_output(pred, target)
    return bregman_divergence(phi, target, pred).mean()
