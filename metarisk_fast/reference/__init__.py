"""Plain PyTorch (torch.func) twins of every kernel, with the same signatures as metarisk_fast.ops.

Slow and obviously correct: the tests compare the compiled kernels against them.
"""
from .inner_loop import loss_fn, mlp_adapt, mlp_adapt_predict, mlp_forward, mlp_meta_loss

from .memory import memory_read, memory_write_lrua

__all__ = ["memory_read", "memory_write_lrua", "mlp_forward", "loss_fn", "mlp_meta_loss", "mlp_adapt", "mlp_adapt_predict"]
