r"""Class-conditional sampling and classifier-free guidance.

A class-conditional velocity field is called as ``field(x, t, y=y)`` with integer labels ``y`` of shape
``(batch,)`` in ``[0, K]``, where the extra label ``K`` (the *null label*) asks for the unconditional field. Both a
network (:class:`fmlib.nets.VelocityMLP` with ``num_classes=K``, trained with label dropout by
:func:`fmlib.train.fit_cfm`) and the exact field of labelled Gaussian-mixture data (:class:`ExactClassField`) have
this form, so the same guidance code drives both.

Classifier-free guidance with scale :math:`w` replaces the velocity by

.. math:: \tilde u_t(x \mid c) = w\, u_t(x \mid c) + (1 - w)\, u_t(x)
          = u_t(x) + w\,\big(u_t(x \mid c) - u_t(x)\big):

:math:`w = 0` is the unconditional field, :math:`w = 1` the conditional one, :math:`w > 1` extrapolates beyond it.
(Ho and Salimans write :math:`(1 + w')\,\varepsilon(x \mid c) - w'\,\varepsilon(x)`; their :math:`w'` is
:math:`w - 1`.)
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Union

import torch

from ._checks import TimeLike, as_points, as_time, check_labels, positive_int, real
from .paths import AffinePath
from .targets import LabelledMixture, class_velocity

__all__ = ["ExactClassField", "guided_velocity", "guided_field", "drop_labels"]

ClassField = Callable[..., torch.Tensor]
"""``field(x, t, y=y)`` returns a velocity of shape ``(batch, d)`` for labels ``y`` of shape ``(batch,)``."""

Labels = Union[int, torch.Tensor]


class ExactClassField:
    r"""The exact class-conditional velocity of labelled Gaussian-mixture data, as a callable ``field(x, t, y=y)``.

    ``field(x, t, y=y)`` returns :func:`fmlib.targets.class_velocity`: :math:`u_t(x \mid y_i)` in row ``i``, and the
    unconditional :math:`u_t(x)` where ``y_i`` is the null label ``K`` (also when ``y`` is omitted).

    Parameters
    ----------
    path:
        An affine Gaussian path.
    q:
        The labelled data (:class:`fmlib.targets.LabelledMixture`).
    """

    def __init__(self, path: AffinePath, q: LabelledMixture) -> None:
        if not isinstance(path, AffinePath):
            raise TypeError(f"path must be an fmlib.paths.AffinePath; got {type(path).__name__}")
        if not isinstance(q, LabelledMixture):
            raise TypeError(f"q must be an fmlib.targets.LabelledMixture; got {type(q).__name__}")
        self.path = path
        self.q = q
        self.num_classes = q.num_classes

    def __call__(self, x: torch.Tensor, t: TimeLike, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = as_points(x, "x", dim=self.q.dim)
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        return class_velocity(self.path, self.q, x, t, y)


def _null_label(field: object, null_label: Optional[int]) -> int:
    if null_label is None:
        null_label = getattr(field, "num_classes", None)
        if null_label is None:
            raise ValueError(
                "null_label is needed: field has no attribute num_classes (give null_label=K, the label that "
                "means 'no class')"
            )
    return positive_int(null_label, "null_label")


def _labels(y: Labels, x: torch.Tensor, null_label: int) -> torch.Tensor:
    if isinstance(y, numbers.Integral) and not isinstance(y, bool):
        y = torch.full((x.shape[0],), int(y), dtype=torch.long, device=x.device)
    return check_labels(y, x.shape[0], null_label).to(x.device)


def guided_velocity(
    field: ClassField,
    x: torch.Tensor,
    t: TimeLike,
    y: Labels,
    w: float,
    null_label: Optional[int] = None,
) -> torch.Tensor:
    r"""Classifier-free guided velocity :math:`w\, v(x, t \mid y) + (1 - w)\, v(x, t \mid \varnothing)`.

    Parameters
    ----------
    field:
        A class-conditional field called as ``field(x, t, y=labels)`` (a conditional network, or
        :class:`ExactClassField`).
    x:
        Points, shape ``(batch, d)``.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.
    y:
        The class: an int, or integer labels of shape ``(batch,)``, in ``[0, null_label]``.
    w:
        Guidance scale (a real number): 0 unconditional, 1 conditional, > 1 guided beyond the class.
    null_label:
        The label meaning "no class"; defaults to ``field.num_classes``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch, d)``. For ``w`` other than 0 and 1 the field is called once on the doubled batch
        (conditional and null labels together).
    """
    if not callable(field):
        raise TypeError(f"field must be callable as field(x, t, y=labels); got {type(field).__name__}")
    x = as_points(x, "x")
    tt = as_time(t, x)
    w = real(w, "w")
    k = _null_label(field, null_label)
    y = _labels(y, x, k)
    null = torch.full_like(y, k)
    if w == 1.0:
        out = field(x, tt, y=y)
    elif w == 0.0:
        out = field(x, tt, y=null)
    else:
        both = field(torch.cat([x, x]), torch.cat([tt, tt]), y=torch.cat([y, null]))
        if isinstance(both, torch.Tensor) and both.shape == (2 * x.shape[0], x.shape[1]):
            cond, uncond = both.chunk(2)
            out = uncond + w * (cond - uncond)
        else:
            out = both
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        what = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"field(x, t, y=labels) must return the shape of x (or of the doubled batch); got {what}")
    return out


def guided_field(field: ClassField, y: Labels, w: float, null_label: Optional[int] = None):
    """The guided velocity as a function ``v(x, t)`` of the points only, ready for :func:`fmlib.solvers.integrate`.

    Arguments as in :func:`guided_velocity`; labels given as a tensor must match the batch that is integrated.
    """
    if not callable(field):
        raise TypeError(f"field must be callable as field(x, t, y=labels); got {type(field).__name__}")
    w = real(w, "w")
    k = _null_label(field, null_label)

    def v(x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        return guided_velocity(field, x, t, y, w, k)

    return v


def drop_labels(y: torch.Tensor, p: float, null_label: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Label dropout: a copy of ``y`` in which each label is replaced by ``null_label`` with probability ``p``.

    Training on such batches teaches one network both :math:`v(x, t \mid c)` and :math:`v(x, t \mid \varnothing)`
    (the unconditional field), which classifier-free guidance combines.

    Parameters
    ----------
    y:
        Integer labels of shape ``(batch,)`` in ``[0, null_label)``.
    p:
        Dropout probability in ``[0, 1]``.
    null_label:
        The label meaning "no class" (``K``).
    generator:
        CPU generator for the coin flips (PyTorch's global generator when omitted).

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``, same dtype and device as ``y``; ``y`` itself is not modified.
    """
    k = positive_int(null_label, "null_label")
    if isinstance(y, torch.Tensor) and y.ndim != 1:
        raise ValueError(f"y must have shape (batch,); got {tuple(y.shape)}")
    y = check_labels(y, len(y) if isinstance(y, torch.Tensor) else 0, k, allow_null=False)
    p = real(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p (the label dropout probability) must lie in [0, 1]; got {p}")
    coin = torch.rand(y.shape[0], generator=generator, dtype=torch.float64) < p
    return torch.where(coin.to(y.device), torch.full_like(y, k), y)
