"""External-memory ops (Santoro et al. 2016) as autograd Functions over the compiled kernels.

Shapes: a memory is (N, W) (one memory shared by every key) or (B, N, W) (one per episode);
CPU tensors run the CPU kernels, CUDA tensors the CUDA ones (the top-k selection on a GPU uses
torch.topk).
Keys are (B, W) or (B, H, W) (H heads per episode); beta is None (= 1, Santoro et al.), a
float, or one strength >= 0 per key. Twins with the same signatures: metarisk_fast.reference.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .._native import core as _core
from .._types import EPS, MAX_BETA, MemoryRead, TopKRead
from ._dispatch import numpy_view as _np
from ._dispatch import run_cuda
from ._validate import as_tensor


def _cuda(op: str, like: torch.Tensor, dims, param: float, inputs: dict, outputs: dict) -> dict:
    return run_cuda("memory_cuda", like, "the memory is", inputs, outputs, op, *dims, param)


def _layout(memory, keys, beta):
    """(memory (E,N,W), keys (E*G, W), beta (E*G,), key shape) with checks that name the argument."""
    memory = as_tensor(memory, "memory", allow_cuda=True)
    keys = as_tensor(keys, "keys", dtype=memory.dtype, allow_cuda=True)
    if keys.device != memory.device:
        raise ValueError(f"keys are on {keys.device} but the memory is on {memory.device}")
    if memory.dim() not in (2, 3):
        raise ValueError(f"memory must be (N, W) or (B, N, W), got shape {tuple(memory.shape)}")
    if memory.shape[-2] == 0:
        raise ValueError("memory has no slots (N = 0)")
    if keys.dim() not in (2, 3):
        raise ValueError(f"keys must be (B, W) or (B, H, W), got shape {tuple(keys.shape)}")
    if keys.shape[-1] != memory.shape[-1]:
        raise ValueError(f"key width {keys.shape[-1]} does not match the memory width {memory.shape[-1]}")
    if memory.dim() == 3 and keys.shape[0] != memory.shape[0]:
        raise ValueError(f"{keys.shape[0]} key groups for {memory.shape[0]} per-episode memories")
    if keys.shape[0] == 0:
        raise ValueError("no keys")
    mem3 = memory if memory.dim() == 3 else memory.unsqueeze(0)
    n_keys = keys.shape[:-1].numel()
    if beta is None:
        beta = torch.ones(n_keys, dtype=memory.dtype, device=memory.device)
    elif isinstance(beta, (float, int)):
        beta = torch.full((n_keys,), float(beta), dtype=memory.dtype, device=memory.device)
    else:
        beta = as_tensor(beta, "beta", dtype=memory.dtype, allow_cuda=True)
        if tuple(beta.shape) != tuple(keys.shape[:-1]):
            raise ValueError(f"beta must have shape {tuple(keys.shape[:-1])} (one per key), got {tuple(beta.shape)}")
        beta = beta.reshape(-1)
    return mem3, keys.reshape(-1, keys.shape[-1]), beta, tuple(keys.shape)


class _DenseRead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, memory, keys, beta, eps):
        if memory.is_cuda:
            E, N, W = memory.shape
            o = _cuda("read_forward", memory, (E, N, W, keys.shape[0] // E), eps,
                      {"memory": memory, "keys": keys, "beta": beta},
                      {"read": (keys.shape, None), "weights": ((keys.shape[0], N), None)})
            read, weights = o["read"], o["weights"]
        else:
            read, weights = _core.memory_read_forward(_np(memory), _np(keys), _np(beta), eps)
            read, weights = torch.from_numpy(read), torch.from_numpy(weights)
        ctx.save_for_backward(memory, keys, beta, weights)
        ctx.eps = eps
        return read, weights

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_read, d_weights):
        memory, keys, beta, weights = ctx.saved_tensors
        d_read = torch.zeros_like(keys) if d_read is None else d_read
        if memory.is_cuda:
            E, N, W = memory.shape
            o = _cuda("read_backward", memory, (E, N, W, keys.shape[0] // E), ctx.eps,
                      {"memory": memory, "keys": keys, "beta": beta, "weights": weights, "d_read": d_read,
                       "d_weights": d_weights},
                      {"d_keys": (keys.shape, None), "d_beta": (beta.shape, None), "d_memory": (memory.shape, None)})
            return o["d_memory"], o["d_keys"], o["d_beta"], None
        dk, db, dm = _core.memory_read_backward(_np(memory), _np(keys), _np(beta), ctx.eps, _np(weights),
                                                _np(d_read), _np(d_weights))
        return torch.from_numpy(dm), torch.from_numpy(dk), torch.from_numpy(db), None


def _cosine(dots, key_norms, slot_norms, eps):
    """The read's similarity, as the kernels compute it: k.M / (|k| |M| + eps)."""
    return dots / (key_norms * slot_norms + eps)


