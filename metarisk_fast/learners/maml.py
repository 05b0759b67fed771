"""Optimisation-based meta-learners: MAML (second order), first-order MAML, Reptile, Meta-SGD.

All four run their inner loops in the fused kernels of metarisk_fast.ops; they differ only in
how the meta-gradient is formed and whether the inner learning rates are learned.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._checks import check_int
from .. import ops
from .._types import LOSSES
from .mlp import MLP


def zero_shot_support(xs, ys):
    """Support arrays the kernels accept: a batch with no support row (K = 0: an asset too young to
    have a realised target) gets one zero row, which the learners pair with zero inner steps
    (``_kw``), so nothing reads it and the meta-learned initialisation predicts alone."""
    if xs.shape[-2]:
        return xs, ys
    lib = np if isinstance(xs, np.ndarray) else torch
    shape = (*xs.shape[:-2], 1)
    return lib.zeros((*shape, xs.shape[-1]), dtype=xs.dtype), lib.zeros((*shape, ys.shape[-1]), dtype=ys.dtype)


class _GradientMetaLearner(nn.Module):
    """Shared interface: meta_loss (differentiable), adapt, adapt_predict."""

    mode = "second_order"

    def __init__(self, net: MLP, inner_lr: float = 0.01, inner_steps: int = 5, loss: str = "mse"):
        super().__init__()
        if not isinstance(net, MLP):
            raise TypeError(f"net must be a metarisk_fast.MLP, got {type(net).__name__}")
        if not inner_lr > 0:
            raise ValueError(f"inner_lr must be > 0, got {inner_lr}")
        check_int("inner_steps", inner_steps, 0)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.net = net
        self.inner_lr = float(inner_lr)
        self.inner_steps = inner_steps
        self.loss = loss
        self._numpy_cache: tuple | None = None

    # the inner learning rate handed to the kernels (Meta-SGD overrides it with learned rates)
    def _lr(self):
        return self.inner_lr

    def _kw(self, loss, xs=None):
        return dict(steps=self.inner_steps if xs is None or xs.shape[-2] else 0, activation=self.net.activation,
                    loss=loss or self.loss)

    def query_losses(self, xs, ys, xq, yq, loss: str | None = None) -> torch.Tensor:
        """Per-task query losses after adaptation, shape (B,), differentiable."""
        kw = self._kw(loss, xs)
        xs, ys = zero_shot_support(xs, ys)
        return ops.mlp_meta_loss(self.net.parameter_list(), self._lr(), xs, ys, xq, yq, mode=self.mode, **kw)

    def meta_loss(self, xs, ys, xq, yq, loss: str | None = None) -> torch.Tensor:
        """Mean over tasks of the query loss after adaptation; ``.backward()`` gives the meta-gradient."""
        return self.query_losses(xs, ys, xq, yq, loss).mean()

    def adapt(self, xs, ys, loss: str | None = None) -> list[torch.Tensor]:
        """Adapted parameters per task (no gradient), each with a leading task dimension."""
        return ops.mlp_adapt(self.net.parameter_list(), self._lr_detached(), xs, ys, **self._kw(loss))

    def adapt_predict(self, xs, ys, xq, loss: str | None = None):
        """Adapt on each support set and predict its query rows: (B,K,D),(B,K,O),(B,Q,D) -> (B,Q,O).

        A single task may be given without the task dimension. NumPy arrays in give NumPy out
        through a path without torch dispatch (for backtests calling this once per bar).
        """
        single = np.ndim(xs) == 2
        if single:
            xs, ys, xq = xs[None], ys[None], xq[None]
        kw = self._kw(loss, xs)
        xs, ys = zero_shot_support(xs, ys)
        if isinstance(xs, np.ndarray) and isinstance(ys, np.ndarray) and isinstance(xq, np.ndarray):
            theta, lr = self._numpy_params(xs.dtype)
            pred = ops.mlp_adapt_predict_numpy(
                theta, lr, self.net.sizes, np.ascontiguousarray(xs), np.ascontiguousarray(ys),
                np.ascontiguousarray(xq), **kw)
        else:
            pred = ops.mlp_adapt_predict(self.net.parameter_list(), self._lr_detached(), xs, ys, xq, **kw)
        return pred[0] if single else pred

    def adapt_predict_weights(self, xs: np.ndarray, ys: np.ndarray, xq: np.ndarray):
        """``adapt_predict``'s NumPy path keeping each task's adapted parameters: (predictions
        (B, Q, O), adapted flat parameters (B, P))."""
        theta, lr = self._numpy_params(xs.dtype)
        kw = self._kw(None, xs)
        xs, ys = zero_shot_support(xs, ys)
        return ops.mlp_adapt_predict_numpy(theta, lr, self.net.sizes, np.ascontiguousarray(xs),
                                           np.ascontiguousarray(ys), np.ascontiguousarray(xq),
                                           return_adapted=True, **kw)

    def predict_with_weights(self, weights: np.ndarray, xq: np.ndarray) -> np.ndarray:
        """Predictions (B, Q, O) of per-task flat parameters ``weights`` (B, P), e.g. from
        ``adapt_predict_weights``, on query rows xq (B, Q, D): the fused kernel with no step."""
        B = xq.shape[0]  # one zero support row per task, and a learning rate: the kernel's shapes; no step reads them
        xs, ys = np.zeros((B, 1, xq.shape[2]), xq.dtype), np.zeros((B, 1, self.net.sizes[-1]), xq.dtype)
        lr = np.zeros(1, xq.dtype)
        return ops.mlp_adapt_predict_numpy(np.ascontiguousarray(weights, dtype=xq.dtype), lr, self.net.sizes, xs, ys,
                                           np.ascontiguousarray(xq), **{**self._kw(None), "steps": 0})

    def _lr_detached(self):
        lr = self._lr()
        return [r.detach() for r in lr] if isinstance(lr, (list, tuple)) else lr

    def _numpy_params(self, dtype):
        """Flat parameter and lr arrays, read from the parameters' current values on every call:
        NumPy views of their storage are kept (rebuilt when a parameter or its storage is
        replaced), so no update is missed, in place (fused optimisers, ``.data`` writes) or not."""
        lr = self._lr()
        lr = list(lr) if isinstance(lr, (list, tuple, nn.ParameterList)) else lr
        tensors = self.net.parameter_list() + (lr if isinstance(lr, list) else [])
        cache = self._numpy_cache
        if (cache is None or len(cache[0]) != len(tensors) or any(a is not b for a, b in zip(cache[0], tensors))
                or cache[1] != [t.data_ptr() for t in tensors]):
            views = [t.detach().reshape(-1).numpy() for t in tensors]  # share the tensors' memory
            cache = self._numpy_cache = (tensors, [t.data_ptr() for t in tensors], views)
        views, n_params = cache[2], len(tensors) - (len(lr) if isinstance(lr, list) else 0)
        theta = np.concatenate(views[:n_params]).astype(dtype, copy=False)
        lr_arr = (np.concatenate(views[n_params:]).astype(dtype, copy=False) if isinstance(lr, list)
                  else np.array([lr], dtype=dtype))
        return theta, lr_arr


class MAML(_GradientMetaLearner):
    """Model-Agnostic Meta-Learning (Finn et al. 2017): exact second-order meta-gradient, or the
    first-order approximation with ``first_order=True``.

    Parameters
    ----------
    net : MLP
        The network whose initialisation is meta-learned.
    inner_lr : float
        The inner-loop learning rate.
    inner_steps : int
        Inner-loop gradient steps.
    first_order : bool
        Drop the second-order terms of the meta-gradient (FOMAML).
    loss : {'mse', 'gaussian_nll', 'student_t_nll', 'bce'}
        The inner and outer loss.
    """

    def __init__(self, net: MLP, inner_lr: float = 0.01, inner_steps: int = 5,
                 first_order: bool = False, loss: str = "mse"):
        super().__init__(net, inner_lr, inner_steps, loss)
        self.mode = "first_order" if first_order else "second_order"


class Reptile(_GradientMetaLearner):
    """Reptile (Nichol et al. 2018): the meta-gradient is theta - mean adapted theta, so an SGD
    outer step with rate eps moves theta eps of the way towards the adapted parameters.

    Parameters
    ----------
    net : MLP
        The network whose initialisation is meta-learned.
    inner_lr : float
        The inner-loop learning rate.
    inner_steps : int
        Inner-loop gradient steps.
    loss : {'mse', 'gaussian_nll', 'student_t_nll', 'bce'}
        The inner and outer loss.
    """

    mode = "reptile"


class MetaSGD(_GradientMetaLearner):
    """Meta-SGD (Li et al. 2017): one learned inner learning rate per parameter entry,
    initialised to ``inner_lr`` and trained by the outer optimizer with the parameters.

    Parameters
    ----------
    net : MLP
        The network whose initialisation is meta-learned.
    inner_lr : float
        The learned per-entry inner learning rates start here.
    inner_steps : int
        Inner-loop gradient steps.
    first_order : bool
        Drop the second-order terms of the meta-gradient (FOMAML).
    loss : {'mse', 'gaussian_nll', 'student_t_nll', 'bce'}
        The inner and outer loss.
    """

    def __init__(self, net: MLP, inner_lr: float = 0.01, inner_steps: int = 5,
                 first_order: bool = False, loss: str = "mse"):
        super().__init__(net, inner_lr, inner_steps, loss)
        self.mode = "first_order" if first_order else "second_order"
        self.inner_lrs = nn.ParameterList(
            nn.Parameter(torch.full_like(p, self.inner_lr)) for p in net.parameters())

    def _lr(self):
        return list(self.inner_lrs)
