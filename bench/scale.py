"""Forecasting at scale: asset-days a second and peak memory of `metarisk forecast` (the shipped
model, Parquet in and out) for 100, 1,000 and 5,000 synthetic assets, against the peers in the
same run: EWMA (a NumPy recursion over all assets at once) and arch's GARCH(1,1)-t refitted per
asset every 63 days (the project's GARCHForecaster, on a subsample of assets, extrapolated); and
against the compute floor: the shipped model's inner-loop FLOPs per forecast at the same run's
fp32 matrix-product rate.

    python bench/scale.py [--assets 100 1000 5000] [--days 1500] [--out bench/scale]

Each forecast runs in its own process, which reports its own peak resident memory. Writes
results.md and machine.txt under --out; bench/RESULTS.md quotes them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import cpu_model, machine_limits, mlp_flops
from metarisk_fast import datasets
from metarisk_fast.data import PricePanel
from metarisk_fast.forecasting import GARCHForecaster, load_model
from metarisk_fast.tasks import EpisodeBuilder, TaskSpec

GARCH_ASSETS = 4  # assets the GARCH peer fits (its cost per asset-day is extrapolated)
CHILD = """import json, resource, sys, time
from metarisk_fast.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_prices(n_assets: int, n_days: int, path: Path) -> PricePanel:
    p = datasets.synthetic_ohlc(n_days=n_days, n_assets=n_assets, seed=n_assets)
    wide = pd.DataFrame(p.close, index=pd.Index(p.dates.astype("datetime64[ns]"), name="Date"), columns=list(p.assets))
    wide.to_parquet(path)
    return PricePanel(dates=p.dates, assets=p.assets, close=p.close, source=path.name)


def metarisk_forecast(prices: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, "forecast", "--model", "default", "--prices", str(prices),
                           "--out", str(out), "--quiet"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ewma_numpy(close: np.ndarray, lam: float = 0.94) -> float:
    """Seconds of a RiskMetrics EWMA over every asset, one vectorised step a day."""
    t0 = time.perf_counter()
    r = np.diff(np.log(close), axis=0)
    s = r[0] ** 2
    out = np.empty_like(r)
    for t in range(len(r)):  # the peer as a quant writes it: a loop over days, vectorised over assets
        s = lam * s + (1 - lam) * r[t] ** 2
        out[t] = s
    return time.perf_counter() - t0


def garch_seconds_per_asset(panel: PricePanel) -> float:
    sub = panel.select(assets=list(panel.assets[:GARCH_ASSETS]))
    builder = EpisodeBuilder(sub, TaskSpec())
    A = np.repeat(np.arange(sub.n_assets), sub.n_days)
    R = np.tile(np.arange(sub.n_days), sub.n_assets)
    t0 = time.perf_counter()
    GARCHForecaster().predict(builder, A, R)
    return (time.perf_counter() - t0) / sub.n_assets


def flops_per_forecast() -> float:
    """FLOPs of the shipped model's inner loop on one task: a forward and backward pass per
    support row and step, then the query row's forward pass."""
    _, spec, meta = load_model("default")
    forward, forward_backward = mlp_flops([spec.n_features, *meta["hidden"], 1])
    return float(forward_backward * meta["history"] * meta["inner_steps"] + forward)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--assets", type=int, nargs="+", default=[100, 1000, 5000])
    ap.add_argument("--days", type=int, default=1500)
    ap.add_argument("--out", default="bench/scale")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    limits = machine_limits()
    flops = flops_per_forecast()
    floor = limits["gflops"] * 1e9 / flops
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.assets:
            prices = Path(tmp, f"p{n}.parquet")
            panel = write_prices(n, args.days, prices)
            run = metarisk_forecast(prices, Path(tmp, f"f{n}.parquet"))
            written = len(pd.read_parquet(Path(tmp, f"f{n}.parquet"), columns=["asset"]))
            ewma = ewma_numpy(panel.close)
            garch = garch_seconds_per_asset(panel)
            asset_days = n * args.days
            rows.append({"assets": n, "days": args.days, "forecasts written": written,
                         "seconds": round(run["seconds"], 1), "peak RSS (GB)": round(run["peak_rss_mb"] / 1024, 2),
                         "asset-days / s": round(asset_days / run["seconds"]),
                         "of the compute floor": f"{asset_days / run['seconds'] / floor:.2f}",
                         "EWMA NumPy asset-days / s": round(asset_days / ewma),
                         "GARCH-t (arch) asset-days / s": round(args.days / garch)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    head = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in table.itertuples(index=False))
    text = (f"`python bench/scale.py --assets {' '.join(map(str, args.assets))} --days {args.days}`. "
            f"Same-run limits: fp32 2048^2 product {limits['gflops']:.0f} GFLOP/s, two-thread copy "
            f"{limits['copy_GB_per_s']:.1f} GB/s. The shipped model's inner loop: {flops / 1e6:.2f} MFLOP a forecast, "
            f"so the compute floor is {floor:,.0f} forecasts a second at that rate. GARCH: {GARCH_ASSETS} assets "
            "fitted, the rate extrapolated.\n\n" + head + body)
    (out / "results.md").write_text(text)
    (out / "machine.txt").write_text(f"{cpu_model()}\n")
    print(text)


if __name__ == "__main__":
    main()
