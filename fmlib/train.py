r"""Training loops with a recipe that reaches the data's noise floor on small problems.

:func:`fit` minimises any loss; :func:`fit_cfm` trains a velocity field with conditional flow matching. Both use
the same recipe unless told otherwise:

* **AdamW** (``lr = 1e-3``, ``weight_decay = 1e-5``; PyTorch's fused kernel where available, :func:`adamw`);
* a **learning-rate schedule** (:func:`cosine_schedule`): a linear warm-up over the first 5 % of training, then
  a cosine decay to zero;
* an **exponential moving average** of the weights (:class:`EMA`), which the model holds when training ends;
  the raw weights stay in :attr:`TrainHistory.raw_state_dict`;
* a length given either as a number of ``steps`` (deterministic: the book's chapters use this) or as a
  wall-clock budget ``seconds`` (the schedule then follows the elapsed time; the number of steps depends on
  the machine).

Inputs are validated fully on the first step; later steps skip the value scans (NaN and range checks of the
times), so the loop costs about what a hand-written one does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_range, check_labels, positive_int, real, skip_value_scans
from .guidance import drop_labels
from .losses import cfm_loss
from .paths import AffinePath
from .utils import make_generator

__all__ = ["TrainHistory", "EMA", "adamw", "cosine_schedule", "fit", "fit_cfm", "uniform_time", "check_data_sampler"]

DataSampler = Callable[[int, torch.Generator], Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]
"""``sample_data(n, generator)`` returns ``n`` data points of shape ``(n, d)``, or a pair ``(points, labels)``."""

TimeSampler = Callable[[int, torch.Generator], torch.Tensor]
"""``sample_time(n, generator)`` returns ``n`` times in ``[0, 1]``, shape ``(n,)``."""

_SCHEDULES = ("cosine", "constant")
_FLUSH_EVERY = 100  # losses are read back (a device sync on a GPU) every this many steps


@dataclass
class TrainHistory:
    """What :func:`fit` returns.

    Attributes
    ----------
    losses:
        The training loss at every step.
    lrs:
        The learning rate used at every step.
    seconds:
        Wall-clock time of the loop.
    ema_decay:
        The weight-averaging decay (``None`` if no averaging was done).
    raw_state_dict:
        With weight averaging, the raw (not averaged) weights at the end of training, on the CPU;
        ``model.load_state_dict(history.raw_state_dict)`` puts them back. ``None`` otherwise.
    """

    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    seconds: float = 0.0
    ema_decay: Optional[float] = None
    raw_state_dict: Optional[dict] = None

    @property
    def steps(self) -> int:
        """Number of optimisation steps taken."""
        return len(self.losses)

    @property
    def steps_per_second(self) -> float:
        """Optimisation steps per wall-clock second."""
        return self.steps / self.seconds if self.seconds > 0 else float("nan")

    def smoothed(self, window: int = 50) -> np.ndarray:
        """Moving average of the losses over ``window`` steps (shorter at the start), shape ``(steps,)``."""
        window = positive_int(window, "window")
        x = np.asarray(self.losses, dtype=float)
        c = np.cumsum(np.insert(x, 0, 0.0))
        idx = np.arange(1, len(x) + 1)
        lo = np.maximum(idx - window, 0)
        return (c[idx] - c[lo]) / (idx - lo)


def cosine_schedule(progress: float, warmup: float = 0.05, final: float = 0.0) -> float:
    r"""Learning-rate multiplier at a fraction ``progress`` in ``[0, 1]`` of training.

    A linear warm-up from ``0`` to ``1`` over the first ``warmup`` fraction, then a cosine decay to ``final``:

    .. math:: m(p) = \begin{cases} p / w & p < w \\
              f + \tfrac12 (1 - f)\bigl(1 + \cos\bigl(\pi \tfrac{p - w}{1 - w}\bigr)\bigr) & p \ge w \end{cases}

    :func:`fit` evaluates ``m`` at the middle of each step, so no step has a learning rate of exactly zero.
    """
    p = real(progress, "progress")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"progress must lie in [0, 1]; got {p}")
    w = real(warmup, "warmup", nonnegative=True)
    if w >= 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1); got {w}")
    f = real(final, "final", nonnegative=True)
    if f > 1.0:
        raise ValueError(f"final must lie in [0, 1]; got {f}")
    return _cosine(p, w, f)


def _cosine(p: float, w: float, f: float = 0.0) -> float:  # cosine_schedule without validation (hot loop)
    if p < w:
        return p / w
    return f + 0.5 * (1.0 - f) * (1.0 + math.cos(math.pi * (p - w) / (1.0 - w)))


class EMA:
    r"""Exponential moving average of a model's floating-point parameters and buffers.

    After step :math:`k` (counted from 0) the average moves towards the current weights :math:`\theta_k`,

    .. math:: \bar\theta \leftarrow \beta_k \bar\theta + (1 - \beta_k)\,\theta_k, \qquad
              \beta_k = \min\Bigl(\beta, \frac{1 + k}{10 + k}\Bigr),

    where the warm-up of :math:`\beta_k` keeps the random initial weights from lingering in the average of a
    short run. ``decay`` is :math:`\beta`; the average covers roughly the last :math:`1 / (1 - \beta)` steps.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        decay = real(decay, "ema_decay")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1); got {decay}")
        self.decay = decay
        self.updates = 0
        self._live = [t for t in _float_tensors(model)]
        self.shadow = [t.detach().clone() for t in self._live]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the model's current weights."""
        k = self.updates
        beta = min(self.decay, (1.0 + k) / (10.0 + k))
        torch._foreach_lerp_(self.shadow, [t.detach() for t in self._live], 1.0 - beta)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (the module this average was made from, or a copy)."""
        targets = _float_tensors(model)
        if len(targets) != len(self.shadow) or any(a.shape != b.shape for a, b in zip(targets, self.shadow)):
            raise ValueError("model does not have the parameters this average was made from")
        for dst, src in zip(targets, self.shadow):
            dst.copy_(src)


def _float_tensors(model: nn.Module) -> list[torch.Tensor]:
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    return [t for t in tensors if t.is_floating_point()]


def adamw(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-5) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters, with PyTorch's fused kernel where the device supports it.

    The fused update does the same arithmetic in one kernel; on a CPU it is about 3x faster than the default
    per-tensor loop for the book's small networks (the optimiser step is then a small part of a training step).
    """
    lr = real(lr, "lr", positive=True)
    weight_decay = real(weight_decay, "weight_decay", nonnegative=True)
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _check_length(steps: object, seconds: object) -> tuple[Optional[int], Optional[float]]:
    if (steps is None) == (seconds is None):
        raise ValueError(f"give exactly one of steps and seconds; got steps={steps!r}, seconds={seconds!r}")
    if steps is not None:
        return positive_int(steps, "steps"), None
    return None, real(seconds, "seconds", positive=True)


