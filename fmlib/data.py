"""Deterministic toy datasets.

Every sampler takes the number of points ``n`` and either a ``seed`` or a ``generator`` (PyTorch's global
generator when neither is given, so :func:`fmlib.utils.seed_everything` makes it reproducible), draws on the
CPU and returns a tensor of shape ``(n, 2)`` with the requested ``dtype`` on ``device``. ``moons``,
``eight_gaussians`` and ``checkerboard`` follow the definitions behind published 2-D flow-matching results
(TorchCFM, Tong et al. 2023; facebookresearch/flow_matching) so that numbers are comparable.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import numpy as np
import torch

from ._checks import positive_int, real
from .targets import GaussianMixture
from .utils import get_device, make_generator

__all__ = [
    "moons",
    "sklearn_moons",
    "eight_gaussians",
    "eight_gaussians_mixture",
    "three_gaussians_mixture",
    "checkerboard",
    "spirals",
    "circles",
    "s_curve",
    "digits",
    "DATASETS",
    "sample",
]

Device = Union[str, torch.device, None]


def _finish(x: torch.Tensor, device: Device, dtype: torch.dtype) -> torch.Tensor:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    return x.to(device=get_device(device) if device is not None else "cpu", dtype=dtype)


def _numpy_seed(g: torch.Generator) -> int:
    """A NumPy/scikit-learn seed drawn from the torch generator (keeps one source of randomness)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g))


def moons(
    n: int,
    *,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
    iid: bool = False,
) -> torch.Tensor:
    """Two interleaved half circles, as TorchCFM samples them (``torchcfm.utils.sample_moons``).

    ``n // 2`` points evenly spaced on the outer arc and the rest on the inner arc; each point is shifted by
    one ``U[0, 0.2)`` offset added to both coordinates; then scaled by 3 and shifted by -1.

    With ``iid=True`` the points are independent draws from the same distribution (each picks its arc with
    probability 1/2 and its angle uniformly). A generative model draws independent points, so the noise floor
    of a model's W2 is the distance between an ``iid=True`` sample and an ``iid=False`` one: about 0.22 for
    1000 points, while two TorchCFM draws (which share their evenly spaced arc positions and the exact half-half
    split) are only about 0.10 apart.
    """
    n = positive_int(n, "n")
    if not isinstance(iid, bool):
        raise TypeError(f"iid must be a bool; got {type(iid).__name__}")
    g = make_generator(seed, generator)
    if iid:
        outer = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
        a = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
        x = torch.where(outer, torch.cos(a), 1 - torch.cos(a))
        y = torch.where(outer, torch.sin(a), 1 - torch.sin(a) - 0.5)
    else:
        n_out, n_in = n // 2, n - n // 2
        a_out = torch.linspace(0, math.pi, n_out, dtype=torch.float64)
        a_in = torch.linspace(0, math.pi, n_in, dtype=torch.float64)
        x = torch.cat([torch.cos(a_out), 1 - torch.cos(a_in)])
        y = torch.cat([torch.sin(a_out), 1 - torch.sin(a_in) - 0.5])
    pts = torch.stack([x, y], dim=1)
    pts = pts + 0.2 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    return _finish(3 * pts - 1, device, dtype)


def sklearn_moons(
    n: int,
    *,
    noise: float = 0.1,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """scikit-learn's ``make_moons`` (Gaussian noise of std ``noise``, random positions along the arcs)."""
    from sklearn.datasets import make_moons

    n = positive_int(n, "n")
    noise = real(noise, "noise", nonnegative=True)
    g = make_generator(seed, generator)
    x, _ = make_moons(n, noise=noise, shuffle=True, random_state=_numpy_seed(g))
    return _finish(torch.from_numpy(x), device, dtype)


EIGHT_GAUSSIANS_RADIUS = 5.0
EIGHT_GAUSSIANS_STD = 0.1**0.25  # TorchCFM passes sqrt(0.1) as a covariance, so the std is 0.1 ** (1/4)


def eight_gaussians_mixture(
    radius: float = EIGHT_GAUSSIANS_RADIUS,
    std: float = EIGHT_GAUSSIANS_STD,
    dtype: torch.dtype = torch.float64,
    device: Device = None,
) -> GaussianMixture:
    """The 8-Gaussians distribution as an exact :class:`~fmlib.targets.GaussianMixture`.

    Centres at ``radius`` on 8 equally spaced angles, isotropic ``std``, equal weights.
    """
    radius = real(radius, "radius", positive=True)
    std = real(std, "std", positive=True)
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means, std).to(device=device if device is not None else "cpu", dtype=dtype)


