r"""Exact ground truth: Gaussian mixtures and the closed-form marginal fields of affine Gaussian paths.

Let the data be a Gaussian mixture :math:`q = \sum_k w_k \mathcal N(m_k, s_k^2 I)` (an empirical distribution
is the special case :math:`s_k = 0`, :math:`w_k = 1/N`). Under the path :math:`x_t = \alpha_t x_1 + \sigma_t x_0`
each component stays Gaussian:

.. math:: p_t = \sum_k w_k\, \mathcal N\big(\alpha_t m_k,\ v_k I\big), \qquad v_k = \alpha_t^2 s_k^2 + \sigma_t^2 .

With posterior weights :math:`r_k(x) \propto w_k \mathcal N(x; \alpha_t m_k, v_k I)` (a softmax, computed with
log-sum-exp), the exact marginal score and velocity are

.. math::

   \nabla \log p_t(x) = -\sum_k r_k(x)\, \frac{x - \alpha_t m_k}{v_k}, \qquad
   u_t(x) = \sum_k r_k(x) \Big[\dot\alpha_t m_k
            + \frac{\dot\alpha_t \alpha_t s_k^2 + \sigma_t \dot\sigma_t}{v_k}\,(x - \alpha_t m_k)\Big],

the second being :math:`\mathbb E[\dot\alpha_t x_1 + \dot\sigma_t x_0 \mid x_t = x]` (Gaussian conditioning within
each component). All functions are differentiable with autograd in ``x`` and ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from ._checks import TimeLike, as_points, as_time, check_finite, check_labels, positive_int
from .paths import AffinePath
from .utils import make_generator

__all__ = [
    "GaussianMixture",
    "LabelledMixture",
    "class_log_posterior",
    "class_velocity",
    "class_score",
    "marginal_log_prob",
    "marginal_score",
    "marginal_velocity",
    "posterior_mean",
]


def _normalised_weights(weights: Optional[torch.Tensor], k: int, name: str, what: str, like: torch.Tensor) -> torch.Tensor:
    """Check non-negative weights of shape ``(k,)``, not all zero (uniform when ``None``); return them summing to 1."""
    if weights is None:
        return torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of shape ({k},); got {type(weights).__name__}")
    if weights.shape != (k,):
        raise ValueError(f"{name} must have shape ({k},) ({what}); got {tuple(weights.shape)}")
    weights = weights.to(like)
    check_finite(weights, name)
    if (weights < 0).any():
        raise ValueError(f"{name} must be >= 0; got min {float(weights.min()):g}")
    if weights.sum() <= 0:
        raise ValueError(f"{name} must not all be zero")
    return weights / weights.sum()


class GaussianMixture:
    r"""Isotropic Gaussian mixture :math:`q(x) = \sum_k w_k \mathcal N(x;\ m_k, s_k^2 I)`.

    Parameters
    ----------
    means:
        Component means, shape ``(K, d)``.
    stds:
        Component standard deviations, shape ``(K,)`` (or a positive float shared by all components); > 0.
    weights:
        Non-negative mixture weights of shape ``(K,)``, not all zero; normalised to sum to one. Uniform when
        omitted.
    """

    def __init__(
        self,
        means: torch.Tensor,
        stds: Union[torch.Tensor, float],
        weights: Optional[torch.Tensor] = None,
    ) -> None:
        means = as_points(means, "means")
        check_finite(means, "means")
        k = means.shape[0]
        if isinstance(stds, (int, float)) and not isinstance(stds, bool):
            stds = torch.full((k,), float(stds), dtype=means.dtype, device=means.device)
        if not isinstance(stds, torch.Tensor):
            raise TypeError(f"stds must be a float or a tensor of shape ({k},); got {type(stds).__name__}")
        if stds.shape != (k,):
            raise ValueError(f"stds must have shape ({k},) (one std per component); got {tuple(stds.shape)}")
        stds = stds.to(means)
        check_finite(stds, "stds")
        if (stds <= 0).any():
            raise ValueError(
                f"stds must be > 0; got min {float(stds.min()):g} "
                "(for point masses pass the data tensor itself to the marginal functions)"
            )
        self.means = means
        self.stds = stds
        self.weights = _normalised_weights(weights, k, "weights", "one weight per component", means)

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the data space."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return self.means.shape[0]

    def to(self, *args, **kwargs) -> "GaussianMixture":
        """Return a copy moved to another device and/or dtype (arguments as for ``torch.Tensor.to``)."""
        return GaussianMixture(self.means.to(*args, **kwargs), self.stds.to(*args, **kwargs),
                               self.weights.to(*args, **kwargs))

    def sample(self, n: int, generator: Optional[torch.Generator] = None, seed: Optional[int] = None) -> torch.Tensor:
        """Draw ``n`` samples, shape ``(n, d)``, on the mixture's device and dtype.

        Random numbers are drawn on the CPU from ``generator`` (or a generator seeded with ``seed``; PyTorch's
        global generator when neither is given), so results do not depend on the device.
        """
        n = positive_int(n, "n")
        g = make_generator(seed, generator)
        idx = torch.multinomial(self.weights.detach().cpu().double(), n, replacement=True, generator=g)
        noise = torch.randn(n, self.dim, generator=g, dtype=torch.float64)
        idx = idx.to(self.means.device)
        return self.means[idx] + self.stds[idx, None] * noise.to(self.means)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""Log-density :math:`\log q(x)`, shape ``(batch,)`` for ``x`` of shape ``(batch, d)``."""
        x = as_points(x, "x", dim=self.dim)
        mix = _Mixture.from_target(self, x)
        return torch.logsumexp(mix.log_w + _log_normal(x, mix.means, mix.var), dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        r"""Score :math:`\nabla_x \log q(x)`, shape ``(batch, d)``."""
        x = as_points(x, "x", dim=self.dim)
        mix = _Mixture.from_target(self, x)
        r = torch.softmax(mix.log_w + _log_normal(x, mix.means, mix.var), dim=1)
        return -(r[..., None] * (x[:, None, :] - mix.means) / mix.var[..., None]).sum(1)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, dim={self.dim}, dtype={self.means.dtype})"