def fit(
    model: nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    steps: Optional[int] = None,
    *,
    seconds: Optional[float] = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    optimizer: Optional[torch.optim.Optimizer] = None,
    schedule: str = "cosine",
    warmup: float = 0.05,
    ema_decay: Optional[float] = 0.999,
    progress: bool = True,
    desc: str = "training",
) -> TrainHistory:
    """Minimise ``loss_fn(step)`` over ``model``'s parameters with the book's training recipe.

    Parameters
    ----------
    model:
        The network being trained (put in train mode during the loop, eval mode after).
    loss_fn:
        Called with the step index; returns a scalar loss tensor for a fresh batch.
    steps, seconds:
        Exactly one: the number of optimisation steps, or a wall-clock budget in seconds (training stops at the
        first step that ends past it; the schedule then runs on elapsed time, so the run is not reproducible
        step for step).
    lr, weight_decay:
        AdamW settings, used when ``optimizer`` is not given.
    optimizer:
        An optimizer over ``model``'s parameters, to use instead of AdamW. The schedule scales each of its
        parameter groups' initial ``lr``.
    schedule:
        ``"cosine"`` (warm-up then cosine decay, :func:`cosine_schedule`) or ``"constant"``.
    warmup:
        Fraction of training spent warming up (``"cosine"`` only).
    ema_decay:
        Decay of the weight average (:class:`EMA`); ``None`` trains without averaging. With averaging the model
        holds the averaged weights when ``fit`` returns, and ``history.raw_state_dict`` the raw ones.
    progress:
        Show a tqdm progress bar with the running loss.
    desc:
        Label of the progress bar.

    Returns
    -------
    TrainHistory
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(step); got {type(loss_fn).__name__}")
    steps, seconds = _check_length(steps, seconds)
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {_SCHEDULES}; got {schedule!r}")
    warmup = real(warmup, "warmup", nonnegative=True)
    if warmup >= 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1); got {warmup}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model ({type(model).__name__}) has no trainable parameters: there is nothing to fit")
    if optimizer is None:
        optimizer = adamw(model, lr=lr, weight_decay=weight_decay)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
    ema = None if ema_decay is None else EMA(model, ema_decay)
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    history = TrainHistory(ema_decay=None if ema is None else ema.decay)
    pending: list[torch.Tensor] = []

    def flush(step: int) -> None:
        if not pending:
            return
        values = torch.stack(pending).double().cpu()
        first = len(history.losses)
        pending.clear()
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            at = first + int(bad[0])
            raise ValueError(
                f"the loss became {float(values[int(bad[0])])} at step {at}: the data, the model's output or the "
                "weights hold NaN/inf (check the data first; a too high learning rate is the other usual cause)"
            )
        history.losses.extend(values.tolist())

    total = steps if steps is not None else None
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=0.5, unit="step")
    model.train()
    start = time.perf_counter()
    step = 0
    scans_off = skip_value_scans()
    try:
        while True:
            elapsed = time.perf_counter() - start
            if steps is not None:
                if step >= steps:
                    break
                frac = (step + 0.5) / steps
            else:
                if step > 0 and elapsed >= seconds:
                    break
                frac = min(elapsed / seconds, 1.0)
            factor = 1.0 if schedule == "constant" else _cosine(frac, warmup)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            history.lrs.append(base_lrs[0] * factor)

            if step == 0:  # the first step validates everything; later ones skip the value scans
                loss = loss_fn(step)
                if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                    raise ValueError(f"loss_fn must return a scalar tensor; got {loss!r:.80}")
                if not loss.requires_grad:
                    raise ValueError(
                        "loss_fn returned a loss that does not depend on the model's parameters "
                        "(computed under torch.no_grad(), detached, or through numpy?)"
                    )
            else:
                loss = loss_fn(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update()
            pending.append(loss.detach())
            if step == 0:
                scans_off.__enter__()  # inputs were validated on the first step: skip the value scans from now on
            step += 1
            if step % _FLUSH_EVERY == 0:
                flush(step)
                if progress:
                    bar.set_postfix(loss=f"{history.losses[-1]:.4f}", refresh=False)
            bar.update(1)
        flush(step)
    finally:
        if step > 0:
            scans_off.__exit__(None, None, None)
        bar.close()
        history.seconds = time.perf_counter() - start
        model.eval()
    if ema is not None:
        history.raw_state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        ema.copy_to(model)
    return history


def uniform_time(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` times drawn uniformly from ``[0, 1]``, shape ``(n,)`` (float64, CPU)."""
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _first_parameter(model: nn.Module) -> torch.Tensor:
    for p in model.parameters():
        return p
    raise ValueError(f"model ({type(model).__name__}) has no parameters: there is nothing to fit")


