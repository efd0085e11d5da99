r"""Time samplers for flow matching training, each with its density and CDF on ``[0, 1]``.

Drawing training times from a density :math:`w` instead of :math:`U[0, 1]` is the same as weighting the
uniform-time loss by :math:`w(t)`:

.. math:: \mathbb E_{t \sim w}\, \ell(t) = \int_0^1 w(t)\, \ell(t)\, dt = \mathbb E_{t \sim U[0,1]}\, w(t)\, \ell(t).

All densities here use the book's time convention, **t = 0 noise, t = 1 data**. Stable Diffusion 3
(Esser et al., 2024) writes :math:`z_s = (1 - s)\, x_{\mathrm{data}} + s\, \varepsilon`, i.e. data at
:math:`s = 0`; a density :math:`w_{\mathrm{SD3}}(s)` of its time therefore becomes
:math:`w(t) = w_{\mathrm{SD3}}(1 - t)` here, and an SD3 sample :math:`s` becomes :math:`t = 1 - s`.

Every sampler has ``.sample(n, generator)`` (shape ``(n,)``, float64 on the CPU, drawn from ``generator``: pass
``sampler.sample`` as ``sample_time=`` to :func:`fmlib.train.fit_cfm`), ``.density(t)`` and ``.cdf(t)`` (the same
shape as ``t``, values of ``t`` in ``[0, 1]``).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from scipy import special

from ._checks import TimeLike, as_time_grid, positive_int, real
from .utils import make_generator

__all__ = [
    "TimeSampler",
    "UniformTime",
    "LogitNormalTime",
    "ModeTime",
    "CosMapTime",
    "BetaMixtureTime",
]

_EPS = 1e-12


class TimeSampler:
    """Base class: a distribution of training times on ``[0, 1]`` (book convention, data at ``t = 1``).

    Subclasses implement ``_sample_uniform(u)`` (the inverse CDF or another map of ``u ~ U[0, 1)``, float64),
    ``_density(t)`` and ``_cdf(t)`` for a validated float64 tensor ``t``.
    """

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw ``n`` times, shape ``(n,)``, float64 on the CPU, from ``generator`` (PyTorch's global one if None)."""
        n = positive_int(n, "n")
        g = make_generator(None, generator)
        u = torch.rand(n, generator=g, dtype=torch.float64)
        return self._sample_uniform(u).clamp(0.0, 1.0)

    __call__ = sample

    def density(self, t: TimeLike) -> torch.Tensor:
        """Probability density ``w(t)`` at times ``t`` in ``[0, 1]`` (a float or a tensor of any shape)."""
        tt = as_time_grid(t)
        out = self._density(tt.to(torch.float64).clamp(0.0, 1.0))
        return out.to(tt.dtype)

    def cdf(self, t: TimeLike) -> torch.Tensor:
        """Cumulative distribution ``P(T <= t)`` at times ``t`` in ``[0, 1]``."""
        tt = as_time_grid(t)
        t64 = tt.to(torch.float64).clamp(0.0, 1.0)
        out = self._cdf(t64).clamp(0.0, 1.0)
        out = torch.where(t64 <= 0, torch.zeros_like(out), torch.where(t64 >= 1, torch.ones_like(out), out))
        return out.to(tt.dtype)

    # -- to implement -------------------------------------------------------------------------------------
    def _sample_uniform(self, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _density(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cdf(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class UniformTime(TimeSampler):
    r"""The standard choice :math:`t \sim U[0, 1]`: :math:`w(t) = 1`, :math:`F(t) = t`."""

    def _sample_uniform(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def _density(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def _cdf(self, t: torch.Tensor) -> torch.Tensor:
        return t.clone()


class LogitNormalTime(TimeSampler):
    r"""Logit-normal times: :math:`t = \mathrm{sigmoid}(m + s\,n)`, :math:`n \sim \mathcal N(0, 1)`.

    .. math:: w(t) = \frac{1}{s\sqrt{2\pi}}\,\frac{1}{t(1-t)}\,
              \exp\Big(-\frac{(\operatorname{logit} t - m)^2}{2 s^2}\Big),
              \qquad F(t) = \Phi\Big(\frac{\operatorname{logit} t - m}{s}\Big),

    with :math:`w(0) = w(1) = 0`. In SD3 (data at :math:`s = 0`) the same formula is written for SD3's time;
    SD3's ``lognorm(m, s)`` is ``LogitNormalTime(-m, s)`` here (see :meth:`from_sd3`); SD3's favourite
    ``lognorm(0, 1)`` is symmetric and the same in both conventions.

    Parameters
    ----------
    mean:
        Location :math:`m` of :math:`\operatorname{logit} t` (book convention; ``m > 0`` favours the data side).
    std:
        Scale :math:`s > 0`.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean = real(mean, "mean")
        self.std = real(std, "std", positive=True)

    @classmethod
    def from_sd3(cls, mean: float = 0.0, std: float = 1.0) -> "LogitNormalTime":
        """The sampler that SD3 calls ``lognorm(mean, std)``, mapped to the book's convention (``t = 1 - s``)."""
        return cls(-real(mean, "mean"), std)

    def _sample_uniform(self, u: torch.Tensor) -> torch.Tensor:
        n = math.sqrt(2.0) * torch.special.erfinv(2.0 * u.clamp(_EPS, 1 - _EPS) - 1.0)
        return torch.sigmoid(self.mean + self.std * n)

    def _density(self, t: torch.Tensor) -> torch.Tensor:
        inside = (t > 0) & (t < 1)
        tc = t.clamp(_EPS, 1 - _EPS)
        z = (torch.logit(tc) - self.mean) / self.std
        w = torch.exp(-0.5 * z**2) / (self.std * math.sqrt(2 * math.pi) * tc * (1 - tc))
        return torch.where(inside, w, torch.zeros_like(w))

    def _cdf(self, t: torch.Tensor) -> torch.Tensor:
        tc = t.clamp(_EPS, 1 - _EPS)
        f = torch.special.ndtr((torch.logit(tc) - self.mean) / self.std)
        return torch.where(t <= 0, torch.zeros_like(f), torch.where(t >= 1, torch.ones_like(f), f))


MODE_SCALE_MAX = 2.0 / (math.pi - 2.0)
"""Largest scale of :class:`ModeTime` for which its map is monotone (``2 / (pi - 2) ~ 1.75``)."""


class ModeTime(TimeSampler):
    r"""SD3's "mode sampling with heavy tails", in the book's convention.

    SD3 draws :math:`u \sim U[0, 1]` and sets its time to
    :math:`f_{\mathrm{mode}}(u; s) = 1 - u - s\,(\cos^2(\pi u / 2) - 1 + u)` (data at 0). With :math:`t = 1 - f`:

    .. math:: t = g(u) = u + s\,\big(\cos^2(\tfrac{\pi u}{2}) - 1 + u\big), \qquad
              w(t) = \frac{1}{g'(g^{-1}(t))},\quad g'(u) = 1 + s\,\big(1 - \tfrac{\pi}{2}\sin(\pi u)\big),
              \qquad F(t) = g^{-1}(t).

    The distribution is symmetric about ``1/2`` (so it is the same in both conventions). ``s = 0`` is uniform,
    ``s > 0`` favours the middle, ``s < 0`` the ends; ``s = -1`` gives :math:`t = \sin^2(\pi u / 2)`, the arcsine
    law :math:`w(t) = 1 / (\pi\sqrt{t(1-t)})`. :math:`g^{-1}` is computed by bisection (float64, to ~1e-15).

    Parameters
    ----------
    scale:
        :math:`s \in [-1,\ 2/(\pi - 2)]` (the range where :math:`g` is monotone).
    """

    def __init__(self, scale: float = 0.0) -> None:
        scale = real(scale, "scale")
        if not -1.0 <= scale <= MODE_SCALE_MAX:
            raise ValueError(f"scale must lie in [-1, 2/(pi - 2)] = [-1, {MODE_SCALE_MAX:.6f}]; got {scale}")
        self.scale = scale

    def _g(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.scale * (torch.cos(0.5 * math.pi * u) ** 2 - 1.0 + u)

    def _dg(self, u: torch.Tensor) -> torch.Tensor:
        return 1.0 + self.scale * (1.0 - 0.5 * math.pi * torch.sin(math.pi * u))

    def _g_inverse(self, t: torch.Tensor) -> torch.Tensor:
        lo, hi = torch.zeros_like(t), torch.ones_like(t)
        for _ in range(55):  # g is increasing on [0, 1] with g(0) = 0, g(1) = 1
            mid = 0.5 * (lo + hi)
            below = self._g(mid) < t
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def _sample_uniform(self, u: torch.Tensor) -> torch.Tensor:
        return self._g(u)

    def _density(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 / self._dg(self._g_inverse(t))

    def _cdf(self, t: torch.Tensor) -> torch.Tensor:
        return self._g_inverse(t)


class CosMapTime(TimeSampler):
    r"""SD3's "CosMap" sampler, in the book's convention.

    SD3 sets its time to :math:`1 - 1/(\tan(\pi u / 2) + 1)` with :math:`u \sim U[0, 1]` (data at 0), which makes
    its noise level follow a cosine schedule. With :math:`t = 1 - s`:

    .. math:: t = \frac{1}{1 + \tan(\pi u / 2)}, \qquad w(t) = \frac{2}{\pi\,(1 - 2t + 2t^2)}, \qquad
              F(t) = \frac{2}{\pi} \arctan\frac{t}{1 - t}.

    The density is symmetric about ``1/2``, largest there (``4/pi``) and ``2/pi`` at both ends.
    """

    def _sample_uniform(self, u: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + torch.tan(0.5 * math.pi * u))

    def _density(self, t: torch.Tensor) -> torch.Tensor:
        return 2.0 / (math.pi * (1.0 - 2.0 * t + 2.0 * t**2))

    def _cdf(self, t: torch.Tensor) -> torch.Tensor:
        # t decreases in u, so F(t) = 1 - u(t) = (2/pi) arctan(t / (1 - t)); atan2 handles t = 1
        return (2.0 / math.pi) * torch.atan2(t, 1.0 - t)


class BetaMixtureTime(TimeSampler):
    r"""A two-component Beta mixture (the bimodal time density of seed 000, Eq. 16).

    .. math:: w(t) = p\,\mathrm{Beta}(t; a_1, b_1) + (1 - p)\,\mathrm{Beta}(t; a_2, b_2), \qquad
              \mathrm{Beta}(t; a, b) = \frac{t^{a-1}(1-t)^{b-1}}{B(a, b)},

    :math:`F(t) = p\, I_t(a_1, b_1) + (1 - p)\, I_t(a_2, b_2)` with the regularised incomplete Beta function
    :math:`I_t`. The source uses the book's convention (data at ``t = 1``) but gives no parameter values; the
    defaults here are the book's choice, with modes at ``1/6`` and ``5/6``. Samples are drawn by choosing a component
    and inverting its CDF (``scipy.special.betaincinv``) at a uniform number, so ``generator`` controls them fully.

    Parameters
    ----------
    weight:
        :math:`p \in [0, 1]`, the weight of the first component.
    a1, b1, a2, b2:
        Positive Beta parameters.
    """

    def __init__(self, weight: float = 0.5, a1: float = 2.0, b1: float = 6.0, a2: float = 6.0, b2: float = 2.0) -> None:
        weight = real(weight, "weight")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must lie in [0, 1]; got {weight}")
        self.weight = weight
        self.a1 = real(a1, "a1", positive=True)
        self.b1 = real(b1, "b1", positive=True)
        self.a2 = real(a2, "a2", positive=True)
        self.b2 = real(b2, "b2", positive=True)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw ``n`` times, shape ``(n,)``, float64 on the CPU, from ``generator``."""
        n = positive_int(n, "n")
        g = make_generator(None, generator)
        pick = torch.rand(n, generator=g, dtype=torch.float64).numpy() < self.weight
        u = torch.rand(n, generator=g, dtype=torch.float64).numpy()
        a = np.where(pick, self.a1, self.a2)
        b = np.where(pick, self.b1, self.b2)
        return torch.from_numpy(special.betaincinv(a, b, u)).clamp(0.0, 1.0)

    __call__ = sample

    @staticmethod
    def _beta_pdf(t: torch.Tensor, a: float, b: float) -> torch.Tensor:
        log_b = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
        a1 = torch.tensor(a - 1.0, dtype=t.dtype, device=t.device)
        b1 = torch.tensor(b - 1.0, dtype=t.dtype, device=t.device)
        return torch.exp(torch.xlogy(a1, t) + torch.xlogy(b1, 1.0 - t) - log_b)

    def _density(self, t: torch.Tensor) -> torch.Tensor:
        return (self.weight * self._beta_pdf(t, self.a1, self.b1)
                + (1.0 - self.weight) * self._beta_pdf(t, self.a2, self.b2))

    def _cdf(self, t: torch.Tensor) -> torch.Tensor:
        tn = t.detach().cpu().numpy()
        f = self.weight * special.betainc(self.a1, self.b1, tn) + (1 - self.weight) * special.betainc(self.a2, self.b2, tn)
        return torch.as_tensor(f, dtype=torch.float64, device=t.device)
