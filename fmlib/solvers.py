r"""ODE solvers for ``dx/dt = v(x, t)`` and likelihoods of continuous normalizing flows.

Fixed-step methods advance the state from ``t0`` to ``t1`` in ``steps`` equal steps of size
``h = (t1 - t0) / steps``:

* ``"euler"``:    :math:`x_{n+1} = x_n + h\, v(x_n, t_n)` (global error :math:`O(h)`);
* ``"midpoint"``: :math:`x_{n+1} = x_n + h\, v(x_n + \tfrac h2 v(x_n, t_n),\ t_n + \tfrac h2)` (:math:`O(h^2)`);
* ``"rk4"``:      the classical fourth-order Runge--Kutta method (:math:`O(h^4)`).

The adaptive method ``"dopri5"`` (the Dormand--Prince 5(4) pair of ``torchdiffeq.odeint``) chooses its own step
sizes so that the estimated local error stays below ``atol + rtol * |x|``. Pass ``return_nfe=True`` to :func:`integrate` to also get the number of velocity evaluations
(NFE) a solve used; that is the cost measure for comparing solvers.

Integration may run backward (``t1 < t0``), which is how likelihoods are computed: :func:`log_prob` integrates the
instantaneous change of variables

.. math:: \frac{d}{dt} \log p_t(x_t) = -\nabla\cdot v_t(x_t)

from ``t = 1`` back to ``t = 0``, with the divergence computed exactly (:func:`divergence`) or estimated without
bias by Hutchinson's trace estimator (:func:`hutchinson_divergence`).

All velocity fields act row by row: row ``i`` of ``v(x, t)`` may depend only on row ``i`` of ``x`` (no batch
normalisation), which is what makes the per-sample divergences below correct.
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Union

import torch

from ._checks import explain_mismatch, as_points, as_time, call_field, positive_int, real
from .utils import make_generator

__all__ = [
    "Velocity",
    "METHODS",
    "ADAPTIVE_METHODS",
    "EVALS_PER_STEP",
    "PROBES",
    "integrate",
    "divergence",
    "hutchinson_divergence",
    "log_prob",
]

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A velocity field ``v(x, t)``: ``x`` of shape ``(batch, dim)`` and ``t`` of shape ``(batch,)`` -> ``(batch, dim)``."""

LogDensity = Callable[[torch.Tensor], torch.Tensor]
"""A log-density ``log_p(x)``: points of shape ``(batch, dim)`` -> log-densities of shape ``(batch,)``."""


def _euler_step(v, x, t, h):
    return x + h * v(x, t)


def _midpoint_step(v, x, t, h):
    return x + h * v(x + 0.5 * h * v(x, t), t + 0.5 * h)


def _rk4_step(v, x, t, h):
    k1 = v(x, t)
    k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = v(x + h * k3, t + h)
    return x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


METHODS = {"euler": _euler_step, "midpoint": _midpoint_step, "rk4": _rk4_step}
"""Fixed-step methods by name; the number of velocity evaluations per step is 1, 2 and 4."""

EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "rk4": 4}

ADAPTIVE_METHODS = ("dopri5",)
"""Adaptive (error-controlled) methods, solved with ``torchdiffeq.odeint``."""

DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-5

PROBES = ("rademacher", "gaussian")
"""Probe distributions for Hutchinson's estimator: both have mean zero and identity covariance."""


def _checked_velocity(velocity: Velocity, x: torch.Tensor) -> Velocity:
    """Wrap ``velocity`` so that a wrong output (type, shape, dtype or device) gives a clear error on any call.

    The checks compare metadata only (no pass over the values), so they cost nothing next to the field itself.
    """
    calls = 0

    def v(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        try:
            out = velocity(y, t)
        except RuntimeError as err:
            raise explain_mismatch(err, "velocity(x, t)", y) from err
        calls += 1
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"velocity(x, t) must return a tensor; got {type(out).__name__} (call {calls})")
        if out.shape != y.shape:
            raise ValueError(
                f"velocity(x, t) must return the shape of x {tuple(y.shape)}; got {tuple(out.shape)} (call {calls})"
            )
        if out.dtype != y.dtype or out.device != y.device:
            raise ValueError(
                f"velocity(x, t) returned {out.dtype} on {out.device} for x of {y.dtype} on {y.device}; "
                "the model and the starting points must share device and dtype"
            )
        return out

    return v


