"""Data-parallel meta-training on torch.distributed (gloo, two local processes): the same tasks,
the same meta-gradients and the same trained weights as one process, to round-off in float64;
checkpoints and resume; a failing rank stops the group with an error that names it."""
import json
import shutil
import sys
from pathlib import Path
import time

import numpy as np
import pytest
import torch

from metarisk_fast import datasets
from metarisk_fast.data import PricePanel
from metarisk_fast.forecasting import make_learner, train_meta
from metarisk_fast.forecasting.distributed import run_local
from metarisk_fast.forecasting.training import process_group
from metarisk_fast.tasks import EpisodeBuilder, TaskSpec

pytestmark = pytest.mark.slow  # subprocesses: `pytest -m "not slow"` leaves them out

STEPS, BATCH = 4, 8


def small_panel():
    p = datasets.synthetic_ohlc(n_days=500, n_assets=4, seed=7)
    return PricePanel(dates=p.dates, assets=p.assets, close=p.close, source="synthetic")


def train_float64(kind, steps=STEPS, **kw):
    panel = small_panel()
    builder = EpisodeBuilder(panel, TaskSpec(support=30, query=5))
    torch.manual_seed(0)
    learner = make_learner(kind, builder.spec.n_features, (16,), 0.05, 2).double()
    run = train_meta(learner, builder, list(panel.assets), panel.dates[-1], steps=steps, batch=BATCH, lr=1e-2,
                     seed=3, dtype=torch.float64, **kw)
    return learner, run


def _rank_trains(kind, path):
    learner, run = train_float64(kind)
    if process_group()[0] == 0:
        torch.save({"state": learner.state_dict(), "losses": run["losses"]}, path)


def _rank_fails():
    if process_group()[0] == 1:
        raise RuntimeError("rank 1 gives up")
    torch.distributed.barrier()


def test_task_ids_split_over_processes_draw_the_same_tasks():
    builder = EpisodeBuilder(small_panel(), TaskSpec(support=30, query=5))
    whole = builder.episodes(seed=3, task_ids=np.arange(64, 80))
    halves = [builder.episodes(seed=3, task_ids=np.arange(lo, lo + 8)) for lo in (64, 72)]
    np.testing.assert_array_equal(whole.xs, np.concatenate([h.xs for h in halves]))
    np.testing.assert_array_equal(whole.support_rows, np.concatenate([h.support_rows for h in halves]))
    assert len({tuple(r) for r in whole.support_rows}) > 8  # the draws differ from task to task


@pytest.mark.parametrize("kind", ["maml", "fomaml", "reptile", "metasgd", "pooled", "memory", "memory_maml"])
def test_two_processes_train_like_one(kind, tmp_path):
    single, run = train_float64(kind)
    run_local(_rank_trains, 2, kind, tmp_path / "rank0.pt", threads=1)
    got = torch.load(tmp_path / "rank0.pt", weights_only=True)
    np.testing.assert_allclose(got["losses"], run["losses"], rtol=1e-12)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(got["state"][name], value, rtol=1e-10, atol=1e-12)


def test_resume_from_a_checkpoint_continues_exactly(tmp_path):
    straight, run = train_float64("maml", steps=6)
    ckpt = tmp_path / "ckpt.pt"
    train_float64("maml", steps=3, checkpoint=ckpt, checkpoint_every=3)
    resumed, run2 = train_float64("maml", steps=6, checkpoint=ckpt, resume=True)
    assert run2["losses"] == run["losses"]
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value)


def test_a_failing_rank_stops_the_group_with_its_name():
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="training process 1 of 2 failed.*rank 1 gives up"):
        run_local(_rank_fails, 2, threads=1)
    assert time.perf_counter() - t0 < 120


def test_train_command_on_two_processes(tmp_path):
    from metarisk_fast.cli import main

    p = datasets.synthetic_ohlc(n_days=500, n_assets=5, seed=4)
    import pandas as pd

    wide = pd.DataFrame(np.round(p.close, 4), columns=list(p.assets))
    wide.insert(0, "Date", p.dates.astype(str))
    wide.to_csv(tmp_path / "p.csv", index=False)
    argv = ["train", "--prices", str(tmp_path / "p.csv"), "--steps", "4", "--batch", "8", "--history", "30",
            "--quiet", "--threads", "1"]
    assert main(argv + ["--out", str(tmp_path / "one")]) == 0
    assert main(argv + ["--out", str(tmp_path / "two"), "--nproc", "2", "--checkpoint-every", "2"]) == 0
    meta = json.loads((tmp_path / "two" / "model.json").read_text())
    assert meta["processes"] == 2 and not (tmp_path / "two" / "checkpoint.pt").exists()
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)
    assert main(argv + ["--out", str(tmp_path / "three"), "--nproc", "3"]) == 2  # 8 tasks do not split in 3


