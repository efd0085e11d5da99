"""Input validation shared by fmlib's public functions (private module).

Every public function validates its inputs with these helpers so that bad input produces a
``TypeError``/``ValueError`` naming the argument, the expected shape or range, and what it received.
"""

from __future__ import annotations

import numbers
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Union

import torch

TimeLike = Union[float, int, torch.Tensor]

# Time values may overshoot [0, 1] by a rounding error when they come out of a solver grid.
_TIME_TOL = 1e-6

# Value scans (NaN and range checks: a full pass over a tensor, and a device sync on a GPU) can be switched off
# inside a training loop whose inputs were validated once at its public boundary. Shape, type and dtype
# checks are free and always stay on.
_scans = threading.local()


def value_scans_enabled() -> bool:
    """Whether range/NaN scans of time tensors run (off only inside :func:`skip_value_scans`)."""
    return getattr(_scans, "enabled", True)


@contextmanager
def skip_value_scans() -> Iterator[None]:
    """Switch off range/NaN scans of times for the calling thread (used by the training loops' inner steps).

    The caller is responsible for having validated its inputs once; shape and type checks still run.
    """
    previous = value_scans_enabled()
    _scans.enabled = False
    try:
        yield
    finally:
        _scans.enabled = previous


def as_points(x: object, name: str, dim: Optional[int] = None) -> torch.Tensor:
    """Check that ``x`` is a floating tensor of shape ``(batch, dim)`` and return it."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, dim); got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, dim); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32 or float64); got dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have dim = {dim} columns; got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point of at least one coordinate; got shape {tuple(x.shape)}")
    return x


def same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise a ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (batch, dim); "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def as_time(t: object, like: torch.Tensor, name: str = "t", lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Validate a time argument against points ``like`` of shape ``(batch, dim)``.

    Accepts a Python number, a 0-d tensor or a tensor of shape ``(batch,)``; returns a tensor of shape
    ``(batch,)`` with the dtype and device of ``like``. Values must lie in ``[lo, hi]``.
    """
    batch = like.shape[0]
    if isinstance(t, bool) or not isinstance(t, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a tensor of shape ({batch},); got {type(t).__name__}")
    if isinstance(t, torch.Tensor):
        if t.ndim == 0:
            t = t.reshape(1).expand(batch)
        elif t.ndim != 1 or t.shape[0] != batch:
            raise ValueError(
                f"{name} must be a float or a tensor of shape ({batch},) matching the batch size of the points; "
                f"got shape {tuple(t.shape)}"
            )
        t = t.to(dtype=like.dtype, device=like.device)
    else:
        t = torch.full((batch,), float(t), dtype=like.dtype, device=like.device)
    check_range(t, name, lo, hi)
    return _clamp_tolerated(t, lo, hi)


def as_time_grid(t: object, name: str = "t", lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Validate a time value or tensor of any shape (used by schedules); returns a floating tensor."""
    if isinstance(t, bool) or not isinstance(t, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a tensor; got {type(t).__name__}")
    if isinstance(t, torch.Tensor):
        if not t.is_floating_point():
            t = t.to(torch.get_default_dtype())
    else:
        t = torch.tensor(float(t), dtype=torch.float64)
    check_range(t, name, lo, hi)
    return _clamp_tolerated(t, lo, hi)


def _clamp_tolerated(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Clamp values that overshoot ``[lo, hi]`` by the tolerated rounding error back into the interval.

    Without this, e.g. ``t = 1 + 1e-7`` passes validation but gives ``sigma_t = sqrt(negative) = NaN`` for the
    VP path. ``clamp`` passes gradients through unchanged for values inside the interval.
    """
    if t.numel() == 0 or not value_scans_enabled() or (float(t.detach().min()) >= lo and float(t.detach().max()) <= hi):
        return t
    return t.clamp(lo, hi)


def check_range(t: torch.Tensor, name: str, lo: float, hi: float) -> None:
    """Raise a ``ValueError`` if any entry of ``t`` is NaN or outside ``[lo, hi]`` (skipped in :func:`skip_value_scans`)."""
    if t.numel() == 0 or not value_scans_enabled():
        return
    t = t.detach()
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN; times must lie in [{lo}, {hi}]")
    tmin, tmax = float(t.min()), float(t.max())
    if tmin < lo - _TIME_TOL or tmax > hi + _TIME_TOL:
        raise ValueError(f"{name} must lie in [{lo}, {hi}]; got values in [{tmin:.6g}, {tmax:.6g}]")


def positive_int(n: object, name: str) -> int:
    """Check that ``n`` is a positive integer and return it."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be a positive int; got {type(n).__name__}")
    if n <= 0:
        raise ValueError(f"{name} must be a positive int; got {n}")
    return int(n)


def real(x: object, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """Check that ``x`` is a finite real number (optionally positive / non-negative) and return it."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(x).__name__}")
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite; got {x}")
    if positive and x <= 0:
        raise ValueError(f"{name} must be > 0; got {x}")
    if nonnegative and x < 0:
        raise ValueError(f"{name} must be >= 0; got {x}")
    return x


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise a ``ValueError`` if ``x`` holds NaN or infinite values."""
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def call_field(field: Callable, x: torch.Tensor, t: torch.Tensor, name: str = "velocity") -> torch.Tensor:
    """Call ``field(x, t)`` and check that it returns a tensor of the shape of ``x``.

    Raises ``TypeError`` (not a tensor) or ``ValueError`` (wrong shape), naming ``name`` and both shapes.
    """
    out = field(x, t)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name}(x, t) must return a tensor; got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"{name}(x, t) must return the shape of x {tuple(x.shape)}; got {tuple(out.shape)}")
    return out


def check_labels(y: object, batch: int, num_classes: int, name: str = "y", allow_null: bool = True) -> torch.Tensor:
    """Validate integer class labels of shape ``(batch,)`` in ``[0, K]`` (``[0, K)`` without the null label)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be an integer tensor of shape ({batch},); got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class labels (e.g. torch.long); got dtype {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), one label per point; got {tuple(y.shape)}")
    top = num_classes if allow_null else num_classes - 1
    if len(y) and (int(y.min()) < 0 or int(y.max()) > top):
        what = f"[0, {num_classes}] ({num_classes} = null label)" if allow_null else f"[0, {top}]"
        raise ValueError(f"{name} must lie in {what}; got values in [{int(y.min())}, {int(y.max())}]")
    return y


_MISMATCH_WORDS = ("dtype", "device", "Expected all tensors", "expected scalar type", "Expected object of scalar type")


def explain_mismatch(err: RuntimeError, what: str, x: torch.Tensor) -> Exception:
    """Turn PyTorch's dtype/device mismatch error from calling ``what`` on ``x`` into a ``ValueError`` that says
    what to do; other errors are returned unchanged (the caller re-raises what this returns)."""
    if not any(word in str(err) for word in _MISMATCH_WORDS):
        return err
    return ValueError(
        f"{what} failed on points of dtype {x.dtype} on {x.device}: {err}. The model and its inputs must share "
        "device and dtype: move the inputs (x = x.to(next(model.parameters()))) or the model (model.to(x))."
    )
