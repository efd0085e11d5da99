r"""Checkers for the chapter *Continuous normalizing flows*.

* :func:`check_rk4_step`: one step of the classical fourth-order Runge--Kutta method,
  ``rk4_step(velocity, x, t, h) -> x_next``.
* :func:`check_hutchinson_estimate`: one Hutchinson probe of the divergence,
  ``estimate(velocity, x, t, eps) -> eps^T (dv/dx) eps`` per row.

Each checker runs the student's function on small test problems whose answers are known, and when the answer is
wrong it compares it with the outputs of typical mistakes (wrong stage weights, stage times ``t`` instead of
``t + h/2``, a missing Jacobian, ...) to say which one was made.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ._core import Feedback, call_student, compare_tensors, require_callable

__all__ = ["check_rk4_step", "check_hutchinson_estimate", "reference_rk4_step", "reference_hutchinson_estimate"]

DT = torch.float64


# -- RK4 ----------------------------------------------------------------------------------------------------


def reference_rk4_step(velocity: Callable, x: torch.Tensor, t: torch.Tensor, h: float) -> torch.Tensor:
    r"""One classical RK4 step for ``dx/dt = velocity(x, t)`` (``x``: ``(batch, dim)``, ``t``: ``(batch,)``).

    .. math::
        k_1 = v(x, t),\quad k_2 = v(x + \tfrac h2 k_1, t + \tfrac h2),\quad k_3 = v(x + \tfrac h2 k_2, t + \tfrac h2),
        \quad k_4 = v(x + h k_3, t + h),\qquad x_{\rm next} = x + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4).
    """
    return _rk4_variant(velocity, x, t, h)


def _rk4_variant(v, x, t, h, *, c=(0.5, 0.5, 1.0), a=(0.5, 0.5, 1.0), w=(1, 2, 2, 1), wsum=6.0, k3_from="k2",
                 k4_from="k3"):
    """An explicit four-stage scheme; the defaults give RK4 and other arguments give typical mistakes."""
    k1 = v(x, t)
    k2 = v(x + a[0] * h * k1, t + c[0] * h)
    k3 = v(x + a[1] * h * {"k1": k1, "k2": k2}[k3_from], t + c[1] * h)
    k4 = v(x + a[2] * h * {"k1": k1, "k2": k2, "k3": k3}[k4_from], t + c[2] * h)
    return x + (h / wsum) * (w[0] * k1 + w[1] * k2 + w[2] * k3 + w[3] * k4)


_RK4_MISTAKES: dict[str, tuple[Callable, str]] = {
    "euler": (lambda v, x, t, h: x + h * v(x, t),
              "Your step equals one Euler step x + h v(x, t): the stages k2, k3, k4 are missing or unused."),
    "midpoint": (lambda v, x, t, h: x + h * v(x + 0.5 * h * v(x, t), t + 0.5 * h),
                 "Your step equals the midpoint method x + h k2: combine all four stages as (h/6)(k1 + 2k2 + 2k3 + k4)."),
    "equal weights": (lambda v, x, t, h: _rk4_variant(v, x, t, h, w=(1, 1, 1, 1), wsum=4.0),
                      "The stage weights are wrong: you used (k1 + k2 + k3 + k4)/4; RK4 uses (k1 + 2 k2 + 2 k3 + k4)/6."),
    "weights without /6": (lambda v, x, t, h: _rk4_variant(v, x, t, h, wsum=1.0),
                           "You forgot to divide by 6: the update is x + (h/6)(k1 + 2 k2 + 2 k3 + k4)."),
    "swapped weights": (lambda v, x, t, h: _rk4_variant(v, x, t, h, w=(2, 1, 1, 2)),
                        "The weights are swapped: the two midpoint stages k2 and k3 get weight 2, the end stages k1 and k4 weight 1."),
    "stage times t": (lambda v, x, t, h: _rk4_variant(v, x, t, h, c=(0.0, 0.0, 0.0)),
                      "Every stage is evaluated at time t. k2 and k3 belong at t + h/2 and k4 at t + h."),
    "midpoint stages at t": (lambda v, x, t, h: _rk4_variant(v, x, t, h, c=(0.0, 0.0, 1.0)),
                             "k2 and k3 are evaluated at time t; they belong at the midpoint t + h/2."),
    "midpoint stages at t + h": (lambda v, x, t, h: _rk4_variant(v, x, t, h, c=(1.0, 1.0, 1.0)),
                                 "k2 and k3 are evaluated at t + h; they belong at the midpoint t + h/2."),
    "last stage at t + h/2": (lambda v, x, t, h: _rk4_variant(v, x, t, h, c=(0.5, 0.5, 0.5)),
                              "k4 is evaluated at t + h/2; the last stage belongs at the end of the step, t + h."),
    "last stage at t": (lambda v, x, t, h: _rk4_variant(v, x, t, h, c=(0.5, 0.5, 0.0)),
                        "k4 is evaluated at time t; the last stage belongs at the end of the step, t + h."),
    "full-step increments": (lambda v, x, t, h: _rk4_variant(v, x, t, h, a=(1.0, 1.0, 1.0)),
                             "k2 and k3 use the state x + h k instead of the half step x + (h/2) k."),
    "half-step last increment": (lambda v, x, t, h: _rk4_variant(v, x, t, h, a=(0.5, 0.5, 0.5)),
                                 "k4 uses the state x + (h/2) k3; the last stage needs the full step x + h k3."),
    "k3 from k1": (lambda v, x, t, h: _rk4_variant(v, x, t, h, k3_from="k1"),
                   "k3 is computed from k1 (so it equals k2); it must use the state x + (h/2) k2."),
    "k4 from k2": (lambda v, x, t, h: _rk4_variant(v, x, t, h, k4_from="k2"),
                   "k4 is computed from k2; it must use the state x + h k3."),
    "k4 from k1": (lambda v, x, t, h: _rk4_variant(v, x, t, h, k4_from="k1"),
                   "k4 is computed from k1; it must use the state x + h k3."),
}


def _rk4_problems() -> list[tuple[str, Callable, torch.Tensor, torch.Tensor, float]]:
    """(description, velocity, x, t, h): a time-only field, a linear field and a nonlinear time-dependent one."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(5, 2, generator=g, dtype=DT)
    t = torch.tensor([0.0, 0.1, 0.25, 0.4, 0.5], dtype=DT)  # different times per row
    A = torch.tensor([[0.2, -1.3], [0.9, -0.4]], dtype=DT)
    B = torch.tensor([[1.1, -0.7], [0.5, 0.8]], dtype=DT)

    def time_only(y, s):  # RK4 reduces to Simpson's rule here
        return torch.stack([torch.cos(3 * s), s**2 - torch.sin(2 * s)], dim=1).expand_as(y).clone()

    def linear(y, s):
        return y @ A.T

    def nonlinear(y, s):
        return torch.tanh(y @ B.T) * (1 + s[:, None]) + torch.sin(2 * s)[:, None] * y.flip(1)

    return [
        ("a field that depends only on time, v(x, t) = (cos 3t, t^2 - sin 2t)", time_only, x, t, 0.4),
        ("the linear field v(x, t) = A x", linear, x, t, 0.4),
        ("a nonlinear time-dependent field", nonlinear, x, t, 0.3),
    ]