def check_data_sampler(
    sample_data: object, batch_size: int, generator: torch.Generator
) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Call ``sample_data(batch_size, generator)`` once and check what it returns (shape ``(batch_size, d)``,
    floating point, finite; or a pair ``(points, labels)``, whose labels :func:`fit_cfm` checks); returns what it
    returned. Used by the training loops on their first step."""
    if not callable(sample_data):
        raise TypeError(
            f"sample_data must be a function sample_data(n, generator) returning n points of shape (n, dim); "
            f"got {type(sample_data).__name__}"
        )
    try:
        out = sample_data(batch_size, generator)
    except TypeError as err:
        raise TypeError(
            "sample_data must be callable as sample_data(n, generator) and return n points of shape (n, dim); "
            f"calling it that way failed: {err}"
        ) from err
    x1 = out[0] if isinstance(out, tuple) and len(out) == 2 else out
    if not isinstance(x1, torch.Tensor) or x1.ndim != 2 or x1.shape[0] != batch_size:
        what = tuple(x1.shape) if isinstance(x1, torch.Tensor) else type(x1).__name__
        raise ValueError(f"sample_data(n, generator) must return a tensor of shape (n, dim) = ({batch_size}, dim); got {what}")
    if not x1.is_floating_point():
        raise TypeError(f"sample_data must return floating-point points; got dtype {x1.dtype}")
    if not torch.isfinite(x1).all():
        raise ValueError("sample_data returned points with NaN or infinite values")
    return out


Coupling = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``coupling(x0, x1)`` returns a re-paired batch ``(x0, x1)`` of the same shape (see :mod:`fmlib.coupling`)."""


def _coupled(coupling: Coupling, x0: torch.Tensor, x1: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = coupling(x0, x1)
    if step == 0:
        ok = isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out)
        if not ok or out[0].shape != x0.shape or out[1].shape != x1.shape:
            got = tuple(tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__ for o in out) \
                if isinstance(out, tuple) else type(out).__name__
            raise ValueError(
                f"coupling(x0, x1) must return a pair (x0, x1) of tensors of shape {tuple(x0.shape)}; got {got}"
            )
    return out


