"""Names shared by the ops and their reference twins, defined apart from both so that a twin
checks the kernel instead of borrowing from it: result types, the similarity epsilon, the
choices of loss, mode and activation."""
from __future__ import annotations

from typing import NamedTuple

import torch

EPS = 1e-6  # cosine similarity: dot / (|k| |m| + EPS)
MAX_BETA = 1e30  # key strengths above this are refused (csrc/memory/memory.h, kMaxBeta)
MAX_INNER_STEPS = 10_000  # csrc/inner_loop/inner_loop.h, kMaxInnerSteps
LOSSES = ("mse", "gaussian_nll", "student_t_nll", "bce")
STUDENT_T_NU = 5.0  # degrees of freedom of "student_t_nll" (csrc/common/host_device.h, kStudentTNu)
MODES = ("second_order", "first_order", "reptile")
ACTIVATIONS = ("relu", "tanh")


class MemoryRead(NamedTuple):
    read: torch.Tensor  # shaped like the keys
    weights: torch.Tensor  # (..., N) dense, or (..., k) for a top-k read


class TopKRead(NamedTuple):
    read: torch.Tensor
    weights: torch.Tensor  # (..., k) softmax over the k nearest slots
    indices: torch.Tensor  # (..., k) their slots, most similar first
