"""The memory-augmented learner family: an external memory module and an encoder -> memory read
-> decoder network (Santoro et al. 2016) with the MAML family's interface."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from torch import nn

from .. import ops
from .._files import atomic_write_bytes
from .._losses import elementwise_loss
from .maml import zero_shot_support
from .mlp import MLP


class ExternalMemory(nn.Module):
    """Memory (E, N, W) with usage (E, N) and the last read weights, as buffers.

    ``reset``, ``read``, ``write`` (LRUA), ``detach`` between episodes, ``save`` / ``load``.

    Parameters
    ----------
    slots : int
        Rows per memory (N).
    width : int
        Floats per row (W).
    memories : int
        Independent memories (E), one per episode.
    gamma : float
        The usage decay of the LRUA writes.
    """

    def __init__(self, slots: int, width: int, memories: int = 1, gamma: float = 0.95):
        super().__init__()
        if slots < 1 or width < 1 or memories < 1:
            raise ValueError(f"slots, width and memories must be >= 1, got {slots}, {width}, {memories}")
        self.slots, self.width, self.gamma = int(slots), int(width), float(gamma)
        self.register_buffer("memory", torch.zeros(memories, slots, width))
        self.register_buffer("usage", torch.zeros(memories, slots))
        self.register_buffer("last_read", torch.zeros(memories, slots))

    def reset(self, memories: int | None = None) -> "ExternalMemory":
        """Empty the memory.

        Parameters
        ----------
        memories : int, optional
            Independent memories from now on (default: as many as now).

        Returns
        -------
        ExternalMemory
            ``self``.
        """
        e = memories or self.memory.shape[0]
        kw = dict(dtype=self.memory.dtype, device=self.memory.device)
        self.memory = torch.zeros(e, self.slots, self.width, **kw)
        self.usage = torch.zeros(e, self.slots, **kw)
        self.last_read = torch.zeros(e, self.slots, **kw)
        return self

    def detach(self) -> "ExternalMemory":
        """Cut the autograd history (between episodes or truncated-BPTT windows).

        Returns
        -------
        ExternalMemory
            ``self``.
        """
        self.memory, self.usage, self.last_read = (t.detach() for t in (self.memory, self.usage, self.last_read))
        return self

    def read(self, keys, beta=None):
        """Read each memory with H keys; usage gains the read weights (summed over heads).

        Parameters
        ----------
        keys : torch.Tensor
            (E, H, W).
        beta : float or torch.Tensor, optional
            Key strengths (E, H) or one for all (default 1).

        Returns
        -------
        tuple of torch.Tensor
            (read (E, H, W), weights (E, H, N)).
        """
        read, w = ops.memory_read(self.memory, keys, beta)
        self.usage = self.usage + w.sum(1)
        self.last_read = w.mean(1)
        return read, w

    def write(self, values, alpha):
        """P LRUA writes per memory, gated on the last read.

        Parameters
        ----------
        values : torch.Tensor
            (E, P, W) the rows to write.
        alpha : torch.Tensor
            (E, P) each write's gate logit.

        Returns
        -------
        torch.Tensor
            (E, P, N) write weights.
        """
        prev = self.last_read.unsqueeze(1).expand(-1, values.shape[1], -1)
        self.memory, self.usage, ww, _ = ops.memory_write_lrua(self.memory, self.usage, prev, alpha, values, self.gamma)
        return ww

    def save(self, path) -> None:
        """Write the memory's contents and usage atomically (torch.save).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        """
        buf = io.BytesIO()
        torch.save({k: v.detach() for k, v in self.state_dict().items()} | {"gamma": self.gamma}, buf)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path) -> "ExternalMemory":
        """A memory as ``save`` wrote it.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by ``save``.

        Returns
        -------
        ExternalMemory
            The memory, in the saved dtype.
        """
        try:
            state = torch.load(path, weights_only=True)
            e, n, w = state["memory"].shape
        except Exception as exc:  # torch.load fails in many ways on a foreign file (pickle, zip, struct)
            raise ValueError(f"{path}: not a saved ExternalMemory (damaged or another file): {exc}") from None
        mem = cls(n, w, e, state.pop("gamma")).to(state["memory"].dtype)
        mem.load_state_dict(state)
        return mem