def memory_read(memory, keys, beta=None, topk: int | None = None, eps: float = EPS):
    """Content-based read: w = softmax_i(beta * cos(k, M_i)), read = sum_i w_i M_i.

    cos(k, M_i) = k.M_i / (norm(k) norm(M_i) + eps). Differentiable in memory, keys and beta
    (the compiled core forward and backward, GIL released).

    Parameters
    ----------
    memory : torch.Tensor or array_like
        (N, W) one memory shared by every key, or (B, N, W) one per episode.
    keys : torch.Tensor or array_like
        (B, W) or (B, H, W) keys (H heads per episode), in the memory's dtype.
    beta : float or torch.Tensor, optional
        Key strengths, one per key (shaped like keys without W) or one for all, finite and >= 0
        (default 1).
    topk : int, optional
        The softmax runs over the k most similar slots only (an exact scan); indices are returned too.
    eps : float
        Added to the norms' product (> 0).

    Returns
    -------
    MemoryRead or TopKRead
        read, shaped like ``keys``; weights, (..., N) (or (..., k)); with ``topk``, indices (..., k),
        most similar first.
    """
    if isinstance(eps, bool) or not isinstance(eps, (float, int)) or not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    mem3, k2, b1, key_shape = _layout(memory, keys, beta)
    # the CPU dense kernel checks beta itself (and names the key); spare its hot path a pass
    if (topk is not None or mem3.is_cuda) and (not torch.isfinite(b1).all() or (b1 < 0).any()
                                               or (b1 > MAX_BETA).any()):
        raise ValueError(f"beta (key strength) must be finite, >= 0 and <= {MAX_BETA:g}")
    if topk is None:
        read, weights = _DenseRead.apply(mem3.contiguous(), k2.contiguous(), b1.contiguous(), eps)
        return MemoryRead(read.reshape(key_shape), weights.reshape(*key_shape[:-1], mem3.shape[1]))
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or not 1 <= topk <= mem3.shape[1]:
        raise ValueError(f"topk must be an int in [1, N = {mem3.shape[1]}], got {topk!r}")
    group = torch.arange(k2.shape[0], device=k2.device) // (k2.shape[0] // mem3.shape[0])
    if mem3.is_cuda:  # on a GPU: select with torch.topk over the dense similarities
        with torch.no_grad():
            dots = torch.bmm(k2.view(mem3.shape[0], -1, k2.shape[1]), mem3.transpose(1, 2)).reshape(k2.shape[0], -1)
            sims = _cosine(dots, k2.norm(dim=-1, keepdim=True), mem3.norm(dim=-1)[group], eps)
            idx = torch.topk(sims, int(topk), dim=-1).indices
    else:
        idx = torch.from_numpy(_core.memory_topk(_np(mem3), _np(k2), int(topk), eps)[0])  # exact scan
    rows = mem3[group[:, None], idx]  # (E*G, k, W): the differentiable part on k rows
    sim = _cosine((rows @ k2.unsqueeze(-1)).squeeze(-1), k2.norm(dim=-1, keepdim=True), rows.norm(dim=-1), eps)
    w = torch.softmax(b1[:, None] * sim, dim=-1)
    read = (w.unsqueeze(-1) * rows).sum(1)
    k = int(topk)
    return TopKRead(read.reshape(key_shape), w.reshape(*key_shape[:-1], k), idx.reshape(*key_shape[:-1], k))


class _Write(torch.autograd.Function):
    @staticmethod
    def forward(ctx, memory, usage, prev_read, alpha, values, gamma):
        if memory.is_cuda:
            (E, N, W), P = memory.shape, values.shape[1]
            o = _cuda("write_forward", memory, (E, N, W, P), gamma,
                      {"memory": memory, "usage": usage, "prev_read": prev_read, "alpha": alpha, "values": values},
                      {"new_memory": (memory.shape, None), "new_usage": (usage.shape, None),
                       "write_weights": ((E, P, N), None), "least_used": ((E, P), torch.int64)})
            nm, nu, ww_t, lu_t = o["new_memory"], o["new_usage"], o["write_weights"], o["least_used"]
        else:
            nm, nu, ww, lu = _core.memory_write_forward(_np(memory), _np(usage), _np(prev_read), _np(alpha),
                                                        _np(values), gamma)
            nm, nu, ww_t, lu_t = torch.from_numpy(nm), torch.from_numpy(nu), torch.from_numpy(ww), torch.from_numpy(lu)
        ctx.save_for_backward(memory, usage, prev_read, alpha, values, ww_t, lu_t)
        ctx.gamma = gamma
        ctx.mark_non_differentiable(lu_t)
        return nm, nu, ww_t, lu_t

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_mem, d_usage, d_ww, _):
        memory, usage, prev_read, alpha, values, ww, lu = ctx.saved_tensors
        d_mem = torch.zeros_like(memory) if d_mem is None else d_mem
        if memory.is_cuda:
            (E, N, W), P = memory.shape, values.shape[1]
            o = _cuda("write_backward", memory, (E, N, W, P), ctx.gamma,
                      {"memory": memory, "usage": usage, "prev_read": prev_read, "alpha": alpha, "values": values,
                       "write_weights": ww, "least_used": lu, "d_new_memory": d_mem, "d_new_usage": d_usage,
                       "d_write_weights": d_ww},
                      {"d_memory": (memory.shape, None), "d_usage": (usage.shape, None),
                       "d_prev_read": (prev_read.shape, None), "d_alpha": (alpha.shape, None),
                       "d_values": (values.shape, None)})
            return o["d_memory"], o["d_usage"], o["d_prev_read"], o["d_alpha"], o["d_values"], None
        out = _core.memory_write_backward(_np(memory), _np(usage), _np(prev_read), _np(alpha), _np(values),
                                          ctx.gamma, _np(ww), _np(lu), _np(d_mem), _np(d_usage), _np(d_ww))
        return (*(torch.from_numpy(o) for o in out), None)