Target = Union[GaussianMixture, torch.Tensor]


@dataclass
class _Mixture:
    """Internal form: means (1, K, d), variances (1 or B, K), log-weights (1, K) in the dtype of ``x``."""

    means: torch.Tensor
    var: torch.Tensor
    log_w: torch.Tensor
    comp_var: torch.Tensor  # s_k^2, shape (1, K)

    @staticmethod
    def from_target(q: Target, x: torch.Tensor) -> "_Mixture":
        if isinstance(q, GaussianMixture):
            if q.dim != x.shape[1]:
                raise ValueError(f"x must have dim = {q.dim} columns to match the mixture; got shape {tuple(x.shape)}")
            means = q.means.to(x)
            comp_var = q.stds.to(x) ** 2
            log_w = torch.log(q.weights.to(x))
        elif isinstance(q, torch.Tensor):
            data = as_points(q, "q (data tensor)")
            if data.shape[1] != x.shape[1]:
                raise ValueError(
                    f"q (data tensor) must have the same dim as x; got {tuple(data.shape)} and {tuple(x.shape)}"
                )
            means = data.to(x)
            comp_var = torch.zeros(data.shape[0], dtype=x.dtype, device=x.device)
            log_w = torch.full_like(comp_var, -math.log(data.shape[0]))
        else:
            raise TypeError(f"q must be a GaussianMixture or a data tensor of shape (N, d); got {type(q).__name__}")
        return _Mixture(means[None], comp_var[None], log_w[None], comp_var[None])


