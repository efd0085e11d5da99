"""Reproducibility and device selection."""

from __future__ import annotations

import random
from typing import Optional, Union

import numpy as np
import torch


__all__ = ["seed_everything", "get_device", "make_generator"]


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
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from err
