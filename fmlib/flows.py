r"""Discrete normalizing flows: invertible layers with tractable log-determinants.

A normalizing flow models a density :math:`p_\theta` on :math:`\mathbb R^d` through a bijection
:math:`g_\theta` that sends data :math:`x` to a latent point :math:`z = g_\theta(x)` whose distribution is the
standard normal :math:`\mathcal N(0, I)`. By the change-of-variables formula

.. math:: \log p_\theta(x) = \log \mathcal N\big(g_\theta(x);\, 0, I\big)
          + \log\Big|\det \frac{\partial g_\theta}{\partial x}(x)\Big| .

When :math:`g = g_K \circ \dots \circ g_1` is a composition, the log-determinant is the sum of the layers'
log-determinants, each evaluated at the layer's own input.

Direction convention used by every class here (as in RealNVP):

* ``forward(x) -> (z, log_det)`` is the *normalizing* direction (data to noise), with
  ``log_det = log|det dz/dx|`` of shape ``(batch,)``;
* ``inverse(z) -> (x, log_det)`` is the *generative* direction (noise to data), with
  ``log_det = log|det dx/dz|``, so that ``inverse(forward(x)) == (x, -log_det)``.

In the book's time convention the latent ``z`` plays the role of the noise ``x0`` (``t = 0``) and ``x`` that of
the data ``x1`` (``t = 1``); sampling runs the generative direction ``x = g^{-1}(z)``.

All layers act row by row (no batch statistics), so ``forward`` and ``inverse`` can be differentiated per
sample with :func:`torch.func.jacrev` / :func:`torch.func.vmap`; :func:`jacobian_log_det` does exactly that and
is how the analytic log-determinants are tested.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from ._checks import as_points, positive_int, real
from .utils import make_generator

__all__ = [
    "standard_normal_log_prob",
    "jacobian_log_det",
    "Bijection",
    "ElementwiseAffine",
    "AffineCoupling",
    "SequentialFlow",
    "RealNVP",
    "alternating_masks",
]

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    r"""Log-density of the standard normal :math:`\mathcal N(0, I_d)` at the rows of ``z``.

    .. math:: \log \mathcal N(z; 0, I_d) = -\tfrac12 \|z\|^2 - \tfrac d2 \log(2\pi)

    Parameters
    ----------
    z:
        Points, shape ``(batch, d)``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``.
    """
    z = as_points(z, "z")
    return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * _LOG_2PI


def jacobian_log_det(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> torch.Tensor:
    r"""Log-absolute-determinant of the Jacobian of a row-wise map, computed by automatic differentiation.

    For each row :math:`x_i` of ``x``, builds the full :math:`d \times d` Jacobian
    :math:`J_i = \partial f(x_i) / \partial x_i` with :func:`torch.func.jacrev` (vectorised over rows with
    :func:`torch.func.vmap`) and returns :math:`\log|\det J_i|` from :func:`torch.linalg.slogdet`. This costs
    :math:`d` backward passes and an :math:`O(d^3)` determinant per row: it is the reference that the flows'
    analytic log-determinants are checked against, not something to train with.

    Parameters
    ----------
    fn:
        A function mapping ``(batch, d)`` to ``(batch, d)`` row by row (row ``i`` of the output depends only on
        row ``i`` of the input). It may also return a tuple whose first element is that tensor, as the flows'
        ``forward``/``inverse`` do. It must be differentiable and traceable by :mod:`torch.func`.
    x:
        Points, shape ``(batch, d)``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch,)``: :math:`\log|\det \partial f / \partial x|` at each row.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function mapping (batch, d) to (batch, d); got {type(fn).__name__}")
    x = as_points(x, "x")

    def single(row: torch.Tensor) -> torch.Tensor:
        out = fn(row.unsqueeze(0))
        if isinstance(out, tuple):
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.shape != (1, row.shape[0]):
            raise ValueError(
                f"fn must map points of shape (batch, {row.shape[0]}) to the same shape; "
                f"got {getattr(out, 'shape', type(out).__name__)} for a batch of 1"
            )
        return out.squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(single))(x)  # (batch, d, d)
    return torch.linalg.slogdet(jac).logabsdet


