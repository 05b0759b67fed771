"""torch.func reference of the fused inner loops (see metarisk_fast.ops.inner_loop)."""
from __future__ import annotations


import torch
from torch.func import grad, vmap

from .._losses import elementwise_loss


def mlp_forward(params, x, activation="relu"):
    """The MLP's forward pass on x (..., in): weights (out, in) and biases in nn.Linear order,
    ReLU (or tanh) between layers, none after the last."""
    act = torch.relu if activation == "relu" else torch.tanh
    n_layers = len(params) // 2
    for i in range(n_layers):
        x = x @ params[2 * i].T + params[2 * i + 1]
        if i < n_layers - 1:
            x = act(x)
    return x


def loss_fn(z, y, loss="mse", w=None):
    """Mean elementwise loss over rows x outputs; w (rows,): each row's loss times its weight."""
    e = elementwise_loss(z, y, loss)
    return (e if w is None else e * w[:, None]).mean()


def _lr_list(lr, params):
    if isinstance(lr, (float, int)):
        return [lr] * len(params)
    if isinstance(lr, torch.Tensor):
        return [lr.reshape(())] * len(params)
    return list(lr)


def _adapt_one(params, lrs, xs, ys, steps, activation, loss, first_order, ws=None):
    def support_loss(p):
        return loss_fn(mlp_forward(p, xs, activation), ys, loss, ws)

    p = list(params)
    for _ in range(steps):
        g = grad(support_loss)(p)
        if first_order:
            g = [gi.detach() for gi in g]
        p = [pi - ri * gi for pi, ri, gi in zip(p, lrs, g)]
    return p


def mlp_meta_loss(params, lr, xs, ys, xq, yq, *, steps, activation="relu", loss="mse",
                  mode="second_order", task_offsets=None, support_weights=None, query_weights=None):
    """Twin of ops.mlp_meta_loss: per-task query losses after the inner loop (second order, first
    order or Reptile), with torch autograd."""
    lrs = _lr_list(lr, params)
    first_order = mode != "second_order"
    offsets = task_offsets if task_offsets is not None else [torch.zeros((xs.shape[0], *p.shape), dtype=p.dtype)
                                                             for p in params]
    ws = torch.ones(xs.shape[:2], dtype=xs.dtype) if support_weights is None else support_weights
    wq = torch.ones(xq.shape[:2], dtype=xq.dtype) if query_weights is None else query_weights

    def task(off, xs_b, ys_b, xq_b, yq_b, ws_b, wq_b):
        start = [t + o for t, o in zip(params, off)]
        p = _adapt_one(start, lrs, xs_b, ys_b, steps, activation, loss, first_order, ws_b)
        q = loss_fn(mlp_forward(p, xq_b, activation), yq_b, loss, wq_b)
        if mode != "reptile":
            return q
        # value: the query loss; gradient w.r.t. theta: theta - theta_S (the Reptile direction)
        surrogate = sum((t * (t - a).detach()).sum() for t, a in zip(start, p))
        return q.detach() + surrogate - surrogate.detach()

    return vmap(task)(list(offsets), xs, ys, xq, yq, ws, wq)


def mlp_adapt(params, lr, xs, ys, *, steps, activation="relu", loss="mse", support_weights=None):
    """Twin of ops.mlp_adapt: each task's parameters after ``steps`` SGD steps on its support,
    with torch autograd."""
    lrs = _lr_list(lr, params)
    ws = torch.ones(xs.shape[:2], dtype=xs.dtype) if support_weights is None else support_weights
    with torch.no_grad():
        return vmap(lambda x, y, w: _adapt_one(params, lrs, x, y, steps, activation, loss, True, w))(xs, ys, ws)


def mlp_adapt_predict(params, lr, xs, ys, xq, *, steps, activation="relu", loss="mse", support_weights=None):
    """Twin of ops.mlp_adapt_predict: adapt on each support and predict its query rows, with
    torch autograd."""
    lrs = _lr_list(lr, params)
    ws = torch.ones(xs.shape[:2], dtype=xs.dtype) if support_weights is None else support_weights

    def task(x, y, q, w):
        p = _adapt_one(params, lrs, x, y, steps, activation, loss, True, w)
        return mlp_forward(p, q, activation)

    with torch.no_grad():
        return vmap(task)(xs, ys, xq, ws)
