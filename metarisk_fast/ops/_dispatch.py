"""The one place where an op meets the compiled core: NumPy views of CPU tensors for the CPU
kernels, and the CUDA calling convention (device and finiteness checks, output allocation, raw
pointers, the legacy default stream) for the CUDA ones."""
from __future__ import annotations

import torch

from .._native import core


def numpy_view(t: torch.Tensor | None):
    """A C-contiguous NumPy view (a copy only where the tensor is not contiguous); None stays None."""
    return None if t is None else t.detach().contiguous().numpy()


def run_cuda(kernel: str, like: torch.Tensor, what: str, inputs: dict, outputs: dict, *args) -> dict:
    """Calls ``core.<kernel>(ptrs, dtype, device, *args)`` on ``like``'s device. inputs: name ->
    tensor (or None); outputs: name -> (shape, dtype or None for like's dtype), allocated here and
    returned. ``what`` names ``like`` in messages ("the parameters", "the memory")."""
    fn = getattr(core, kernel, None)
    if fn is None:
        raise ValueError(f"{what} on {like.device}, but this build of metarisk_fast has no CUDA kernels: "
                         "rebuild with METARISK_CUDA=ON (see build_info())")
    for name, t in inputs.items():
        if t is not None and t.device != like.device:
            raise ValueError(f"{name} is on {t.device} but {what} on {like.device}")
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains a non-finite value")
    keep = {k: v.detach().contiguous() for k, v in inputs.items() if v is not None}
    out = {k: torch.empty(shape, dtype=dt or like.dtype, device=like.device) for k, (shape, dt) in outputs.items()}
    ptrs = {k: v.data_ptr() for k, v in {**keep, **out}.items()}  # `keep` holds the buffers alive
    torch.cuda.synchronize(like.device)  # the kernels run on the legacy default stream
    fn(ptrs, str(like.dtype).removeprefix("torch."), like.device.index or 0, *args)
    return out
