"""HeadNewton: a shared meta-learned body and a per-task linear head, adapted by one regularised
Newton step from a meta-learned head (ANIL's split of body and head, R2-D2's differentiable
closed-form head; the step is the Laplace / IRLS step of a Gaussian prior on the head).

For a support set of K rows with body features phi_i = [s(body(x_i)), 1] (d + 1 values; s(a) =
a / sqrt(1 + a^2), bounded like tanh but made of correctly rounded operations only, so a row's
features are the same bits in any loop and on any machine) and
targets y_i, the head's output is z_i = phi_i . w, and the adapted head is

    w = w0 - (H + diag(lambda))^-1 g,   g = sum_i l'(z0_i; y_i) phi_i,   H = sum_i l''(z0_i; y_i) phi_i phi_i^T

with z0_i = phi_i . w0 and l the training loss (the Student t or Gaussian negative log
likelihood of y with log variance z, _losses.elementwise_loss); lambda > 0 is a learned prior
precision per head entry. K = 0 gives w0 (zero-shot). Both losses are convex in z (l'' >= 0),
so the system is positive definite for every support, a flat or repeated one included.

Because w0 is fixed once trained, each row's contribution to g and H depends on that row alone:
a support set sliding by one row adds one contribution and drops one. The forecasting path
(``adapt_predict`` on NumPy arrays, and the streaming engine through ``stream_*``) keeps the
statistics in 64-bit fixed point (STAT_SCALE), where adding and dropping are exact and any order
of summation gives the same bits, so the engine's running sums equal a task's fresh sum and its
forecasts equal the batch path's bit for bit. Meta-training differentiates through the step in
PyTorch (float sums; the two differ by the fixed-point rounding, below 1e-9 relative).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import nn

from .._losses import elementwise_loss
from .._types import STUDENT_T_NU
from . import _head_kernels as K
from .mlp import MLP

HEAD_LOSSES = {"student_t_nll": 0, "gaussian_nll": 1}  # the losses with a head step (their kernel codes)


def loss_slopes(z: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """First and second derivatives in z of elementwise_loss(z, y, loss), analytically (the
    kernels' _slopes computes the same)."""
    if loss == "student_t_nll":
        nu = STUDENT_T_NU
        s = torch.sigmoid(torch.log(y * y) - z - math.log(nu - 2))  # u / (1 + u), u = y^2 e^-z / (nu - 2)
        return 0.5 - 0.5 * (nu + 1) * s, 0.5 * (nu + 1) * s * (1 - s)
    e = y * y * torch.exp(-z)
    return 0.5 - 0.5 * e, 0.5 * e


class HeadNewton(nn.Module):
    """A shared body and a per-task linear head adapted by one regularised Newton step.

    The body (an MLP: inputs -> hidden -> ``width``, s(a) = a / sqrt(1 + a^2) on its output) is
    shared by every task; the head [w (width), bias] is adapted per task by one Newton step from
    the learned ``w0`` under the learned prior precision ``exp(log_precision)``. ``meta_loss`` /
    ``query_losses`` are differentiable (meta-training); ``adapt_predict`` on NumPy arrays runs
    the compiled fixed-point path the streaming engine shares.

    Parameters
    ----------
    n_features : int
        Inputs per row (D).
    hidden : tuple of int
        The body's hidden layer sizes.
    width : int
        The body's output size (the head has width + 1 entries).
    loss : {'student_t_nll', 'gaussian_nll'}
        The inner loss (the one the forecasts are judged by).
    precision : float
        The initial prior precision of every head entry (> 0; learned).
    window : int, optional
        The head adapts on at most this many most recent support rows (None: on all of them);
        the forecasters and the streaming engine cap their history at it (``support_rows``).
    """

    mode = "newton_head"
    input_scale = "row"  # each row normalised by its own anchor (TaskSpec(scale="row")): a row's features
    # do not depend on the support it is in
    inner_steps = 1  # one Newton step (model.json's inner_steps)

    def __init__(self, n_features: int, hidden=(32,), width: int = 8, loss: str = "student_t_nll",
                 precision: float = 10.0, window: int | None = None):
        super().__init__()
        if loss not in HEAD_LOSSES:
            raise ValueError(f"the head learner's loss must be one of {tuple(HEAD_LOSSES)}, got {loss!r}")
        if not precision > 0:
            raise ValueError(f"precision must be > 0, got {precision}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, numbers.Integral)
                                   or window < 1):
            raise ValueError(f"window must be a positive integer or None, got {window!r}")
        self.body = MLP(n_features, tuple(hidden), width)
        self.width = int(width)
        self.loss = loss
        self.window = None if window is None else int(window)
        self.w0 = nn.Parameter(torch.zeros(width + 1))  # output 0: the anchor forecast
        self.log_precision = nn.Parameter(torch.full((width + 1,), math.log(precision)))

    # ------------------------------------------------------------------ PyTorch (meta-training)
    def precision(self) -> torch.Tensor:
        """The prior precision of each head entry (floored: the step's system stays positive definite).

        Returns
        -------
        torch.Tensor
            (width + 1,).
        """
        return torch.exp(self.log_precision).clamp_min(K.PRECISION_FLOOR)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's inputs phi = [s(body(x)), 1], s(a) = a / sqrt(1 + a^2).

        Parameters
        ----------
        x : torch.Tensor
            (..., D) rows.

        Returns
        -------
        torch.Tensor
            (..., width + 1).
        """
        a = self.body(x)
        phi = a * torch.rsqrt(1 + a * a)
        return torch.cat([phi, torch.ones_like(phi[..., :1])], dim=-1)

    def recent(self, support):
        """The support's rows the head adapts on: its last ``window`` (all of them without one).

        Parameters
        ----------
        support : numpy.ndarray or torch.Tensor
            (B, K, ...) support rows or targets, oldest first.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            (B, min(K, window), ...), a view.
        """
        return support if self.window is None or support.shape[1] <= self.window else support[:, -self.window:]

    def adapted_heads(self, xs: torch.Tensor, ys: torch.Tensor, loss: str | None = None) -> torch.Tensor:
        """The per-task heads after the Newton step on each support.

        Parameters
        ----------
        xs : torch.Tensor
            (B, K, D) support rows (K may be 0: the meta-learned head alone).
        ys : torch.Tensor
            (B, K, 1) support targets: realised variances over the anchor (the TaskSpec's unit).
        loss : str, optional
            'student_t_nll' or 'gaussian_nll' (default: the learner's).

        Returns
        -------
        torch.Tensor
            (B, width + 1) heads, differentiable.
        """
        loss = loss or self.loss
        xs, ys = self.recent(xs), self.recent(ys)
        B = xs.shape[0]
        w0 = self.w0.to(xs.dtype)
        if xs.shape[1] == 0:
            return w0.expand(B, -1)
        phi = self.features(xs)
        g1, g2 = loss_slopes(phi @ w0, ys[..., 0], loss)
        grad = (g1[..., None] * phi).sum(1)
        hess = phi.transpose(1, 2) @ (g2[..., None] * phi) + torch.diag(self.precision().to(xs.dtype))
        return w0 - torch.linalg.solve(hess, grad)

    def query_losses(self, xs, ys, xq, yq, loss: str | None = None) -> torch.Tensor:
        """Per-task mean query losses after adaptation, differentiable.

        Parameters
        ----------
        xs : torch.Tensor
            (B, K, D) support rows (K may be 0: the meta-learned head alone).
        ys : torch.Tensor
            (B, K, 1) support targets: realised variances over the anchor (the TaskSpec's unit).
        xq : torch.Tensor
            (B, Q, D) query rows.
        yq : torch.Tensor
            (B, Q, 1) query targets.
        loss : str, optional
            'student_t_nll' or 'gaussian_nll' (default: the learner's).

        Returns
        -------
        torch.Tensor
            (B,).
        """
        loss = loss or self.loss
        w = self.adapted_heads(xs, ys, loss)
        zq = (self.features(xq) * w[:, None, :]).sum(-1, keepdim=True)
        return elementwise_loss(zq, yq, loss).mean(dim=(1, 2))

    def meta_loss(self, xs, ys, xq, yq, loss: str | None = None) -> torch.Tensor:
        """Mean over tasks of the query loss after the Newton step.

        Parameters
        ----------
        xs, ys, xq, yq, loss
            As in ``query_losses``.

        Returns
        -------
        torch.Tensor
            A scalar; ``.backward()`` gives the meta-gradient.
        """
        return self.query_losses(xs, ys, xq, yq, loss).mean()

    def forward_adapt_predict(self, xs, ys, xq) -> torch.Tensor:
        """Query outputs in PyTorch: the twin of the compiled ``adapt_predict``.

        Parameters
        ----------
        xs : torch.Tensor
            (B, K, D) support rows (K may be 0: the meta-learned head alone).
        ys : torch.Tensor
            (B, K, 1) support targets: realised variances over the anchor (the TaskSpec's unit).
        xq : torch.Tensor
            (B, Q, D) query rows.

        Returns
        -------
        torch.Tensor
            (B, Q, 1) outputs (log variance over the anchor).
        """
        w = self.adapted_heads(xs, ys)
        return (self.features(xq) * w[:, None, :]).sum(-1, keepdim=True)

    # ------------------------------------------------------------------ compiled (forecasting)
    def kernel_params(self):
        """The parameters as the compiled kernels read them.

        Returns
        -------
        tuple
            (flat body parameters, float32: each layer's weight transposed, then its bias; layer
            sizes, int64; w0, (width + 1,) float64; prior precision, (width + 1,) float64; the loss's
            code).
        """
        with torch.no_grad():
            theta = np.concatenate([(p.t() if p.ndim == 2 else p).detach().float().reshape(-1).numpy()
                                    for p in self.body.parameter_list()])
            return (theta, np.asarray(self.body.sizes, np.int64), self.w0.detach().double().numpy().copy(),
                    self.precision().detach().double().numpy().copy(), HEAD_LOSSES[self.loss])

    def adapt_predict(self, xs, ys, xq, loss: str | None = None):
        """Adapt on each support and predict its query rows.

        NumPy in: the compiled fixed-point path, float64 out; tensors in: PyTorch.

        Parameters
        ----------
        xs : numpy.ndarray or torch.Tensor
            (B, K, D) support rows, or (K, D) for one task.
        ys : numpy.ndarray or torch.Tensor
            (B, K, 1) support targets, or (K, 1).
        xq : numpy.ndarray or torch.Tensor
            (B, Q, D) query rows, or (Q, D).
        loss : str, optional
            Must be the learner's own loss if given.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            (B, Q, 1) outputs, or (Q, 1) for one task.
        """
        if loss not in (None, self.loss):
            raise ValueError(f"this head learner was trained with {self.loss}; it adapts with that loss only")
        single = np.ndim(xs) == 2
        if single:
            xs, ys, xq = xs[None], ys[None], xq[None]
        if isinstance(xs, torch.Tensor):
            with torch.no_grad():
                out = self.forward_adapt_predict(xs, ys, xq)
        else:
            xs, ys, xq = self._checked_tasks(xs, ys, xq)
            xs, ys = np.ascontiguousarray(self.recent(xs)), np.ascontiguousarray(self.recent(ys))
            theta, sizes, w0, lam, code = self.kernel_params()
            out = np.empty((xq.shape[0], xq.shape[1], 1))
            K.adapt_predict(xs, np.ascontiguousarray(ys[..., 0]), xq, theta, sizes, w0, lam, code, out[..., 0])
        return out[0] if single else out

    def _checked_tasks(self, xs, ys, xq):
        """The tasks as float32 C arrays, or a ValueError / TypeError naming the argument at fault."""
        D = self.body.sizes[0]
        out = []
        for name, a, last in (("xs", xs, D), ("ys", ys, 1), ("xq", xq, D)):
            a = np.asarray(a)
            if a.dtype.kind not in "fiub":
                raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
            if a.ndim != 3 or a.shape[-1] != last:
                raise ValueError(f"{name} must have shape (tasks, rows, {last}), got {a.shape}")
            with np.errstate(over="ignore"):
                a = np.ascontiguousarray(a, np.float32)
            if not np.isfinite(a).all():
                raise ValueError(f"{name} holds NaN or inf (or a value beyond float32's range)")
            out.append(a)
        xs, ys, xq = out
        if not xs.shape[0] == ys.shape[0] == xq.shape[0] or xs.shape[1] != ys.shape[1]:
            raise ValueError(f"xs {xs.shape}, ys {ys.shape} and xq {xq.shape} must agree in tasks (and xs, ys in rows)")
        if xq.shape[1] == 0:
            raise ValueError("xq has no query row")
        return xs, ys, xq

    # ------------------------------------------------------------------ streaming (the engine's exact path)
    def stream_state(self, n: int, history: int) -> dict[str, np.ndarray]:
        """A fresh per-asset state of the streaming engine's support stores.

        Parameters
        ----------
        n : int
            Assets.
        history : int
            Rows per store.

        Returns
        -------
        dict of str to numpy.ndarray
            head_phi (n, history, width + 1) each stored row's features; head_slopes (n, history, 2)
            its loss slopes (what its contribution is recomputed from when it leaves); head_stats
            the stores' running fixed-point statistics, d + d (d + 1) / 2 int64 an asset (d = width +
            1) in blocks of assets (``K.stats_blocks``; ``K.stats_rows`` gives them an asset a row).
        """
        d = self.width + 1
        return {"head_phi": np.zeros((n, history, d)), "head_slopes": np.zeros((n, history, 2)),
                "head_stats": K.stats_blocks(np.zeros((n, d + d * (d + 1) // 2), np.int64))}

    def stream_bar(self, params, rows, use, slot: int, pushed, pushed_target, n_pushed: int, leaving: int, count,
                   history: int, ready, row_phi, state) -> np.ndarray:
        """The head learner's step of a streaming bar: the bar's rows through the body, the stores'
        rows in and out, every ready asset's head solved and its output (the streaming engine runs
        the same compiled steps inside its own bar, streaming._kernels.head_bar).

        Parameters
        ----------
        params : tuple
            ``kernel_params()``.
        rows : numpy.ndarray
            (m, D) float32: the bar's usable rows, normalised.
        use : numpy.ndarray
            (m,) int64: the assets those rows are of.
        slot : int
            The delay line's slot the rows' features go to.
        pushed : numpy.ndarray
            (p, 2) int64 (asset, store position) pairs: the rows whose targets are realised now, in
            asset order.
        pushed_target : numpy.ndarray
            (p,) float32: their encoded targets.
        n_pushed : int
            How many of ``pushed`` are in use.
        leaving : int
            The delay line's slot that holds the pushed rows' features.
        count : numpy.ndarray
            (n,) int64: each asset's rows in its current stretch (0: its store is cleared).
        history : int
            Rows per store.
        ready : numpy.ndarray
            (n,) bool: the assets that forecast at this bar.
        row_phi : numpy.ndarray
            (slots, n, width + 1) float64: the delay line.
        state : dict of str to numpy.ndarray
            ``stream_state``'s arrays, updated in place.

        Returns
        -------
        numpy.ndarray
            (n,) float64: the ready assets' outputs (NaN elsewhere).
        """
        theta, sizes, w0, precision, code = params
        out, w = np.empty(len(ready)), np.empty((len(ready), len(w0)))
        K.body_rows(rows, use, theta, sizes, row_phi[slot])
        K.stream_stores(pushed, pushed_target, n_pushed, row_phi[leaving], count, history, w0, precision, code,
                        state["head_phi"], state["head_slopes"], state["head_stats"], w, 0, len(ready))
        K.stream_outputs(ready, row_phi[slot], w, out)
        return out

    def extra_repr(self) -> str:
        """The head width and loss that ``repr(module)`` shows (torch.nn.Module's hook).

        Returns
        -------
        str
            One line, e.g. for ``print(model)``.
        """
        return f"width={self.width}, loss={self.loss!r}, window={self.window}"
