"""Plain PyTorch twins of the external-memory kernels (same signatures as metarisk_fast.ops)."""
from __future__ import annotations

import torch

from .._types import EPS, MemoryRead, TopKRead


def memory_read(memory, keys, beta=None, topk=None, eps: float = EPS):
    """Twin of ops.memory_read: content-addressed read (cosine similarity, softmax with strength
    beta, optional top-k) in plain torch."""
    shared = memory.dim() == 2
    mem = memory.unsqueeze(0) if shared else memory  # (E, N, W)
    k = keys if keys.dim() == 3 else keys.unsqueeze(1)  # (B, H, W)
    if shared:
        k = k.reshape(1, -1, k.shape[-1])
    b = torch.ones(k.shape[:-1], dtype=k.dtype) if beta is None else (
        torch.full(k.shape[:-1], float(beta), dtype=k.dtype) if isinstance(beta, (float, int)) else beta.reshape(k.shape[:-1]))
    dots = k @ mem.transpose(1, 2)  # (E, G, N)
    sim = dots / (k.norm(dim=-1, keepdim=True) * mem.norm(dim=-1).unsqueeze(1) + eps)
    if topk is not None:
        top, idx = torch.topk(sim, topk, dim=-1)  # ties: torch may order equal values either way
        w = torch.softmax(b.unsqueeze(-1) * top, dim=-1)
        rows = torch.gather(mem.unsqueeze(1).expand(-1, k.shape[1], -1, -1), 2,
                            idx.unsqueeze(-1).expand(-1, -1, -1, mem.shape[-1]))
        read = (w.unsqueeze(-1) * rows).sum(2)
        return TopKRead(read.reshape(keys.shape), w.reshape(*keys.shape[:-1], topk), idx.reshape(*keys.shape[:-1], topk))
    w = torch.softmax(b.unsqueeze(-1) * sim, dim=-1)
    read = w @ mem
    return MemoryRead(read.reshape(keys.shape), w.reshape(*keys.shape[:-1], mem.shape[1]))


def memory_write_lrua(memory, usage, prev_read_weights, alpha, values, gamma: float = 0.95):
    """A step-by-step transcription of Santoro et al. (2016), eqs. 20-23, for each memory."""
    shared = memory.dim() == 2
    single = not shared and values.dim() == 2
    mem = memory.unsqueeze(0) if shared else memory
    use = usage.reshape(mem.shape[0], -1)
    vals = values.unsqueeze(0) if shared else (values.unsqueeze(1) if single else values)
    P = vals.shape[1]
    prev = prev_read_weights.reshape(mem.shape[0], P, -1)
    gate = torch.sigmoid(alpha.reshape(mem.shape[0], P))
    order = torch.sort(use, dim=-1, stable=True).indices[:, :P]  # least used first, ties by index
    lu = torch.zeros_like(prev).scatter_(2, order.unsqueeze(-1), 1.0)  # w^lu_{t-1}, one slot per write
    ww = gate.unsqueeze(-1) * prev + (1 - gate.unsqueeze(-1)) * lu  # eq. 22
    keep = 1 - lu.sum(1).clamp(max=1)  # the least-used slots are set to zero before writing
    new_mem = mem * keep.unsqueeze(-1) + ww.transpose(1, 2) @ vals  # eq. 23
    new_usage = gamma * use + ww.sum(1)  # eq. 20 (the read weights w^r_t are added after the read)
    if shared:
        return new_mem[0], new_usage[0], ww[0], order[0]
    if single:
        return new_mem, new_usage, ww[:, 0], order[:, 0]
    return new_mem, new_usage, ww, order
