"""Processes on torch.distributed for data-parallel meta-training and for forecasting split by
asset: N local processes on this machine (``run_local``), or the ranks `torchrun` started
(``join_torchrun``). The training loop itself is ``training.train_meta``, unchanged: it reads the
group's rank and size."""
from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT = timedelta(seconds=int(os.environ.get("METARISK_DIST_TIMEOUT", "300")))  # a rank that stops is noticed


def backend() -> str:
    """gloo: the jobs train on the CPU (a learner on GPUs goes with an NCCL group of its own:
    ``train_meta`` runs in whatever group is initialised)."""
    return os.environ.get("METARISK_DIST_BACKEND", "gloo")


def threads_per_rank(world: int) -> int:
    """Kernel threads of each rank so that ranks x threads never exceed the cores."""
    return max(1, (os.cpu_count() or 1) // world)


def _set_threads(n: int) -> None:
    import metarisk_fast as mr

    mr.set_num_threads(n)
    torch.set_num_threads(n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, threads: int, errors: str, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend(), rank=rank, world_size=world, timeout=TIMEOUT)
    _set_threads(threads)
    try:
        fn(*args)
        dist.barrier()  # no rank tears the group down while another still talks to it
    except BaseException as exc:  # noqa: BLE001  recorded with its time: the first one is the cause
        Path(errors, f"rank{rank}").write_text(f"{time.time()!r}\n{type(exc).__name__}: {exc}")
        raise
    finally:
        dist.destroy_process_group()


class ProcessFailed(RuntimeError):
    """A process of a local group failed (its error and rank in the message); the others were
    stopped."""


@contextmanager
def _main_not_rerun():
    """Spawned processes re-run the parent's main script unless it is imported as a module; a
    console script written without an ``if __name__ == "__main__"`` guard (some installers write
    them so) would then start the whole command again in every child. The children need nothing
    from it (fn and its arguments pickle by their modules), so the script's path is hidden from
    them while they start."""
    main = sys.modules.get("__main__")
    hidden = main is not None and getattr(main, "__spec__", None) is None and hasattr(main, "__file__")
    path = main.__dict__.pop("__file__") if hidden else None
    try:
        yield
    finally:
        if hidden:
            main.__file__ = path


def run_local(fn, nproc: int, *args, threads: int | None = None, what: str = "training") -> None:
    """fn(*args) in nproc processes forming one gloo group (rank 0 is the one that writes). If a
    rank fails, the others are stopped, and the error names the rank that failed first (the
    others then fail on the broken connection); ``what`` names the job in that message."""
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    threads = threads or threads_per_rank(nproc)
    with tempfile.TemporaryDirectory() as errors, _main_not_rerun():
        try:
            mp.start_processes(_rank_main, args=(nproc, _free_port(), threads, errors, fn, args), nprocs=nproc,
                               join=True, start_method="spawn")
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            first = sorted((float(f.read_text().split("\n", 1)[0]), f.name, f.read_text().split("\n", 1)[1])
                           for f in Path(errors).iterdir())
            if first:
                _, rank, message = first[0]
                raise ProcessFailed(f"{what} process {rank[4:]} of {nproc} failed, and the others were stopped: "
                                   f"{message}") from None
            raise ProcessFailed(f"{what} process {exc.error_index} of {nproc} stopped "
                               f"({str(exc).strip().splitlines()[-1]}); the others were stopped") from None


def join_torchrun() -> bool:
    """Joins the group `torchrun` set up (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the
    environment); False when not started by torchrun or with one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group(backend(), timeout=TIMEOUT)
    _set_threads(int(os.environ.get("METARISK_NUM_THREADS", threads_per_rank(int(os.environ.get(
        "LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))))))
    return True


def wait_for_all_ranks() -> None:
    """A barrier of the initialised group (nothing without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def is_lead_process() -> bool:
    """True in a single process and in rank 0 of a `torchrun` group (RANK in the environment): the
    process that speaks for the group."""
    return os.environ.get("RANK", "0") == "0"
