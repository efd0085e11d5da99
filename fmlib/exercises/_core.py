"""Building blocks shared by the exercise checkers."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

__all__ = ["Feedback", "compare_tensors", "require_callable", "call_student"]


@dataclass(frozen=True)
class Feedback:
    """Result of an exercise check.

    Attributes
    ----------
    passed:
        Whether the answer is correct. ``bool(feedback)`` is the same.
    message:
        What was checked and, on failure, what is wrong and a hint.
    """

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return ("Correct: " if self.passed else "Not yet: ") + self.message

    def _repr_markdown_(self) -> str:  # shown in notebooks
        mark = "**Correct.**" if self.passed else "**Not yet.**"
        return f"{mark} {self.message}"

    def __repr__(self) -> str:
        return str(self)


def require_callable(fn: Any, name: str, signature: str) -> Optional[Feedback]:
    """Feedback explaining what was expected when ``fn`` is not callable; ``None`` when it is."""
    if callable(fn):
        return None
    return Feedback(False, f"{name} must be a function {signature}; got {type(fn).__name__}.")


def _copy_arg(arg: Any) -> Any:
    # A tensor that requires grad is passed itself (the checker may differentiate through it; PyTorch refuses
    # in-place changes of such a leaf), and a snapshot below still catches a change of its values.
    if isinstance(arg, torch.Tensor) and not arg.requires_grad:
        return arg.clone()
    if isinstance(arg, torch.nn.Module):
        return copy.deepcopy(arg)
    return arg


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.detach(), b.detach()) or
                                                              torch.allclose(a.detach(), b.detach(), equal_nan=True,
                                                                             rtol=0, atol=0))


def call_student(fn: Callable, *args, name: str = "your function") -> tuple[Any, Optional[Feedback]]:
    """Call a student's function on copies of its arguments; turn anything that goes wrong into :class:`Feedback`.

    Tensors are cloned and modules deep-copied before the call, so the student's code cannot corrupt the
    checker's reference inputs; a tensor argument that the call changed in place is reported as a mistake. Any
    exception the student's code raises, ``SystemExit`` included (``sys.exit`` inside a student's function), is
    reported instead of escaping the checker; only ``KeyboardInterrupt`` passes through.
    """
    copies = [_copy_arg(a) for a in args]
    originals = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
    try:
        out = fn(*copies)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # the student's code may raise anything; report it instead of crashing
        return None, Feedback(False, f"{name} raised {type(err).__name__}: {err}")
    for i, (orig, cp) in enumerate(zip(originals, copies)):
        if isinstance(orig, torch.Tensor) and not _same(orig, cp):
            return None, Feedback(
                False,
                f"{name} changed its argument number {i + 1} (a tensor of shape {tuple(orig.shape)}) in place. "
                "A function should not modify its inputs: use out-of-place operations (x = x + y, not x += y or "
                "x.add_(y)) or work on x.clone().",
            )
    return out, None


def shape_problem(out: Any, expected: torch.Tensor, signature: str, hint: str = "") -> Optional[Feedback]:
    """Feedback when a student's output is not a tensor of ``expected``'s shape; ``None`` when it is.

    ``hint`` is appended when the batch size or the number of axes is wrong, the usual symptom of combining a
    ``(batch,)`` tensor with ``(batch, dim)`` points without a trailing axis.
    """
    if not isinstance(out, torch.Tensor):
        return Feedback(False, f"{signature} must return a tensor of shape (batch, dim); got {type(out).__name__}.")
    if out.shape != expected.shape:
        extra = hint if out.ndim != expected.ndim or out.shape[0] != expected.shape[0] else ""
        return Feedback(False, f"expected an output of shape {tuple(expected.shape)}, got {tuple(out.shape)}.{extra}")
    return None


def with_broadcast_hint(err: Feedback, hint: str) -> Feedback:
    """``err`` with ``hint`` appended when the student's exception was a broadcasting error."""
    if "size of tensor" in err.message or "broadcast" in err.message:
        return Feedback(False, err.message + hint)
    return err


def compare_tensors(
    got: Any,
    expected: torch.Tensor,
    *,
    what: str,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str = "",
) -> Feedback:
    """Compare a student's tensor with the expected one; on failure name the shape or the worst entry.

    Parameters
    ----------
    got:
        The student's value (anything; a non-tensor fails with an explanation).
    expected:
        The reference tensor.
    what:
        A short description used in the message, e.g. ``"the density at x = 0.5"``.
    atol, rtol:
        Tolerances as in :func:`torch.allclose`.
    hint:
        Appended to failure messages.
    """
    suffix = f" Hint: {hint}" if hint else ""
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got, dtype=expected.dtype)
        except (TypeError, ValueError, RuntimeError):
            return Feedback(False, f"{what}: expected a tensor, got {type(got).__name__}.{suffix}")
    got = got.detach().to(expected.device, expected.dtype)
    if got.shape != expected.shape:
        return Feedback(
            False, f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.{suffix}"
        )
    if not torch.isfinite(got).all():
        return Feedback(False, f"{what}: your values contain NaN or inf.{suffix}")
    err = (got - expected).abs()
    tol = atol + rtol * expected.abs()
    if (err <= tol).all():
        return Feedback(True, f"{what} matches (max abs error {float(err.max()) if err.numel() else 0.0:.2e}).")
    if expected.ndim == 0:
        return Feedback(
            False,
            f"{what}: your value is {float(got):.6g} but should be {float(expected):.6g} "
            f"(abs error {float(err):.2e}).{suffix}",
        )
    idx = int(torch.argmax(err - tol))
    pos = tuple(int(i) for i in torch.unravel_index(torch.tensor(idx), expected.shape)) if expected.ndim else ()
    return Feedback(
        False,
        f"{what}: entry {pos} is {float(got.reshape(-1)[idx]):.6g} but should be "
        f"{float(expected.reshape(-1)[idx]):.6g} (max abs error {float(err.max()):.2e}).{suffix}",
    )
