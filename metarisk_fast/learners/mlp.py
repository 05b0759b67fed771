"""The forecaster network shared by every learner."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """in_features -> hidden... -> out_features, ReLU (or tanh) between layers, none after the last.

    ``parameters()`` yields weight (out, in) then bias (out,) per layer, the nn.Linear order
    the fused kernels expect.

    Parameters
    ----------
    in_features : int
        Inputs per row.
    hidden : sequence of int
        Hidden layer sizes.
    out_features : int
        Outputs per row.
    activation : {'relu', 'tanh'}
        The activation between layers.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (64, 64), out_features: int = 1,
                 activation: str = "relu"):
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        sizes = [int(in_features), *map(int, hidden), int(out_features)]
        if any(s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be >= 1, got {sizes}")
        self.sizes = sizes
        self.activation = activation
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output.

        Parameters
        ----------
        x : torch.Tensor
            (..., in_features) rows.

        Returns
        -------
        torch.Tensor
            (..., out_features).
        """
        act = torch.relu if self.activation == "relu" else torch.tanh
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = act(x)
        return x

    def parameter_list(self) -> list[torch.Tensor]:
        """``list(self.parameters())`` (weight, bias per layer) without nn.Module's recursive walk,
        which costs ~8 us: the per-bar adapt-and-predict path calls this on every bar. A layer or
        parameter replaced by assignment is picked up, as by ``parameters()``.

        Returns
        -------
        list of torch.Tensor
            Weight (out, in) then bias (out,) per layer.
        """
        return [p for layer in self.layers for p in layer._parameters.values()]

    def extra_repr(self) -> str:
        """The layer sizes and activation that ``repr(module)`` shows (torch.nn.Module's hook).

        Returns
        -------
        str
            One line, e.g. for ``print(model)``.
        """
        return f"sizes={self.sizes}, activation={self.activation!r}"
