"""Sample-quality metrics: exact 2-Wasserstein distance (POT), maximum mean discrepancy, and noise floors."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import ot
import torch

from ._checks import as_points, positive_int, real

__all__ = ["wasserstein2", "mmd", "noise_floor"]


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    as_points(x, "x")
    as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dim; got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x.detach().to("cpu", torch.float64).numpy()
    y = y.detach().to("cpu", torch.float64).numpy()
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite (got NaN or inf)")
    return x, y


def wasserstein2(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Exact 2-Wasserstein distance between the empirical measures of ``x`` (n, d) and ``y`` (m, d).

    .. math:: W_2 = \Big(\min_{\pi \in \Pi(\frac1n \mathbf 1, \frac1m \mathbf 1)} \sum_{ij} \pi_{ij} \|x_i - y_j\|^2\Big)^{1/2},

    solved as a linear program by POT's ``ot.emd2`` (network simplex), in float64 on the CPU.
    """
    xn, yn = _pair(x, y)
    cost = ot.dist(xn, yn, metric="sqeuclidean")
    a = np.full(len(xn), 1.0 / len(xn))
    b = np.full(len(yn), 1.0 / len(yn))
    return float(np.sqrt(max(ot.emd2(a, b, cost, numItermax=10_000_000), 0.0)))


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] = (0.1, 0.5, 1.0, 2.0, 5.0)) -> float:
    r"""Squared maximum mean discrepancy with a sum of Gaussian kernels (biased V-statistic).

    .. math:: \mathrm{MMD}^2 = \overline{k(x, x')} + \overline{k(y, y')} - 2\,\overline{k(x, y)},
              \qquad k(a, b) = \sum_h \exp\!\big(-\|a - b\|^2 / (2h^2)\big).

    Returns a non-negative float; 0 when the two samples are equal.
    """
    xn, yn = _pair(x, y)
    if isinstance(bandwidths, (str, bytes)) or not isinstance(bandwidths, Iterable):
        raise TypeError(f"bandwidths must be a sequence of positive floats; got {type(bandwidths).__name__}")
    hs = [real(h, "bandwidths", positive=True) for h in bandwidths]
    if not hs:
        raise ValueError("bandwidths must hold at least one positive value")

    def kernel_mean(a: np.ndarray, b: np.ndarray) -> float:
        d2 = ot.dist(a, b, metric="sqeuclidean")
        return float(sum(np.exp(-d2 / (2 * h * h)).mean() for h in hs))

    return max(kernel_mean(xn, xn) + kernel_mean(yn, yn) - 2 * kernel_mean(xn, yn), 0.0)


Sampler = Callable[[int, torch.Generator], torch.Tensor]


def noise_floor(
    sample: Sampler,
    reference: Optional[Sampler] = None,
    *,
    n: int = 1000,
    repeats: int = 5,
    seed: int = 0,
) -> tuple[float, float]:
    r"""The W2 that a perfect model would score: mean and standard deviation over ``repeats`` draws.

    Each repeat computes :func:`wasserstein2` between ``sample(n, g)`` (what a perfect model would generate) and
    ``reference(n, g)`` (the held-out data the model is scored against; ``sample`` again when omitted), so a
    model's W2 divided by the mean is its distance from the best achievable score at this ``n``.

    Parameters
    ----------
    sample, reference:
        Functions ``f(n, generator)`` returning ``(n, d)`` tensors.
    n:
        Points per draw.
    repeats:
        Number of independent pairs of draws (>= 2 for a standard deviation).
    seed:
        Seed of the CPU generator the draws use.

    Returns
    -------
    tuple of float
        ``(mean, std)`` of the W2 values (``std`` is the population standard deviation).
    """
    if not callable(sample):
        raise TypeError(f"sample must be a function sample(n, generator); got {type(sample).__name__}")
    reference = sample if reference is None else reference
    if not callable(reference):
        raise TypeError(f"reference must be a function reference(n, generator); got {type(reference).__name__}")
    n = positive_int(n, "n")
    repeats = positive_int(repeats, "repeats")
    g = torch.Generator().manual_seed(int(seed))
    values = np.array([wasserstein2(sample(n, g), reference(n, g)) for _ in range(repeats)])
    return float(values.mean()), float(values.std())
