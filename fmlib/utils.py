"""Reproducibility, device selection, timing and small autograd helpers."""

from __future__ import annotations

import random
import time
from typing import Callable, Iterable, Optional, Union

import numpy as np
import torch


__all__ = ["seed_everything", "get_device", "make_generator", "best_time", "flat_grad"]


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and CUDA) for a reproducible run.

    Parameters
    ----------
    seed:
        A non-negative integer.

    Returns
    -------
    torch.Generator
        A CPU generator seeded with ``seed``, convenient to pass as ``generator=`` to fmlib's samplers.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0; got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return make_generator(seed)


def make_generator(seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Generator:
    """Return ``generator`` if given, else a new CPU generator seeded with ``seed``.

    With neither, return PyTorch's global CPU generator, so :func:`seed_everything` makes the draw reproducible.

    fmlib draws random numbers on the CPU and then moves them to the target device, so the same seed gives
    the same numbers on every device.
    """
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either seed or generator, not both")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        return generator
    if seed is None:
        return torch.default_generator  # follows seed_everything / torch.manual_seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def get_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """Pick the device to compute on.

    Parameters
    ----------
    device:
        ``"auto"`` (default) selects CUDA when a GPU is available and the CPU otherwise; any other value
        (``"cpu"``, ``"cuda:0"``, a ``torch.device``) is returned as a ``torch.device``.

    Returns
    -------
    torch.device
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', a device string or a torch.device; got {type(device).__name__}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but PyTorch sees no CUDA GPU here; use 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def best_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, clock: str = "wall") -> float:
    """Seconds taken by the fastest of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls.

    The minimum is the run least disturbed by other processes. ``clock="wall"`` reads ``time.perf_counter`` and
    waits for queued CUDA work before each reading, so GPU time is counted; ``clock="cpu"`` reads
    ``time.process_time`` (CPU time of this process): insensitive to other programs sharing the cores, but blind
    to work done on a GPU.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function of no arguments; got {type(fn).__name__}")
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")
    if clock not in _CLOCKS:
        raise ValueError(f"clock must be one of {tuple(_CLOCKS)}; got {clock!r}")
    read = _CLOCKS[clock]

    def sync() -> None:
        if clock == "wall" and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = read()
        fn()
        sync()
        best = min(best, read() - start)
    return best


def flat_grad(
    loss: torch.Tensor, parameters: Union[torch.nn.Module, Iterable[torch.Tensor]], retain_graph: bool = False
) -> torch.Tensor:
    """Gradient of a scalar ``loss`` with respect to ``parameters``, concatenated into one vector.

    ``parameters`` is a module (all its parameters, in ``module.parameters()`` order) or a sequence of tensors;
    returns a 1-D tensor of length ``sum(p.numel())``. Parameters that ``loss`` does not depend on contribute
    zeros. ``retain_graph=True`` keeps the graph for another gradient of the same forward pass.
    """
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss must be a scalar tensor; got {shape}")
    params = list(parameters.parameters()) if isinstance(parameters, torch.nn.Module) else list(parameters)
    if not params or not all(isinstance(p, torch.Tensor) for p in params):
        raise TypeError("parameters must be a torch.nn.Module or a non-empty sequence of tensors")
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if gr is None else gr).flatten() for p, gr in zip(params, grads)])

