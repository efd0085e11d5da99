"""A small training loop with a progress bar that returns its loss history."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import positive_int, real
from .losses import cfm_loss
from .paths import AffinePath
from .utils import make_generator

__all__ = ["TrainHistory", "fit", "fit_cfm"]

DataSampler = Callable[[int, torch.Generator], torch.Tensor]
"""``sample_data(n, generator)`` returns ``n`` data points of shape ``(n, d)``."""

TimeSampler = Callable[[int, torch.Generator], torch.Tensor]
"""``sample_time(n, generator)`` returns ``n`` times in ``[0, 1]``, shape ``(n,)``."""


@dataclass
class TrainHistory:
    """What :func:`fit` returns: the loss at every step and the wall-clock time."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        """Number of optimisation steps taken."""
        return len(self.losses)

    def smoothed(self, window: int = 50) -> np.ndarray:
        """Moving average of the losses over ``window`` steps (shorter at the start), shape ``(steps,)``."""
        window = positive_int(window, "window")
        x = np.asarray(self.losses, dtype=float)
        c = np.cumsum(np.insert(x, 0, 0.0))
        idx = np.arange(1, len(x) + 1)
        lo = np.maximum(idx - window, 0)
        return (c[idx] - c[lo]) / (idx - lo)


def fit(
    model: nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    *,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    optimizer: Optional[torch.optim.Optimizer] = None,
    progress: bool = True,
    desc: str = "training",
) -> TrainHistory:
    """Minimise ``loss_fn(step)`` over ``model``'s parameters for ``steps`` steps.

    Parameters
    ----------
    model:
        The network being trained (put in train mode during the loop).
    loss_fn:
        Called with the step index; returns a scalar loss tensor for a fresh batch.
    steps:
        Number of optimisation steps.
    lr, weight_decay:
        AdamW settings, used when ``optimizer`` is not given.
    optimizer:
        An optimizer over ``model``'s parameters, to use instead of AdamW.
    progress:
        Show a tqdm progress bar with the running loss.

    Returns
    -------
    TrainHistory
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(step); got {type(loss_fn).__name__}")
    steps = positive_int(steps, "steps")
    if optimizer is None:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=real(lr, "lr", positive=True), weight_decay=real(weight_decay, "weight_decay", nonnegative=True)
        )
    history = TrainHistory()
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=0.5)
    for step in bar:
        loss = loss_fn(step)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar tensor; got {loss!r:.80}")
        if not torch.isfinite(loss):
            raise ValueError(f"the loss became {float(loss)} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.losses.append(float(loss.detach()))
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{history.losses[-1]:.4f}", refresh=False)
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def uniform_time(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` times drawn uniformly from ``[0, 1]``, shape ``(n,)`` (float64, CPU)."""
    return torch.rand(n, generator=generator, dtype=torch.float64)


def fit_cfm(
    model: nn.Module,
    path: AffinePath,
    sample_data: DataSampler,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    generator: Optional[torch.Generator] = None,
    seed: Optional[int] = None,
    sample_time: TimeSampler = uniform_time,
    progress: bool = True,
) -> TrainHistory:
    r"""Train ``model`` as a velocity field with the conditional flow matching loss (:func:`fmlib.losses.cfm_loss`).

    Each step draws ``x1 = sample_data(batch_size, generator)``, independent noise ``x0 ~ N(0, I)`` and times
    ``t = sample_time(batch_size, generator)``, on the CPU generator, then moves them to the model's device
    and dtype.

    Returns
    -------
    TrainHistory
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    batch_size = positive_int(batch_size, "batch_size")
    g = make_generator(seed, generator)
    param = next(model.parameters())

    def loss_fn(step: int) -> torch.Tensor:
        x1 = sample_data(batch_size, g)
        if not isinstance(x1, torch.Tensor) or x1.ndim != 2 or x1.shape[0] != batch_size:
            raise ValueError(f"sample_data(n, generator) must return a tensor of shape (n, dim); got {x1!r:.80}")
        x1 = x1.to(param)
        x0 = torch.randn(x1.shape, generator=g, dtype=torch.float64).to(param)
        t = sample_time(batch_size, g).to(param)
        return cfm_loss(model, path, x0, x1, t)

    return fit(model, loss_fn, steps, lr=lr, weight_decay=weight_decay, progress=progress, desc="CFM")
