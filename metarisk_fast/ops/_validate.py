"""Input checks shared by the ops: each error names the argument and what was expected."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .._types import MAX_INNER_STEPS

FLOAT_DTYPES = (torch.float32, torch.float64)


def as_tensor(x, name: str, *, dtype: torch.dtype | None = None, allow_cuda: bool = False) -> torch.Tensor:
    """Tensors pass through; NumPy arrays are wrapped without a copy."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(x) if x.dtype in (np.float32, np.float64) else torch.as_tensor(x)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but the parameters are {dtype}; use one dtype")
    if t.device.type != "cpu" and not (allow_cuda and t.device.type == "cuda"):
        raise ValueError(
            f"{name} is on {t.device}; this op runs on CPU tensors (move the model and data with .cpu())"
        )
    return t


def check_ndim(t: torch.Tensor, name: str, ndim: int, what: str) -> None:
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D {what}, got shape {tuple(t.shape)}")


def mlp_sizes(params: Sequence[torch.Tensor]) -> list[int]:
    """Layer sizes d_0..d_L of an MLP given as [W1, b1, W2, b2, ...] (nn.Linear layout)."""
    params = list(params)
    if len(params) == 0 or len(params) % 2:
        raise ValueError(
            f"params must be [weight, bias] pairs per layer (nn.Linear order), got {len(params)} tensors"
        )
    sizes = []
    for i in range(0, len(params), 2):
        w, b = params[i], params[i + 1]
        if w.dim() != 2 or b.dim() != 1 or b.shape[0] != w.shape[0]:
            raise ValueError(
                f"layer {i // 2}: expected weight (out, in) and bias (out,), got "
                f"{tuple(w.shape)} and {tuple(b.shape)}"
            )
        if sizes and w.shape[1] != sizes[-1]:
            raise ValueError(
                f"layer {i // 2}: weight expects {w.shape[1]} inputs but the previous layer "
                f"has {sizes[-1]} outputs"
            )
        if not sizes:
            sizes.append(int(w.shape[1]))
        sizes.append(int(w.shape[0]))
    return sizes


def check_task_batch(xs, ys, xq, yq, sizes, dtype, *, need_query_targets: bool, device=None):
    """Validates and converts (B,K,D), (B,K,O), (B,Q,D), (B,Q,O); returns contiguous tensors,
    all on ``device`` (the parameters' device)."""
    d_in, d_out = sizes[0], sizes[-1]
    cuda = device is not None and device.type == "cuda"
    xs = as_tensor(xs, "xs", dtype=dtype, allow_cuda=cuda)
    ys = as_tensor(ys, "ys", dtype=dtype, allow_cuda=cuda)
    check_ndim(xs, "xs", 3, "(tasks, support rows, features)")
    check_ndim(ys, "ys", 3, "(tasks, support rows, outputs)")
    if xs.shape[0] == 0:
        raise ValueError("xs holds zero tasks; a meta-batch needs at least one task")
    if xs.shape[2] != d_in:
        raise ValueError(f"xs has {xs.shape[2]} features but the network expects {d_in}")
    if ys.shape != (xs.shape[0], xs.shape[1], d_out):
        raise ValueError(
            f"ys must have shape {(xs.shape[0], xs.shape[1], d_out)} to match xs, got {tuple(ys.shape)}"
        )
    if xq is not None:
        xq = as_tensor(xq, "xq", dtype=dtype, allow_cuda=cuda)
        check_ndim(xq, "xq", 3, "(tasks, query rows, features)")
        if xq.shape[0] != xs.shape[0] or xq.shape[2] != d_in:
            raise ValueError(
                f"xq must have shape ({xs.shape[0]}, Q, {d_in}) to match xs, got {tuple(xq.shape)}"
            )
    if yq is not None:
        if xq is None:
            raise ValueError("yq given without xq")
        yq = as_tensor(yq, "yq", dtype=dtype, allow_cuda=cuda)
        if yq.shape != (xq.shape[0], xq.shape[1], d_out):
            raise ValueError(
                f"yq must have shape {(xq.shape[0], xq.shape[1], d_out)} to match xq, got {tuple(yq.shape)}"
            )
    elif need_query_targets:
        raise ValueError("query targets yq are required")
    for t, name in ((xs, "xs"), (ys, "ys"), (xq, "xq"), (yq, "yq")):
        if t is not None and t.requires_grad:
            raise ValueError(
                f"{name} requires grad, but the fused inner loop differentiates only with respect "
                "to the parameters and learning rates; detach the data"
            )
    if device is not None:
        for t, name in ((xs, "xs"), (ys, "ys"), (xq, "xq"), (yq, "yq")):
            if t is not None and t.device != device:
                raise ValueError(f"{name} is on {t.device} but the parameters are on {device}")
    return [None if t is None else t.contiguous() for t in (xs, ys, xq, yq)]


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"inner_steps must be an int, got {type(steps).__name__}")
    if not 0 <= steps <= MAX_INNER_STEPS:
        raise ValueError(f"inner_steps must be in [0, {MAX_INNER_STEPS}], got {steps}")
    return int(steps)