def three_gaussians_mixture(dtype: torch.dtype = torch.float64, device: Device = None) -> GaussianMixture:
    """The running example of chapters 4-6: a 2-D mixture of three Gaussians with unequal weights.

    Means ``(-2, -1)``, ``(1.5, 1.5)``, ``(2, -2)``; isotropic standard deviations ``0.5, 0.7, 0.35``;
    weights ``0.5, 0.3, 0.2``. Unequal weights and widths make every place where the data
    distribution enters a formula visible (a wrong prior or a wrong posterior shows up in a check).
    """
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    q = GaussianMixture(
        torch.tensor([[-2.0, -1.0], [1.5, 1.5], [2.0, -2.0]], dtype=torch.float64),
        torch.tensor([0.5, 0.7, 0.35], dtype=torch.float64),
        torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
    )
    return q.to(device=device if device is not None else "cpu", dtype=dtype)


def eight_gaussians(
    n: int,
    *,
    radius: float = EIGHT_GAUSSIANS_RADIUS,
    std: float = EIGHT_GAUSSIANS_STD,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Samples of :func:`eight_gaussians_mixture` (TorchCFM's ``sample_8gaussians`` with the defaults)."""
    n = positive_int(n, "n")
    g = make_generator(seed, generator)
    x = eight_gaussians_mixture(radius, std).sample(n, generator=g)
    return _finish(x, device, dtype)


def checkerboard(
    n: int,
    *,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform on 8 alternating cells of a 4x4 board on ``[-2, 2]^2``, divided by 0.45 (flow_matching's 2-D example)."""
    n = positive_int(n, "n")
    g = make_generator(seed, generator)
    x1 = torch.rand(n, generator=g, dtype=torch.float64) * 4 - 2
    x2 = torch.rand(n, generator=g, dtype=torch.float64) - 2 * torch.randint(0, 2, (n,), generator=g)
    x2 = x2 + torch.floor(x1) % 2
    return _finish(torch.stack([x1, x2], dim=1) / 0.45, device, dtype)


def spirals(
    n: int,
    *,
    noise: float = 0.1,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Two interleaved spiral arms (the "2spirals" set of FFJORD), with Gaussian noise of std ``noise``."""
    n = positive_int(n, "n")
    noise = real(noise, "noise", nonnegative=True)
    g = make_generator(seed, generator)
    m = n // 2 + 1
    r = torch.sqrt(torch.rand(m, generator=g, dtype=torch.float64)) * 3 * math.pi
    jitter = 0.5 * torch.rand(m, 2, generator=g, dtype=torch.float64)
    arm = torch.stack([-torch.cos(r) * r, torch.sin(r) * r], dim=1) + jitter
    pts = torch.cat([arm, -arm])[:n] / 3
    pts = pts + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    perm = torch.randperm(n, generator=g)
    return _finish(pts[perm], device, dtype)


def circles(
    n: int,
    *,
    noise: float = 0.08,
    factor: float = 0.5,
    scale: float = 3.0,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Two concentric circles (scikit-learn's ``make_circles``), radii ``scale`` and ``factor * scale``."""
    from sklearn.datasets import make_circles

    n = positive_int(n, "n")
    noise = real(noise, "noise", nonnegative=True)
    factor = real(factor, "factor", positive=True)
    if factor >= 1:
        raise ValueError(f"factor must lie in (0, 1); got {factor}")
    scale = real(scale, "scale", positive=True)
    g = make_generator(seed, generator)
    x, _ = make_circles(n, noise=noise, factor=factor, random_state=_numpy_seed(g))
    return _finish(scale * torch.from_numpy(x), device, dtype)


def s_curve(
    n: int,
    *,
    noise: float = 0.1,
    scale: float = 1.5,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The 2-D "S" obtained from scikit-learn's ``make_s_curve`` (coordinates 0 and 2), times ``scale``."""
    from sklearn.datasets import make_s_curve

    n = positive_int(n, "n")
    noise = real(noise, "noise", nonnegative=True)
    scale = real(scale, "scale", positive=True)
    g = make_generator(seed, generator)
    x, _ = make_s_curve(n, noise=noise, random_state=_numpy_seed(g))
    return _finish(scale * torch.from_numpy(np.ascontiguousarray(x[:, [0, 2]])), device, dtype)


def digits(
    *, device: Device = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 handwritten digits (1,797 images; shipped with scikit-learn, no download).

    Returns
    -------
    (x, y)
        Images flattened to shape ``(1797, 64)`` and scaled from ``[0, 16]`` to ``[-1, 1]``; labels ``(1797,)``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.data) / 8.0 - 1.0
    y = torch.from_numpy(bunch.target).long()
    return _finish(x, device, dtype), y.to(device if device is not None else "cpu")


DATASETS: dict[str, Callable[..., torch.Tensor]] = {
    "moons": moons,
    "sklearn_moons": sklearn_moons,
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "spirals": spirals,
    "circles": circles,
    "s_curve": s_curve,
}
"""The 2-D samplers by name."""


def sample(name: str, n: int, **kwargs) -> torch.Tensor:
    """Draw ``n`` points from the 2-D dataset called ``name`` (a key of :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}; got {name!r}")
    return DATASETS[name](n, **kwargs)
