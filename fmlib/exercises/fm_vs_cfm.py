r"""Checkers for the chapter *Flow matching vs conditional flow matching*.

* :func:`check_cfm_loss` -- the student writes the conditional flow matching loss for any affine path,
  ``my_cfm_loss(model, path, x0, x1, t) -> scalar``;
* :func:`check_bregman_divergence` -- the student writes
  :math:`D_\Phi(u, v) = \Phi(u) - \Phi(v) - \langle\nabla\Phi(v), u - v\rangle`,
  ``my_bregman(phi, u, v) -> (batch,)``.

Both compare with the reference on fixed inputs and, when the answer is wrong, test it against the usual
mistakes to say which one was made.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..losses import bregman_divergence, cfm_loss
from ..paths import AffinePath, CondOTPath, CosinePath, VPPath
from ._core import Feedback, call_student, compare_tensors, require_callable

__all__ = ["check_cfm_loss", "check_bregman_divergence", "PHIS"]

_DIM = 3
_BATCH = 16


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(_BATCH, _DIM, generator=g, dtype=torch.float64)
    x1 = 2.0 * torch.randn(_BATCH, _DIM, generator=g, dtype=torch.float64) + 1.0
    t = 0.05 + 0.9 * torch.rand(_BATCH, generator=g, dtype=torch.float64)
    return x0, x1, t


class _LinearModel:
    """A fixed affine 'network' ``v(x, t) = x A + t b + c`` used to test losses."""

    def __init__(self, seed: int = 1) -> None:
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(_DIM, _DIM, generator=g, dtype=torch.float64)
        self.b = torch.randn(_DIM, generator=g, dtype=torch.float64)
        self.c = torch.randn(_DIM, generator=g, dtype=torch.float64)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ self.A + t[:, None] * self.b + self.c


def _cfm_variant(model, path: AffinePath, x0, x1, t, *, xt: str = "path", target: str = "path",
                 reduce: str = "sum-mean") -> torch.Tensor:
    s = path.schedule(t)
    a, sg, da, ds = (v[:, None] for v in s)
    points = {
        "path": a * x1 + sg * x0,
        "linear": t[:, None] * x1 + (1 - t[:, None]) * x0,
        "swapped": t[:, None] * x0 + (1 - t[:, None]) * x1,
        "x0": x0,
        "x1": x1,
    }[xt]
    goal = {
        "path": da * x1 + ds * x0,
        "x1-x0": x1 - x0,
        "x0-x1": -(da * x1 + ds * x0),
        "x1": x1,
    }[target]
    err = (model(points, t) - goal) ** 2
    return {
        "sum-mean": err.sum(1).mean(),
        "mean-mean": err.mean(),
        "sum-sum": err.sum(),
        "norm": err.sum(1).sqrt().mean(),
    }[reduce]


_CFM_MISTAKES = [
    (dict(reduce="mean-mean"),
     "it equals the reference divided by the dimension d = {d}: you averaged the squared error over the "
     "coordinates. The loss uses the squared Euclidean norm, a SUM over coordinates, then a mean over the batch: "
     "((pred - target) ** 2).sum(dim=1).mean()."),
    (dict(reduce="sum-sum"),
     "it equals the reference times the batch size: you summed over the batch. Average over the batch instead."),
    (dict(reduce="norm"),
     "it is the mean of the (unsquared) Euclidean norms ||pred - target||. Square them: the norm itself is not "
     "a Bregman divergence, and with it the CFM loss no longer has the FM loss's gradient."),
    (dict(target="x1-x0"),
     "you regressed on x1 - x0. That is the conditional velocity only for the CondOT path with sigma_min = 0; "
     "for a general affine path x_t = alpha_t x1 + sigma_t x0 the target is d/dt x_t = d_alpha_t x1 + "
     "d_sigma_t x0 (use path.target_velocity(x0, x1, t) or path.schedule(t))."),
    (dict(target="x0-x1"),
     "the target has the wrong sign: the velocity points from noise to data, d/dt x_t = d_alpha_t x1 + d_sigma_t x0."),
    (dict(xt="linear"),
     "you built x_t = t x1 + (1 - t) x0 for every path. Use the path's own schedule: x_t = alpha_t x1 + sigma_t x0 "
     "(path.sample(x0, x1, t))."),
    (dict(xt="swapped"),
     "you used x_t = t x0 + (1 - t) x1, the convention with data at t = 0. In this book data sit at t = 1: "
     "x_t = alpha_t x1 + sigma_t x0."),
    (dict(xt="x1"), "you evaluated the model at the data x1; evaluate it at the interpolated point x_t."),
    (dict(xt="x0"), "you evaluated the model at the noise x0; evaluate it at the interpolated point x_t."),
    (dict(target="x1"), "you regressed on the data x1 (that is x1-prediction, not the velocity)."),
]


def check_cfm_loss(fn: Callable) -> Feedback:
    """Check ``fn(model, path, x0, x1, t)``: the batch-mean CFM loss for any affine path.

    Tested on the CondOT path (``sigma_min = 0`` and ``0.1``), the cosine path and the VP path in 3-D with a fixed
    affine model; ``t`` is a tensor of shape ``(batch,)``. Returns :class:`~fmlib.exercises.Feedback`.
    """
    bad = require_callable(fn, "your CFM loss", "(model, path, x0, x1, t) -> scalar tensor")
    if bad is not None:
        return bad
    model = _LinearModel()
    x0, x1, t = _inputs()
    paths = [("CondOTPath()", CondOTPath()), ("CondOTPath(sigma_min=0.1)", CondOTPath(0.1)),
             ("CosinePath()", CosinePath()), ("VPPath()", VPPath())]
    for name, path in paths:
        got, err = call_student(fn, model, path, x0, x1, t, name="your CFM loss")
        if err is not None:
            return err
        expected = cfm_loss(model, path, x0, x1, t)
        if (isinstance(got, torch.Tensor) and got.ndim > 0 and got.numel() == 1
                and torch.allclose(got.detach().reshape(()).to(expected), expected, rtol=1e-7, atol=1e-9)):
            return Feedback(False, f"on {name} your loss has the right value {float(got):.6g} but shape "
                                   f"{tuple(got.shape)}; return a scalar (shape ()), e.g. with .mean() "
                                   "without keepdim or .squeeze().")
        if isinstance(got, torch.Tensor) and got.shape == (_BATCH,):
            return Feedback(False, f"on {name} your loss has shape ({_BATCH},), one value per sample; "
                                   "return their mean over the batch (a scalar).")
        fb = compare_tensors(got, expected, what=f"the CFM loss on {name}", atol=1e-9, rtol=1e-7)
        if fb:
            continue
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            value = got.detach().reshape(()).to(torch.float64)
            for kwargs, why in _CFM_MISTAKES:
                wrong = _cfm_variant(model, path, x0, x1, t, **kwargs)
                if torch.allclose(value, wrong, rtol=1e-7, atol=1e-9) and not torch.allclose(wrong, expected):
                    return Feedback(False, f"on {name} your loss is {float(value):.6g} but should be "
                                           f"{float(expected):.6g}: " + why.format(d=_DIM))
        return Feedback(False, fb.message + " Recompute x_t = alpha_t x1 + sigma_t x0 and the target "
                                            "d_alpha_t x1 + d_sigma_t x0 from path.schedule(t).")
    return Feedback(True, "your CFM loss matches fmlib.losses.cfm_loss on the CondOT (sigma_min = 0 and 0.1), "
                          "cosine and VP paths.")


# -- Bregman divergences -------------------------------------------------------------------------------------

def _phi_square(v: torch.Tensor) -> torch.Tensor:
    return (v**2).sum(dim=1)


def _phi_exp(v: torch.Tensor) -> torch.Tensor:
    return torch.exp(v).sum(dim=1)


def _phi_logcosh(v: torch.Tensor) -> torch.Tensor:
    return (v.abs() + torch.nn.functional.softplus(-2 * v.abs()) - torch.log(torch.tensor(2.0, dtype=v.dtype))).sum(1)


def _phi_quartic(v: torch.Tensor) -> torch.Tensor:
    return 0.25 * (v**2).sum(dim=1) ** 2


PHIS = {
    "Phi(v) = sum exp(v_i)": _phi_exp,
    "Phi(v) = sum log cosh(v_i)": _phi_logcosh,
    "Phi(v) = ||v||^4 / 4": _phi_quartic,
    "Phi(v) = ||v||^2": _phi_square,
}
"""The strictly convex functions the Bregman checker tries (name -> ``phi(v)`` of shape ``(batch,)``)."""


def _grad(phi, v):
    with torch.enable_grad():
        vv = v.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(phi(vv).sum(), vv)
    return g


def _bregman_variants(phi, u, v):
    gv, gu = _grad(phi, v), _grad(phi, u)
    lin_v = (gv * (u - v)).sum(1)
    return [
        (phi(u) - phi(v) + lin_v,
         "the linear term has the wrong sign. D(u, v) = Phi(u) - Phi(v) - <grad Phi(v), u - v>: Phi(u) minus its "
         "first-order Taylor expansion around v."),
        (phi(u) - phi(v) - (gu * (u - v)).sum(1),
         "you evaluated the gradient at u. The Taylor expansion is taken around v: use grad Phi(v)."),
        (phi(v) - phi(u) - (gu * (v - u)).sum(1),
         "you computed D(v, u): the arguments are swapped. The target u comes first and the prediction v second; "
         "only the second argument enjoys the affine invariance of the gradient."),
        (phi(u) - lin_v, "the term -Phi(v) is missing."),
        (phi(u) - phi(v) - (gv * (v - u)).sum(1),
         "you wrote <grad Phi(v), v - u>; the linear term is <grad Phi(v), u - v> with a minus sign in front."),
    ]


def check_bregman_divergence(fn: Callable) -> Feedback:
    """Check ``fn(phi, u, v)`` -> shape ``(batch,)``: :math:`\\Phi(u) - \\Phi(v) - \\langle\\nabla\\Phi(v), u - v\\rangle`.

    Tried with the functions in :data:`PHIS` on fixed 3-D inputs; also checks that the result can be
    differentiated in ``v`` with the right gradient :math:`\\nabla^2\\Phi(v)(v - u)` (so it can train a model).
    """
    bad = require_callable(fn, "your Bregman divergence", "(phi, u, v) -> tensor of shape (batch,)")
    if bad is not None:
        return bad
    g = torch.Generator().manual_seed(3)
    u = torch.randn(_BATCH, _DIM, generator=g, dtype=torch.float64)
    v = torch.randn(_BATCH, _DIM, generator=g, dtype=torch.float64)
    for name, phi in PHIS.items():
        got, err = call_student(fn, phi, u.clone(), v.clone(), name="your Bregman divergence")
        if err is not None:
            return err
        expected = bregman_divergence(phi, u, v)
        if isinstance(got, torch.Tensor) and got.numel() == 1 and _BATCH > 1:
            return Feedback(False, f"with {name} your divergence is a single number; return one value per row, "
                                   f"shape ({_BATCH},) (sum over the coordinates only, not over the batch).")
        fb = compare_tensors(got, expected, what=f"D(u, v) with {name}", atol=1e-9, rtol=1e-7)
        if fb:
            continue
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            gd = got.detach().to(torch.float64)
            for wrong, why in _bregman_variants(phi, u, v):
                if torch.allclose(gd, wrong, rtol=1e-7, atol=1e-9):
                    return Feedback(False, f"with {name}: " + why)
        return Feedback(False, fb.message + " Recall D(u, v) = Phi(u) - [Phi(v) + <grad Phi(v), u - v>].")
    # the gradient in v must flow (it is what trains the model)
    phi = PHIS["Phi(v) = sum log cosh(v_i)"]
    vv = v.clone().requires_grad_(True)
    with torch.enable_grad():
        got, err = call_student(fn, phi, u.clone(), vv, name="your Bregman divergence")
        if err is not None:
            return err
        if not isinstance(got, torch.Tensor) or not got.requires_grad:
            return Feedback(False, "your values are right, but the result does not depend on v through autograd, "
                                   "so it cannot train a model. Compute grad Phi(v) with "
                                   "torch.autograd.grad(..., create_graph=True) and do not detach v.")
        (grad_got,) = torch.autograd.grad(got.sum(), vv, allow_unused=True)
    hess_diag = 1.0 / torch.cosh(v) ** 2  # Hessian of sum log cosh
    grad_expected = hess_diag * (v - u)
    if grad_got is None or grad_got.abs().max() < 1e-12:
        return Feedback(False, "your values are right, but their gradient in v is zero: you detached grad Phi(v) "
                               "(torch.autograd.grad without create_graph=True, or .detach()). With a constant g = grad Phi(v), the "
                               "derivative of -Phi(v) + <g, v> in v is -grad Phi(v) + g = 0, so a model trained with "
                               "it does not move.")
    fb = compare_tensors(grad_got, grad_expected, what="the gradient of sum_i D(u_i, v_i) in v", atol=1e-8, rtol=1e-6,
                         hint="it should be Hess Phi(v) (v - u); keep the graph of grad Phi(v) (create_graph=True).")
    if not fb:
        return fb
    return Feedback(True, "your Bregman divergence matches fmlib.losses.bregman_divergence for "
                          f"{len(PHIS)} convex functions, and its gradient in v is Hess Phi(v) (v - u).")
