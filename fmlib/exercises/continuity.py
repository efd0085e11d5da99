r"""Checkers for the exercises of the chapter on the continuity equation.

* :func:`check_gaussian_velocity`: the student writes the velocity that transports the Gaussian path
  :math:`p_t = N(\mu_t, s_t^2 I)`; the checker evaluates the continuity residual
  :math:`\partial_t p_t + \nabla\cdot(p_t u_t)` of the student's field and says where it fails and which term
  (the centre velocity :math:`\mu_t'`, the sign or the size of the stretching term, the :math:`x - \mu_t` centring) is
  wrong.
* :func:`check_density_preserving_field`: the student writes a non-zero field :math:`w` with
  :math:`\nabla\cdot(p\,w) = 0` for a given 2-D density (it can be added to any velocity without changing the
  density path); the checker reports :math:`\nabla\cdot w` and :math:`w\cdot\nabla\log p` where the residual is
  largest.

Both evaluate the student's function in float64 and differentiate it by central differences, so it need not be
written with autograd-friendly operations (NumPy-converted tensors are fine as long as a tensor comes back).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..targets import GaussianMixture
from ._core import Feedback, call_student, require_callable

__all__ = ["GAUSSIAN_CASES", "check_gaussian_velocity", "check_density_preserving_field"]

GAUSSIAN_CASES = (
    # (mu, d mu/dt, s, d s/dt): a shrinking, a growing and a 2-D Gaussian
    ((0.5,), (1.5,), 0.8, -0.6),
    ((-1.0,), (-0.5,), 0.5, 0.9),
    ((1.0, -0.5), (0.3, 1.0), 1.2, -1.0),
)
"""The Gaussian paths used by :func:`check_gaussian_velocity`: ``(mu_t, mu_t', s_t, s_t')`` at the checked time."""

_FD_STEP = 1e-4


def _points(mu: torch.Tensor, s: float) -> torch.Tensor:
    """Points spread over mu +- 2.5 s: a line in 1-D, a 7 x 7 grid in 2-D; shape (m, d)."""
    z = torch.linspace(-2.5, 2.5, 11 if mu.numel() == 1 else 7, dtype=torch.float64)
    if mu.numel() == 1:
        return mu + s * z[:, None]
    zz = torch.cartesian_prod(z, z)
    return mu + s * zz


def _gaussian_density(x: torch.Tensor, mu: torch.Tensor, s: float) -> torch.Tensor:
    d = x.shape[1]
    return torch.exp(-((x - mu) ** 2).sum(1) / (2 * s * s)) / (2 * math.pi * s * s) ** (d / 2)


def _gaussian_dp_dt(x: torch.Tensor, mu: torch.Tensor, dmu: torch.Tensor, s: float, ds: float) -> torch.Tensor:
    r"""Exact :math:`\partial_t p` of :math:`N(\mu_t, s_t^2 I)`: :math:`p[(x-\mu)\cdot\mu'/s^2 + (s'/s)(|x-\mu|^2/s^2 - d)]`."""
    d = x.shape[1]
    c = x - mu
    return _gaussian_density(x, mu, s) * ((c * dmu).sum(1) / s**2 + (ds / s) * ((c**2).sum(1) / s**2 - d))


def _fd_div_flux(fn: Callable, x: torch.Tensor, mu: torch.Tensor, dmu: torch.Tensor, s: float, ds: float):
    """Central-difference divergence of p * u_student; returns (div, None) or (None, Feedback)."""
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = _FD_STEP
        vals = []
        for y in (x + e, x - e):
            out, fb = _student_field(fn, y, (mu, dmu, s, ds))
            if fb is not None:
                return None, fb
            vals.append(_gaussian_density(y, mu, s) * out[:, i])
        total = total + (vals[0] - vals[1]) / (2 * _FD_STEP)
    return total, None


def _student_field(fn: Callable, x: torch.Tensor, extra: tuple, name: str = "your velocity"):
    """Call the student's field and check its output: returns (tensor (m, d) float64, None) or (None, Feedback)."""
    out, fb = call_student(fn, x.clone(), *extra, name=name)
    if fb is not None:
        return None, fb
    if not isinstance(out, torch.Tensor):
        return None, Feedback(False, f"{name} must return a torch.Tensor of shape {tuple(x.shape)}; "
                                     f"got {type(out).__name__}.")
    if out.shape != x.shape:
        hint = (" (return shape (batch, dim): keep the last axis, e.g. write `x - mu`, not `(x - mu).squeeze()`)"
                if out.numel() == x.numel() else "")
        return None, Feedback(False, f"{name} must return the shape of x, {tuple(x.shape)}; "
                                     f"got {tuple(out.shape)}{hint}.")
    out = out.detach().to(torch.float64)
    if not torch.isfinite(out).all():
        return None, Feedback(False, f"{name} returned NaN or inf at some points (x = mu +- 2.5 s).")
    return out, None


