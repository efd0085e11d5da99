"""Time-conditioned networks."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ._checks import TimeLike, as_points, as_time, positive_int

__all__ = ["VelocityMLP"]

_ACTIVATIONS = {"selu": nn.SELU, "silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}


class VelocityMLP(nn.Module):
    """A plain MLP on ``[x, t]`` predicting a velocity (or score, or x1) of the same shape as ``x``.

    The default (3 hidden layers of width 64, SELU) is the 2-D benchmark network of Tong et al. (2023).
    Call as ``model(x, t)`` (or ``model(x, t, r=r)``, ``model(x, t, y=y)``) with ``x`` of shape ``(batch, d)`` and
    ``t`` a float or a tensor of shape ``(batch,)`` in ``[0, 1]``; returns ``(batch, d)``.

    Parameters
    ----------
    dim:
        Data dimension ``d``.
    hidden:
        Width of the hidden layers.
    depth:
        Number of hidden layers (>= 1).
    activation:
        One of ``"selu"``, ``"silu"``, ``"relu"``, ``"tanh"``, ``"elu"``, ``"gelu"``.
    num_classes:
        If given, the network also takes an integer label ``y`` in ``[0, num_classes]``, where the extra label
        ``num_classes`` means "no label" (for classifier-free guidance); it is embedded and concatenated.
    n_times:
        1 for ``v(x, t)``; 2 for networks of two times such as MeanFlow's ``u(x, r, t)``.

    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 64,
        depth: int = 3,
        activation: str = "selu",
        num_classes: Optional[int] = None,
        n_times: int = 1,
    ) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim")
        hidden = positive_int(hidden, "hidden")
        depth = positive_int(depth, "depth")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")
        if n_times not in (1, 2):
            raise ValueError(f"n_times must be 1 or 2; got {n_times!r}")
        self.n_times = n_times
        self.num_classes = None if num_classes is None else positive_int(num_classes, "num_classes")
        in_features = self.dim + n_times
        if self.num_classes is not None:
            self.label_embedding = nn.Embedding(self.num_classes + 1, hidden)
            in_features += hidden
        act = _ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Linear(in_features, hidden), act()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), act()]
        layers.append(nn.Linear(hidden, self.dim))
        self.net = nn.Sequential(*layers)

    def forward(
        self,
        x: torch.Tensor,
        t: TimeLike,
        r: Optional[TimeLike] = None,
        y: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        x = as_points(x, "x", dim=self.dim)
        features = [x, as_time(t, x)[:, None]]
        if self.n_times == 2:
            if r is None:
                raise ValueError("this network has n_times=2: call it as model(x, t, r=r)")
            features.append(as_time(r, x, name="r")[:, None])
        elif r is not None:
            raise ValueError("this network has n_times=1 and takes no second time r")
        if self.num_classes is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],) or y.is_floating_point():
                raise ValueError(f"y must be an integer tensor of shape ({x.shape[0]},); got {y!r:.60}")
            if (y < 0).any() or (y > self.num_classes).any():
                raise ValueError(f"labels y must lie in [0, {self.num_classes}]; got [{int(y.min())}, {int(y.max())}]")
            features.append(self.label_embedding(y).to(x.dtype))
        elif y is not None:
            raise ValueError("this network was built without num_classes and takes no label y")
        return self.net(torch.cat(features, dim=1))