def _check_method(method: object) -> str:
    if not isinstance(method, str) or (method not in METHODS and method not in ADAPTIVE_METHODS):
        raise ValueError(
            f"method must be one of {sorted(METHODS)} (fixed step) or {list(ADAPTIVE_METHODS)} (adaptive); "
            f"got {method!r}"
        )
    return method


def _check_tolerances(method: str, rtol: Optional[float], atol: Optional[float]) -> tuple[float, float]:
    if method not in ADAPTIVE_METHODS:
        for name, val in (("rtol", rtol), ("atol", atol)):
            if val is not None:
                raise ValueError(
                    f"{name} applies only to the adaptive methods {list(ADAPTIVE_METHODS)}; got {name}={val!r} "
                    f"with method={method!r} (a fixed-step method's accuracy is set by steps)"
                )
        return DEFAULT_RTOL, DEFAULT_ATOL
    rtol = DEFAULT_RTOL if rtol is None else real(rtol, "rtol", positive=True)
    atol = DEFAULT_ATOL if atol is None else real(atol, "atol", positive=True)
    if rtol >= 1.0:
        raise ValueError(f"rtol must be a small positive number below 1 (e.g. 1e-5); got {rtol}")
    return rtol, atol


def integrate(
    velocity: Velocity,
    x0: torch.Tensor,
    t0: float = 0.0,
    t1: float = 1.0,
    steps: int = 100,
    method: str = "rk4",
    trajectory: bool = False,
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    return_nfe: bool = False,
) -> Union[torch.Tensor, tuple[torch.Tensor, int]]:
    r"""Solve ``dx/dt = velocity(x, t)`` from ``x(t0) = x0`` to ``t1``.

    Parameters
    ----------
    velocity:
        ``velocity(x, t)`` with ``x`` of shape ``(batch, dim)`` and ``t`` of shape ``(batch,)``; returns
        ``(batch, dim)``.
    x0:
        Initial state, shape ``(batch, dim)``.
    t0, t1:
        Start and end times in ``[0, 1]``; ``t1 < t0`` integrates backward.
    steps:
        Fixed-step methods: the number of steps (positive int); the number of velocity evaluations is ``steps``
        times 1, 2 or 4. Adaptive methods choose their own steps; there ``steps`` only sets the output grid when
        ``trajectory=True``.
    method:
        ``"euler"``, ``"midpoint"`` or ``"rk4"`` (fixed step), or ``"dopri5"`` (adaptive, via
        ``torchdiffeq.odeint``).
    trajectory:
        If true, return the states at the ``steps + 1`` equally spaced times from ``t0`` to ``t1``, shape
        ``(steps + 1, batch, dim)`` (adaptive methods interpolate them from their own steps); otherwise only the
        final state.
    rtol, atol:
        Relative and absolute error tolerances of the adaptive method (positive; default ``1e-5`` each). A step
        is accepted when its estimated local error is below ``atol + rtol * |x|`` in root-mean-square norm over the
        whole batch, so one step size is shared by all samples. Passing them with a fixed-step method is an error.
    return_nfe:
        If true, return ``(x, nfe)`` where ``nfe`` is the number of calls to ``velocity`` the solve made.

    Returns
    -------
    torch.Tensor or (torch.Tensor, int)
        ``x(t1)`` of shape ``(batch, dim)`` or the trajectory; with ``return_nfe=True`` the pair ``(x, nfe)``.
        Gradients flow through the solver unless the caller wraps it in ``torch.no_grad()`` (recommended for
        sampling).
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(x, t); got {type(velocity).__name__}")
    x = as_points(x0, "x0")
    for name, val in (("t0", t0), ("t1", t1)):
        if isinstance(val, bool) or not isinstance(val, numbers.Real):
            raise TypeError(f"{name} must be a float in [0, 1]; got {type(val).__name__}")
        if not 0.0 <= float(val) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]; got {val}")
    steps = positive_int(steps, "steps")
    method = _check_method(method)
    rtol_, atol_ = _check_tolerances(method, rtol, atol)
    if not isinstance(trajectory, bool):
        raise TypeError(f"trajectory must be a bool; got {type(trajectory).__name__}")
    if not isinstance(return_nfe, bool):
        raise TypeError(f"return_nfe must be a bool; got {type(return_nfe).__name__}")

    checked = _checked_velocity(velocity, x)
    nfe = 0

    def v(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        return checked(y, t)

    if method in METHODS:
        out = _integrate_fixed(v, x, float(t0), float(t1), steps, METHODS[method], trajectory)
    else:
        out = _integrate_adaptive(v, x, float(t0), float(t1), steps, method, trajectory, rtol_, atol_)
    if not torch.isfinite(out).all():
        raise ValueError(
            f"integration produced NaN or infinite values (method={method!r}, steps={steps}); "
            "the step may be too large or the velocity singular on [t0, t1]"
        )
    return (out, nfe) if return_nfe else out


def _integrate_fixed(v, x, t0, t1, steps, step, trajectory):
    # A float64 grid keeps the final time exactly t1 (no accumulated rounding).
    grid = torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
    h = (t1 - t0) / steps
    states = [x] if trajectory else None
    for n in range(steps):
        t = torch.full((x.shape[0],), float(grid[n]), dtype=x.dtype, device=x.device)
        x = step(v, x, t, h)
        if trajectory:
            states.append(x)
    return torch.stack(states) if trajectory else x


def _integrate_adaptive(v, x, t0, t1, steps, method, trajectory, rtol, atol):
    from torchdiffeq import odeint

    if t0 == t1:
        return x.unsqueeze(0).expand(steps + 1, *x.shape).clone() if trajectory else x
    batch = x.shape[0]
    lo, hi = min(t0, t1), max(t0, t1)

    def func(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # torchdiffeq calls f(t, y) with a 0-d t
        # The clamp only guards the initial step-size probe; steps themselves end exactly at t1 (step_t below).
        return v(y, t.clamp(lo, hi).to(y.dtype).reshape(1).expand(batch))

    n_out = steps + 1 if trajectory else 2
    times = torch.linspace(t0, t1, n_out, dtype=torch.float64, device=x.device)
    # step_t makes the solver land on t1 instead of stepping past it and interpolating back, so the velocity
    # is never evaluated outside [t0, t1] (fmlib's fields reject times outside [0, 1]).
    options = {"step_t": times[-1:]}
    states = odeint(func, x, times, rtol=rtol, atol=atol, method=method, options=options)
    return states if trajectory else states[-1]


# -- divergences -------------------------------------------------------------------------------------------


def _prepare(velocity: object, x: object, t: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(x, t); got {type(velocity).__name__}")
    x = as_points(x, "x")
    return x, as_time(t, x)


def _with_grad_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when it is already part of a graph, else a detached copy that requires grad."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _grad(out: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """``d out / d x`` (zeros where ``out`` does not depend on ``x``)."""
    if not out.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(out, x, create_graph=create_graph, retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _autograd_sees_x(v: torch.Tensor, xr: torch.Tensor) -> bool:
    """Whether ``xr`` is among the inputs of ``v``'s autograd graph (cheap: a walk over the graph's nodes)."""
    if not v.requires_grad:
        return False
    if v.grad_fn is None:
        return v is xr
    target = xr.grad_fn if xr.grad_fn is not None else None
    seen, stack = set(), [v.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if target is not None and node is target:
            return True
        if getattr(node, "variable", None) is xr:  # AccumulateGrad of the leaf xr
            return True
        stack.extend(fn for fn, _ in node.next_functions)
    return False


def _require_differentiable(velocity, xr: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> None:
    """Raise when ``v = velocity(xr, t)`` changes with ``x`` but autograd cannot see the dependence.

    A field computed under ``torch.no_grad()``, detached, or through numpy has no graph back to ``x``, and its
    autograd divergence would silently come out as 0. A field that truly does not depend on ``x`` (a constant)
    passes: a small move of ``x`` must then leave it unchanged.
    """
    if _autograd_sees_x(v, xr):
        return
    with torch.no_grad():
        x0 = xr.detach()
        moved = velocity(x0 + 1e-3 * (1.0 + x0.abs()), t)
    if isinstance(moved, torch.Tensor) and moved.shape == v.shape and torch.equal(moved.detach(), v.detach()):
        return  # constant in x: a divergence of 0 is right
    raise ValueError(
        "velocity(x, t) depends on x but autograd cannot see it (the field is computed under torch.no_grad(), "
        "detached, or through numpy), so its divergence would silently come out as 0. Compute the field with "
        "torch operations and without torch.no_grad() inside it; to save memory when only sampling, wrap the "
        "call to integrate() in torch.no_grad() instead."
    )


def _velocity_and_divergence(velocity, x, t, create_graph):
    """(v(x, t), exact divergence) with autograd: one backward pass per dimension."""
    with torch.enable_grad():
        xr = _with_grad_input(x)
        v = call_field(velocity, xr, t)
        _require_differentiable(velocity, xr, t, v)
        div = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
        for i in range(x.shape[1]):
            div = div + _grad(v[:, i].sum(), xr, create_graph)[:, i]
    if not create_graph:
        v, div = v.detach(), div.detach()
    return v, div


def _velocity_and_hutchinson(velocity, x, t, probes, create_graph):
    """(v(x, t), mean over probes of eps^T (dv/dx) eps) with one vector-Jacobian product per probe."""
    with torch.enable_grad():
        xr = _with_grad_input(x)
        v = call_field(velocity, xr, t)
        _require_differentiable(velocity, xr, t, v)
        est = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
        for eps in probes:
            vjp = _grad((v * eps).sum(), xr, create_graph)  # row i: eps_i^T J_i
            est = est + (vjp * eps).sum(1)
        est = est / probes.shape[0]
    if not create_graph:
        v, est = v.detach(), est.detach()
    return v, est


def _draw_probes(n_probes: int, like: torch.Tensor, noise: str, generator: Optional[torch.Generator]) -> torch.Tensor:
    g = make_generator(None, generator)
    shape = (n_probes, *like.shape)
    if noise == "rademacher":
        eps = torch.randint(0, 2, shape, generator=g, dtype=torch.float64) * 2.0 - 1.0
    else:
        eps = torch.randn(shape, generator=g, dtype=torch.float64)
    return eps.to(device=like.device, dtype=like.dtype)


def _check_noise(noise: object) -> str:
    if not isinstance(noise, str) or noise not in PROBES:
        raise ValueError(f"noise must be one of {list(PROBES)}; got {noise!r}")
    return noise


def _check_create_graph(create_graph: object) -> bool:
    if create_graph is None:
        return torch.is_grad_enabled()
    if not isinstance(create_graph, bool):
        raise TypeError(f"create_graph must be a bool or None; got {type(create_graph).__name__}")
    return create_graph


def divergence(
    velocity: Velocity,
    x: torch.Tensor,
    t: Union[float, torch.Tensor],
    *,
    create_graph: Optional[bool] = None,
) -> torch.Tensor:
    r"""Exact divergence :math:`\nabla\cdot v_t(x) = \operatorname{tr} \frac{\partial v_t}{\partial x}(x) = \sum_i \partial v_i / \partial x_i`.

    Computed with autograd, one backward pass per dimension (cost grows like ``dim`` times a velocity
    evaluation).

    Parameters
    ----------
    velocity:
        ``velocity(x, t)`` acting row by row, ``(batch, dim), (batch,) -> (batch, dim)``.
    x:
        Points, shape ``(batch, dim)``.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.
    create_graph:
        Keep the graph of the result so it can be differentiated again (needed to train through it). Default:
        whether gradients are enabled at the call (``torch.is_grad_enabled()``).

    Returns
    -------
    torch.Tensor
        The divergence at each point, shape ``(batch,)``.
    """
    x, tt = _prepare(velocity, x, t)
    return _velocity_and_divergence(velocity, x, tt, _check_create_graph(create_graph))[1]


def hutchinson_divergence(
    velocity: Velocity,
    x: torch.Tensor,
    t: Union[float, torch.Tensor],
    generator: Optional[torch.Generator] = None,
    n_probes: int = 1,
    noise: str = "rademacher",
    *,
    create_graph: Optional[bool] = None,
) -> torch.Tensor:
    r"""Hutchinson's unbiased estimate of the divergence, :math:`\frac1K \sum_{k=1}^K \varepsilon_k^\top \frac{\partial v_t}{\partial x} \varepsilon_k`.

    For any probe with :math:`\mathbb E[\varepsilon] = 0` and :math:`\mathbb E[\varepsilon\varepsilon^\top] = I`,
    :math:`\mathbb E[\varepsilon^\top J \varepsilon] = \operatorname{tr}(J\, \mathbb E[\varepsilon\varepsilon^\top])
    = \operatorname{tr} J`. Each probe costs one vector-Jacobian product (one backward pass), whatever the
    dimension. With :math:`S = (J + J^\top)/2`, one probe has variance :math:`2\|S\|_F^2` for Gaussian probes and
    :math:`2(\|S\|_F^2 - \sum_i S_{ii}^2)` for Rademacher probes (never larger).

    Parameters
    ----------
    velocity:
        ``velocity(x, t)`` acting row by row, ``(batch, dim), (batch,) -> (batch, dim)``.
    x:
        Points, shape ``(batch, dim)``.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.
    generator:
        CPU generator for the probes (PyTorch's global generator when ``None``); probes are drawn on the CPU
        and moved to ``x``'s device, so results do not depend on the device.
    n_probes:
        Number of independent probes per point (positive int); the estimate is their mean.
    noise:
        ``"rademacher"`` (entries +-1 with probability 1/2) or ``"gaussian"`` (standard normal entries).
    create_graph:
        As in :func:`divergence`.

    Returns
    -------
    torch.Tensor
        One estimate per point, shape ``(batch,)``.
    """
    x, tt = _prepare(velocity, x, t)
    n_probes = positive_int(n_probes, "n_probes")
    noise = _check_noise(noise)
    probes = _draw_probes(n_probes, x, noise, generator)
    return _velocity_and_hutchinson(velocity, x, tt, probes, _check_create_graph(create_graph))[1]


# -- likelihood ---------------------------------------------------------------------------------------------


def log_prob(
    velocity: Velocity,
    x1: torch.Tensor,
    log_p0: LogDensity,
    steps: int = 100,
    method: str = "rk4",
    exact: bool = True,
    generator: Optional[torch.Generator] = None,
    *,
    n_probes: int = 1,
    noise: str = "rademacher",
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    return_nfe: bool = False,
) -> Union[torch.Tensor, tuple[torch.Tensor, int]]:
    r"""Log-density :math:`\log p_1(x_1)` of the flow of ``velocity`` that carries ``p_0`` at ``t = 0`` to ``p_1``.

    Along a trajectory :math:`\frac{d}{dt}\log p_t(x_t) = -\nabla\cdot v_t(x_t)` (the instantaneous change of
    variables), so

    .. math:: \log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\cdot v_t(x_t)\, dt .

    The augmented state :math:`(x_t, a_t)` with :math:`\dot x_t = v_t(x_t)`, :math:`\dot a_t = -\nabla\cdot v_t(x_t)`
    and :math:`a_1 = 0` is integrated backward from ``t = 1`` to ``t = 0`` with :func:`integrate`; then
    :math:`a_0 = \int_0^1 \nabla\cdot v_t(x_t)\,dt` and the result is ``log_p0(x_0) - a_0``.

    Parameters
    ----------
    velocity:
        ``velocity(x, t)`` acting row by row, ``(batch, dim), (batch,) -> (batch, dim)``.
    x1:
        Points at ``t = 1``, shape ``(batch, dim)``.
    log_p0:
        Callable mapping points ``(batch, dim)`` to the source log-density ``(batch,)``, e.g. the standard normal.
    steps, method:
        Solver settings as in :func:`integrate` (fixed step or adaptive).
    exact:
        ``True``: exact divergence by autograd (``dim`` backward passes per evaluation). ``False``: Hutchinson's
        estimator with ``n_probes`` probes per point, drawn once per call and kept fixed along the trajectory (as in
        FFJORD), which keeps the augmented ODE smooth for adaptive solvers. With a fixed-step method the trajectory does
        not depend on the probes and the result is an unbiased estimate of the exact-divergence result of the same
        solver (with ``"dopri5"`` the step sizes depend on the probes, so this holds only approximately).
    generator:
        CPU generator for the Hutchinson probes (ignored when ``exact=True``).
    n_probes, noise:
        Hutchinson settings as in :func:`hutchinson_divergence`.
    rtol, atol:
        Tolerances of the adaptive methods, as in :func:`integrate`.
    return_nfe:
        If true, return ``(log_p, nfe)`` with the number of evaluations of the augmented field (each is one call to
        ``velocity`` plus ``dim`` or ``n_probes`` backward passes).

    Returns
    -------
    torch.Tensor or (torch.Tensor, int)
        :math:`\log p_1(x_1)`, shape ``(batch,)``. When gradients are enabled the result is differentiable with respect
        to the parameters of ``velocity`` (training by maximum likelihood backpropagates through every solver step);
        wrap evaluation in ``torch.no_grad()`` to save memory.
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(x, t); got {type(velocity).__name__}")
    x1 = as_points(x1, "x1")
    if not callable(log_p0):
        raise TypeError(
            f"log_p0 must be callable, mapping points (batch, dim) to log-densities (batch,); got {type(log_p0).__name__}"
        )
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be a bool; got {type(exact).__name__}")
    steps = positive_int(steps, "steps")
    method = _check_method(method)
    _check_tolerances(method, rtol, atol)
    if not isinstance(return_nfe, bool):
        raise TypeError(f"return_nfe must be a bool; got {type(return_nfe).__name__}")
    batch, dim = x1.shape
    create_graph = torch.is_grad_enabled()
    if exact:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")

        def field(x, t):
            return _velocity_and_divergence(velocity, x, t, create_graph)

    else:
        n_probes = positive_int(n_probes, "n_probes")
        noise = _check_noise(noise)
        probes = _draw_probes(n_probes, x1, noise, generator)

        def field(x, t):
            return _velocity_and_hutchinson(velocity, x, t, probes, create_graph)

    def augmented(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v, div = field(z[:, :dim], t)
        return torch.cat([v, -div[:, None]], dim=1)

    with torch.no_grad():  # cheap early check of log_p0, before the (costly) solve
        _check_log_density(log_p0(x1.detach()), batch, x1.shape)
    z1 = torch.cat([x1, torch.zeros(batch, 1, dtype=x1.dtype, device=x1.device)], dim=1)
    z0, nfe = integrate(augmented, z1, t0=1.0, t1=0.0, steps=steps, method=method, rtol=rtol, atol=atol,
                        return_nfe=True)
    x0, a0 = z0[:, :dim], z0[:, dim]
    lp0 = _check_log_density(log_p0(x0), batch, x0.shape)
    out = lp0.to(a0.dtype) - a0
    return (out, nfe) if return_nfe else out


def _check_log_density(lp: object, batch: int, shape: tuple) -> torch.Tensor:
    if not isinstance(lp, torch.Tensor):
        raise TypeError(f"log_p0 must return a tensor of shape ({batch},); got {type(lp).__name__}")
    if lp.shape != (batch,):
        raise ValueError(
            f"log_p0 must map points of shape {tuple(shape)} to log-densities of shape ({batch},); "
            f"got shape {tuple(lp.shape)}"
        )
    return lp
