"""Fused MAML-family inner loops as autograd ops (thin: checks and buffer passing, no math).

Every op takes an MLP as a list of tensors ``[W1, b1, W2, b2, ...]`` (nn.Linear layout), an
inner learning rate (a float, a scalar tensor, or one tensor per parameter for Meta-SGD) and a
batch of tasks. The twins in :mod:`metarisk_fast.reference` have the same signatures.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

from .._native import core as _core
from .._types import ACTIVATIONS, LOSSES, MODES
from ._dispatch import numpy_view as _np
from ._dispatch import run_cuda
from ._validate import as_tensor, check_steps, check_task_batch, mlp_sizes

LearningRate = Union[float, torch.Tensor, Sequence[torch.Tensor]]


def _check_choice(value: str, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _flat_params(params: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    params = [as_tensor(p, f"params[{i}]", allow_cuda=True) for i, p in enumerate(params)]
    sizes = mlp_sizes(params)
    dtypes = {p.dtype for p in params}
    if len(dtypes) != 1:
        raise TypeError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")
    devices = {p.device for p in params}
    if len(devices) != 1:
        raise ValueError(f"all parameters must be on one device, got {sorted(map(str, devices))}")
    return torch.cat([p.reshape(-1) for p in params]), sizes


def _flat_lr(lr: LearningRate, params: Sequence[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """(1,) for one shared rate, (P,) for one rate per parameter entry (differentiable)."""
    device = params[0].device
    if isinstance(lr, (float, int)) and not isinstance(lr, bool):
        return torch.tensor([float(lr)], dtype=dtype, device=device)
    if isinstance(lr, (torch.Tensor, np.ndarray)):
        t = as_tensor(lr, "inner lr", dtype=dtype, allow_cuda=True)
        if t.numel() != 1:
            raise ValueError(
                f"a single inner lr tensor must hold one value, got shape {tuple(t.shape)}; "
                "pass one tensor per parameter for per-parameter rates"
            )
        return t.reshape(1)
    lrs = list(lr)
    if len(lrs) != len(params):
        raise ValueError(f"per-parameter inner lr needs {len(params)} tensors, got {len(lrs)}")
    for i, (r, p) in enumerate(zip(lrs, params)):
        if tuple(r.shape) != tuple(p.shape):
            raise ValueError(f"inner lr[{i}] has shape {tuple(r.shape)}, parameter has {tuple(p.shape)}")
    return torch.cat([as_tensor(r, f"inner lr[{i}]", dtype=dtype, allow_cuda=True).reshape(-1)
                      for i, r in enumerate(lrs)])


def _run_core(theta, lr, xs, ys, xq, yq, sizes, steps, activation, loss, mode, *, ws=None, wq=None,
              want_loss=False, want_lr_grad=False, want_adapted=False, want_pred=False) -> dict:
    """One fused kernel call on the tensors' device; returns the requested outputs as tensors."""
    if theta.device.type == "cpu":
        out = _core.mlp_inner_loop(_np(theta), _np(lr), _np(xs), _np(ys), _np(xq), _np(yq), _np(ws), _np(wq), sizes,
                                   steps, activation, loss, mode, want_loss, want_lr_grad, want_adapted, want_pred)
        return {k: torch.from_numpy(v) for k, v in out.items()}
    B, K = xs.shape[:2]
    Q = 0 if xq is None else xq.shape[1]
    P, O = theta.shape[-1], sizes[-1]
    wanted = {"loss": (want_loss, (B,)), "grad": (mode != "none", (B, P)), "lr_grad": (want_lr_grad, (B, P)),
              "adapted": (want_adapted, (B, P)), "pred": (want_pred, (B, Q, O))}
    return run_cuda("mlp_inner_loop_cuda", theta, "the parameters are",
                    {"theta": theta, "lr": lr, "xs": xs, "ys": ys, "xq": xq, "yq": yq, "ws": ws, "wq": wq},
                    {k: (shape, None) for k, (want, shape) in wanted.items() if want},
                    B, K, Q, sizes, steps, activation, loss, mode, lr.numel() == P and P != 1, theta.dim() == 2)


