r"""Affine Gaussian probability paths.

A path interpolates between noise ``x0 ~ N(0, I)`` at ``t = 0`` and data ``x1 ~ q`` at ``t = 1``:

.. math:: x_t = \alpha_t x_1 + \sigma_t x_0, \qquad p_t(x \mid x_1) = \mathcal N(x;\ \alpha_t x_1,\ \sigma_t^2 I).

A path is defined by its schedule ``(alpha_t, sigma_t)`` and their time derivatives. From the schedule it
derives the conditional velocity

.. math:: u_t(x \mid x_1) = \frac{\dot\sigma_t}{\sigma_t}(x - \alpha_t x_1) + \dot\alpha_t x_1

and the conditional score :math:`\nabla_x \log p_t(x \mid x_1) = -(x - \alpha_t x_1)/\sigma_t^2`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Union

import torch

from ._checks import TimeLike, as_points, as_time, as_time_grid, real, same_shape, value_scans_enabled

__all__ = [
    "Schedule",
    "AffinePath",
    "CondOTPath",
    "VPPath",
    "VEPath",
    "CosinePath",
    "CustomPath",
]


class Schedule(NamedTuple):
    """Schedule values at some times; each field has the shape of the time argument."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor
    d_sigma: torch.Tensor


class AffinePath:
    r"""Base class of affine Gaussian paths ``x_t = alpha_t x1 + sigma_t x0``.

    Subclasses implement :meth:`_schedule` (``alpha, sigma, d_alpha, d_sigma`` as functions of a time tensor
    already validated to lie in ``[0, 1]``). Where ``sigma_t -> 0`` makes ``d_sigma`` blow up (VP at ``t = 1``),
    a subclass also overrides :meth:`_sigma_dsigma`, the finite product ``sigma_t * d_sigma_t``, which is what the
    exact marginal fields of :mod:`fmlib.targets` need.
    """

    name = "affine"

    # -- schedule ---------------------------------------------------------------------------------------
    def _schedule(self, t: torch.Tensor) -> Schedule:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sigma_dsigma(self, t: torch.Tensor) -> torch.Tensor:
        s = self._schedule(t)
        return s.sigma * s.d_sigma

    def schedule(self, t: TimeLike) -> Schedule:
        r"""Return ``(alpha_t, sigma_t, d alpha_t/dt, d sigma_t/dt)``.

        Parameters
        ----------
        t:
            A float or a tensor of any shape with values in ``[0, 1]``.

        Returns
        -------
        Schedule
            A named tuple ``(alpha, sigma, d_alpha, d_sigma)``, each shaped like ``t`` (a 0-d float64 tensor when
            ``t`` is a Python float), with ``t``'s dtype and device.
        """
        return self._schedule(as_time_grid(t))

    # -- sampling and conditional fields ----------------------------------------------------------------
    def _coefficients(self, x: torch.Tensor, t: TimeLike):
        tt = as_time(t, x)
        s = self._schedule(tt)
        return tt, s.alpha[:, None], s.sigma[:, None], s.d_alpha[:, None], s.d_sigma[:, None]

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Interpolate ``x_t = alpha_t x1 + sigma_t x0``.

        Parameters
        ----------
        x0:
            Noise samples, shape ``(batch, dim)``.
        x1:
            Data samples, shape ``(batch, dim)``.
        t:
            A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.

        Returns
        -------
        torch.Tensor
            ``x_t`` of shape ``(batch, dim)``.
        """
        as_points(x0, "x0")
        as_points(x1, "x1")
        same_shape(x0, x1, "x0", "x1")
        _, a, s, _, _ = self._coefficients(x1, t)
        return a * x1 + s * x0

    def target_velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""The conditional-flow-matching regression target ``d/dt x_t = d_alpha_t x1 + d_sigma_t x0``.

        It equals :meth:`cond_velocity` evaluated at ``x = x_t`` but needs no division by ``sigma_t``, so it
        stays finite where ``sigma_t = 0`` (e.g. CondOT with ``sigma_min = 0`` at ``t = 1``).

        Returns
        -------
        torch.Tensor
            Shape ``(batch, dim)``.
        """
        as_points(x0, "x0")
        as_points(x1, "x1")
        same_shape(x0, x1, "x0", "x1")
        _, _, _, da, ds = self._coefficients(x1, t)
        if value_scans_enabled() and not torch.isfinite(ds).all():
            raise ValueError(f"{type(self).__name__}: d_sigma/dt is infinite at t = 1; use t < 1")
        return da * x1 + ds * x0

    def _checked_sigma(self, sigma: torch.Tensor, tt: torch.Tensor, what: str) -> None:
        if (sigma <= 0).any():
            bad = float(tt[(sigma[:, 0] <= 0)][0])
            raise ValueError(
                f"{type(self).__name__}.{what} is undefined where sigma_t = 0 (got t = {bad:g}); "
                "use t < 1 or a path with sigma_min > 0"
            )

    def cond_velocity(self, x: torch.Tensor, x1: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Conditional velocity ``u_t(x | x1) = (d_sigma_t / sigma_t)(x - alpha_t x1) + d_alpha_t x1``.

        Parameters
        ----------
        x, x1:
            Tensors of shape ``(batch, dim)``.
        t:
            A float or a tensor of shape ``(batch,)`` in ``[0, 1]``; ``sigma_t`` must be positive there.

        Returns
        -------
        torch.Tensor
            Shape ``(batch, dim)``.
        """
        as_points(x, "x")
        as_points(x1, "x1")
        same_shape(x, x1, "x", "x1")
        tt, a, s, da, _ = self._coefficients(x1, t)
        self._checked_sigma(s, tt, "cond_velocity")
        sds = self._sigma_dsigma(tt)[:, None]
        return (sds / s**2) * (x - a * x1) + da * x1

    def cond_score(self, x: torch.Tensor, x1: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Conditional score ``grad_x log p_t(x | x1) = -(x - alpha_t x1) / sigma_t^2``.

        Returns
        -------
        torch.Tensor
            Shape ``(batch, dim)``.
        """
        as_points(x, "x")
        as_points(x1, "x1")
        same_shape(x, x1, "x", "x1")
        tt, a, s, _, _ = self._coefficients(x1, t)
        self._checked_sigma(s, tt, "cond_score")
        return -(x - a * x1) / s**2

    # -- conversions between velocity, score, x1-prediction and noise-prediction ------------------------
    #: The four equivalent ways to describe the optimal model of an affine Gaussian path (see :meth:`convert`).
    PREDICTIONS = ("velocity", "score", "x1", "noise")

    def _conversion_coefficients(
        self, source: str, target: str, tt: torch.Tensor, method: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients ``(c_x, c_p)`` of shape ``(batch,)`` with ``target = c_x x + c_p source``.

        Raises a ``ValueError`` naming ``method`` and the first bad time where a denominator vanishes.
        """
        s = self._schedule(tt)
        a, sig, da, ds = s.alpha, s.sigma, s.d_alpha, s.d_sigma
        sds = self._sigma_dsigma(tt)  # sigma_t * d sigma_t/dt, finite even where d_sigma is not (VP at t = 1)
        # "Numerically zero" means within a few rounding errors of the schedule's scale: e.g. float32
        # cos(pi/2) = -4.4e-8 is the cosine path's sigma_1 = 0.
        eps = torch.finfo(tt.dtype).eps
        size = a.abs() + sig.abs()

        def fail(mask: torch.Tensor, where: str, why: str) -> None:
            if bool(mask.any()):
                bad = float(tt[mask][0])
                raise ValueError(f"{type(self).__name__}.{method} is undefined where {where} (got t = {bad:g}): {why}")

        def need_alpha() -> None:
            fail(a.abs() <= 4 * eps * size, "alpha_t = 0",
                 "x_t is pure noise there and carries no information about x1; use t > 0 "
                 "(e.g. a time window [eps, 1 - eps])")

        def need_sigma() -> None:
            fail(sig.abs() <= 4 * eps * size, "sigma_t = 0",
                 "x_t = alpha_t x1 holds no noise there, so the noise (and the score) cannot be recovered from it; "
                 "use t < 1 or a path with sigma_min > 0")

        def snr_rate() -> torch.Tensor:
            d = da * sig**2 - a * sds  # = alpha sigma^2 d/dt log(alpha/sigma)
            fail(d.abs() <= 16 * eps * size**2, "d_alpha_t sigma_t^2 - alpha_t sigma_t d_sigma_t = 0",
                 "the signal-to-noise ratio alpha_t/sigma_t does not change there (or sigma_t = 0 with a finite "
                 "d_sigma_t), so the velocity does not determine the other predictions; use t < 1")
            return d

        if source == target:
            return torch.zeros_like(a), torch.ones_like(a)
        key = (source, target)
        if key == ("score", "noise"):  # eps = -sigma s
            return torch.zeros_like(a), -sig
        if key == ("noise", "score"):  # s = -eps / sigma
            need_sigma()
            return torch.zeros_like(a), -1.0 / sig
        if key == ("x1", "noise"):  # eps = (x - alpha x1) / sigma
            need_sigma()
            return 1.0 / sig, -a / sig
        if key == ("noise", "x1"):  # x1 = (x - sigma eps) / alpha
            need_alpha()
            return 1.0 / a, -sig / a
        if key == ("x1", "score"):  # s = -(x - alpha x1) / sigma^2
            need_sigma()
            return -1.0 / sig**2, a / sig**2
        if key == ("score", "x1"):  # Tweedie: x1 = (x + sigma^2 s) / alpha
            need_alpha()
            return 1.0 / a, sig**2 / a
        if key == ("x1", "velocity"):  # u = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) x1
            need_sigma()
            return sds / sig**2, da - a * sds / sig**2
        if key == ("noise", "velocity"):  # u = (alpha'/alpha) x + (sigma' - alpha' sigma/alpha) eps
            need_alpha()
            fail(~torch.isfinite(ds), "d_sigma_t is infinite",
                 "sigma_t = 0 there and sigma_t' eps is 0 * inf; use t < 1 or convert from the score")
            return da / a, ds - da * sig / a
        if key == ("score", "velocity"):  # u = (alpha'/alpha) x + (alpha' sigma^2/alpha - sigma sigma') s
            need_alpha()
            return da / a, da * sig**2 / a - sds
        d = snr_rate()
        if key == ("velocity", "score"):  # s = (alpha u - alpha' x) / D
            return -da / d, a / d
        if key == ("velocity", "noise"):  # eps = -sigma (alpha u - alpha' x) / D
            return sig * da / d, -sig * a / d
        if key == ("velocity", "x1"):  # x1 = (sigma^2 u - sigma sigma' x) / D
            return -sds / d, sig**2 / d
        raise AssertionError(key)  # pragma: no cover - all pairs are handled above

    def convert(
        self,
        prediction: torch.Tensor,
        x: torch.Tensor,
        t: TimeLike,
        *,
        source: str,
        target: str,
    ) -> torch.Tensor:
        r"""Convert one prediction of an affine Gaussian path into another.

        For ``x_t = alpha_t x1 + sigma_t x0`` the optimal model can be written in four equivalent ways, all
        functions of ``(x, t)``: the **velocity**
        :math:`u_t(x) = \mathbb E[\dot\alpha_t x_1 + \dot\sigma_t x_0 \mid x_t = x]`, the **score**
        :math:`s_t(x) = \nabla_x \log p_t(x)`, the **x1-prediction** (denoiser)
        :math:`\hat x_1 = \mathbb E[x_1 \mid x_t = x]` and the **noise-prediction**
        :math:`\hat\varepsilon = \mathbb E[x_0 \mid x_t = x]`. They are tied by three linear relations,

        .. math::

            x = \alpha_t \hat x_1 + \sigma_t \hat\varepsilon, \qquad
            s_t = -\hat\varepsilon / \sigma_t, \qquad
            u_t = \dot\alpha_t \hat x_1 + \dot\sigma_t \hat\varepsilon ,

        so each is an affine function of ``x`` and any other one. With
        :math:`D_t = \dot\alpha_t\sigma_t^2 - \alpha_t\sigma_t\dot\sigma_t
        = \alpha_t\sigma_t^2 \frac{d}{dt}\log\frac{\alpha_t}{\sigma_t}` (time subscripts dropped below):

        * to the velocity:
          :math:`u = \frac{\dot\alpha}{\alpha} x + \big(\frac{\dot\alpha\sigma^2}{\alpha} - \sigma\dot\sigma\big) s
          = \frac{\dot\alpha}{\alpha} x + \big(\dot\sigma - \frac{\dot\alpha\sigma}{\alpha}\big)\hat\varepsilon
          = \frac{\dot\sigma}{\sigma} x + \big(\dot\alpha - \frac{\alpha\dot\sigma}{\sigma}\big)\hat x_1`;
        * from the velocity: :math:`s = (\alpha u - \dot\alpha x)/D`,
          :math:`\hat\varepsilon = -\sigma(\alpha u - \dot\alpha x)/D`,
          :math:`\hat x_1 = (\sigma^2 u - \sigma\dot\sigma x)/D`;
        * score and noise: :math:`\hat\varepsilon = -\sigma s`, :math:`s = -\hat\varepsilon/\sigma`;
        * x1 and noise: :math:`\hat x_1 = (x - \sigma\hat\varepsilon)/\alpha`,
          :math:`\hat\varepsilon = (x - \alpha\hat x_1)/\sigma`;
        * x1 and score: :math:`\hat x_1 = (x + \sigma^2 s)/\alpha` (Tweedie's formula),
          :math:`s = -(x - \alpha\hat x_1)/\sigma^2`.

        The relations are linear in the prediction with coefficients that depend only on ``t``, so they hold for
        the conditional fields (given ``x1``) and, averaged over the posterior of ``x1``, for the marginal ones.
        Conversions that divide by ``alpha_t`` are undefined where ``alpha_t = 0`` (CondOT and cosine at ``t = 0``),
        those that divide by ``sigma_t`` where ``sigma_t = 0`` (``t = 1`` without ``sigma_min``), and those from the
        velocity where ``D_t = 0``; near such times they amplify errors of a learned prediction.
        ``sigma_t * d_sigma_t`` is used as one finite product, so e.g. the score-to-velocity map of
        :class:`VPPath` is defined at ``t = 1``.

        Parameters
        ----------
        prediction:
            The ``source`` quantity at ``x``, shape ``(batch, dim)``.
        x:
            The points, shape ``(batch, dim)``.
        t:
            A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.
        source, target:
            Each one of ``"velocity"``, ``"score"``, ``"x1"``, ``"noise"``.

        Returns
        -------
        torch.Tensor
            The ``target`` quantity, shape ``(batch, dim)``.

        Raises
        ------
        ValueError
            For mismatched shapes, ``t`` outside ``[0, 1]``, an unknown ``source``/``target``, or a time where the
            conversion is undefined (the message names the vanishing quantity and the time).
        """
        return self._convert(prediction, x, t, source, target, "convert")

    def _convert(
        self, prediction: torch.Tensor, x: torch.Tensor, t: TimeLike, source: str, target: str, method: str
    ) -> torch.Tensor:
        for name, kind in (("source", source), ("target", target)):
            if kind not in self.PREDICTIONS:
                raise ValueError(f"{name} must be one of {list(self.PREDICTIONS)}; got {kind!r}")
        arg = {"velocity": "velocity", "score": "score", "x1": "x1_pred", "noise": "eps_pred"}[source]
        as_points(prediction, arg)
        as_points(x, "x")
        same_shape(prediction, x, arg, "x")
        tt = as_time(t, x)
        c_x, c_p = self._conversion_coefficients(source, target, tt, method)
        return c_x[:, None] * x + c_p[:, None] * prediction

    def score_to_velocity(self, score: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Velocity from a score (the probability-flow velocity).

        .. math::

            u = \frac{\dot\alpha_t}{\alpha_t}\, x
                + \Big(\frac{\dot\alpha_t\sigma_t^2}{\alpha_t} - \sigma_t\dot\sigma_t\Big)\, s

        ``score`` and ``x`` have shape ``(batch, dim)``; ``t`` is a float or ``(batch,)``; returns ``(batch, dim)``.
        Undefined where ``alpha_t = 0``. See :meth:`convert`.
        """
        return self._convert(score, x, t, "score", "velocity", "score_to_velocity")

    def velocity_to_score(self, velocity: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Score from a velocity.

        .. math:: s = \frac{\alpha_t u - \dot\alpha_t x}{\dot\alpha_t\sigma_t^2 - \alpha_t\sigma_t\dot\sigma_t}

        Shapes ``(batch, dim)``; undefined where the denominator vanishes (e.g. ``sigma_t = 0`` with a finite
        ``d_sigma_t``). See :meth:`convert`.
        """
        return self._convert(velocity, x, t, "velocity", "score", "velocity_to_score")

    def x1_to_velocity(self, x1_pred: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Velocity from an x1-prediction.

        .. math::

            u = \frac{\dot\sigma_t}{\sigma_t}\, x
                + \Big(\dot\alpha_t - \frac{\alpha_t\dot\sigma_t}{\sigma_t}\Big)\, \hat x_1

        Shapes ``(batch, dim)``; undefined where ``sigma_t = 0``. See :meth:`convert`.
        """
        return self._convert(x1_pred, x, t, "x1", "velocity", "x1_to_velocity")

    def velocity_to_x1(self, velocity: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""x1-prediction from a velocity.

        .. math::

            \hat x_1 = \frac{\sigma_t^2 u - \sigma_t\dot\sigma_t x}
                           {\dot\alpha_t\sigma_t^2 - \alpha_t\sigma_t\dot\sigma_t}

        Shapes ``(batch, dim)``; undefined where the denominator vanishes. See :meth:`convert`.
        """
        return self._convert(velocity, x, t, "velocity", "x1", "velocity_to_x1")

    def noise_to_velocity(self, eps_pred: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Velocity from a noise-prediction.

        .. math::

            u = \frac{\dot\alpha_t}{\alpha_t}\, x
                + \Big(\dot\sigma_t - \frac{\dot\alpha_t\sigma_t}{\alpha_t}\Big)\, \hat\varepsilon

        Shapes ``(batch, dim)``; undefined where ``alpha_t = 0`` or ``d_sigma_t`` is infinite. See :meth:`convert`.
        """
        return self._convert(eps_pred, x, t, "noise", "velocity", "noise_to_velocity")

    def velocity_to_noise(self, velocity: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Noise-prediction from a velocity.

        .. math::

            \hat\varepsilon = -\sigma_t\,
                \frac{\alpha_t u - \dot\alpha_t x}{\dot\alpha_t\sigma_t^2 - \alpha_t\sigma_t\dot\sigma_t}

        Shapes ``(batch, dim)``; undefined where the denominator vanishes. See :meth:`convert`.
        """
        return self._convert(velocity, x, t, "velocity", "noise", "velocity_to_noise")

    def score_to_noise(self, score: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Noise-prediction from a score: :math:`\hat\varepsilon = -\sigma_t s` (``x`` is only checked).

        Shapes ``(batch, dim)``; defined for every ``t``. See :meth:`convert`.
        """
        return self._convert(score, x, t, "score", "noise", "score_to_noise")

    def noise_to_score(self, eps_pred: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Score from a noise-prediction: :math:`s = -\hat\varepsilon / \sigma_t` (``x`` is only checked).

        Shapes ``(batch, dim)``; undefined where ``sigma_t = 0``. See :meth:`convert`.
        """
        return self._convert(eps_pred, x, t, "noise", "score", "noise_to_score")

    def x1_to_noise(self, x1_pred: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Noise-prediction from an x1-prediction: :math:`\hat\varepsilon = (x - \alpha_t \hat x_1)/\sigma_t`.

        Shapes ``(batch, dim)``; undefined where ``sigma_t = 0``. See :meth:`convert`.
        """
        return self._convert(x1_pred, x, t, "x1", "noise", "x1_to_noise")

    def noise_to_x1(self, eps_pred: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""x1-prediction from a noise-prediction: :math:`\hat x_1 = (x - \sigma_t\hat\varepsilon)/\alpha_t`.

        Shapes ``(batch, dim)``; undefined where ``alpha_t = 0``. See :meth:`convert`.
        """
        return self._convert(eps_pred, x, t, "noise", "x1", "noise_to_x1")

    def score_to_x1(self, score: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""x1-prediction from a score (Tweedie's formula): :math:`\hat x_1 = (x + \sigma_t^2 s)/\alpha_t`.

        Shapes ``(batch, dim)``; undefined where ``alpha_t = 0``. See :meth:`convert`.
        """
        return self._convert(score, x, t, "score", "x1", "score_to_x1")

    def x1_to_score(self, x1_pred: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        r"""Score from an x1-prediction: :math:`s = -(x - \alpha_t\hat x_1)/\sigma_t^2`.

        Shapes ``(batch, dim)``; undefined where ``sigma_t = 0``. See :meth:`convert`.
        """
        return self._convert(x1_pred, x, t, "x1", "score", "x1_to_score")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class CondOTPath(AffinePath):
    r"""The conditional optimal-transport (linear) path of Lipman et al. (2022).

    ``alpha_t = t``, ``sigma_t = 1 - (1 - sigma_min) t``; straight conditional trajectories.

    Parameters
    ----------
    sigma_min:
        Standard deviation left at ``t = 1``, in ``[0, 1)``.
    """

    name = "condot"

    def __init__(self, sigma_min: float = 0.0) -> None:
        sigma_min = real(sigma_min, "sigma_min", nonnegative=True)
        if sigma_min >= 1:
            raise ValueError(f"sigma_min must lie in [0, 1); got {sigma_min}")
        self.sigma_min = sigma_min

    def _schedule(self, t: torch.Tensor) -> Schedule:
        c = 1.0 - self.sigma_min
        return Schedule(t.clone(), 1.0 - c * t, torch.ones_like(t), torch.full_like(t, -c))


class VPPath(AffinePath):
    r"""Variance-preserving path of Lipman et al. (2022), in the book's time convention.

    ``alpha_t = exp(-T(1 - t) / 2)``, ``sigma_t = sqrt(1 - alpha_t^2)`` with
    ``T(s) = s beta_min + s^2 (beta_max - beta_min) / 2``. Then
    ``d_alpha_t = alpha_t T'(1 - t) / 2`` with ``T'(s) = beta_min + s (beta_max - beta_min)``, and
    ``d_sigma_t = -alpha_t d_alpha_t / sigma_t``, which is infinite at ``t = 1`` (``sigma_1 = 0``).

    Parameters
    ----------
    beta_min, beta_max:
        Noise-rate bounds, ``0 <= beta_min <= beta_max`` and ``beta_max > 0``.
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        beta_min = real(beta_min, "beta_min", nonnegative=True)
        beta_max = real(beta_max, "beta_max", positive=True)
        if beta_max < beta_min:
            raise ValueError(f"beta_max must be >= beta_min; got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min = beta_min
        self.beta_max = beta_max

    def _T(self, s: torch.Tensor) -> torch.Tensor:
        return s * self.beta_min + 0.5 * s**2 * (self.beta_max - self.beta_min)

    def _dT(self, s: torch.Tensor) -> torch.Tensor:
        return self.beta_min + s * (self.beta_max - self.beta_min)

    def _schedule(self, t: torch.Tensor) -> Schedule:
        s = 1.0 - t
        alpha = torch.exp(-0.5 * self._T(s))
        sigma = torch.sqrt(-torch.expm1(-self._T(s)))  # sqrt(1 - alpha^2), accurate near t = 1
        d_alpha = 0.5 * alpha * self._dT(s)
        d_sigma = -alpha * d_alpha / sigma  # inf at t = 1, by design
        return Schedule(alpha, sigma, d_alpha, d_sigma)

    def _sigma_dsigma(self, t: torch.Tensor) -> torch.Tensor:
        s = 1.0 - t
        alpha = torch.exp(-0.5 * self._T(s))
        return -0.5 * alpha**2 * self._dT(s)


class VEPath(AffinePath):
    r"""Variance-exploding path: ``alpha_t = 1``, ``sigma_t = sigma_min (sigma_max / sigma_min)^(1 - t)``.

    At ``t = 0`` the path is the data blurred by ``N(0, sigma_max^2 I)``, so sampling starts from
    ``sigma_max * N(0, I)`` (approximately; exact only as ``sigma_max -> inf``).

    Parameters
    ----------
    sigma_min, sigma_max:
        ``0 < sigma_min < sigma_max``.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 10.0) -> None:
        sigma_min = real(sigma_min, "sigma_min", positive=True)
        sigma_max = real(sigma_max, "sigma_max", positive=True)
        if sigma_max <= sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min; got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def _schedule(self, t: torch.Tensor) -> Schedule:
        log_ratio = math.log(self.sigma_max / self.sigma_min)
        sigma = self.sigma_min * torch.exp((1.0 - t) * log_ratio)
        return Schedule(torch.ones_like(t), sigma, torch.zeros_like(t), -log_ratio * sigma)


class CosinePath(AffinePath):
    r"""Trigonometric path ``alpha_t = sin(pi t / 2)``, ``sigma_t = cos(pi t / 2)`` (``alpha^2 + sigma^2 = 1``)."""

    name = "cosine"

    def _schedule(self, t: torch.Tensor) -> Schedule:
        h = 0.5 * math.pi
        return Schedule(torch.sin(h * t), torch.cos(h * t), h * torch.cos(h * t), -h * torch.sin(h * t))

    def _sigma_dsigma(self, t: torch.Tensor) -> torch.Tensor:
        h = 0.5 * math.pi
        return -h * torch.sin(h * t) * torch.cos(h * t)


ScheduleFn = Callable[[torch.Tensor], torch.Tensor]


class CustomPath(AffinePath):
    r"""A path from user-supplied schedule functions.

    Parameters
    ----------
    alpha, sigma:
        Differentiable functions mapping a time tensor to a tensor of the same shape (written with torch ops).
    d_alpha, d_sigma:
        Their derivatives; when omitted they are computed with autograd.
    """

    name = "custom"

    def __init__(
        self,
        alpha: ScheduleFn,
        sigma: ScheduleFn,
        d_alpha: Union[ScheduleFn, None] = None,
        d_sigma: Union[ScheduleFn, None] = None,
    ) -> None:
        for name, fn in (("alpha", alpha), ("sigma", sigma), ("d_alpha", d_alpha), ("d_sigma", d_sigma)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable; got {type(fn).__name__}")
        self._alpha, self._sigma = alpha, sigma
        self._d_alpha = d_alpha or _autograd_derivative(alpha)
        self._d_sigma = d_sigma or _autograd_derivative(sigma)
        self._check_on_grid()

    def _check_on_grid(self) -> None:
        """Evaluate the schedules once on a grid of [0, 1] and reject wrong shapes, NaN and sigma_t < 0."""
        grid = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
        values = {}
        for name, fn in (("alpha", self._alpha), ("sigma", self._sigma), ("d_alpha", self._d_alpha),
                         ("d_sigma", self._d_sigma)):
            try:
                out = fn(grid)
            except Exception as err:
                raise ValueError(f"{name}(t) failed on a float64 tensor of 101 times in [0, 1]: {err}") from err
            if not isinstance(out, torch.Tensor) or out.shape != grid.shape:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"{name}(t) must return a tensor shaped like t (here (101,)); got {got}")
            values[name] = out.detach()
        for name in ("alpha", "sigma"):
            if not torch.isfinite(values[name]).all():
                raise ValueError(f"{name}(t) is NaN or infinite somewhere in [0, 1]")
        if (values["sigma"] < 0).any():
            bad = float(grid[values["sigma"] < 0][0])
            raise ValueError(f"sigma(t) must be >= 0 on [0, 1]; got {float(values['sigma'].min()):.4g} at t = {bad:g}")

    def _schedule(self, t: torch.Tensor) -> Schedule:
        return Schedule(self._alpha(t), self._sigma(t), self._d_alpha(t), self._d_sigma(t))

    def __repr__(self) -> str:
        return f"CustomPath(alpha={self._alpha!r}, sigma={self._sigma!r})"


def _autograd_derivative(fn: ScheduleFn) -> ScheduleFn:
    def derivative(t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            # Differentiate through t itself when it carries a graph, so that second derivatives reach t.
            tt = t if t.requires_grad else t.detach().requires_grad_(True)
            out = fn(tt)
            if not out.requires_grad:  # a constant schedule such as torch.ones_like(t)
                return torch.zeros_like(t)
            (grad,) = torch.autograd.grad(out.sum(), tt, create_graph=t.requires_grad, allow_unused=True)
        return torch.zeros_like(t) if grad is None else grad

    return derivative
