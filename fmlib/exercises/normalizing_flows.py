r"""Checkers for the chapter *Normalizing flows*.

The exercise: implement the forward (normalizing) pass of an affine coupling layer in :math:`d = 4`
dimensions whose first two coordinates pass through,

.. math::

    z_{1:2} = x_{1:2}, \qquad z_{3:4} = x_{3:4} \odot e^{s(x_{1:2})} + t(x_{1:2}), \qquad
    \log\Big|\det\frac{\partial z}{\partial x}\Big| = \sum_{j=1}^{2} s_j(x_{1:2}),

as a function ``coupling_forward(x, scale_net, shift_net) -> (z, log_det)`` where ``scale_net`` and
``shift_net`` map a tensor of shape ``(batch, 2)`` to ``(batch, 2)``. :func:`check_coupling_forward` calls it with
fixed random networks and recognises the usual mistakes (log-det of the inverse, the determinant instead of its
log, no sum over coordinates, the pass-through half modified, shift and scale swapped).

A second exercise: the log-density of the one-dimensional two-layer flow :math:`x = \sinh(2 z_0 + 1)`,
:math:`z_0 \sim \mathcal N(0, 1)`, checked by :func:`check_two_layer_log_prob`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ._core import Feedback, call_student, compare_tensors, require_callable

__all__ = ["check_coupling_forward", "reference_coupling_forward", "make_coupling_nets", "check_two_layer_log_prob",
           "reference_two_layer_log_prob"]

Net = Callable[[torch.Tensor], torch.Tensor]


def make_coupling_nets(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Two small fixed random networks ``(scale_net, shift_net)``, each ``(batch, 2) -> (batch, 2)``, in float64.

    The same ``seed`` gives the same networks (they are built with a private generator).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    g = torch.Generator().manual_seed(seed)

    def net() -> nn.Module:
        m = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        return m.requires_grad_(False)

    return net(), net()


def reference_coupling_forward(x: torch.Tensor, scale_net: Net, shift_net: Net) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The correct answer: ``(z, log_det)`` with shapes ``(batch, 4)`` and ``(batch,)`` for ``x`` of shape
    ``(batch, 4)``; see the module docstring for the formula."""
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 4:
        raise ValueError(f"x must be a tensor of shape (batch, 4); got {getattr(x, 'shape', type(x).__name__)}")
    xa, xb = x[:, :2], x[:, 2:]
    s, t = scale_net(xa), shift_net(xa)
    return torch.cat([xa, xb * torch.exp(s) + t], dim=1), s.sum(dim=1)


