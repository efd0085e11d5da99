"""Automatic exercise checkers.

Each chapter's checkers live in their own submodule (``fmlib.exercises.<chapter>``) and are re-exported here by
name, so an instructor can write ``from fmlib.exercises import check_cfm_loss``. Every checker returns a
:class:`Feedback`: truthy when the answer is right, and otherwise a message that says precisely what is wrong
(which input, which entry, expected vs got, and a hint). Checkers call the student's code on copies of their
inputs, report in-place changes of those inputs, and never let an exception (``sys.exit`` included) escape.
A grader can use them directly::

    from fmlib.exercises import check_condot_cond_velocity
    fb = check_condot_cond_velocity(student_function)
    assert fb, fb.message
"""

from ._core import Feedback, call_student, compare_tensors, require_callable, shape_problem, with_broadcast_hint
from .change_of_variables import check_pushforward_density
from .cnf import check_hutchinson_estimate, check_rk4_step
from .coupling import check_ot_pairs, check_reflow_pairs
from .continuity import check_density_preserving_field, check_gaussian_velocity
from .fm_vs_cfm import check_bregman_divergence, check_cfm_loss
from .gaussian_paths import check_condot_cond_velocity, check_gaussian_cond_velocity, check_ve_cond_velocity
from .guidance import check_cfg_combine, check_unconditional_from_classes
from .marginalization import check_marginal_velocity, check_posterior_weights
from .meanflow import check_convention_map, check_meanflow_target
from .normalizing_flows import check_coupling_forward, check_two_layer_log_prob
from .practice import check_ema_step, check_lr_schedule
from .score_matching import check_score_to_velocity, check_score_to_x1

CHECKERS = {
    "change of variables (ch. 1)": ["check_pushforward_density"],
    "normalizing flows (ch. 2)": ["check_coupling_forward", "check_two_layer_log_prob"],
    "continuous normalizing flows (ch. 3)": ["check_rk4_step", "check_hutchinson_estimate"],
    "continuity equation (ch. 4)": ["check_gaussian_velocity", "check_density_preserving_field"],
    "marginalization trick (ch. 5)": ["check_posterior_weights", "check_marginal_velocity"],
    "FM vs CFM (ch. 6)": ["check_cfm_loss", "check_bregman_divergence"],
    "Gaussian paths (ch. 7)": ["check_condot_cond_velocity", "check_gaussian_cond_velocity", "check_ve_cond_velocity"],
    "score matching (ch. 8)": ["check_score_to_velocity", "check_score_to_x1"],
    "training and sampling in practice (ch. 9)": ["check_lr_schedule", "check_ema_step"],
    "minibatch OT and reflow (ch. 10)": ["check_ot_pairs", "check_reflow_pairs"],
    "guidance (ch. 11)": ["check_cfg_combine", "check_unconditional_from_classes"],
    "MeanFlow (ch. 12)": ["check_meanflow_target", "check_convention_map"],
}
"""Every checker by topic (names importable from this package)."""

__all__ = ["Feedback", "CHECKERS", "call_student", "compare_tensors", "require_callable", "shape_problem",
           "with_broadcast_hint", *[name for names in CHECKERS.values() for name in names]]