def memory_write_lrua(memory, usage, prev_read_weights, alpha, values, gamma: float = 0.95):
    """Least-recently-used-access write (Santoro et al. 2016, eqs. 20-23), batched.

    memory (N, W) with values (P, W): P writes into one shared memory, sent to the P least-used
    slots (ties by index); or memory (B, N, W) with values (B, W) or (B, P, W): per-episode
    writes. prev_read_weights (..., N) is w^r_{t-1} of each write and alpha (...) its gate logit:
    w^w = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu. The least-used slots are zeroed,
    then M += sum w^w a^T.

    Parameters
    ----------
    memory : torch.Tensor or array_like
        (N, W) one shared memory, or (B, N, W) one per episode.
    usage : torch.Tensor or array_like
        (N,) or (B, N) usage u_{t-1} of each slot.
    prev_read_weights : torch.Tensor or array_like
        (..., N): w^r_{t-1} of each write.
    alpha : torch.Tensor or array_like
        (...): each write's gate logit.
    values : torch.Tensor or array_like
        (P, W) writes into a shared memory, or (B, W) / (B, P, W) per episode.
    gamma : float
        The usage decay.

    Returns
    -------
    tuple of torch.Tensor
        (new_memory, new_usage, write_weights, least_used): new_usage = gamma * usage + sum w^w
        (add the next read weights to complete u_t); least_used, the slots each write was sent to.
    """
    memory = as_tensor(memory, "memory", allow_cuda=True)
    dt = memory.dtype
    usage, prev, values, alpha = (as_tensor(x, n, dtype=dt, allow_cuda=True) for x, n in
                                  ((usage, "usage"), (prev_read_weights, "prev_read_weights"), (values, "values"),
                                   (alpha, "alpha")))
    for t, n in ((usage, "usage"), (prev, "prev_read_weights"), (values, "values"), (alpha, "alpha")):
        if t.device != memory.device:
            raise ValueError(f"{n} is on {t.device} but the memory is on {memory.device}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    shared = memory.dim() == 2
    if memory.dim() not in (2, 3) or memory.shape[-2] == 0:
        raise ValueError(f"memory must be (N, W) or (B, N, W) with N >= 1, got shape {tuple(memory.shape)}")
    N, W = memory.shape[-2:]
    if shared:
        if values.dim() != 2 or values.shape[1] != W:
            raise ValueError(f"values for a shared memory must be (P, {W}), got {tuple(values.shape)}")
        single = False
        mem3, use2, vals3 = memory[None], usage.reshape(1, -1), values[None]
    else:
        single = values.dim() == 2
        vals3 = values[:, None] if single else values
        if vals3.dim() != 3 or vals3.shape[0] != memory.shape[0] or vals3.shape[2] != W:
            raise ValueError(f"values must be ({memory.shape[0]}, W) or ({memory.shape[0]}, P, W) with W = {W}, "
                             f"got {tuple(values.shape)}")
        mem3, use2 = memory, usage
    P = vals3.shape[1]
    if P > N:
        raise ValueError(f"{P} writes into a memory of {N} slots: each write needs its own least-used slot")
    if tuple(use2.shape) != (mem3.shape[0], N):
        raise ValueError(f"usage must have shape {tuple(memory.shape[:-1])}, got {tuple(usage.shape)}")
    prev3 = prev.reshape(mem3.shape[0], P, N) if prev.numel() == mem3.shape[0] * P * N else None
    if prev3 is None or tuple(prev.shape[:-1]) != tuple(values.shape[:-1]):
        raise ValueError(f"prev_read_weights must have shape {tuple(values.shape[:-1]) + (N,)}, got {tuple(prev.shape)}")
    if alpha.numel() != mem3.shape[0] * P or tuple(alpha.shape) != tuple(values.shape[:-1]):
        raise ValueError(f"alpha must have shape {tuple(values.shape[:-1])} (one gate per write), got {tuple(alpha.shape)}")
    nm, nu, ww, lu = _Write.apply(mem3.contiguous(), use2.contiguous(), prev3.contiguous(),
                                  alpha.reshape(mem3.shape[0], P).contiguous(), vals3.contiguous(), float(gamma))
    if shared:
        return nm[0], nu[0], ww[0], lu[0]
    if single:
        return nm, nu, ww[:, 0], lu[:, 0]
    return nm, nu, ww, lu