def _fmt(v: torch.Tensor) -> str:
    v = v.reshape(-1)
    return f"{float(v[0]):.4g}" if v.numel() == 1 else "(" + ", ".join(f"{float(a):.4g}" for a in v) + ")"


_MISTAKES = (
    ("the sign of the stretching term is flipped: you wrote mu' - (s'/s)(x - mu)",
     lambda x, mu, dmu, s, ds: dmu - (ds / s) * (x - mu),
     "when the Gaussian shrinks (s' < 0) points above the mean must move down, towards it: the factor of "
     "(x - mu) is s'/s, with its own sign."),
    ("the ratio is upside down: you wrote (s/s') instead of (s'/s)",
     lambda x, mu, dmu, s, ds: dmu + (s / ds) * (x - mu),
     "the flow map is x = mu_t + s_t z, so d/dt x = mu_t' + s_t' z with z = (x - mu_t)/s_t."),
    ("the (x - mu) centring is missing: you wrote mu' + (s'/s) x",
     lambda x, mu, dmu, s, ds: dmu + (ds / s) * x,
     "the Gaussian stretches about its mean, not about 0: use (x - mu)."),
    ("the division by s is missing: you wrote mu' + s' (x - mu)",
     lambda x, mu, dmu, s, ds: dmu + ds * (x - mu),
     "z = (x - mu)/s is the standardised position; the velocity is mu' + s' z."),
    ("the mean velocity mu' is missing: you wrote (s'/s)(x - mu)",
     lambda x, mu, dmu, s, ds: (ds / s) * (x - mu),
     "the particle at the centre moves with the centre, at speed mu'."),
    ("you used mu instead of mu' for the motion of the centre",
     lambda x, mu, dmu, s, ds: mu + (ds / s) * (x - mu),
     "the velocity of the centre is the time derivative mu_t', not the position mu_t."),
    ("the whole field has the wrong sign (it runs the path backwards in time)",
     lambda x, mu, dmu, s, ds: -(dmu + (ds / s) * (x - mu)),
     "u is d/dt of the particle position, with time running forward."),
)