def _log_normal(x: torch.Tensor, means: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log N(x; means_k, var_k I) for x (B, d), means (1 or B, K, d), var (1 or B, K) -> (B, K)."""
    d = x.shape[1]
    sq = ((x[:, None, :] - means) ** 2).sum(-1)
    return -0.5 * (sq / var + d * torch.log(2 * math.pi * var))


def _marginal_parts(path: AffinePath, q: Target, x: torch.Tensor, t: TimeLike):
    if not isinstance(path, AffinePath):
        raise TypeError(f"path must be an fmlib.paths.AffinePath (e.g. CondOTPath()); got {type(path).__name__}")
    x = as_points(x, "x")
    mix = _Mixture.from_target(q, x)
    tt = as_time(t, x)
    s = path._schedule(tt)
    alpha = s.alpha[:, None]  # (B, 1)
    var = alpha**2 * mix.comp_var + (s.sigma**2)[:, None]  # (B, K)
    if (var <= 0).any():
        bad = float(tt[(var <= 0).any(1)][0])
        raise ValueError(
            f"the marginal path has a point mass at t = {bad:g} (sigma_t = 0 and zero-width data components); "
            "use t < 1, sigma_min > 0, or a GaussianMixture target"
        )
    centred = x[:, None, :] - alpha[..., None] * mix.means  # (B, K, d)
    log_comp = mix.log_w + _log_normal(x, alpha[..., None] * mix.means, var)
    return tt, s, mix, alpha, var, centred, log_comp


def marginal_log_prob(path: AffinePath, q: Target, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    r"""Exact log-density :math:`\log p_t(x)` of the marginal path.

    Parameters
    ----------
    path:
        An affine Gaussian path (:class:`fmlib.paths.CondOTPath`, ...).
    q:
        The data distribution: a :class:`GaussianMixture`, or a tensor of data points ``(N, d)`` (the empirical
        distribution, whose marginal at ``t`` is a mixture of ``N`` Gaussians of variance ``sigma_t^2``).
    x:
        Points, shape ``(batch, d)``.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``.
    """
    *_, log_comp = _marginal_parts(path, q, x, t)
    return torch.logsumexp(log_comp, dim=1)


def marginal_score(path: AffinePath, q: Target, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    r"""Exact marginal score :math:`\nabla_x \log p_t(x) = -\sum_k r_k(x) (x - \alpha_t m_k) / v_k`.

    Arguments as in :func:`marginal_log_prob`; returns shape ``(batch, d)``.
    """
    *_, var, centred, log_comp = _marginal_parts(path, q, x, t)
    r = torch.softmax(log_comp, dim=1)
    return -(r[..., None] * centred / var[..., None]).sum(1)


def marginal_velocity(path: AffinePath, q: Target, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    r"""Exact marginal velocity :math:`u_t(x) = \mathbb E[\dot\alpha_t x_1 + \dot\sigma_t x_0 \mid x_t = x]`.

    For each mixture component the conditional expectation is affine in ``x``:
    :math:`\dot\alpha_t m_k + \frac{\dot\alpha_t\alpha_t s_k^2 + \sigma_t\dot\sigma_t}{v_k}(x - \alpha_t m_k)`;
    the result averages these with the posterior weights :math:`r_k(x)`. Arguments as in
    :func:`marginal_log_prob`; returns shape ``(batch, d)``.
    """
    tt, s, mix, alpha, var, centred, log_comp = _marginal_parts(path, q, x, t)
    r = torch.softmax(log_comp, dim=1)
    sds = path._sigma_dsigma(tt)[:, None]  # sigma * d_sigma: finite even where d_sigma is not
    da = s.d_alpha[:, None]
    gain = (da * alpha * mix.comp_var + sds) / var  # (B, K)
    u_k = da[..., None] * mix.means + gain[..., None] * centred
    return (r[..., None] * u_k).sum(1)


def posterior_mean(path: AffinePath, q: Target, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    r"""Exact denoiser :math:`\mathbb E[x_1 \mid x_t = x] = \sum_k r_k(x)\,(m_k + \alpha_t s_k^2 (x - \alpha_t m_k)/v_k)`.

    This is the optimal ``x1``-prediction. Arguments as in :func:`marginal_log_prob`; returns ``(batch, d)``.
    """
    _, _, mix, alpha, var, centred, log_comp = _marginal_parts(path, q, x, t)
    r = torch.softmax(log_comp, dim=1)
    e_k = mix.means + (alpha * mix.comp_var / var)[..., None] * centred
    return (r[..., None] * e_k).sum(1)


class LabelledMixture:
    r"""Labelled data: one :class:`GaussianMixture` per class, :math:`q(x, c) = \pi_c\, q(x \mid c)`.

    Class :math:`c \in \{0, \dots, K-1\}` has prior weight :math:`\pi_c` and its own mixture
    :math:`q(x \mid c) = \sum_j w_{cj}\, \mathcal N(m_{cj}, s_{cj}^2 I)`. The unconditional data distribution is the
    weighted union :math:`q(x) = \sum_c \pi_c\, q(x \mid c)`, itself a Gaussian mixture
    (:meth:`unconditional`), so every exact field of this module applies to a class (:meth:`mixture`) and to the
    whole (:meth:`unconditional`). Labels follow :class:`fmlib.nets.VelocityMLP`: ``K`` is the *null label*
    ("no class"), used for the unconditional field.

    Parameters
    ----------
    classes:
        A sequence of ``K >= 1`` Gaussian mixtures of the same dimension, one per class.
    class_weights:
        Non-negative prior weights :math:`\pi_c`, shape ``(K,)``, not all zero; normalised to sum to one. Uniform
        when omitted.
    """

    def __init__(self, classes: Sequence[GaussianMixture], class_weights: Optional[torch.Tensor] = None) -> None:
        if isinstance(classes, GaussianMixture) or not isinstance(classes, (list, tuple)) or len(classes) == 0:
            raise TypeError(
                f"classes must be a non-empty list or tuple of GaussianMixture (one per class); got {type(classes).__name__}"
            )
        for c, mix in enumerate(classes):
            if not isinstance(mix, GaussianMixture):
                raise TypeError(f"classes[{c}] must be a GaussianMixture; got {type(mix).__name__}")
            if mix.dim != classes[0].dim:
                raise ValueError(
                    f"every class must have the same dim; classes[0] has dim {classes[0].dim}, classes[{c}] has {mix.dim}"
                )
        ref = classes[0].means
        k = len(classes)
        self.classes = [mix.to(ref) for mix in classes]
        self.class_weights = _normalised_weights(class_weights, k, "class_weights", "one per class", ref)

    @property
    def num_classes(self) -> int:
        """Number of classes ``K`` (the null label is ``K``)."""
        return len(self.classes)

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the data space."""
        return self.classes[0].dim

    def mixture(self, c: int) -> GaussianMixture:
        r"""The class-conditional mixture :math:`q(x \mid c)` for a class ``c`` in ``[0, K)``."""
        if isinstance(c, bool) or not isinstance(c, int):
            raise TypeError(f"c must be an int class label in [0, {self.num_classes - 1}]; got {type(c).__name__}")
        if not 0 <= c < self.num_classes:
            raise ValueError(f"c must be a class label in [0, {self.num_classes - 1}]; got {c}")
        return self.classes[c]

    def unconditional(self) -> GaussianMixture:
        r"""The unconditional data :math:`q(x) = \sum_c \pi_c q(x \mid c)` as one mixture (components of all classes,
        weights :math:`\pi_c w_{cj}`)."""
        means = torch.cat([m.means for m in self.classes])
        stds = torch.cat([m.stds for m in self.classes])
        weights = torch.cat([p * m.weights for p, m in zip(self.class_weights, self.classes)])
        return GaussianMixture(means, stds, weights)

    def to(self, *args, **kwargs) -> "LabelledMixture":
        """Return a copy moved to another device and/or dtype (arguments as for ``torch.Tensor.to``)."""
        return LabelledMixture([m.to(*args, **kwargs) for m in self.classes], self.class_weights.to(*args, **kwargs))

    def sample(
        self, n: int, generator: Optional[torch.Generator] = None, seed: Optional[int] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` labelled samples: points ``(n, d)`` and their class labels ``(n,)`` (int64).

        Labels are drawn from the class weights, then each point from its class's mixture; random numbers come
        from the CPU ``generator`` (or one seeded with ``seed``).
        """
        n = positive_int(n, "n")
        g = make_generator(seed, generator)
        y = torch.multinomial(self.class_weights.detach().cpu().double(), n, replacement=True, generator=g)
        x = torch.empty(n, self.dim, dtype=self.classes[0].means.dtype, device=self.classes[0].means.device)
        for c in range(self.num_classes):
            idx = (y == c).nonzero().flatten()
            if len(idx):
                x[idx.to(x.device)] = self.classes[c].sample(len(idx), generator=g)
        return x, y.to(x.device)

    def __repr__(self) -> str:
        return f"LabelledMixture(K={self.num_classes}, dim={self.dim})"


def _check_labelled(q: object) -> LabelledMixture:
    if not isinstance(q, LabelledMixture):
        raise TypeError(f"q must be an fmlib.targets.LabelledMixture; got {type(q).__name__}")
    return q


def _per_class(fn, path: AffinePath, q: LabelledMixture, x: torch.Tensor, t: TimeLike, y: torch.Tensor) -> torch.Tensor:
    q = _check_labelled(q)
    x = as_points(x, "x", dim=q.dim)
    tt = as_time(t, x)
    y = check_labels(y, x.shape[0], q.num_classes)
    out = torch.empty_like(x)
    for c in range(q.num_classes + 1):
        mask = y.to(x.device) == c
        if mask.any():
            mix = q.unconditional() if c == q.num_classes else q.classes[c]
            out[mask] = fn(path, mix, x[mask], tt[mask])
    return out


def class_velocity(path: AffinePath, q: LabelledMixture, x: torch.Tensor, t: TimeLike, y: torch.Tensor) -> torch.Tensor:
    r"""Exact class-conditional marginal velocity :math:`u_t(x \mid c) = \mathbb E[\dot\alpha_t x_1 + \dot\sigma_t x_0
    \mid x_t = x, c]`, row by row.

    Row ``i`` uses the class ``y[i]``: the :func:`marginal_velocity` of the class's mixture, or, for the null label
    ``y[i] = K``, of the unconditional mixture :math:`q(x)`, which equals the posterior average
    :math:`u_t(x) = \sum_c p_t(c \mid x)\, u_t(x \mid c)`.

    Parameters
    ----------
    path:
        An affine Gaussian path.
    q:
        The labelled data (:class:`LabelledMixture`).
    x:
        Points, shape ``(batch, d)``.
    t:
        A float or a tensor of shape ``(batch,)`` in ``[0, 1]``.
    y:
        Integer labels, shape ``(batch,)``, in ``[0, K]``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch, d)``.
    """
    return _per_class(marginal_velocity, path, q, x, t, y)


def class_score(path: AffinePath, q: LabelledMixture, x: torch.Tensor, t: TimeLike, y: torch.Tensor) -> torch.Tensor:
    r"""Exact class-conditional score :math:`\nabla_x \log p_t(x \mid c)` row by row (the unconditional score for
    the null label ``K``). Arguments as in :func:`class_velocity`; returns ``(batch, d)``."""
    return _per_class(marginal_score, path, q, x, t, y)


def class_log_posterior(path: AffinePath, q: LabelledMixture, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    r"""Log-posterior of the class given a noisy point, :math:`\log p_t(c \mid x) = \log \pi_c + \log p_t(x \mid c)
    - \log p_t(x)`: the exact *noisy classifier* of classifier guidance.

    Parameters
    ----------
    path, q, x, t:
        As in :func:`class_velocity` (no labels).

    Returns
    -------
    torch.Tensor
        Shape ``(batch, K)``; ``exp`` of each row sums to one.
    """
    q = _check_labelled(q)
    x = as_points(x, "x", dim=q.dim)
    tt = as_time(t, x)
    joint = torch.stack(
        [torch.log(q.class_weights[c].to(x)) + marginal_log_prob(path, q.classes[c], x, tt) for c in range(q.num_classes)],
        dim=1,
    )
    return joint - torch.logsumexp(joint, dim=1, keepdim=True)
