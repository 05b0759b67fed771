"""Functional ops backed by the compiled core, each with a twin in metarisk_fast.reference."""
from .inner_loop import mlp_adapt, mlp_adapt_predict, mlp_adapt_predict_numpy, mlp_meta_loss
from .memory import MemoryRead, TopKRead, memory_read, memory_write_lrua

__all__ = ["mlp_meta_loss", "mlp_adapt", "mlp_adapt_predict", "mlp_adapt_predict_numpy", "memory_read",
           "memory_write_lrua", "MemoryRead", "TopKRead"]
