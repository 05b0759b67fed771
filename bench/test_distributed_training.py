"""Data-parallel meta-training (torch.distributed, gloo): meta-steps per second of one process and
of two, one kernel thread each, with 256 tasks per rank per step on W1's network (MLP 16-64-64-1,
K = Q = 32, S = 5 second-order steps, MSE, Adam), and of one process with two threads; the
all-reduce's share of a step; and a projection to 8 and 64 ranks from the measured compute time
per task and all-reduce time per byte (ring all-reduce: 2 (N - 1) / N of the gradient's bytes
through each rank; loopback bandwidth, so a real network adds to it). The all-reduce time includes
waiting for the slower rank."""
import json

import torch
import torch.distributed as dist

import metarisk_fast as mr
from metarisk_fast.forecasting.distributed import run_local
from metarisk_fast.forecasting.training import _sum_across_ranks, process_group

TASKS_PER_RANK, K, Q, D, S = 256, 32, 32, 16, 5
WARMUP, TIMED, REPEATS = 3, 15, 3


def _time_steps(path, threads):
    import time

    mr.set_num_threads(threads)
    torch.set_num_threads(threads)
    rank, world = process_group()
    g = torch.Generator().manual_seed(rank)
    xs, ys, xq, yq = (torch.randn(TASKS_PER_RANK, n, d, generator=g) for n, d in ((K, D), (K, 1), (Q, D), (Q, 1)))
    torch.manual_seed(0)
    learner = mr.MAML(mr.MLP(D, (64, 64), 1), inner_lr=0.01, inner_steps=S)
    params = list(learner.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    step_s, reduce_s = [], []
    for i in range(WARMUP + TIMED):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        (learner.query_losses(xs, ys, xq, yq).sum() / (TASKS_PER_RANK * world)).backward()
        t1 = time.perf_counter()
        if world > 1:
            _sum_across_ranks(params, 0.0, False)
        t2 = time.perf_counter()
        opt.step()
        if i >= WARMUP:
            step_s.append(time.perf_counter() - t0)
            reduce_s.append(t2 - t1)
    if rank == 0:
        grad_bytes = sum(p.numel() for p in params) * 4 + 8
        path.write_text(json.dumps({"step_s": sorted(step_s)[len(step_s) // 2],
                                    "reduce_s": sorted(reduce_s)[len(reduce_s) // 2], "grad_bytes": grad_bytes}))


def _run(tmp_path, world, threads):
    out = tmp_path / f"w{world}t{threads}.json"
    if world == 1:
        _time_steps(out, threads)
    else:
        run_local(_time_steps, world, out, threads, threads=threads)
    return json.loads(out.read_text())


def test_distributed_scaling(tmp_path, benchmark):
    assert not (dist.is_available() and dist.is_initialized())
    runs = {}  # the configurations alternate, three times; each keeps its fastest run (a noisy VM)
    for _ in range(REPEATS):
        for key in ((1, 1), (2, 1), (1, 2)):
            r = _run(tmp_path, *key)
            if key not in runs or r["step_s"] < runs[key]["step_s"]:
                runs[key] = r
    one, two, threaded = runs[(1, 1)], runs[(2, 1)], runs[(1, 2)]
    rate = {name: r_world * TASKS_PER_RANK / r["step_s"]
            for name, r, r_world in (("1 process x 1 thread", one, 1), ("2 processes x 1 thread", two, 2),
                                     ("1 process x 2 threads", threaded, 1))}
    per_task = one["step_s"] / TASKS_PER_RANK
    per_byte = two["reduce_s"] / two["grad_bytes"]  # N = 2: 2 (N - 1) / N = 1 gradient's bytes each way
    projected = {n: n * TASKS_PER_RANK / (TASKS_PER_RANK * per_task + 2 * (n - 1) / n * two["grad_bytes"] * per_byte)
                 for n in (8, 64)}
    benchmark.extra_info.update({
        **{f"tasks_per_s[{k}]": round(v) for k, v in rate.items()},
        "weak_scaling_2_vs_1": round(rate["2 processes x 1 thread"] / rate["1 process x 1 thread"], 3),
        "two_processes_vs_two_threads": round(rate["2 processes x 1 thread"] / rate["1 process x 2 threads"], 3),
        "allreduce_share_of_step": round(two["reduce_s"] / two["step_s"], 4),
        "grad_bytes": two["grad_bytes"],
        **{f"projected_tasks_per_s[{n} ranks]": round(v) for n, v in projected.items()},
        **{f"projected_efficiency[{n} ranks]": round(v / (n * rate["1 process x 1 thread"]), 3)
           for n, v in projected.items()},
    })
    benchmark.group = "distributed meta-training"
    benchmark.pedantic(lambda: None, rounds=1)  # the figures are the extra info above
    print(json.dumps(benchmark.extra_info, indent=1))