class _MetaLoss(torch.autograd.Function):
    """Per-task query losses after the inner loop; the kernel returns the per-task meta-gradients
    in the same call, and backward contracts them with the incoming cotangent."""

    @staticmethod
    def forward(ctx, theta, lr, xs, ys, xq, yq, ws, wq, sizes, steps, activation, loss, mode):
        want_theta, want_lr = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        out = _run_core(theta, lr, xs, ys, xq, yq, sizes, steps, activation, loss,
                        mode if want_theta else "none", ws=ws, wq=wq, want_loss=True, want_lr_grad=want_lr)
        losses = out["loss"]
        ctx.task_grad = out["grad"] if want_theta else None
        ctx.task_lr_grad = out["lr_grad"] if want_lr else None
        ctx.lr_numel = lr.numel()
        ctx.per_task = theta.dim() == 2
        return losses

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses):
        g_theta = g_lr = None
        if ctx.task_grad is not None:  # per-task starting points get their task's gradient
            g_theta = grad_losses[:, None] * ctx.task_grad if ctx.per_task else grad_losses @ ctx.task_grad
        if ctx.task_lr_grad is not None:
            g_lr = grad_losses @ ctx.task_lr_grad
            if ctx.lr_numel == 1:
                g_lr = g_lr.sum().reshape(1)
        return g_theta, g_lr, None, None, None, None, None, None, None, None, None, None, None