class Bijection(nn.Module):
    """Base class of the invertible layers: ``forward(x) -> (z, log_det)`` and ``inverse(z) -> (x, log_det)``.

    Subclasses implement ``_forward`` and ``_inverse`` on validated input of shape ``(batch, dim)``.

    Parameters
    ----------
    dim:
        Dimension ``d`` of the space the layer acts on.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Normalizing direction: ``x`` of shape ``(batch, dim)`` to ``(z, log|det dz/dx|)``, shapes ``(batch, dim)``
        and ``(batch,)``."""
        return self._forward(as_points(x, "x", dim=self.dim))

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Generative direction: ``z`` of shape ``(batch, dim)`` to ``(x, log|det dx/dz|)``, shapes ``(batch, dim)``
        and ``(batch,)``."""
        return self._inverse(as_points(z, "z", dim=self.dim))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class ElementwiseAffine(Bijection):
    r"""Learnable per-coordinate affine layer :math:`z = (x - \mu) \odot e^{-\lambda}` (an "ActNorm" layer).

    Its inverse is :math:`x = \mu + e^{\lambda} \odot z`; the Jacobian is diagonal, so

    .. math:: \log\Big|\det \frac{\partial z}{\partial x}\Big| = -\sum_{j=1}^d \lambda_j ,

    the same for every point. Used alone under a standard-normal base it models
    :math:`\mathcal N\big(\mu, \operatorname{diag}(e^{2\lambda})\big)` exactly.

    Parameters
    ----------
    dim:
        Dimension ``d``.
    loc:
        Initial :math:`\mu`, shape ``(dim,)``; zeros when omitted.
    log_scale:
        Initial :math:`\lambda`, shape ``(dim,)``; zeros when omitted (so the layer starts as the identity).
    """

    def __init__(self, dim: int, loc: Optional[torch.Tensor] = None, log_scale: Optional[torch.Tensor] = None) -> None:
        super().__init__(dim)
        self.loc = nn.Parameter(self._vector(loc, "loc"))
        self.log_scale = nn.Parameter(self._vector(log_scale, "log_scale"))

    def _vector(self, v: Optional[torch.Tensor], name: str) -> torch.Tensor:
        if v is None:
            return torch.zeros(self.dim)
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a tensor of shape ({self.dim},); got {type(v).__name__}")
        if v.shape != (self.dim,) or not v.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor of shape ({self.dim},); got {v.dtype} {tuple(v.shape)}")
        if not torch.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return v.detach().clone()

    @torch.no_grad()
    def initialize_from_data(self, x: torch.Tensor) -> "ElementwiseAffine":
        r"""Set :math:`\mu` and :math:`\lambda` to the data's per-coordinate mean and log standard deviation.

        Afterwards ``forward(x)`` is standardised (zero mean, unit variance per coordinate). ``x`` has shape
        ``(batch, dim)`` with ``batch >= 2``. Returns ``self``.
        """
        x = as_points(x, "x", dim=self.dim)
        if x.shape[0] < 2:
            raise ValueError(f"x must hold at least 2 points to estimate a standard deviation; got {x.shape[0]}")
        std = x.std(dim=0)
        if (std <= 0).any():
            raise ValueError("x must vary along every coordinate (a standard deviation is 0)")
        self.loc.copy_(x.mean(dim=0))
        self.log_scale.copy_(std.log())
        return self

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (x - self.loc) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[0])

    def _inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.loc + torch.exp(self.log_scale) * z
        return x, self.log_scale.sum().expand(z.shape[0])


_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "selu": nn.SELU, "elu": nn.ELU, "gelu": nn.GELU}


def _as_mask(mask: object, dim: int) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        m = mask
    elif isinstance(mask, (list, tuple)):
        try:
            m = torch.tensor(mask)
        except (TypeError, ValueError) as err:
            raise TypeError(f"mask must be a sequence of {dim} booleans; got {mask!r}") from err
    else:
        raise TypeError(f"mask must be a bool tensor or a sequence of {dim} booleans; got {type(mask).__name__}")
    if m.shape != (dim,):
        raise ValueError(f"mask must have shape ({dim},) (one entry per coordinate); got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if not ((m == 0) | (m == 1)).all():
            raise ValueError(f"mask entries must be booleans or 0/1; got {m.tolist()}")
        m = m.bool()
    if m.all() or not m.any():
        raise ValueError(
            f"mask must keep at least one coordinate (True) and transform at least one (False); got {m.tolist()}"
        )
    return m


class AffineCoupling(Bijection):
    r"""RealNVP affine coupling layer (Dinh et al., 2017).

    The coordinates with ``mask = True`` (block :math:`A`) pass through unchanged and condition an affine map
    of the others (block :math:`B`):

    .. math::

        z_A = x_A, \qquad z_B = x_B \odot e^{s(x_A)} + t(x_A),

    where :math:`s, t` are outputs of one MLP (the *conditioner*) that never needs to be inverted. The Jacobian
    :math:`\partial z / \partial x` is block-triangular with the diagonal :math:`(1, \dots, 1, e^{s(x_A)})`, so

    .. math:: \log\Big|\det \frac{\partial z}{\partial x}\Big| = \sum_{j \in B} s_j(x_A),

    and the inverse is explicit: :math:`x_A = z_A`, :math:`x_B = (z_B - t(z_A)) \odot e^{-s(z_A)}`.

    The raw log-scale is soft-clamped, :math:`s = c \tanh(\tilde s / c)` with :math:`c` = ``max_log_scale``, to
    keep training stable; the conditioner's last layer starts at zero, so a new layer is the identity.

    Parameters
    ----------
    dim:
        Dimension ``d`` (>= 2).
    mask:
        Bool tensor (or sequence of booleans / 0-1 values) of shape ``(dim,)``: ``True`` for the coordinates
        that pass through. At least one ``True`` and one ``False``.
    hidden:
        Width of the conditioner's hidden layers.
    depth:
        Number of hidden layers of the conditioner (>= 1).
    activation:
        One of ``"tanh"``, ``"relu"``, ``"silu"``, ``"selu"``, ``"elu"``, ``"gelu"``.
    max_log_scale:
        The clamp :math:`c > 0` on :math:`|s|`.
    """

    def __init__(
        self,
        dim: int,
        mask: Union[torch.Tensor, Sequence[bool]],
        hidden: int = 64,
        depth: int = 2,
        activation: str = "relu",
        max_log_scale: float = 3.0,
    ) -> None:
        super().__init__(dim)
        if self.dim < 2:
            raise ValueError(f"dim must be >= 2 for a coupling layer (one block conditions the other); got {dim}")
        self.register_buffer("mask", _as_mask(mask, self.dim).to(torch.get_default_dtype()))
        hidden = positive_int(hidden, "hidden")
        depth = positive_int(depth, "depth")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")
        self.max_log_scale = real(max_log_scale, "max_log_scale", positive=True)
        act = _ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Linear(self.dim, hidden), act()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), act()]
        last = nn.Linear(hidden, 2 * self.dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.conditioner = nn.Sequential(*layers)

    def scale_shift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The conditioner's log-scale :math:`s(x_A)` and shift :math:`t(x_A)`, each of shape ``(batch, dim)``.

        Only the masked coordinates of ``x`` (shape ``(batch, dim)``) are read; both outputs are zero on the
        pass-through coordinates.
        """
        x = as_points(x, "x", dim=self.dim)
        keep = self.mask.to(x.dtype)
        raw_s, t = self.conditioner(x * keep).chunk(2, dim=1)
        c = self.max_log_scale
        s = c * torch.tanh(raw_s / c) * (1 - keep)
        return s, t * (1 - keep)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.scale_shift(x)
        return x * torch.exp(s) + t, s.sum(dim=1)

    def _inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.scale_shift(z)  # z_A = x_A, so the conditioner sees the same input as in forward
        return (z - t) * torch.exp(-s), -s.sum(dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, mask={self.mask.bool().tolist()}, max_log_scale={self.max_log_scale}"


class SequentialFlow(Bijection):
    r"""A composition of bijections with a standard-normal base: a normalizing flow.

    ``forward`` applies ``layers[0]`` first (data to noise), ``inverse`` runs them backwards. With
    :math:`z_0 = x` and :math:`z_k = g_k(z_{k-1})`,

    .. math::

        \log p(x) = \log \mathcal N(z_K; 0, I)
                    + \sum_{k=1}^K \log\Big|\det \frac{\partial g_k}{\partial z_{k-1}}\Big| .

    Parameters
    ----------
    layers:
        A non-empty sequence of :class:`Bijection` layers of the same ``dim``.
    """

    def __init__(self, layers: Sequence[Bijection]) -> None:
        if isinstance(layers, Bijection) or not isinstance(layers, (list, tuple, nn.ModuleList)):
            raise TypeError(f"layers must be a list of Bijection layers; got {type(layers).__name__}")
        if len(layers) == 0:
            raise ValueError("layers must hold at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Bijection):
                raise TypeError(f"layers[{i}] must be an fmlib.flows.Bijection; got {type(layer).__name__}")
        dims = {layer.dim for layer in layers}
        if len(dims) != 1:
            raise ValueError(f"all layers must have the same dim; got dims {[layer.dim for layer in layers]}")
        super().__init__(dims.pop())
        self.layers = nn.ModuleList(layers)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def _inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            log_det = log_det + ld
        return z, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""Exact log-density :math:`\log p(x) = \log\mathcal N(g(x); 0, I) + \log|\det \partial g/\partial x|`.

        ``x`` has shape ``(batch, dim)``; returns shape ``(batch,)``.
        """
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, n: int, generator: Optional[torch.Generator] = None, seed: Optional[int] = None) -> torch.Tensor:
        r"""Draw ``n`` samples :math:`x = g^{-1}(z)`, :math:`z \sim \mathcal N(0, I)`; shape ``(n, dim)``.

        The noise is drawn on the CPU from ``generator`` (or a generator seeded with ``seed``; PyTorch's global
        generator when neither is given) and moved to the flow's device and dtype, so a seed gives the same
        samples on every device. Gradients flow through the samples; wrap the call in ``torch.no_grad()``
        when they are not needed.
        """
        n = positive_int(n, "n")
        g = make_generator(seed, generator)
        ref = next(self.parameters(), None)
        z = torch.randn(n, self.dim, generator=g, dtype=torch.float64)
        z = z.to(torch.get_default_dtype()) if ref is None else z.to(ref)
        return self.inverse(z)[0]


def alternating_masks(dim: int, n_layers: int) -> list[torch.Tensor]:
    """Masks for ``n_layers`` coupling layers in ``dim`` dimensions that alternate which coordinates pass through.

    Layer ``k`` keeps the coordinates ``j`` with ``(j + k) % 2 == 0``; consecutive layers are complementary, so
    every coordinate is transformed by every second layer. Returns a list of bool tensors of shape ``(dim,)``.
    """
    dim = positive_int(dim, "dim")
    n_layers = positive_int(n_layers, "n_layers")
    if dim < 2:
        raise ValueError(f"dim must be >= 2 for coupling layers; got {dim}")
    j = torch.arange(dim)
    return [((j + k) % 2 == 0) for k in range(n_layers)]


class RealNVP(SequentialFlow):
    r"""A RealNVP-style flow: a standardising :class:`ElementwiseAffine` layer, then ``n_layers``
    :class:`AffineCoupling` layers with :func:`alternating_masks`.

    Call :meth:`initialize_from_data` once before training so that the first layer standardises the data (this
    matters for data far from the unit scale of the base distribution).

    Parameters
    ----------
    dim:
        Data dimension ``d`` (>= 2).
    n_layers:
        Number of coupling layers.
    hidden, depth, activation, max_log_scale:
        Passed to every :class:`AffineCoupling`.
    """

    def __init__(
        self,
        dim: int = 2,
        n_layers: int = 8,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "relu",
        max_log_scale: float = 3.0,
    ) -> None:
        masks = alternating_masks(dim, n_layers)
        layers: list[Bijection] = [ElementwiseAffine(dim)]
        layers += [AffineCoupling(dim, m, hidden, depth, activation, max_log_scale) for m in masks]
        super().__init__(layers)

    def initialize_from_data(self, x: torch.Tensor) -> "RealNVP":
        """Standardise with the first layer (see :meth:`ElementwiseAffine.initialize_from_data`); returns ``self``."""
        self.layers[0].initialize_from_data(x)
        return self