def check_gaussian_velocity(velocity: Callable) -> Feedback:
    r"""Check a velocity that transports the Gaussian path :math:`p_t = N(\mu_t, s_t^2 I)`.

    The expected answer is :math:`u_t(x) = \mu_t' + (s_t'/s_t)(x - \mu_t)`; any field whose continuity residual
    vanishes is accepted (in 2-D a density-preserving rotation may be added).

    Parameters
    ----------
    velocity:
        ``velocity(x, mu, dmu, s, ds)`` with ``x`` of shape ``(batch, d)``, ``mu`` and ``dmu`` (the mean and its
        time derivative) tensors of shape ``(d,)``, and ``s``, ``ds`` (the standard deviation and its time
        derivative) floats; returns ``(batch, d)``. It is called for the cases in :data:`GAUSSIAN_CASES`.

    Returns
    -------
    Feedback
        Passed when :math:`|\partial_t p + \nabla\cdot(p u)| \le 10^{-6} \max|\partial_t p|` at every checked point
        of every case; otherwise the case and point where the residual is largest, the values of the student's
        field there, and which term is wrong.
    """
    fb = require_callable(velocity, "velocity", "velocity(x, mu, dmu, s, ds) -> (batch, d)")
    if fb is not None:
        return fb
    notes = []
    for k, (mu_, dmu_, s, ds) in enumerate(GAUSSIAN_CASES):
        mu = torch.tensor(mu_, dtype=torch.float64)
        dmu = torch.tensor(dmu_, dtype=torch.float64)
        x = _points(mu, s)
        got, fb = _student_field(velocity, x, (mu, dmu, s, ds))
        if fb is not None:
            return fb
        div_flux, fb = _fd_div_flux(velocity, x, mu, dmu, s, ds)
        if fb is not None:
            return fb
        dp_dt = _gaussian_dp_dt(x, mu, dmu, s, ds)
        resid = dp_dt + div_flux
        scale = float(dp_dt.abs().max())
        rel = resid.abs() / scale
        case = f"case {k + 1} (d = {mu.numel()}, mu = {_fmt(mu)}, mu' = {_fmt(dmu)}, s = {s:g}, s' = {ds:g})"
        expected = dmu + (ds / s) * (x - mu)
        if float(rel.max()) <= 1e-6:
            if not torch.allclose(got, expected, atol=1e-6, rtol=1e-5):
                notes.append(f"in {case} your field differs from mu' + (s'/s)(x - mu) by a density-preserving "
                             "field, which the continuity equation allows")
            continue
        i = int(torch.argmax(rel))
        where = (f"In {case}, the continuity residual dp/dt + div(p u) is {float(resid[i]):.3g} at x = {_fmt(x[i])} "
                 f"(dp/dt there is {float(dp_dt[i]):.3g}; the residual should be 0).")
        for description, mistake, hint in _MISTAKES:
            if all(torch.allclose(
                    _eval_mistake(velocity, mistake, c), _eval_mistake(velocity, None, c), atol=1e-8, rtol=1e-6)
                    for c in GAUSSIAN_CASES):
                return Feedback(False, f"{where} Your field matches a typical slip: {description}. Hint: {hint}")
        centre = got[x.sub(mu).abs().sum(1).argmin()]
        parts = [f"{where} Your u there is {_fmt(got[i])}, the transporting field gives {_fmt(expected[i])}."]
        if not torch.allclose(centre, dmu, atol=1e-6, rtol=1e-5):
            parts.append(f"At the mean x = mu your u is {_fmt(centre)}, but the particle at the centre moves with "
                         f"the centre: it should be mu' = {_fmt(dmu)}.")
        else:
            parts.append("The centre moves correctly (u(mu) = mu'), so the stretching term is wrong: "
                         "u(x) - u(mu) should be (s'/s)(x - mu).")
        return Feedback(False, " ".join(parts))
    msg = "the continuity residual vanishes (relative error < 1e-6) in all three cases"
    if notes:
        msg += "; note: " + "; ".join(notes)
    return Feedback(True, msg + ".")


def _eval_mistake(student: Callable, mistake: Optional[Callable], case: tuple) -> torch.Tensor:
    mu = torch.tensor(case[0], dtype=torch.float64)
    dmu = torch.tensor(case[1], dtype=torch.float64)
    s, ds = case[2], case[3]
    x = _points(mu, s)
    if mistake is not None:
        return mistake(x, mu, dmu, s, ds)
    out, fb = _student_field(student, x, (mu, dmu, s, ds))
    return torch.full_like(x, float("nan")) if fb is not None else out


