"""Unit tests for the exercise-checker building blocks in fmlib.exercises."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import pytest  # noqa: E402
import torch  # noqa: E402

from fmlib._checks import call_field  # noqa: E402
from fmlib.exercises import (Feedback, compare_tensors, require_callable, shape_problem,  # noqa: E402
                             with_broadcast_hint)
from fmlib.exercises._core import call_student  # noqa: E402

F64 = torch.float64


def test_feedback_truthiness_and_text():
    ok, bad = Feedback(True, "all good."), Feedback(False, "wrong sign.")
    assert bool(ok) is True and bool(bad) is False
    assert str(ok) == "Correct: all good." and str(bad) == "Not yet: wrong sign."
    assert repr(bad) == str(bad)
    assert ok._repr_markdown_() == "**Correct.** all good."
    assert bad._repr_markdown_() == "**Not yet.** wrong sign."
    assert "passed" not in str(ok)
    with pytest.raises(Exception):  # frozen dataclass
        ok.passed = False  # type: ignore[misc]


def test_compare_tensors_pass():
    exp = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    fb = compare_tensors(exp + 1e-8, exp, what="the velocity")
    assert fb and fb.passed
    assert fb.message.startswith("the velocity matches (max abs error 1.00e-08)")
    # lists and numbers are converted to tensors
    assert compare_tensors([[1.0, 2.0], [3.0, 4.0]], exp, what="x")
    assert compare_tensors(2.5, torch.tensor(2.5), what="a scalar")
    # rtol scales with the expected values
    big = torch.tensor([1e6], dtype=F64)
    assert compare_tensors(big + 5.0, big, what="big")
    assert not compare_tensors(big + 50.0, big, what="big")


def test_compare_tensors_shape_mismatch():
    exp = torch.zeros(3, 2)
    fb = compare_tensors(torch.zeros(2, 3), exp, what="the score", hint="transpose?")
    assert not fb
    assert fb.message == "the score: expected shape (3, 2), got (2, 3). Hint: transpose?"


def test_compare_tensors_names_the_worst_entry():
    exp = torch.zeros(3, 4, dtype=F64)
    got = exp.clone()
    got[0, 1] = 0.01
    got[2, 3] = -0.5
    fb = compare_tensors(got, exp, what="u_t(x)")
    assert not fb
    assert fb.message == "u_t(x): entry (2, 3) is -0.5 but should be 0 (max abs error 5.00e-01)."
    # 1-D
    fb = compare_tensors(torch.tensor([1.0, 2.0, 7.0]), torch.tensor([1.0, 2.0, 3.0]), what="v", hint="h")
    assert fb.message == "v: entry (2,) is 7 but should be 3 (max abs error 4.00e+00). Hint: h"
    # the entry furthest outside its tolerance, not merely the largest absolute error
    fb = compare_tensors(torch.tensor([1000.5, 0.3]), torch.tensor([1000.0, 0.0]), what="w", atol=0.0, rtol=1e-3)
    assert "entry (1,)" in fb.message


def test_compare_tensors_nan_and_non_tensor():
    exp = torch.ones(3)
    fb = compare_tensors(torch.tensor([1.0, float("nan"), 1.0]), exp, what="the density", hint="use logsumexp")
    assert not fb
    assert fb.message == "the density: your values contain NaN or inf. Hint: use logsumexp"
    assert not compare_tensors(torch.tensor([1.0, float("inf"), 1.0]), exp, what="d")
    fb = compare_tensors("abc", exp, what="the answer")
    assert not fb and fb.message == "the answer: expected a tensor, got str."
    fb = compare_tensors(None, exp, what="the answer")
    assert not fb and "expected a tensor, got NoneType" in fb.message


def test_compare_tensors_casts_dtype_and_detaches():
    exp = torch.tensor([0.5, 0.25], dtype=F64)
    got = torch.tensor([0.5, 0.25], dtype=torch.float32, requires_grad=True)
    assert compare_tensors(got, exp, what="p")


def test_call_student_returns_value_or_feedback():
    value, fb = call_student(lambda a, b: a + b, 2, 3)
    assert value == 5 and fb is None

    def broken(x):
        raise ZeroDivisionError("division by zero")

    value, fb = call_student(broken, 1, name="density(x)")
    assert value is None and not fb
    assert fb.message == "density(x) raised ZeroDivisionError: division by zero"
    _, fb = call_student(lambda: torch.zeros(2) @ torch.zeros(3))
    assert fb.message.startswith("your function raised RuntimeError")


def test_require_callable():
    assert require_callable(len, "f", "f(x)") is None
    fb = require_callable(3, "velocity", "velocity(x, t)")
    assert not fb and fb.message == "velocity must be a function velocity(x, t); got int."


def test_shape_problem_accepts_right_shape_and_names_wrong_ones():
    expected = torch.zeros(4, 2)
    assert shape_problem(torch.ones(4, 2), expected, "f(x)", hint=" HINT") is None
    not_tensor = shape_problem([1.0], expected, "f(x)")
    assert not not_tensor and "f(x) must return a tensor" in not_tensor.message and "list" in not_tensor.message
    broadcast = shape_problem(torch.ones(4, 4, 2), expected, "f(x)", hint=" HINT")
    assert not broadcast and "(4, 2), got (4, 4, 2)" in broadcast.message and broadcast.message.endswith("HINT")
    wrong_dim = shape_problem(torch.ones(4, 3), expected, "f(x)", hint=" HINT")
    assert not wrong_dim and "HINT" not in wrong_dim.message  # batch and rank are right: no broadcasting hint


def test_with_broadcast_hint_only_for_broadcast_errors():
    err = Feedback(False, "f raised RuntimeError: The size of tensor a (4) must match the size of tensor b (2)")
    assert with_broadcast_hint(err, " HINT").message.endswith("HINT")
    other = Feedback(False, "f raised KeyError: 'x'")
    assert with_broadcast_hint(other, " HINT") is other


def test_call_field_checks_type_and_shape():
    x, t = torch.zeros(3, 2), torch.zeros(3)
    assert torch.equal(call_field(lambda x, t: x + 1, x, t), torch.ones(3, 2))
    with pytest.raises(TypeError, match=r"field\(x, t\) must return a tensor; got float"):
        call_field(lambda x, t: 1.0, x, t, "field")
    with pytest.raises(ValueError, match=r"velocity\(x, t\) must return the shape of x \(3, 2\); got \(3,\)"):
        call_field(lambda x, t: t, x, t)

