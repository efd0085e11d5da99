r"""Checkers for the chapter "Conditional generation and classifier-free guidance".

* :func:`check_cfg_combine`: the guided velocity :math:`w\,v_c + (1 - w)\,v_\varnothing` from a conditional and an
  unconditional prediction;
* :func:`check_unconditional_from_classes`: the unconditional field as the *posterior* average of the class fields,
  :math:`u_t(x) = \sum_c p_t(c \mid x)\, u_t(x \mid c)` with
  :math:`p_t(c \mid x) \propto \pi_c\, p_t(x \mid c)`.

Both call the student's function on copies of the inputs, survive exceptions it raises, and name the usual
mistakes: swapped roles or Ho and Salimans' :math:`(1 + w)` convention for the first; prior weights (the literal
reading of :math:`\mathbb E_c`), likelihood weights without the prior, or a softmax over the wrong axis for the
second.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._core import Feedback, call_student, compare_tensors, require_callable, shape_problem

__all__ = ["check_cfg_combine", "check_unconditional_from_classes"]

_CFG_SIGNATURE = "cfg_combine(v_cond, v_uncond, w)"
_UNCOND_SIGNATURE = "unconditional_from_classes(v_classes, log_lik, log_prior)"


def _close(a: object, b: torch.Tensor, tol: float = 1e-9) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and bool(
        torch.allclose(a.detach().to(b.dtype), b, atol=tol, rtol=tol)
    )


def check_cfg_combine(cfg_combine: Callable) -> Feedback:
    r"""Check a student's ``cfg_combine(v_cond, v_uncond, w)``.

    It receives the conditional and unconditional velocities (shape ``(batch, d)``, float64) and a float guidance
    scale ``w``, and must return :math:`w\,v_{\mathrm{cond}} + (1 - w)\,v_{\mathrm{uncond}}`, so that ``w = 0`` gives
    the unconditional and ``w = 1`` the conditional field.

    Returns
    -------
    Feedback
        Passed, or a message naming the mistake: not a tensor or wrong shape, the two roles swapped, Ho and
        Salimans' convention :math:`(1 + w)\,v_c - w\,v_\varnothing` (whose ``w`` is this book's ``w - 1``), the
        inputs modified in place, or the wrong value at ``w = 0``, ``1`` or a scale above one.
    """
    bad = require_callable(cfg_combine, "cfg_combine", _CFG_SIGNATURE)
    if bad is not None:
        return bad
    g = torch.Generator().manual_seed(11)
    v_c = torch.randn(6, 3, generator=g, dtype=torch.float64)
    v_u = torch.randn(6, 3, generator=g, dtype=torch.float64)
    results = {}
    for w in (0.0, 1.0, 3.0):
        a, b = v_c.clone(), v_u.clone()
        out, err = call_student(cfg_combine, a, b, w, name=_CFG_SIGNATURE)
        if err is not None:
            return err
        problem = shape_problem(out, v_c, _CFG_SIGNATURE)
        if problem is not None:
            return problem
        if not (torch.equal(a, v_c) and torch.equal(b, v_u)):
            return Feedback(False, "your function changed v_cond or v_uncond in place; return a new tensor instead.")
        results[w] = out
    expected = {w: w * v_c + (1 - w) * v_u for w in results}
    if all(_close(results[w], expected[w]) for w in results):
        return Feedback(True, "w v_cond + (1 - w) v_uncond is right at w = 0 (unconditional), w = 1 (conditional) "
                              "and w = 3 (guided beyond the class).")
    if all(_close(results[w], w * v_u + (1 - w) * v_c) for w in results):
        return Feedback(False, "the roles are swapped: w multiplies the conditional velocity v_cond, and 1 - w the "
                               "unconditional one (w = 0 must give v_uncond).")
    if all(_close(results[w], (1 + w) * v_c - w * v_u) for w in results):
        return Feedback(False, "you used Ho and Salimans' convention (1 + w) v_cond - w v_uncond, where w = 0 means "
                               "no guidance. This book's w is theirs plus one: w v_cond + (1 - w) v_uncond, so that "
                               "w = 0 is the unconditional and w = 1 the conditional field.")
    for w in (0.0, 1.0, 3.0):
        fb = compare_tensors(results[w], expected[w], what=f"the guided velocity at w = {w:g}", atol=1e-9, rtol=1e-9,
                             hint="w = 0 must return v_uncond and w = 1 v_cond; in between and beyond, the formula is "
                                  "linear in w.")
        if not fb:
            return fb
    return Feedback(False, "unexpected result")  # pragma: no cover - one of the comparisons above fails


def check_unconditional_from_classes(unconditional_from_classes: Callable) -> Feedback:
    r"""Check a student's ``unconditional_from_classes(v_classes, log_lik, log_prior)``.

    Inputs (float64): the class fields ``v_classes`` of shape ``(batch, K, d)``, the class log-likelihoods
    :math:`\log p_t(x \mid c)` of shape ``(batch, K)`` and the log prior :math:`\log \pi_c` of shape ``(K,)``. The
    function must return :math:`\sum_c p_t(c \mid x)\, v_c(x)` of shape ``(batch, d)``, with the posterior
    :math:`p_t(c \mid x) = \pi_c p_t(x \mid c) / \sum_{c'} \pi_{c'} p_t(x \mid c')`.

    Returns
    -------
    Feedback
        Passed, or a message naming the mistake: wrong shape, prior weights (the field is not
        :math:`\sum_c \pi_c v_c`), the prior left out of the posterior, a softmax over the batch axis, an
        overflow with large log-likelihoods (use a log-sum-exp / softmax), or the inputs modified in place.
    """
    bad = require_callable(unconditional_from_classes, "unconditional_from_classes", _UNCOND_SIGNATURE)
    if bad is not None:
        return bad
    g = torch.Generator().manual_seed(12)
    batch, k, d = 7, 3, 2
    v = torch.randn(batch, k, d, generator=g, dtype=torch.float64)
    log_lik = 2 * torch.randn(batch, k, generator=g, dtype=torch.float64)
    log_prior = torch.log(torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64))
    expected = (torch.softmax(log_prior + log_lik, dim=1)[..., None] * v).sum(1)
    copies = (v.clone(), log_lik.clone(), log_prior.clone())
    out, err = call_student(unconditional_from_classes, *copies, name=_UNCOND_SIGNATURE)
    if err is not None:
        return err
    problem = shape_problem(out, expected, _UNCOND_SIGNATURE,
                            hint=" Sum over the class axis (dim 1) of v_classes, which has shape (batch, K, d).")
    if problem is not None:
        return problem
    if not (torch.equal(copies[0], v) and torch.equal(copies[1], log_lik) and torch.equal(copies[2], log_prior)):
        return Feedback(False, "your function changed its inputs in place; work on new tensors instead.")
    if not _close(out, expected):
        mistakes = {
            "you weighted the classes by the prior pi_c. The unconditional field averages the class fields with "
            "the posterior p_t(c | x) = pi_c p_t(x | c) / p_t(x), which depends on x: near a class's data that "
            "class dominates, whatever its prior.": (log_prior.exp()[None, :, None] * v).sum(1),
            "the posterior is missing the prior: weight by pi_c p_t(x | c), normalised over c, not by p_t(x | c) "
            "alone.": (torch.softmax(log_lik, dim=1)[..., None] * v).sum(1),
            "the weights are normalised over the batch (dim 0) instead of over the classes (dim 1).":
                (torch.softmax(log_prior + log_lik, dim=0)[..., None] * v).sum(1),
        }
        for message, wrong in mistakes.items():
            if _close(out, wrong):
                return Feedback(False, message)
        return compare_tensors(out, expected, what="the unconditional field", atol=1e-9, rtol=1e-9,
                               hint="posterior weights softmax(log_prior + log_lik) over the classes, then a "
                                    "weighted sum of v_classes over the class axis.")
    # stability: log-likelihoods of a far-away point are very negative; exp() of them underflows to 0/0
    far = log_lik - 2000.0
    out, err = call_student(unconditional_from_classes, v.clone(), far, log_prior.clone(), name=_UNCOND_SIGNATURE)
    if err is not None:
        return err
    if not isinstance(out, torch.Tensor) or not torch.isfinite(out).all() or not _close(out, expected, 1e-7):
        return Feedback(False, "right for moderate inputs, but with log-likelihoods around -2000 (a point far from "
                               "all data) the result is NaN or wrong: exp() underflows. Normalise in log space, "
                               "e.g. torch.softmax(log_prior + log_lik, dim=1).")
    return Feedback(True, "posterior-weighted average of the class fields, numerically stable (max error "
                          f"{float((out - expected).abs().max()):.1e} with log-likelihoods near -2000).")