def check_rk4_step(rk4_step: Callable) -> Feedback:
    """Check ``rk4_step(velocity, x, t, h) -> x_next``, one classical RK4 step.

    ``velocity(x, t)`` takes ``x`` of shape ``(batch, dim)`` and ``t`` of shape ``(batch,)``; ``h`` is a float.
    The step must return a new tensor of shape ``(batch, dim)`` and leave ``x`` and ``t`` unchanged.
    """
    bad = require_callable(rk4_step, "rk4_step", "rk4_step(velocity, x, t, h) -> x_next")
    if bad is not None:
        return bad
    problems = _rk4_problems()
    outputs = []
    for desc, v, x, t, h in problems:
        x_in, t_in = x.clone(), t.clone()
        got, err = call_student(rk4_step, v, x_in, t_in, h, name="rk4_step")
        if err is not None:
            return err
        if not torch.equal(x_in, x) or not torch.equal(t_in, t):
            return Feedback(False, "rk4_step changed its input x or t in place; compute new tensors instead "
                                   "(e.g. x + 0.5 * h * k1, not x += ...).")
        outputs.append(got)
    for (desc, v, x, t, h), got in zip(problems, outputs):
        expected = reference_rk4_step(v, x, t, h)
        fb = compare_tensors(got, expected, what=f"x_next for {desc} (h = {h})", atol=1e-9, rtol=1e-9)
        if fb:
            continue
        diagnosis = _diagnose(outputs, problems, _RK4_MISTAKES)
        if diagnosis:
            return Feedback(False, f"{diagnosis} ({fb.message})")
        hint = {
            0: "for a field that does not depend on x, RK4 is Simpson's rule h/6 (v(t) + 4 v(t + h/2) + v(t + h)): "
               "check the times at which you evaluate the stages and the weights 1, 2, 2, 1 over 6.",
            1: "the stage times are right but the stage states are not: k2 = v(x + h/2 k1, ...), "
               "k3 = v(x + h/2 k2, ...), k4 = v(x + h k3, ...).",
            2: "the simple cases pass; check that you pass a tensor t + h/2 (one time per row) and use each stage.",
        }[problems.index((desc, v, x, t, h))]
        return Feedback(False, f"{fb.message} Hint: {hint}")
    return Feedback(True, "rk4_step matches classical RK4 on a time-only, a linear and a nonlinear field.")