def check_density_preserving_field(
    field: Callable,
    target: Optional[GaussianMixture] = None,
    *,
    n_points: int = 256,
    seed: int = 0,
) -> Feedback:
    r"""Check a non-zero 2-D field :math:`w` that leaves a density :math:`p` unchanged: :math:`\nabla\cdot(p\,w) = 0`.

    Since :math:`\nabla\cdot(p w)/p = \nabla\cdot w + w\cdot\nabla\log p`, the checker computes both terms (the
    divergence by central differences, the score exactly) at points drawn from ``p`` and at a few grid points.

    Parameters
    ----------
    field:
        ``field(x)`` with ``x`` of shape ``(batch, 2)`` (float64) -> ``(batch, 2)``.
    target:
        A 2-D :class:`fmlib.targets.GaussianMixture`; the standard normal :math:`N(0, I)` when ``None``.
    n_points:
        Number of points drawn from the target (plus a 5 x 5 grid over its bulk).
    seed:
        Seed of the points, so the check is reproducible.

    Returns
    -------
    Feedback
        Passed when the field is not zero and :math:`|\nabla\cdot w + w\cdot\nabla\log p| \le 10^{-5}(1 + |w|)`
        everywhere; otherwise the worst point with both terms and a hint.
    """
    fb = require_callable(field, "field", "field(x) -> (batch, 2)")
    if fb is not None:
        return fb
    if target is None:
        target = GaussianMixture(torch.zeros(1, 2, dtype=torch.float64), 1.0)
    if not isinstance(target, GaussianMixture):
        raise TypeError(f"target must be a GaussianMixture or None; got {type(target).__name__}")
    if target.dim != 2:
        raise ValueError(f"target must be a 2-D mixture; got dim = {target.dim}")
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points <= 0:
        raise ValueError(f"n_points must be a positive int; got {n_points!r}")
    target = target.to(dtype=torch.float64, device="cpu")
    g = torch.Generator().manual_seed(seed)
    pts = target.sample(n_points, generator=g)
    lo, hi = pts.min(0).values, pts.max(0).values
    z = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
    grid = lo + (hi - lo) * torch.cartesian_prod(z, z)
    x = torch.cat([pts, grid])

    def call(y):
        return _student_field(lambda a: field(a), y, (), name="your field")

    w, fb = call(x)
    if fb is not None:
        return fb
    size = w.norm(dim=1)
    if float(size.max()) < 1e-8:
        return Feedback(False, "your field is zero everywhere: that leaves p unchanged trivially. Find a non-zero "
                               "field (hint: something that circulates along the contour lines of p).")
    div = torch.zeros(x.shape[0], dtype=torch.float64)
    for i in range(2):
        e = torch.zeros_like(x)
        e[:, i] = _FD_STEP
        plus, fb = call(x + e)
        if fb is not None:
            return fb
        minus, fb = call(x - e)
        if fb is not None:
            return fb
        div = div + (plus[:, i] - minus[:, i]) / (2 * _FD_STEP)
    along = (w * target.score(x)).sum(1)
    resid = div + along
    tol = 1e-5 * (1 + size)
    if bool((resid.abs() <= tol).all()):
        return Feedback(True, f"div(p w) = 0 at all {x.shape[0]} checked points (max |div w + w . grad log p| = "
                              f"{float(resid.abs().max()):.1e}); the field moves mass along the contour lines of p "
                              "without piling it up.")
    i = int(torch.argmax(resid.abs() - tol))
    msg = (f"div(p w)/p = div w + w . grad log p is {float(resid[i]):.3g} at x = {_fmt(x[i])} "
           f"(div w = {float(div[i]):.3g}, w . grad log p = {float(along[i]):.3g}); it must be 0 everywhere.")
    if abs(float(div[i])) <= tol[i] and abs(float(along[i])) > tol[i]:
        hint = ("your field is divergence-free but crosses the contour lines of p (w . grad log p != 0), so it "
                "carries mass from dense to sparse regions or back; make it tangent to the contour lines.")
    elif abs(float(along[i])) <= tol[i]:
        hint = ("your field is tangent to the contour lines of p but not divergence-free: it speeds up or slows "
                "down along them, which piles mass up. Rotations of the score, J grad log p with J = [[0, -1], "
                "[1, 0]], are divergence-free.")
    else:
        hint = ("both terms are non-zero: start from a field tangent to the contour lines of p, e.g. J grad log p "
                "with J = [[0, -1], [1, 0]], and check that its divergence vanishes.")
    return Feedback(False, f"{msg} Hint: {hint}")
