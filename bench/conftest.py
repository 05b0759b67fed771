"""Shared set-up for the throughput suites: all cores for every peer, and a closing table of
each group's timings as ratios to metarisk_fast measured in the same run, after this machine's
own limits measured in the same run (torch's fp32 2048^2 product, a two-thread copy) and each
workload's GFLOP/s and GB/s as a fraction of them."""
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import metarisk_fast as mr

THREADS = os.cpu_count() or 1


def pytest_configure(config):
    torch.set_num_threads(THREADS)
    mr.set_num_threads(THREADS)


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups = {}
    for bench in session.benchmarks:
        groups.setdefault(bench.group, []).append(bench)
    tr = terminalreporter
    limits = machine_limits()
    variant = mr.build_info().get("variant", "one module")  # METARISK_ISA=x86-64-v3 (etc.) runs another
    tr.section(f"this machine's limits, same run ({cpu_model()}, {THREADS} threads; core module {variant})")
    tr.write_line(f"  fp32 2048^2 matrix product (torch): {limits['gflops']:.0f} GFLOP/s; "
                  f"two-thread copy (read + write): {limits['copy_GB_per_s']:.1f} GB/s")
    tr.section("ratios to metarisk_fast (median time of peer / median time of metarisk_fast)")
    for group, benches in sorted(groups.items(), key=lambda kv: str(kv[0])):
        ours = [b for b in benches if "metarisk_fast" in b.name]
        if not ours:
            continue
        base = ours[0].stats.median
        tr.write_line(f"[{group}]")
        for b in sorted(benches, key=lambda b: b.stats.median):
            extra = ", ".join(f"{k}={v}" for k, v in b.extra_info.items()) + of_limits(b.extra_info, limits)
            tr.write_line(f"  {b.name:<55} median {b.stats.median * 1e3:9.3f} ms  "
                          f"x{b.stats.median / base:7.2f}  {extra}")


def mlp_flops(sizes) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs of one row through an MLP of layer sizes d_0 .. d_L
    (bench/WORKLOADS.md): forward 2P with P = sum d_{l-1} d_l; backward 4P - 2 d_0 d_1 (weight
    and input gradients, none for the input itself)."""
    P = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 2 * P, 6 * P - 2 * sizes[0] * sizes[1]


@pytest.fixture
def threads():
    return THREADS


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v for k, v in (line.split(":", 1) for line in f if ":" in line)}
        return (f"{info.get('model name', '').strip()}, family {info.get('cpu family', '?').strip()} "
                f"model {info.get('model', '?').strip()}")
    except OSError:
        return platform.processor() or platform.machine()


def machine_limits() -> dict:
    """The fp32 2048^2 product rate (torch, all threads) and the copy rate of two threads, each
    copying half of 2 x 80 MB (read + write bytes counted), medians of repeated runs."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    t = []
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        t.append(time.perf_counter() - t0)
    gflops = 2 * 2048 ** 3 / np.median(t) / 1e9
    n = 2 * 10_000_000
    src, dst = np.random.default_rng(0).random(n), np.empty(n)
    halves = [(dst[:n // 2], src[:n // 2]), (dst[n // 2:], src[n // 2:])]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda h: np.copyto(*h), halves))
        t = []
        for _ in range(10):
            t0 = time.perf_counter()
            list(pool.map(lambda h: np.copyto(*h), halves))
            t.append(time.perf_counter() - t0)
    return {"gflops": gflops, "copy_GB_per_s": 2 * 8 * n / np.median(t) / 1e9}


def of_limits(extra: dict, limits: dict) -> str:
    """The workload's GFLOP/s and GB/s as fractions of the same run's limits."""
    out = []
    for key in ("gflops", "GFLOP_s"):
        if key in extra:
            out.append(f"{100 * extra[key] / limits['gflops']:.0f} % of the product rate")
    for key in ("GB_per_s", "GB_s"):
        if key in extra:
            out.append(f"{100 * extra[key] / limits['copy_GB_per_s']:.0f} % of the copy rate")
    return (" [" + "; ".join(out) + "]") if out else ""
