"""Types of the compiled core (metarisk_fast._core and its wider variants _core_x86_64_v3,
_core_x86_64_v4, which have the same functions). Buffers are NumPy arrays (or anything
exposing the buffer protocol), C-contiguous, float32 or float64; checks raise ValueError /
TypeError naming the argument. The GIL is released while a kernel runs."""
import builtins
from typing import Optional

import numpy as np

class FloatingPointError(builtins.FloatingPointError): ...  # a result overflowed from finite inputs

def build_info() -> dict: ...  # variant, cpu_isa, compiler, cuda_compiled, cuda_devices, num_threads
def cpu_supports() -> dict[str, bool]: ...  # which x86-64 levels (v2, v3, v4) this CPU runs
def num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def mlp_inner_loop(
    theta: np.ndarray,  # (P,) shared or (B, P) per task
    lr: np.ndarray, xs: np.ndarray, ys: np.ndarray, xq: Optional[np.ndarray],
    yq: Optional[np.ndarray], ws: Optional[np.ndarray], wq: Optional[np.ndarray],  # (B, K) / (B, Q) row weights
    sizes: list[int], steps: int, activation: str, loss: str, mode: str,
    want_loss: bool, want_lr_grad: bool, want_adapted: bool, want_pred: bool,
) -> dict[str, np.ndarray]: ...
def mlp_inner_loop_cuda(
    ptrs: dict[str, int], dtype: str, device: int, tasks: int, support: int, query: int, sizes: list[int],
    steps: int, activation: str, loss: str, mode: str, lr_per_param: bool, theta_per_task: bool,
) -> None: ...  # only in CUDA builds
def memory_read_forward(memory: np.ndarray, keys: np.ndarray, beta: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]: ...
def memory_read_backward(
    memory: np.ndarray, keys: np.ndarray, beta: np.ndarray, eps: float, weights: np.ndarray, d_read: np.ndarray,
    d_weights: Optional[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def memory_write_forward(
    memory: np.ndarray, usage: np.ndarray, prev_read_weights: np.ndarray, alpha: np.ndarray, values: np.ndarray,
    gamma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
def memory_write_backward(
    memory: np.ndarray, usage: np.ndarray, prev_read_weights: np.ndarray, alpha: np.ndarray, values: np.ndarray,
    gamma: float, write_weights: np.ndarray, least_used: np.ndarray, d_new_memory: np.ndarray,
    d_new_usage: Optional[np.ndarray], d_write_weights: Optional[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
def memory_topk(memory: np.ndarray, keys: np.ndarray, k: int, eps: float) -> tuple[np.ndarray, np.ndarray]: ...
def memory_cuda(
    op: str, ptrs: dict[str, int], dtype: str, device: int, memories: int, slots: int, width: int, per_memory: int,
    param: float,
) -> None: ...  # only in CUDA builds: read_forward, read_backward, write_forward, write_backward