def _script(name: str) -> str:
    """A console script of this interpreter's environment, whether or not it is on PATH."""
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


def test_train_command_under_torchrun(tmp_path):
    """The same command, two ranks started by torchrun: rank 0 writes the model, once."""
    import socket
    import subprocess

    import pandas as pd

    p = datasets.synthetic_ohlc(n_days=500, n_assets=5, seed=4)

    wide = pd.DataFrame(np.round(p.close, 4), columns=list(p.assets))
    wide.insert(0, "Date", p.dates.astype(str))
    wide.to_csv(tmp_path / "p.csv", index=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([_script("torchrun"), "--nproc-per-node", "2", "--master-port", str(port),
                           _script("metarisk"), "train", "--prices", str(tmp_path / "p.csv"), "--out",
                           str(tmp_path / "m"), "--steps", "4", "--batch", "8", "--history", "30", "--quiet"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("saved maml model") == 1
    assert json.loads((tmp_path / "m" / "model.json").read_text())["processes"] == 2


def test_a_batch_with_non_finite_gradients_is_skipped_not_applied():
    """An overflow inside a backward pass can give NaN gradients without an error: the batch
    counts as diverged and the parameters keep their values."""
    panel = small_panel()
    builder = EpisodeBuilder(panel, TaskSpec(support=30, query=5))
    learner = make_learner("pooled", builder.spec.n_features, (8,), 0.05, 0).double()
    calls = {"n": 0}
    plain = learner.query_losses

    def poisoned(*args):
        calls["n"] += 1
        losses = plain(*args)
        return losses * torch.tensor(float("nan"), dtype=losses.dtype) if calls["n"] == 2 else losses

    learner.query_losses = poisoned
    run = train_meta(learner, builder, list(panel.assets), panel.dates[-1], steps=3, batch=4, lr=1e-2,
                     dtype=torch.float64)
    assert run["skipped"] == 1 and len(run["losses"]) == 2
    assert all(torch.isfinite(p).all() for p in learner.parameters())


def test_forecast_command_on_two_processes_writes_the_same_file(tmp_path):
    """`metarisk forecast --nproc 2` (the installed console script, as a user runs it): the
    assets split over two ranks, rank 0 writes the file one process writes, byte for byte, long
    and wide, CSV and Parquet; under torchrun the same. A rank whose assets have no forecast
    fails the group with an error naming it, and no file is written."""
    import socket
    import subprocess

    import pandas as pd

    p = datasets.synthetic_ohlc(n_days=400, n_assets=5, seed=4)
    close = p.close.copy()
    wide = pd.DataFrame(close, columns=list(p.assets))
    wide.insert(0, "Date", p.dates.astype(str))
    wide.to_csv(tmp_path / "p.csv", index=False)
    run = lambda *argv: subprocess.run([_script("metarisk"), "forecast", "--model", "default", "--prices",
                                        str(tmp_path / "p.csv"), "--quiet", *argv], capture_output=True, text=True,
                                       timeout=300, cwd=tmp_path)
    for name, extra in (("long.csv", []), ("wide.parquet", ["--wide"])):
        one, two = run("--out", f"one_{name}", *extra), run("--out", f"two_{name}", "--nproc", "2", *extra)
        assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
        assert (tmp_path / f"one_{name}").read_bytes() == (tmp_path / f"two_{name}").read_bytes()
        assert two.stdout == one.stdout.replace("one_", "two_")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ranks = subprocess.run([_script("torchrun"), "--nproc-per-node", "2", "--master-port", str(port),
                            _script("metarisk"), "forecast", "--model", "default", "--prices", str(tmp_path / "p.csv"),
                            "--out", str(tmp_path / "ranks.csv"), "--quiet"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ranks.returncode == 0, ranks.stderr[-2000:]
    assert ranks.stdout.count("wrote") == 1
    assert (tmp_path / "ranks.csv").read_bytes() == (tmp_path / "one_long.csv").read_bytes()
    wide.iloc[1:, [2, 4]] = np.nan  # rank 1's assets (the second and the fourth) keep one price each: no forecast
    wide.to_csv(tmp_path / "p.csv", index=False)
    failed = run("--out", "never.csv", "--nproc", "2")
    assert failed.returncode != 0 and "forecasting process 1 of 2 failed" in failed.stderr
    assert "no date from" in failed.stderr and not (tmp_path / "never.csv").exists()
