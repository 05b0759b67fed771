"""External memory kernels against their PyTorch twins, the LRUA transcription, isolation, the
memory learner, and bad input."""
import numpy as np
import pytest
import torch

from metarisk_fast import ops, reference
from conftest import DEVICE_TOL
from metarisk_fast.learners import ExternalMemory, MemoryAugmentedNet

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=1e-5)}


def _read_case(dtype, shared, N=37, W=8, B=5, H=3, seed=0, beta_scale=3.0):
    g = torch.Generator().manual_seed(seed)
    mem = torch.randn(*(() if shared else (B,)), N, W, dtype=dtype, generator=g).requires_grad_()
    keys = torch.randn(B, H, W, dtype=dtype, generator=g).requires_grad_()
    beta = (torch.rand(B, H, dtype=dtype, generator=g) * beta_scale).requires_grad_()
    return mem, keys, beta


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared", [True, False])
# N = 300 spans several of the kernel's slot chunks; beta up to 500 passes the limit (40 in
# float32, 340 in float64) above which the softmax is shifted by a max pass instead of by beta
@pytest.mark.parametrize("N, beta_scale", [(37, 3.0), (300, 3.0), (300, 500.0)])
def test_read_forward_backward_match_twin(dtype, shared, N, beta_scale):
    """Forward and gradients against the twin run in float64 on the same inputs, within the dtype's
    tolerance; at a sharp key (beta 500) float32 rounding is amplified by beta in both paths, and
    there the kernel's error may be no more than twice the twin's own in float32."""
    mem, keys, beta = _read_case(dtype, shared, N=N, beta_scale=beta_scale)
    wide = [t.detach().double().requires_grad_() for t in (mem, keys, beta)]
    g = torch.Generator().manual_seed(1)

    def outputs(fn, inputs, dt):
        read, weights = fn(*inputs)
        cr = torch.randn(read.shape, dtype=dtype, generator=g.manual_seed(1)).to(dt)
        cw = torch.randn(weights.shape, dtype=dtype, generator=g).to(dt)
        grads = torch.autograd.grad((read * cr).sum() + (weights * cw).sum(), inputs)
        return [t.detach().double() for t in (read, weights, *grads)]

    ours, exact = outputs(ops.memory_read, [mem, keys, beta], dtype), outputs(reference.memory_read, wide, torch.float64)
    eager = outputs(reference.memory_read, [mem, keys, beta], dtype)
    sharp = dtype == torch.float32 and beta_scale > 40
    for name, o, e, x in zip(("read", "weights", "d_memory", "d_keys", "d_beta"), ours, eager, exact):
        if sharp:
            assert (o - x).abs().max() <= 2 * (e - x).abs().max(), name
        else:
            torch.testing.assert_close(o, x, **TOL[dtype], msg=name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared", [True, False])
def test_read_full_key_blocks_and_page_multiple_slots_match_twin(dtype, shared):
    """Several full blocks of 32 keys and a partial one against one memory (70 keys), and N a
    multiple of 1024 slots (the backward pads its key-major rows then): forward and gradients
    against the twin."""
    B, H = (14, 5) if shared else (2, 35)
    mem, keys, beta = _read_case(dtype, shared, N=1024, W=16, B=B, H=H, seed=3)
    got, want = ops.memory_read(mem, keys, beta), reference.memory_read(mem, keys, beta)
    torch.testing.assert_close(got.read, want.read, **TOL[dtype])
    torch.testing.assert_close(got.weights, want.weights, **TOL[dtype])
    g = torch.Generator().manual_seed(4)
    cr, cw = torch.randn(got.read.shape, dtype=dtype, generator=g), torch.randn(got.weights.shape, dtype=dtype, generator=g)
    ga = torch.autograd.grad((got.read * cr).sum() + (got.weights * cw).sum(), [mem, keys, beta], retain_graph=True)
    gb = torch.autograd.grad((want.read * cr).sum() + (want.weights * cw).sum(), [mem, keys, beta],
                             retain_graph=True)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, **TOL[dtype])
    # the read alone (no weight gradient flowing back: the kernel's d_weights-free path)
    ga = torch.autograd.grad((got.read * cr).sum(), [mem, keys, beta])
    gb = torch.autograd.grad((want.read * cr).sum(), [mem, keys, beta])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_read_with_two_dimensional_keys_and_default_beta():
    mem, keys, _ = _read_case(torch.float64, True)
    k2 = keys[:, 0].detach()
    torch.testing.assert_close(ops.memory_read(mem, k2).read, reference.memory_read(mem, k2).read)
    torch.testing.assert_close(ops.memory_read(mem, k2, 1.0).weights, reference.memory_read(mem, k2).weights)