def fit_cfm(
    model: nn.Module,
    path: AffinePath,
    sample_data: DataSampler,
    *,
    steps: Optional[int] = None,
    seconds: Optional[float] = None,
    batch_size: int = 512,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    generator: Optional[torch.Generator] = None,
    seed: Optional[int] = None,
    sample_time: TimeSampler = uniform_time,
    schedule: str = "cosine",
    warmup: float = 0.05,
    ema_decay: Optional[float] = 0.999,
    progress: bool = True,
    label_dropout: float = 0.0,
    num_classes: Optional[int] = None,
    coupling: Optional[Coupling] = None,
) -> TrainHistory:
    r"""Train ``model`` as a velocity field with the conditional flow matching loss (:func:`fmlib.losses.cfm_loss`).

    Each step draws ``x1 = sample_data(batch_size, generator)``, independent noise ``x0 ~ N(0, I)`` and times
    ``t = sample_time(batch_size, generator)``, on the CPU generator, then moves them to the model's device
    and dtype. Give exactly one of ``steps`` and ``seconds`` (with neither, ``steps=2000``); the remaining
    options are those of :func:`fit`.

    **Class-conditional training.** If ``sample_data`` returns a pair ``(x1, y)`` with integer labels ``y`` of
    shape ``(batch,)`` in ``[0, K)``, the model is called as ``model(x_t, t, y=y)``; each label is first replaced
    by the *null label* ``K`` with probability ``label_dropout`` (:func:`fmlib.guidance.drop_labels`), so that
    the same network also learns the unconditional field that classifier-free guidance needs. ``K`` is
    ``num_classes``, by default ``model.num_classes`` (as in :class:`fmlib.nets.VelocityMLP`). Unlabelled data
    draw exactly the same random numbers as before these options existed.

    ``coupling``, if given, is called as ``coupling(x0, x1)`` on each batch (on the CPU, before the move to the
    model's device) and returns the pairs to train on, ``(x0, x1)`` of the same shape: for example
    ``lambda x0, x1: fmlib.coupling.ot_pairs(x0, x1)`` trains OT-CFM (minibatch optimal transport). ``None``
    keeps the independent pairs (I-CFM).

    Returns
    -------
    TrainHistory
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath; got {type(path).__name__}")
    if not callable(sample_time):
        raise TypeError(f"sample_time must be a function sample_time(n, generator); got {type(sample_time).__name__}")
    if steps is None and seconds is None:
        steps = 2000
    _check_length(steps, seconds)
    batch_size = positive_int(batch_size, "batch_size")
    g = make_generator(seed, generator)
    param = _first_parameter(model)
    first = check_data_sampler(sample_data, batch_size, g)
    labelled = isinstance(first, tuple)
    first_x = first[0] if labelled else first
    p_drop = real(label_dropout, "label_dropout")
    if not 0.0 <= p_drop <= 1.0:
        raise ValueError(f"label_dropout must lie in [0, 1]; got {p_drop}")
    if labelled:
        k = num_classes if num_classes is not None else getattr(model, "num_classes", None)
        if k is None:
            raise ValueError("sample_data returns labels but the model has no num_classes: pass num_classes=K")
        k = positive_int(k, "num_classes")
        check_labels(first[1], batch_size, k, name="the labels returned by sample_data", allow_null=False)
    elif p_drop > 0 or num_classes is not None:
        raise ValueError("label_dropout and num_classes need labelled data: sample_data must return (x1, y)")

    if coupling is not None and not callable(coupling):
        raise TypeError(f"coupling must be a function coupling(x0, x1) -> (x0, x1); got {type(coupling).__name__}")
    if coupling is not None and labelled:
        raise ValueError("coupling with labelled data would separate labels from their points: pair within each "
                         "class instead (fmlib.coupling.ot_pairs(..., labels=...)) in your own loop")

    def loss_fn(step: int) -> torch.Tensor:
        batch = first if step == 0 else sample_data(batch_size, g)
        x1 = batch[0] if labelled else batch
        if x1.shape != first_x.shape:
            raise ValueError(f"sample_data returned shape {tuple(x1.shape)} at step {step}; expected {tuple(first_x.shape)}")
        x0 = torch.randn(x1.shape, generator=g, dtype=torch.float64)
        if coupling is not None:
            x0, x1 = _coupled(coupling, x0, x1, step)
        x1 = x1.to(param)
        x0 = x0.to(param)
        t = sample_time(batch_size, g)
        if step == 0:
            if not isinstance(t, torch.Tensor) or t.shape != (batch_size,):
                raise ValueError(f"sample_time(n, generator) must return a tensor of shape ({batch_size},); got {t!r:.60}")
            check_range(t, "the times from sample_time(n, generator)", 0.0, 1.0)
        velocity = model
        if labelled:
            y = drop_labels(batch[1], p_drop, k, g) if p_drop > 0 else batch[1]
            y = y.to(param.device)
            velocity = lambda x, tt: model(x, tt, y=y)  # noqa: E731
        t = t.to(param)
        if sample_time is not uniform_time:  # a custom sampler's later batches are clamped, not scanned
            t = t.clamp(0.0, 1.0)
        return cfm_loss(velocity, path, x0, x1, t)

    return fit(
        model, loss_fn, steps, seconds=seconds, lr=lr, weight_decay=weight_decay, schedule=schedule,
        warmup=warmup, ema_decay=ema_decay, progress=progress, desc="CFM",
    )
