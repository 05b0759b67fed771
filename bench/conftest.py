"""Shared set-up for the throughput suites: all cores for every peer, and a closing table of
each group's timings as ratios to metarisk_fast measured in the same run."""
import os

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
    tr.section("ratios to metarisk_fast (median time of peer / median time of metarisk_fast)")
    for group, benches in sorted(groups.items(), key=lambda kv: str(kv[0])):
        ours = [b for b in benches if "metarisk_fast" in b.name]
        if not ours:
            continue
        base = ours[0].stats.median
        tr.write_line(f"[{group}]")
        for b in sorted(benches, key=lambda b: b.stats.median):
            extra = ", ".join(f"{k}={v}" for k, v in b.extra_info.items())
            tr.write_line(f"  {b.name:<55} median {b.stats.median * 1e3:9.3f} ms  "
                          f"x{b.stats.median / base:7.2f}  {extra}")


@pytest.fixture
def threads():
    return THREADS
