"""Sample-quality metrics: exact 2-Wasserstein distance (POT) and maximum mean discrepancy."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import ot
import torch

from ._checks import as_points, real

__all__ = ["wasserstein2", "mmd"]


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
