"""Plain twins of every kernel and estimator: PyTorch (torch.func) for metarisk_fast.ops, NumPy for
metarisk_fast.features (reference.features), with the same signatures.

Slow and obviously correct: the tests compare the compiled kernels against them.
"""
from .inner_loop import loss_fn, mlp_adapt, mlp_adapt_predict, mlp_forward, mlp_meta_loss

from .memory import memory_read, memory_write_lrua
from . import features

__all__ = ["features", "memory_read", "memory_write_lrua", "mlp_forward", "loss_fn", "mlp_meta_loss", "mlp_adapt", "mlp_adapt_predict"]
