"""External memory (W3 in bench/WORKLOADS.md): N = 4096 slots x W = 64, B = 256 keys per call, float32:
dense read, LRUA write of 256 vectors (gamma = 0.95), read + write, and read forward + backward,
against the same equations in PyTorch eager (metarisk_fast.reference) and under torch.compile."""
import pytest
import torch

from metarisk_fast import ops, reference

N, W, B, GAMMA = 4096, 64, 256, 0.95
KEY_BLOCK = 32  # keys per block in the kernel: the memory is read twice per block


def _data():
    g = torch.Generator().manual_seed(0)
    mem = torch.randn(N, W, generator=g)
    keys = torch.randn(B, W, generator=g)
    beta = torch.rand(B, generator=g) * 5
    usage = torch.rand(N, generator=g)
    prev = torch.softmax(torch.randn(B, N, generator=g), -1)
    alpha = torch.randn(B, generator=g)
    return mem, keys, beta, usage, prev, alpha


READ_FLOPS = 4 * B * N * W  # dots and weighted sum
WRITE_FLOPS = 2 * B * N * W
READ_BYTES = 4 * (2 * N * W * (B // KEY_BLOCK) + B * N + 2 * B * W)
WRITE_BYTES = 4 * (2 * N * W + 2 * B * N + B * W)


def _rates(benchmark, flops, nbytes):
    t = benchmark.stats.stats.median
    benchmark.extra_info["keys_per_s"] = round(B / t)
    benchmark.extra_info["GFLOP_s"] = round(flops / t / 1e9, 1)
    benchmark.extra_info["GB_s"] = round(nbytes / t / 1e9, 1)


def _read(lib):
    def run(mem, keys, beta):
        return lib.memory_read(mem, keys, beta)
    return run


def _write(lib):
    def run(mem, usage, prev, alpha, keys):
        return lib.memory_write_lrua(mem, usage, prev, alpha, keys, GAMMA)
    return run


def _read_write(lib):
    def run(mem, keys, beta, usage, prev, alpha):
        new_mem, new_usage, _, _ = lib.memory_write_lrua(mem, usage, prev, alpha, keys, GAMMA)
        return lib.memory_read(new_mem, keys, beta)
    return run


def _read_fwd_bwd(lib):
    def run(mem, keys, beta):
        r, w = lib.memory_read(mem, keys, beta)
        return torch.autograd.grad(r.sum() + (w * w).sum(), [mem, keys, beta])
    return run


PEERS = {"metarisk_fast": lambda f: f(ops), "eager": lambda f: f(reference),
         "torch_compile": lambda f: torch.compile(f(reference), dynamic=False)}

# torch.compile's own import path raises a DeprecationWarning (torch.jit.script_method) in 2.13
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _bench_no_grad(benchmark, group, peer, op, args, flops, nbytes):
    benchmark.group = group
    fn = PEERS[peer](op)
    with torch.no_grad():
        benchmark.pedantic(fn, args, rounds=50, warmup_rounds=3)
    _rates(benchmark, flops, nbytes)


@pytest.mark.parametrize("peer", list(PEERS))
def test_read(benchmark, peer):
    mem, keys, beta, *_ = _data()
    _bench_no_grad(benchmark, "memory read", peer, _read, (mem, keys, beta), READ_FLOPS, READ_BYTES)


@pytest.mark.parametrize("peer", list(PEERS))
def test_write(benchmark, peer):
    mem, keys, beta, usage, prev, alpha = _data()
    _bench_no_grad(benchmark, "memory write", peer, _write, (mem, usage, prev, alpha, keys), WRITE_FLOPS, WRITE_BYTES)


@pytest.mark.parametrize("peer", list(PEERS))
def test_read_write(benchmark, peer):
    mem, keys, beta, usage, prev, alpha = _data()
    _bench_no_grad(benchmark, "memory read+write", peer, _read_write, (mem, keys, beta, usage, prev, alpha),
                   READ_FLOPS + WRITE_FLOPS, READ_BYTES + WRITE_BYTES)


@pytest.mark.parametrize("peer", ["metarisk_fast", "eager"])
def test_read_forward_backward(benchmark, peer):
    benchmark.group = "memory read fwd+bwd"
    mem, keys, beta, *_ = (t.requires_grad_() for t in _data()[:3])
    fn = PEERS[peer](_read_fwd_bwd)
    benchmark.pedantic(fn, (mem, keys, beta), rounds=10, warmup_rounds=2)
    _rates(benchmark, READ_FLOPS * 3, READ_BYTES * 3)


# The exact top-k read on a memory too large for a dense softmax: N = 10^6 slots, k = 32.
N_LARGE, TOPK = 1_000_000, 32
TOPK_FLOPS = 2 * B * N_LARGE * W  # the similarities; selection and the k-row read are small


def _chunked_eager_topk(mem, keys, beta, chunk=65536):
    """The memory-frugal way to write it in PyTorch: similarities chunk by chunk, a running top-k."""
    kn = keys.norm(dim=-1, keepdim=True)
    best_v = best_i = None
    for c0 in range(0, mem.shape[0], chunk):
        mc = mem[c0:c0 + chunk]
        v, i = torch.topk((keys @ mc.T) / (kn * mc.norm(dim=-1) + 1e-6), TOPK, dim=-1)
        if best_v is not None:
            v, sel = torch.topk(torch.cat([best_v, v], 1), TOPK, dim=-1)
            i = torch.gather(torch.cat([best_i, i + c0], 1), 1, sel)
        else:
            i = i + c0
        best_v, best_i = v, i
    w = torch.softmax(beta[:, None] * best_v, dim=-1)
    return (w.unsqueeze(-1) * mem[best_i]).sum(1), w, best_i


TOPK_PEERS = {"metarisk_fast": lambda m, k, b: ops.memory_read(m, k, b, topk=TOPK),
              "eager_dense": lambda m, k, b: reference.memory_read(m, k, b, topk=TOPK),
              "eager_chunked": _chunked_eager_topk}


@pytest.fixture(scope="module")
def large_memory():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N_LARGE, W, generator=g), torch.randn(B, W, generator=g), torch.rand(B, generator=g) * 5


@pytest.mark.parametrize("peer", list(TOPK_PEERS))
def test_topk_read_large_memory(benchmark, peer, large_memory):
    benchmark.group = "memory top-k read, N = 1e6"
    with torch.no_grad():
        benchmark.pedantic(TOPK_PEERS[peer], large_memory, rounds=3, warmup_rounds=1)
    _rates(benchmark, TOPK_FLOPS, 4 * N_LARGE * W * (B // KEY_BLOCK))