@pytest.mark.parametrize("shared", [True, False])
def test_read_gradcheck(shared):
    mem, keys, beta = _read_case(torch.float64, shared, N=6, W=3, B=2, H=2)
    assert torch.autograd.gradcheck(lambda m, k, b: ops.memory_read(m, k, b), (mem, keys, beta))


# N = 300 spans several of the scan's slot chunks; per-episode memories read their own slots
@pytest.mark.parametrize("shared, N", [(True, 50), (True, 300), (False, 300)])
def test_topk_equals_dense_at_k_equal_n_and_selects_the_nearest(shared, N):
    mem, keys, beta = _read_case(torch.float64, shared, N=N)
    dense = ops.memory_read(mem, keys, beta)
    full = ops.memory_read(mem, keys, beta, topk=N)
    torch.testing.assert_close(full.read, dense.read, **TOL[torch.float64])
    got = ops.memory_read(mem, keys, beta, topk=5)
    want = reference.memory_read(mem, keys, beta, topk=5)
    torch.testing.assert_close(got.indices, want.indices)
    torch.testing.assert_close(got.read, want.read, **TOL[torch.float64])
    ga = torch.autograd.grad(got.read.sum(), [mem, keys, beta])
    gb = torch.autograd.grad(want.read.sum(), [mem, keys, beta])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_topk_on_a_large_memory_ties_by_index():
    mem = torch.randn(20000, 16)
    mem[7] = mem[9] = mem[3] * 2  # same direction: equal cosine
    res = ops.memory_read(mem, mem[3:4] * 5, topk=3)
    assert res.indices[0].tolist() == [3, 7, 9]


# N = 1100 spans several of the kernel's slot chunks and the streamed weight rows' vector body
@pytest.mark.parametrize("N", [20, 1100])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["shared", "episode", "episode_multi"])
def test_lrua_write_matches_the_transcription(dtype, layout, N):
    g = torch.Generator().manual_seed(3)
    W, B, P = 6, 4, 3
    mem = torch.randn(*((N, W) if layout == "shared" else (B, N, W)), dtype=dtype, generator=g)
    usage = torch.rand(mem.shape[:-1], dtype=dtype, generator=g)
    usage.view(-1)[:4] = 0.5  # ties: the lower index goes first
    vshape = {"shared": (P, W), "episode": (B, W), "episode_multi": (B, P, W)}[layout]
    vals = torch.randn(vshape, dtype=dtype, generator=g)
    prev = torch.softmax(torch.randn(*vshape[:-1], N, dtype=dtype, generator=g), -1)
    alpha = torch.randn(vshape[:-1], dtype=dtype, generator=g)
    inputs = [t.requires_grad_() for t in (mem, usage, prev, alpha, vals)]
    got = ops.memory_write_lrua(*inputs, gamma=0.9)
    want = reference.memory_write_lrua(*inputs, gamma=0.9)
    for a, b in zip(got[:3], want[:3]):
        torch.testing.assert_close(a, b, **TOL[dtype])
    torch.testing.assert_close(got[3], want[3])
    cots = [torch.randn(t.shape, dtype=dtype, generator=g) for t in got[:3]]
    ga = torch.autograd.grad(sum((t * c).sum() for t, c in zip(got[:3], cots)), inputs)
    gb = torch.autograd.grad(sum((t * c).sum() for t, c in zip(want[:3], cots)), inputs)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_shared_memory_writes_go_to_distinct_least_used_slots():
    usage = torch.tensor([0.3, 0.1, 0.1, 0.9, 0.0, 0.2])
    _, _, ww, lu = ops.memory_write_lrua(torch.ones(6, 2), usage, torch.zeros(3, 6), torch.full((3,), -50.0),
                                         torch.ones(3, 2))
    assert lu.tolist() == [4, 1, 2]
    assert ww.argmax(-1).tolist() == [4, 1, 2]


def test_write_gradcheck():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(2, 5, 3, dtype=torch.float64, generator=g), torch.rand(2, 5, dtype=torch.float64, generator=g),
            torch.softmax(torch.randn(2, 2, 5, dtype=torch.float64, generator=g), -1),
            torch.randn(2, 2, dtype=torch.float64, generator=g), torch.randn(2, 2, 3, dtype=torch.float64, generator=g)]
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *a: ops.memory_write_lrua(*a)[:3], args)