def _diagnose(outputs, problems, mistakes) -> Optional[str]:
    """The message of the first typical mistake that reproduces every output of the student."""
    for fn, message in mistakes.values():
        same = True
        for got, (_, v, x, t, h) in zip(outputs, problems):
            if not isinstance(got, torch.Tensor):
                same = False
                break
            expected = fn(v, x, t, h)
            if got.shape != expected.shape or not torch.allclose(got.detach().to(DT), expected, atol=1e-9, rtol=1e-9):
                same = False
                break
        if same:
            return message
    return None


# -- Hutchinson ---------------------------------------------------------------------------------------------


def reference_hutchinson_estimate(velocity: Callable, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r"""One Hutchinson probe per row: :math:`\varepsilon_i^\top \frac{\partial v}{\partial x}(x_i, t_i)\,\varepsilon_i`, shape ``(batch,)``.

    Computed with one vector-Jacobian product: the gradient of :math:`\sum_i \varepsilon_i \cdot v(x_i, t_i)` with
    respect to ``x`` is :math:`\varepsilon_i^\top J_i` in row ``i``.
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        v = velocity(xr, t)
        (vjp,) = torch.autograd.grad((v * eps).sum(), xr)
    return (vjp * eps).sum(1)


def _jacobians(velocity, x, t):
    rows = []
    for i in range(x.shape[0]):
        rows.append(torch.autograd.functional.jacobian(lambda y: velocity(y[None], t[i : i + 1])[0], x[i]))
    return torch.stack(rows)


def _hutchinson_problems():
    g = torch.Generator().manual_seed(4321)
    x = torch.randn(6, 3, generator=g, dtype=DT)
    t = torch.linspace(0.1, 0.9, 6, dtype=DT)
    eps = torch.randint(0, 2, (6, 3), generator=g, dtype=DT) * 2 - 1
    eps_g = torch.randn(6, 3, generator=g, dtype=DT)
    B = torch.tensor([[1.0, -0.6, 0.3], [0.4, 0.7, -1.1], [-0.5, 0.9, 0.2]], dtype=DT)

    def field(y, s):
        return torch.tanh(y @ B.T) * (1 + s[:, None]) + y.roll(1, dims=1) ** 2

    return [("Rademacher probes", field, x, t, eps), ("Gaussian probes", field, x, t, eps_g)]


def check_hutchinson_estimate(estimate: Callable) -> Feedback:
    """Check ``estimate(velocity, x, t, eps) -> (batch,)``: one Hutchinson probe ``eps_i^T J_i eps_i`` per row.

    ``x`` and ``eps`` have shape ``(batch, dim)``, ``t`` shape ``(batch,)``; ``J_i`` is the Jacobian of
    ``velocity`` with respect to ``x`` at row ``i``.
    """
    bad = require_callable(estimate, "estimate", "estimate(velocity, x, t, eps) -> tensor of shape (batch,)")
    if bad is not None:
        return bad
    for desc, v, x, t, eps in _hutchinson_problems():
        got, err = call_student(estimate, v, x.clone(), t.clone(), eps.clone(), name="estimate")
        if err is not None:
            return err
        J = _jacobians(v, x, t)
        expected = torch.einsum("bi,bij,bj->b", eps, J, eps)
        fb = compare_tensors(got, expected, what=f"the estimate with {desc}", atol=1e-9, rtol=1e-9)
        if fb:
            continue
        if isinstance(got, torch.Tensor) and got.numel() == 1 and x.shape[0] > 1:
            return Feedback(False, f"{fb.message} Hint: return one estimate per row, shape (batch,) = "
                                   f"({x.shape[0]},); do not sum or average over the batch.")
        mistakes = {
            "no Jacobian": ((v(x, t) * eps).sum(1),
                            "You returned eps . v(x, t): the estimator needs the Jacobian, eps^T (dv/dx) eps. "
                            "Differentiate (v * eps).sum() with respect to x, then take the dot product with eps."),
            "missing final dot": (torch.einsum("bi,bij->b", eps, J),
                                  "You summed the entries of the vector-Jacobian product eps^T J; take its dot "
                                  "product with eps instead: (vjp * eps).sum(1)."),
            "exact trace": (J.diagonal(dim1=1, dim2=2).sum(-1),
                            "You returned the exact divergence tr J: correct on average, but the exercise asks for the "
                            "single-probe estimate eps^T J eps, which costs one backward pass instead of dim."),
            "J eps without eps": (torch.einsum("bij,bj->b", J, eps),
                                  "You summed the entries of J eps; take its dot product with eps: eps . (J eps)."),
        }
        for expected_wrong, message in mistakes.values():
            if isinstance(got, torch.Tensor) and got.shape == expected_wrong.shape and torch.allclose(
                got.detach().to(DT), expected_wrong, atol=1e-9, rtol=1e-9
            ):
                return Feedback(False, f"{message} ({fb.message})")
        return Feedback(False, f"{fb.message} Hint: compute vjp = d/dx of (v(x, t) * eps).sum() (one backward pass, "
                               "row i gives eps_i^T J_i), then return (vjp * eps).sum(1).")
    return Feedback(True, "your estimator returns eps^T J eps for Rademacher and Gaussian probes.")