def _row_weights(weights, x: torch.Tensor, name: str):
    """Row weights (B, R) for the rows of x (B, R, D), as a detached contiguous tensor of x's dtype
    and device; None stays None."""
    if weights is None:
        return None
    w = as_tensor(weights, name, dtype=x.dtype, allow_cuda=True).detach()
    if tuple(w.shape) != tuple(x.shape[:2]):
        raise ValueError(f"{name} must have shape {tuple(x.shape[:2])} (tasks, rows), got {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError(f"{name} hold a NaN or infinite value")
    return w.to(x.device).contiguous()


def _task_start(theta: torch.Tensor, task_offsets, params, B: int) -> torch.Tensor:
    """theta (P,), or theta + per-task offsets as (B, P) when ``task_offsets`` is given (one
    tensor per parameter with a leading task dimension): a per-task starting point."""
    if task_offsets is None:
        return theta
    offs = list(task_offsets)
    if len(offs) != len(params):
        raise ValueError(f"task_offsets needs {len(params)} tensors (one per parameter), got {len(offs)}")
    for i, (o, p) in enumerate(zip(offs, params)):
        if tuple(o.shape) != (B, *p.shape):
            raise ValueError(f"task_offsets[{i}] must have shape {(B, *p.shape)}, got {tuple(o.shape)}")
    flat = torch.cat([as_tensor(o, f"task_offsets[{i}]", dtype=theta.dtype, allow_cuda=True).reshape(B, -1)
                      for i, o in enumerate(offs)], dim=1)
    return theta.unsqueeze(0) + flat


def mlp_meta_loss(
    params: Sequence[torch.Tensor],
    lr: LearningRate,
    xs,
    ys,
    xq,
    yq,
    *,
    steps: int,
    activation: str = "relu",
    loss: str = "mse",
    mode: str = "second_order",
    task_offsets: Sequence[torch.Tensor] | None = None,
    support_weights=None,
    query_weights=None,
) -> torch.Tensor:
    """Query loss of each task after ``steps`` SGD steps on its support set, shape (B,).

    ``support_weights`` (B, K) / ``query_weights`` (B, Q): each row's loss times its weight in
    the support / query mean (an advantage-weighted likelihood: a policy-gradient step); they are
    constants, with no gradient.

    Differentiable with respect to ``params`` (and ``lr`` when it requires grad, and
    ``task_offsets``, per-task additions to the starting parameters):
    ``second_order`` gives the exact MAML meta-gradient, ``first_order`` the FOMAML one, and
    ``reptile`` makes the gradient of each task's loss the Reptile direction theta - theta_S.

    Parameters
    ----------
    params : sequence of torch.Tensor
        The MLP's parameters, weight (out, in) then bias (out,) per layer (``MLP.parameter_list``).
    lr : float, torch.Tensor or sequence of torch.Tensor
        The inner learning rate: one number, or one tensor per parameter shaped like it (Meta-SGD).
    xs : torch.Tensor
        (B, K, D) support inputs.
    ys : torch.Tensor
        (B, K, O) support targets.
    xq : torch.Tensor
        (B, Q, D) query inputs.
    yq : torch.Tensor
        (B, Q, O) query targets.
    steps : int
        Inner SGD steps.
    activation : {'relu', 'tanh'}
        The MLP's activation.
    loss : {'mse', 'gaussian_nll', 'student_t_nll', 'bce'}
        The inner (and query) loss.
    mode : {'second_order', 'first_order', 'reptile'}
        Which meta-gradient the backward gives.
    task_offsets : sequence of torch.Tensor, optional
        Per-task additions to the starting parameters, each ``(B, *param.shape)``.
    support_weights : torch.Tensor, optional
        (B, K): each support row's loss times its weight in the support mean (constants).
    query_weights : torch.Tensor, optional
        (B, Q): each query row's loss times its weight in the query mean (constants).

    Returns
    -------
    torch.Tensor
        (B,) each task's query loss after adaptation.
    """
    _check_choice(mode, "mode", MODES)
    _check_choice(activation, "activation", ACTIVATIONS)
    _check_choice(loss, "loss", LOSSES)
    steps = check_steps(steps)
    theta, sizes = _flat_params(params)
    lr_flat = _flat_lr(lr, params, theta.dtype)
    if mode == "reptile" and lr_flat.requires_grad:
        raise ValueError("Reptile has no gradient for the inner learning rate; pass a plain float")
    xs, ys, xq, yq = check_task_batch(xs, ys, xq, yq, sizes, theta.dtype, need_query_targets=True,
                                      device=theta.device)
    if xq.shape[1] == 0:
        raise ValueError("the query set is empty (Q = 0); the meta-loss needs query rows")
    theta = _task_start(theta, task_offsets, params, xs.shape[0])
    ws = _row_weights(support_weights, xs, "support_weights")
    wq = _row_weights(query_weights, xq, "query_weights")
    losses = _MetaLoss.apply(theta, lr_flat, xs, ys, xq, yq, ws, wq, sizes, steps, activation, loss, mode)
    _check_converged(losses, "query loss", steps)
    return losses


def _check_converged(values, what: str, steps: int) -> None:
    """A non-finite output after the inner loop is an error, as in every op of this module. A
    CPU tensor is checked through its NumPy view (a torch op costs tens of microseconds here)."""
    if isinstance(values, torch.Tensor) and values.device.type == "cpu":
        values = values.detach().numpy()
    finite = np.isfinite(values) if isinstance(values, np.ndarray) else torch.isfinite(values)
    if not finite.all():
        per_task = finite.reshape(finite.shape[0], -1).all(1)
        bad = int(np.argmin(per_task) if isinstance(values, np.ndarray) else torch.nonzero(~per_task)[0])
        raise FloatingPointError(
            f"the inner loop diverged: task {bad} has a non-finite {what} after {steps} steps; "
            "lower the inner learning rate or standardise the features"
        )


def _adapt_call(params, lr, xs, ys, xq, steps, activation, loss, *, adapted: bool, pred: bool, task_offsets=None,
                support_weights=None):
    _check_choice(activation, "activation", ACTIVATIONS)
    _check_choice(loss, "loss", LOSSES)
    steps = check_steps(steps)
    with torch.no_grad():
        theta, sizes = _flat_params(params)
        lr_flat = _flat_lr(lr, params, theta.dtype)
        xs, ys, xq, _ = check_task_batch(xs, ys, xq, None, sizes, theta.dtype, need_query_targets=False,
                                         device=theta.device)
        theta = _task_start(theta, task_offsets, params, xs.shape[0])
        out = _run_core(theta, lr_flat, xs, ys, xq, None, sizes, steps, activation, loss, "none",
                        ws=_row_weights(support_weights, xs, "support_weights"), want_adapted=adapted, want_pred=pred)
    return out, sizes


def mlp_adapt(params, lr, xs, ys, *, steps: int, activation: str = "relu", loss: str = "mse", task_offsets=None,
              support_weights=None):
    """The adapted parameters of every task, after ``steps`` SGD steps on its support set.

    Parameters
    ----------
    params : sequence of torch.Tensor
        The MLP's parameters, weight (out, in) then bias (out,) per layer (``MLP.parameter_list``).
    lr : float, torch.Tensor or sequence of torch.Tensor
        The inner learning rate: one number, or one tensor per parameter shaped like it (Meta-SGD).
    xs : torch.Tensor
        (B, K, D) support inputs.
    ys : torch.Tensor
        (B, K, O) support targets.
    steps : int
        Inner SGD steps.
    activation : {'relu', 'tanh'}
        The MLP's activation.
    loss : {'mse', 'gaussian_nll', 'student_t_nll', 'bce'}
        The inner (and query) loss.
    task_offsets : sequence of torch.Tensor, optional
        Per-task additions to the starting parameters, each ``(B, *param.shape)``.
    support_weights : torch.Tensor, optional
        (B, K): each support row's loss times its weight in the support mean (constants).

    Returns
    -------
    list of torch.Tensor
        Shaped like ``params`` with a leading B.
    """
    out, sizes = _adapt_call(params, lr, xs, ys, None, steps, activation, loss, adapted=True, pred=False,
                             task_offsets=task_offsets, support_weights=support_weights)
    flat = out["adapted"]
    _check_converged(flat, "adapted parameter", steps)
    pieces, start = [], 0
    for p in params:
        n = p.numel()
        pieces.append(flat[:, start:start + n].reshape(flat.shape[0], *p.shape))
        start += n
    return pieces


def mlp_adapt_predict(params, lr, xs, ys, xq, *, steps: int, activation: str = "relu", loss: str = "mse",
                      task_offsets=None, support_weights=None):
    """Predictions on the query inputs after adapting on each task's support set.

    Parameters
    ----------
    params : sequence of torch.Tensor
        The MLP's parameters, weight (out, in) then bias (out,) per layer (``MLP.parameter_list``).
    lr : float, torch.Tensor or sequence of torch.Tensor
        The inner learning rate: one number, or one tensor per parameter shaped like it (Meta-SGD).
    xs : torch.Tensor
        (B, K, D) support inputs.
    ys : torch.Tensor
        (B, K, O) support targets.
    xq : torch.Tensor
        (B, Q, D) query inputs.
    steps : int
        Inner SGD steps.
    activation : {'relu', 'tanh'}
        The MLP's activation.
    loss : {'mse', 'gaussian_nll', 'student_t_nll', 'bce'}
        The inner (and query) loss.
    task_offsets : sequence of torch.Tensor, optional
        Per-task additions to the starting parameters, each ``(B, *param.shape)``.
    support_weights : torch.Tensor, optional
        (B, K): each support row's loss times its weight in the support mean (constants).

    Returns
    -------
    torch.Tensor
        (B, Q, O) predictions.
    """
    if xq is None:
        raise ValueError("xq (query inputs) is required")
    out, _ = _adapt_call(params, lr, xs, ys, xq, steps, activation, loss, adapted=False, pred=True,
                         task_offsets=task_offsets, support_weights=support_weights)
    _check_converged(out["pred"], "prediction", steps)
    return out["pred"]


def mlp_adapt_predict_numpy(
    theta: np.ndarray,
    lr: np.ndarray,
    sizes: Sequence[int],
    xs: np.ndarray,
    ys: np.ndarray,
    xq: np.ndarray,
    *,
    steps: int,
    activation: str = "relu",
    loss: str = "mse",
    return_adapted: bool = False,
):
    """The backtest hot path: flat parameters and C-contiguous arrays in, predictions out, no
    torch dispatch. Argument types are checked here (so a wrong one is named, not reported as a
    binding signature); the core checks dtypes, shapes, contiguity and finiteness.

    Parameters
    ----------
    theta : numpy.ndarray
        (P,) or per task (B, P) flat parameters: each layer's weight (out, in) then bias.
    lr : numpy.ndarray
        (1,) one inner learning rate, or (P,) one per parameter entry.
    sizes : sequence of int
        Layer sizes [D, hidden..., O].
    xs : numpy.ndarray
        (B, K, D) support inputs, theta's dtype.
    ys : numpy.ndarray
        (B, K, O) support targets.
    xq : numpy.ndarray
        (B, Q, D) query inputs.
    steps : int
        Inner SGD steps.
    activation : {'relu', 'tanh'}
        The MLP's activation.
    loss : {'mse', 'gaussian_nll', 'student_t_nll', 'bce'}
        The inner (and query) loss.
    return_adapted : bool
        Also return the adapted parameters.

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        (B, Q, O) predictions, or (predictions, adapted parameters (B, P)) with ``return_adapted``.
    """
    for name, a in (("theta", theta), ("lr", lr), ("xs", xs), ("ys", ys), ("xq", xq)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    steps = check_steps(steps)
    _check_choice(activation, "activation", ACTIVATIONS)
    _check_choice(loss, "loss", LOSSES)
    try:
        sizes = [int(n) for n in sizes]
    except (TypeError, ValueError):
        raise TypeError(f"sizes must be a sequence of ints, got {sizes!r}") from None
    out = _core.mlp_inner_loop(
        theta, lr, xs, ys, xq, None, None, None, sizes, steps, activation, loss, "none",
        False, False, bool(return_adapted), True,
    )
    _check_converged(out["pred"], "prediction", steps)
    return (out["pred"], out["adapted"]) if return_adapted else out["pred"]