def check_coupling_forward(coupling_forward: Callable) -> Feedback:
    r"""Check a student's ``coupling_forward(x, scale_net, shift_net) -> (z, log_det)``.

    The function is called on 64 float64 points of shape ``(64, 4)`` with the networks of
    :func:`make_coupling_nets`. ``z`` must have shape ``(64, 4)`` and ``log_det`` shape ``(64,)``.

    Returns
    -------
    Feedback
        Passed when ``z`` and ``log_det`` match the reference (absolute tolerance 1e-8); otherwise a message
        that names the part that is wrong and, for the usual mistakes, why.
    """
    bad = require_callable(
        coupling_forward, "coupling_forward", "coupling_forward(x, scale_net, shift_net) -> (z, log_det)"
    )
    if bad is not None:
        return bad
    scale_net, shift_net = make_coupling_nets(0)
    g = torch.Generator().manual_seed(1)
    x = 1.5 * torch.randn(64, 4, generator=g, dtype=torch.float64)
    z_ref, ld_ref = reference_coupling_forward(x, scale_net, shift_net)
    out, err = call_student(coupling_forward, x.clone(), scale_net, shift_net, name="coupling_forward")
    if err is not None:
        return err
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        length = f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""
        return Feedback(False, f"coupling_forward must return a pair (z, log_det); got {type(out).__name__}{length}.")
    z, log_det = out
    if not isinstance(z, torch.Tensor) or not isinstance(log_det, torch.Tensor):
        return Feedback(False, f"z and log_det must be tensors; got {type(z).__name__} and {type(log_det).__name__}.")
    z, log_det = z.detach().to(torch.float64), log_det.detach().to(torch.float64)
    if z.shape != z_ref.shape:
        return Feedback(False, f"z must have the shape of x, {tuple(x.shape)}; got {tuple(z.shape)}. Concatenate the "
                        "unchanged half and the transformed half along dim=1.")
    if not torch.allclose(z[:, :2], x[:, :2], atol=1e-8, rtol=0):
        return Feedback(False, "the first two coordinates must pass through unchanged (z[:, :2] == x[:, :2]); they "
                        "condition the transformation of the others, which is what makes the layer invertible.")
    s, t = scale_net(x[:, :2]), shift_net(x[:, :2])
    xb = x[:, 2:]
    if not torch.allclose(z[:, 2:], z_ref[:, 2:], atol=1e-8, rtol=0):
        if torch.allclose(z[:, 2:], (xb + t) * torch.exp(s), atol=1e-8, rtol=0):
            return Feedback(False, "you shifted before scaling: (x_B + t) * exp(s). This exercise asks for "
                            "x_B * exp(s) + t (scale, then shift).")
        if torch.allclose(z[:, 2:], xb * s + t, atol=1e-8, rtol=0):
            return Feedback(False, "the scale must be exp(s), not s: exp(s) > 0 keeps the layer invertible for any "
                            "network output, and makes log|det| simply the sum of s.")
        if torch.allclose(z[:, 2:], (xb - t) * torch.exp(-s), atol=1e-8, rtol=0):
            return Feedback(False, "you implemented the inverse, (z_B - t) * exp(-s). The forward pass is "
                            "x_B * exp(s) + t.")
        return compare_tensors(z[:, 2:], z_ref[:, 2:], what="the transformed half z[:, 2:]", atol=1e-8, rtol=0,
                               hint="z_B = x_B * exp(scale_net(x_A)) + shift_net(x_A) with x_A = x[:, :2].")
    if log_det.shape != ld_ref.shape:
        if log_det.shape == s.shape:
            return Feedback(False, f"log_det must hold one number per point, shape {tuple(ld_ref.shape)}; got "
                            f"{tuple(log_det.shape)}. Sum the log-scales over the transformed coordinates (dim=1).")
        if log_det.ndim == 0:
            return Feedback(False, f"log_det must hold one number per point, shape {tuple(ld_ref.shape)}; you "
                            "returned a single number (did you sum over the batch too?). Sum over dim=1 only.")
        return Feedback(False, f"log_det must have shape {tuple(ld_ref.shape)}; got {tuple(log_det.shape)}.")
    if torch.allclose(log_det, ld_ref, atol=1e-8, rtol=0):
        return compare_tensors(log_det, ld_ref, what="z and log_det", atol=1e-8, rtol=0)
    if torch.allclose(log_det, -ld_ref, atol=1e-8, rtol=0):
        return Feedback(False, "log_det has the wrong sign: -sum(s) is log|det| of the inverse map. The forward map "
                        "multiplies x_B by exp(s), so it stretches volumes by exp(sum(s)).")
    if torch.allclose(log_det, torch.exp(s).prod(dim=1), atol=1e-8, rtol=1e-8) or torch.allclose(
        log_det, torch.exp(ld_ref), atol=1e-8, rtol=1e-8
    ):
        return Feedback(False, "you returned the determinant exp(sum(s)) itself; return its logarithm, sum(s).")
    if torch.allclose(log_det, torch.exp(s).sum(dim=1), atol=1e-8, rtol=1e-8):
        return Feedback(False, "you summed exp(s); the log-determinant is the sum of the log-scales s themselves.")
    if torch.allclose(log_det, s.abs().log().sum(dim=1), atol=1e-8, rtol=1e-8):
        return Feedback(False, "you took log|s|; the diagonal of the Jacobian is exp(s), so log|det| = sum(s).")
    if torch.allclose(log_det, (s + t).sum(dim=1), atol=1e-8, rtol=1e-8):
        return Feedback(False, "the shift t does not change volumes (it only moves points); leave it out of log_det.")
    return compare_tensors(log_det, ld_ref, what="log_det", atol=1e-8, rtol=0,
                           hint="the Jacobian is triangular with diagonal (1, 1, exp(s_1), exp(s_2)).")


_TWO_LAYER_POINTS = (-3.0, -1.2, -0.3, 0.0, 0.4, 1.5, 4.0, 10.0)


