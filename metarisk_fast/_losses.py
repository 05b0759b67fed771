"""The learners' losses as torch formulas, elementwise: the Python side of the fused kernels'
losses (csrc/inner_loop), used by the memory learners and the reference twins."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ._types import LOSSES


def elementwise_loss(z: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """mse: (z - y)^2; gaussian_nll: z read as log variance, 0.5 (ln 2 pi + z + y^2 e^-z);
    bce: z read as a logit."""
    if loss == "mse":
        return (z - y) ** 2
    if loss == "gaussian_nll":
        return 0.5 * (math.log(2 * math.pi) + z + y * y * torch.exp(-z))
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(z, y, reduction="none")
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
