"""The learners' losses as torch formulas, elementwise: the Python side of the fused kernels'
losses (csrc/inner_loop), used by the memory learners and the reference twins."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ._types import LOSSES, STUDENT_T_NU


def elementwise_loss(z: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """mse: (z - y)^2; gaussian_nll: z read as log variance, 0.5 (ln 2 pi + z + y^2 e^-z);
    student_t_nll: the negative log density of y under a Student t with STUDENT_T_NU degrees of
    freedom and variance e^z; bce: z read as a logit."""
    if loss == "mse":
        return (z - y) ** 2
    if loss == "gaussian_nll":
        return 0.5 * (math.log(2 * math.pi) + z + y * y * torch.exp(-z))
    if loss == "student_t_nll":
        nu = STUDENT_T_NU
        log_norm = -math.lgamma((nu + 1) / 2) + math.lgamma(nu / 2) + 0.5 * math.log(math.pi * (nu - 2))
        # log1p(u) as softplus(log u), u = y^2 e^-z / (nu - 2): finite gradients where u overflows
        log_u = torch.log(y * y) - z - math.log(nu - 2)
        return 0.5 * z + 0.5 * (nu + 1) * F.softplus(log_u) + log_norm
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(z, y, reduction="none")
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