def reference_two_layer_log_prob(x: torch.Tensor) -> torch.Tensor:
    r"""The correct answer of the two-layer exercise: :math:`\log p(x)` for :math:`x = \sinh(2 z_0 + 1)`,
    :math:`z_0 \sim \mathcal N(0, 1)`.

    With :math:`z_1 = \operatorname{asinh} x` and :math:`z_0 = (z_1 - 1)/2`,
    :math:`\log p(x) = \log\varphi(z_0) - \log 2 - \log\cosh z_1`. ``x`` is a float64 tensor of shape ``(n,)``; the
    result has the same shape.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 1:
        raise ValueError(f"x must be a tensor of shape (n,); got {getattr(x, 'shape', type(x).__name__)}")
    z1 = torch.asinh(x)
    z0 = (z1 - 1) / 2
    return -0.5 * z0**2 - 0.5 * math.log(2 * math.pi) - math.log(2.0) - torch.log(torch.cosh(z1))


def check_two_layer_log_prob(log_prob: Callable) -> Feedback:
    r"""Check a student's ``log_prob(x)`` for the flow :math:`x = f_2(f_1(z_0))`, :math:`f_1(z) = 2z + 1`,
    :math:`f_2(u) = \sinh u`, :math:`z_0 \sim \mathcal N(0, 1)`.

    The function is called on a float64 tensor of 8 points of shape ``(8,)`` and must return a tensor of the same
    shape. The usual mistakes are recognised: adding the log-determinants instead of subtracting them, evaluating
    :math:`\log\cosh` at the base point :math:`z_0` instead of the input :math:`z_1` of the second layer, forgetting
    the first layer's :math:`\log 2`, and forgetting the base density's normalising constant.

    Returns
    -------
    Feedback
        Passed when the output matches :func:`reference_two_layer_log_prob` (absolute tolerance 1e-8); otherwise
        a message naming the mistake.
    """
    bad = require_callable(log_prob, "log_prob", "log_prob(x) -> tensor of shape (n,)")
    if bad is not None:
        return bad
    x = torch.tensor(_TWO_LAYER_POINTS, dtype=torch.float64)
    expected = reference_two_layer_log_prob(x)
    out, err = call_student(log_prob, x.clone(), name="log_prob")
    if err is not None:
        return err
    if not isinstance(out, torch.Tensor):
        return Feedback(False, f"log_prob must return a tensor of shape {tuple(x.shape)}; got {type(out).__name__}.")
    out = out.detach().to(torch.float64)
    if out.shape != expected.shape:
        return Feedback(False, f"log_prob must return one number per point, shape {tuple(x.shape)}; got "
                        f"{tuple(out.shape)}.")
    z1 = torch.asinh(x)
    z0 = (z1 - 1) / 2
    base = -0.5 * z0**2 - 0.5 * math.log(2 * math.pi)
    mistakes = [
        (base + math.log(2.0) + torch.log(torch.cosh(z1)),
         "you added the log-determinants. In the generative direction each layer *divides* the density by "
         "|det J_f|: log p(x) = log pi_0(z_0) - sum_i log|det J_{f_i}(z_{i-1})|."),
        (base - math.log(2.0) - torch.log(torch.cosh(z0)),
         "log cosh is evaluated at the wrong point: each log-determinant belongs at the input of its own layer, "
         "and the input of f_2 is z_1 = asinh(x), not z_0."),
        (base - torch.log(torch.cosh(z1)),
         "the first layer's factor is missing: f_1(z) = 2z + 1 stretches by 2, so subtract log 2."),
        (-0.5 * z0**2 - math.log(2.0) - torch.log(torch.cosh(z1)),
         "the normalising constant of the base density is missing: log phi(z) = -z^2/2 - log(2 pi)/2."),
    ]
    if torch.allclose(out, expected, atol=1e-8, rtol=0):
        return compare_tensors(out, expected, what="log p(x)", atol=1e-8, rtol=0)
    for wrong, message in mistakes:
        if torch.allclose(out, wrong, atol=1e-8, rtol=0):
            return Feedback(False, message)
    return compare_tensors(out, expected, what="log p(x)", atol=1e-8, rtol=0,
                           hint="run the flow backwards: z_1 = asinh(x), z_0 = (z_1 - 1)/2, then subtract "
                                "log 2 and log cosh(z_1) from log phi(z_0).")