def test_episode_memories_are_isolated():
    mem = torch.zeros(3, 8, 4)
    vals = torch.zeros(3, 4)
    vals[1] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    new, _, _, _ = ops.memory_write_lrua(mem, torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(3), vals)
    assert new[0].abs().sum() == 0 and new[2].abs().sum() == 0 and new[1].abs().sum() > 0
    read = ops.memory_read(new, torch.ones(3, 1, 4)).read
    assert read[0].abs().sum() == 0 and read[1].abs().sum() > 0


def test_external_memory_module(tmp_path):
    m = ExternalMemory(slots=10, width=4, memories=2).double()
    m.write(torch.randn(2, 3, 4, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    read, w = m.read(torch.randn(2, 5, 4, dtype=torch.float64))
    assert read.shape == (2, 5, 4) and torch.allclose(w.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    m.save(tmp_path / "mem.pt")
    back = ExternalMemory.load(tmp_path / "mem.pt")
    torch.testing.assert_close(back.memory, m.memory.detach())
    torch.testing.assert_close(back.usage, m.usage.detach())
    m.detach()
    assert not m.memory.requires_grad
    m.reset(4)
    assert m.memory.shape == (4, 10, 4) and m.memory.abs().sum() == 0
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a saved ExternalMemory"):
        ExternalMemory.load(tmp_path / "junk.pt")


def _train_then_mse(learner, tasks, *, steps, lr, batch, test_size, test_query):
    """Adam on the learner's meta-loss over fresh task batches, then its query MSE on held-out tasks."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        learner.meta_loss(*tasks(batch, 10, 10, g)).backward()
        opt.step()
    xs, ys, xq, yq = tasks(test_size, 10, test_query, torch.Generator().manual_seed(9))
    return ((learner.adapt_predict(xs, ys, xq) - yq) ** 2).mean().item(), (xs, ys, xq)


def _linear_tasks(B, K, Q, g):
    a = torch.rand(B, 1, 1, generator=g) * 4 - 2
    b = torch.rand(B, 1, 1, generator=g) * 2 - 1
    x = torch.rand(B, K + Q, 1, generator=g) * 4 - 2
    y = a * x + b
    return x[:, :K], y[:, :K], x[:, K:], y[:, K:]


def test_memory_learner_beats_the_same_encoder_decoder_without_memory():
    scores = {}
    for use in (True, False):
        torch.manual_seed(0)
        net = MemoryAugmentedNet(1, width=32, slots=32, hidden=(64,), use_memory=use)
        scores[use], (xs, ys, xq) = _train_then_mse(net, _linear_tasks, steps=300, lr=3e-3, batch=32,
                                                     test_size=400, test_query=20)
        np_pred = net.adapt_predict(xs.numpy(), ys.numpy(), xq.numpy())
        assert isinstance(np_pred, np.ndarray) and np_pred.shape == (400, 20, 1)
    assert scores[True] < 0.25 * scores[False], scores


@pytest.mark.parametrize("call, exc, match", [
    (lambda: ops.memory_read(torch.zeros(0, 4), torch.ones(2, 4)), ValueError, "no slots"),
    (lambda: ops.memory_read(torch.ones(5, 4), torch.ones(2, 3)), ValueError, "key width 3"),
    (lambda: ops.memory_read(torch.ones(5, 4), torch.tensor([[float("nan")] * 4])), ValueError, "keys contains a non-finite"),
    (lambda: ops.memory_read(torch.ones(5, 4), torch.ones(2, 4), torch.tensor([1.0, -1.0])), ValueError, "beta"),
    (lambda: ops.memory_read(torch.ones(5, 4), torch.ones(2, 4), torch.tensor([1.0, float("nan")]), topk=2),
     ValueError, "beta"),
    (lambda: ops.memory_read(torch.ones(5, 4), torch.ones(2, 4), topk=6), ValueError, "topk must be"),
    (lambda: ops.memory_read(torch.ones(5, 4), torch.ones(2, 4).double()), TypeError, "dtype"),
    (lambda: ops.memory_read(torch.ones(2, 5, 4), torch.ones(3, 4)), ValueError, "3 key groups for 2"),
    (lambda: ops.memory_write_lrua(torch.ones(3, 2), torch.zeros(3), torch.zeros(4, 3), torch.zeros(4),
                                   torch.ones(4, 2)), ValueError, "4 writes into a memory of 3 slots"),
    (lambda: ops.memory_write_lrua(torch.ones(3, 2), torch.zeros(3), torch.zeros(1, 3), torch.zeros(1),
                                   torch.ones(1, 2), gamma=1.5), ValueError, "gamma"),
    (lambda: ops.memory_write_lrua(torch.ones(3, 2), torch.zeros(3), torch.zeros(1, 3), torch.zeros(1),
                                   torch.ones(1, 5)), ValueError, "values for a shared memory"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_memory_conditioned_maml_seeds_the_inner_loop():
    """Clustered tasks (four phases): with one inner step, starting each task from the point the
    memory retrieves beats plain MAML by far."""
    import math

    from metarisk_fast import MAML, MLP, MemoryConditionedMAML

    def tasks(B, K, Q, g):
        phase = torch.randint(0, 4, (B, 1, 1), generator=g).float() * math.pi / 2
        amp = 2 + torch.rand(B, 1, 1, generator=g)
        x = torch.rand(B, K + Q, 1, generator=g) * 10 - 5
        y = amp * torch.sin(x - phase)
        return x[:, :K], y[:, :K], x[:, K:], y[:, K:]

    scores = {}
    for name in ("maml", "memory"):
        torch.manual_seed(0)
        net = MLP(1, (40, 40), 1)
        learner = MAML(net, 0.01, 1) if name == "maml" else MemoryConditionedMAML(net, 0.01, 1, slots=8, key_width=8)
        scores[name], (xs, ys, xq) = _train_then_mse(learner, tasks, steps=500, lr=1e-3, batch=16,
                                                      test_size=300, test_query=30)
        if name == "memory":
            assert learner.memory_keys.grad is not None and learner.memory_offsets.grad.abs().sum() > 0
            single = learner.adapt_predict(xs[0].numpy(), ys[0].numpy(), xq[0].numpy())
            np.testing.assert_allclose(single, learner.adapt_predict(xs, ys, xq)[0].numpy(), rtol=1e-5, atol=1e-6)
    assert scores["memory"] < 0.25 * scores["maml"], scores


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared", [True, False])
def test_memory_read_and_write_match_twins_on_every_device(device, dtype, shared):
    g = torch.Generator().manual_seed(0)
    N, W, B, H = 37, 8, 5, 3
    mem = torch.randn(*(() if shared else (B,)), N, W, dtype=dtype, generator=g)
    keys = torch.randn(B, H, W, dtype=dtype, generator=g)
    beta = torch.rand(B, H, dtype=dtype, generator=g) * 3
    cpu = [t.clone().requires_grad_() for t in (mem, keys, beta)]
    gpu = [t.to(device).requires_grad_() for t in (mem, keys, beta)]
    r1, w1 = ops.memory_read(*gpu)
    r2, w2 = reference.memory_read(*cpu)
    torch.testing.assert_close(r1.cpu(), r2, **DEVICE_TOL[dtype])
    ga = torch.autograd.grad(r1.sum() + (w1 ** 2).sum(), gpu)
    gb = torch.autograd.grad(r2.sum() + (w2 ** 2).sum(), cpu)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a.cpu(), b, **DEVICE_TOL[dtype])
    usage = torch.rand(mem.shape[:-1], dtype=dtype, generator=g)
    P = 3
    vals = torch.randn(*((P, W) if shared else (B, P, W)), dtype=dtype, generator=g)
    prev = torch.softmax(torch.randn(*vals.shape[:-1], N, dtype=dtype, generator=g), -1)
    alpha = torch.randn(vals.shape[:-1], dtype=dtype, generator=g)
    cpu = [t.clone().requires_grad_() for t in (mem, usage, prev, alpha, vals)]
    gpu = [t.to(device).requires_grad_() for t in (mem, usage, prev, alpha, vals)]
    o1, o2 = ops.memory_write_lrua(*gpu), reference.memory_write_lrua(*cpu)
    for a, b in zip(o1[:3], o2[:3]):
        torch.testing.assert_close(a.cpu(), b, **DEVICE_TOL[dtype])
    torch.testing.assert_close(o1[3].cpu(), o2[3])
    ga = torch.autograd.grad(sum(t.sum() for t in o1[:3]), gpu)
    gb = torch.autograd.grad(sum(t.sum() for t in o2[:3]), cpu)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a.cpu(), b, **DEVICE_TOL[dtype])