class MemoryAugmentedNet(nn.Module):
    """Encoder -> external memory -> decoder, trained episodically.

    Each episode gets a fresh memory. Every support row is encoded with its realised target,
    key = enc([x, y, 1]), and written (LRUA, one least-used slot each), which binds features to
    outcomes; every query row is encoded without one, key = enc([x, 0, 0]), and reads the memory
    once (cosine / softmax with a learned key strength). The decoder maps [key, read] to the
    prediction. ``meta_loss`` and ``adapt_predict`` match the MAML family, so the evaluation
    treats both alike. All support rows are written and all query rows read in one kernel call
    each: no loop over rows or time steps.

    Parameters
    ----------
    in_features : int
        Inputs per row (D).
    width : int
        The key and memory row width.
    slots : int
        Memory rows per episode (at least the support rows written).
    hidden : tuple of int
        The encoder's and decoder's hidden sizes.
    out_features : int
        Outputs per row (O).
    loss : str
        The training loss.
    gamma : float
        The usage decay of the writes.
    use_memory : bool
        False: the same encoder-decoder with the read replaced by zeros (the ablation).
    """

    inner_steps = 0  # no gradient steps: adaptation is the memory write

    def __init__(self, in_features: int, width: int = 32, slots: int = 256, hidden=(64,), out_features: int = 1,
                 loss: str = "mse", gamma: float = 0.95, use_memory: bool = True):
        super().__init__()
        self.use_memory = bool(use_memory)  # False: the same encoder-decoder, read replaced by zeros
        self.in_features, self.out_features, self.loss = int(in_features), int(out_features), loss
        self.encoder = MLP(in_features + out_features + 1, hidden, width, activation="tanh")
        self.decoder = MLP(2 * width, hidden, out_features)
        self.log_beta = nn.Parameter(torch.tensor(math.log(5.0)))
        self.write_gate = nn.Parameter(torch.tensor(-4.0))  # start with least-used writes
        self.slots, self.width, self.gamma = int(slots), int(width), float(gamma)

    def _written(self, xs, ys, xq):
        """The query rows' keys and each task's memory after its support rows are written."""
        B, K, _ = xs.shape
        if K > self.slots:
            raise ValueError(f"{K} support rows for a memory of {self.slots} slots; raise `slots`")
        Q = xq.shape[1]
        kw = dict(dtype=xs.dtype, device=xs.device)
        keys_s = self.encoder(torch.cat([xs, ys, torch.ones(B, K, 1, **kw)], -1))
        keys_q = self.encoder(torch.cat([xq, torch.zeros(B, Q, self.out_features + 1, **kw)], -1))
        mem = ExternalMemory(self.slots, self.width, B, self.gamma).to(**kw)
        if K:  # K = 0: an asset too young for a realised target leaves the memory empty
            mem.write(keys_s, self.write_gate.expand(B, K).to(xs.dtype))
        return keys_q, mem

    def _forward(self, xs, ys, xq):
        keys_q, mem = self._written(xs, ys, xq)
        if self.use_memory:  # an empty memory (K = 0) reads as zeros
            read, _ = mem.read(keys_q, torch.exp(self.log_beta).to(xs.dtype).expand(*keys_q.shape[:2]))
        else:
            read = torch.zeros_like(keys_q)
        return self.decoder(torch.cat([keys_q, read], -1))

    def novelty(self, xs, ys, xq) -> np.ndarray:
        """How far each query row lies from everything the memory holds once its task's support
        is written, (B, Q): 1 - the largest cosine similarity of the row's key to a written slot
        (0: it matches a stored row; up to 2, also where nothing is written). The read addresses the
        memory by this similarity.

        Parameters
        ----------
        xs : torch.Tensor or numpy.ndarray
            (B, K, D) support rows.
        ys : torch.Tensor or numpy.ndarray
            (B, K, O) support targets.
        xq : torch.Tensor or numpy.ndarray
            (B, Q, D) query rows.

        Returns
        -------
        numpy.ndarray
            (B, Q) in [0, 2].
        """
        with torch.no_grad():
            keys_q, mem = self._written(*self._tensors(xs, ys, xq))
            slots = mem.memory
            norm = slots.norm(dim=-1)
            cos = torch.einsum("bqw,bsw->bqs", keys_q, slots / norm.clamp_min(1e-12)[..., None])
            cos = cos / keys_q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            cos = cos.masked_fill((norm == 0)[:, None, :], -torch.inf)  # unwritten slots hold nothing
            return (1.0 - cos.amax(dim=-1).clamp_min(-1.0)).cpu().numpy().astype(np.float64)

    def _tensors(self, *arrays):
        out = []
        for a in arrays:
            t = torch.from_numpy(a) if isinstance(a, np.ndarray) else a
            if t.dim() != 3:
                raise ValueError(f"expected (tasks, rows, features) arrays, got shape {tuple(t.shape)}")
            ref = next(self.parameters())
            out.append(t.to(device=ref.device, dtype=ref.dtype))
        return out

    def query_losses(self, xs, ys, xq, yq, loss: str | None = None) -> torch.Tensor:
        """Per-task query losses after writing each support into memory; differentiable.

        Parameters
        ----------
        xs : torch.Tensor or numpy.ndarray
            (B, K, D) support rows.
        ys : torch.Tensor or numpy.ndarray
            (B, K, O) support targets.
        xq : torch.Tensor or numpy.ndarray
            (B, Q, D) query rows.
        yq : torch.Tensor
            (B, Q, O) query targets.
        loss : str, optional
            The loss (default: the learner's).

        Returns
        -------
        torch.Tensor
            (B,).
        """
        xs, ys, xq, yq = self._tensors(xs, ys, xq, yq)
        z = self._forward(xs, ys, xq)
        return _per_task_loss(z, yq, loss or self.loss)

    def meta_loss(self, xs, ys, xq, yq, loss: str | None = None) -> torch.Tensor:
        """Mean over tasks of the query loss after writing each support into memory; differentiable.

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

    def adapt_predict(self, xs, ys, xq, loss: str | None = None):
        """Write each support set into its own memory and predict its query rows from one read.

        Parameters
        ----------
        xs : torch.Tensor or numpy.ndarray
            (B, K, D) support rows.
        ys : torch.Tensor or numpy.ndarray
            (B, K, O) support targets.
        xq : torch.Tensor or numpy.ndarray
            (B, Q, D) query rows.
        loss : str, optional
            Must be the learner's own loss if given.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            (B, Q, O) predictions (NumPy in, NumPy out).
        """
        numpy_in = isinstance(xs, np.ndarray)
        single = np.ndim(xs) == 2
        if single:
            xs, ys, xq = xs[None], ys[None], xq[None]
        with torch.no_grad():
            z = self._forward(*self._tensors(xs, ys, xq))
        z = z[0] if single else z
        return z.cpu().numpy().astype(xs.dtype) if numpy_in else z


def _per_task_loss(z, y, loss):
    """Mean loss of each task, (B,): the same losses as the fused kernels."""
    return elementwise_loss(z, y, loss).mean(dim=(1, 2))


class MemoryConditionedMAML(nn.Module):
    """MAML whose inner loop starts from what an external memory retrieves.

    A permutation-invariant encoder turns each task's support set into a key; a content-based
    read (cosine / softmax, the memory kernels) over ``slots`` learned memory rows gives mixing
    weights; the retrieved parameter offset (weights x a table of per-slot offsets) is added to
    the shared initial parameters, and the fused inner loop adapts from there. Offsets start at
    zero, so training starts from plain MAML; gradients reach the shared parameters, the offsets,
    the memory rows, the key strength and the encoder.

    Parameters
    ----------
    net : MLP
        The network whose initialisation is meta-learned.
    inner_lr : float
        The inner-loop learning rate.
    inner_steps : int
        Inner-loop gradient steps.
    slots : int
        Learned memory rows.
    key_width : int
        The task key's width.
    first_order : bool
        Drop the second-order terms of the meta-gradient.
    loss : str
        The inner and outer loss.
    """

    def __init__(self, net: MLP, inner_lr: float = 0.01, inner_steps: int = 5, slots: int = 16, key_width: int = 16,
                 first_order: bool = False, loss: str = "mse"):
        super().__init__()
        from .maml import MAML

        self.maml = MAML(net, inner_lr, inner_steps, first_order, loss)  # validation and kernel settings
        self.net = net
        n_params = sum(p.numel() for p in net.parameters())
        d_in, d_out = net.sizes[0], net.sizes[-1]
        self.task_encoder = MLP(d_in + d_out, (32,), key_width, activation="tanh")
        self.memory_keys = nn.Parameter(torch.randn(slots, key_width) / math.sqrt(key_width))
        self.memory_offsets = nn.Parameter(torch.zeros(slots, n_params))
        self.log_beta = nn.Parameter(torch.tensor(math.log(5.0)))

    @property
    def inner_steps(self) -> int:
        return self.maml.inner_steps

    @property
    def inner_lr(self) -> float:
        return self.maml.inner_lr

    @property
    def loss(self) -> str:
        return self.maml.loss

    def task_offsets(self, xs, ys) -> list[torch.Tensor]:
        """Per-task parameter offsets retrieved from the memory.

        Parameters
        ----------
        xs : torch.Tensor or numpy.ndarray
            (B, K, D) support rows.
        ys : torch.Tensor or numpy.ndarray
            (B, K, O) support targets.

        Returns
        -------
        list of torch.Tensor
            ``(B, *shape)`` for every parameter; zero for a task with no support row (the shared
            initialisation).
        """
        if xs.shape[1] == 0:
            return [torch.zeros((xs.shape[0], *p.shape), dtype=p.dtype) for p in self.net.parameters()]
        key = self.task_encoder(torch.cat([xs, ys], -1)).mean(1)  # (B, key_width)
        beta = torch.exp(self.log_beta).expand(key.shape[0])
        _, weights = ops.memory_read(self.memory_keys, key, beta)  # (B, slots)
        flat = weights @ self.memory_offsets  # (B, P)
        out, start = [], 0
        for p in self.net.parameters():
            out.append(flat[:, start:start + p.numel()].reshape(flat.shape[0], *p.shape))
            start += p.numel()
        return out

    def _kw(self, loss, xs):
        return dict(steps=self.maml.inner_steps if xs.shape[-2] else 0, activation=self.net.activation,
                    loss=loss or self.maml.loss)

    def query_losses(self, xs, ys, xq, yq, loss: str | None = None) -> torch.Tensor:
        """Per-task query losses after the memory-conditioned inner loop; differentiable.

        Parameters
        ----------
        xs, ys, xq, yq, loss
            As in ``MemoryAugmentedNet.query_losses``.

        Returns
        -------
        torch.Tensor
            (B,).
        """
        xs, ys, xq, yq = (torch.as_tensor(a) for a in (xs, ys, xq, yq))
        offsets, kw = self.task_offsets(xs, ys), self._kw(loss, xs)
        xs, ys = zero_shot_support(xs, ys)
        return ops.mlp_meta_loss(self.net.parameter_list(), self.maml.inner_lr, xs, ys, xq, yq,
                                 mode=self.maml.mode, task_offsets=offsets, **kw)

    def meta_loss(self, xs, ys, xq, yq, loss: str | None = None) -> torch.Tensor:
        """Mean over tasks of the query loss after the memory-conditioned inner loop; differentiable.

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

    def adapt_predict(self, xs, ys, xq, loss: str | None = None):
        """Retrieve each task's starting parameters from memory, adapt on its support, predict its queries.

        Parameters
        ----------
        xs, ys, xq, loss
            As in ``MemoryAugmentedNet.adapt_predict``.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            (B, Q, O) predictions (NumPy in, NumPy out).
        """
        numpy_in = isinstance(xs, np.ndarray)
        single = np.ndim(xs) == 2
        xs, ys, xq = (torch.as_tensor(a) for a in (xs, ys, xq))
        if single:
            xs, ys, xq = xs[None], ys[None], xq[None]
        with torch.no_grad():
            offsets, kw = self.task_offsets(xs, ys), self._kw(loss, xs)
            xs, ys = zero_shot_support(xs, ys)
            pred = ops.mlp_adapt_predict(self.net.parameter_list(), self.maml.inner_lr, xs, ys, xq,
                                         task_offsets=offsets, **kw)
        pred = pred[0] if single else pred
        return pred.numpy() if numpy_in else pred
