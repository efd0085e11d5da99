"""Automatic exercise checkers.

Each chapter's checkers live in their own submodule (``fmlib.exercises.<chapter>``) and return a
:class:`Feedback`: truthy when the answer is right, and otherwise a message that says precisely what is wrong
(which input, which entry, expected vs got, and a hint). Instructors can call the same checkers from a grader::

    from fmlib.exercises import Feedback
    fb = check_something(student_function)
    assert fb, fb.message
"""

from ._core import Feedback, compare_tensors, require_callable, shape_problem, with_broadcast_hint

__all__ = ["Feedback", "compare_tensors", "require_callable", "shape_problem", "with_broadcast_hint"]
