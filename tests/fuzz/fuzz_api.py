"""Fuzz harness of the public API (hypothesis). Each target starts from a valid call and applies
a random mutation to one argument: a wrong dtype (int, bool, complex, half), a wrong shape or
rank, a zero-size dimension, NaN / inf / huge / tiny / negative values, a non-contiguous layout,
a wrong Python type, or an out-of-range scalar. Every case must end in a correct result (the
right shape, finite where the inputs are finite) or a clear error: ValueError, TypeError or
FloatingPointError with a message, never a binding signature dump, another exception, a hang or
a crash. tests/fuzz/test_fuzz.py runs each target in a subprocess, so a crash fails the run.

    python tests/fuzz/fuzz_api.py TARGET [--examples N]     # TARGET: memory, inner_loop, features, data,
                                                            # applications, head
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

CLEAR = (ValueError, TypeError, FloatingPointError)
MUTATIONS = ("none", "dtype", "shape", "empty", "nan", "inf", "huge", "tiny", "negative", "noncontig", "pytype")
BAD_DTYPES = (np.int64, np.int32, np.bool_, np.complex64, np.float16)


class Unclear(AssertionError):
    pass


def check_error(exc: BaseException) -> None:
    msg = str(exc)
    if not isinstance(exc, CLEAR):
        raise Unclear(f"{type(exc).__name__} is not a clear error: {msg[:300]}") from exc
    if not msg or "incompatible function arguments" in msg or "Invoked with" in msg:
        raise Unclear(f"unclear message: {msg[:300]!r}") from exc


def mutate(value, how: str, rng: np.random.Generator, kind: str = "any"):
    """One mutated argument; value is a numpy array or a torch tensor."""
    is_torch = isinstance(value, torch.Tensor)
    a = value.detach().numpy().copy() if is_torch else np.array(value, copy=True)
    if how == "dtype":
        a = a.astype(BAD_DTYPES[rng.integers(len(BAD_DTYPES))])
    elif how == "shape":
        a = a.reshape(-1) if a.ndim > 1 else a.reshape(1, *a.shape, 1)
    elif how == "empty":
        a = a[:0] if a.ndim else a.reshape(0)
    elif a.size and how in ("nan", "inf", "huge", "tiny", "negative"):
        flat = a.reshape(-1)
        i = rng.integers(flat.size)
        flat[i] = {"nan": np.nan, "inf": np.inf, "huge": 1e300 if a.dtype == np.float64 else 3e38,
                   "tiny": 5e-324 if a.dtype == np.float64 else 1e-45, "negative": -abs(flat[i]) - 1}[how]
    elif how == "noncontig" and a.ndim:
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    if how == "pytype":
        return a.tolist() if rng.integers(2) else "not an array"
    return torch.from_numpy(np.ascontiguousarray(a) if how != "noncontig" else a) if is_torch else a


def finite(x) -> bool:
    if isinstance(x, torch.Tensor):
        x = x.detach().numpy()
    if isinstance(x, (tuple, list)):
        return all(finite(y) for y in x)
    x = np.asarray(x)
    return bool(np.isfinite(x).all()) if x.dtype.kind in "fc" else True


def inputs_finite(args) -> bool:
    try:
        return all(finite(a) for a in args if isinstance(a, (np.ndarray, torch.Tensor)))
    except TypeError:
        return False


def run_case(fn, args: list, which: int, how: str, rng, *, nan_ok: bool = False):
    """Mutate args[which] by ``how`` and call fn(*args): a clear error or a sound result."""
    args = list(args)
    if how != "none":
        args[which] = mutate(args[which], how, rng)
    try:
        out = fn(*args)
    except BaseException as exc:  # noqa: BLE001 (the point is to classify every exception)
        if how == "none":
            raise Unclear(f"a valid call failed: {type(exc).__name__}: {exc}") from exc
        check_error(exc)
        return
    if not nan_ok and inputs_finite(args) and not finite(out):
        raise Unclear(f"silent non-finite output from finite inputs (mutation {how} of argument {which})")


# ------------------------------------------------------------------------------------ targets
def memory_case(data, rng):
    from metarisk_fast import ops

    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    shared = data.draw(st.booleans())
    N, W, B, H = (data.draw(st.integers(1, 9)) for _ in range(4))
    E = B if not shared else 1
    mem = torch.from_numpy(rng.standard_normal((N, W) if shared else (E, N, W)).astype(dtype))
    keys = torch.from_numpy(rng.standard_normal((B, H, W)).astype(dtype))
    beta = torch.from_numpy((rng.random((B, H)) * 5).astype(dtype))
    topk = data.draw(st.sampled_from([None, 1, N, N + 1, 0, -1, 2.5]))
    how = data.draw(st.sampled_from(MUTATIONS))
    which = data.draw(st.integers(0, 2))
    eps = data.draw(st.sampled_from([1e-6, 1e-12, 0.0, -1.0, float("nan"), float("inf")]))
    if (topk is None or (isinstance(topk, int) and 1 <= topk <= N)) and 0 < eps < float("inf"):
        run_case(lambda m, k, b: ops.memory_read(m, k, b, topk=topk, eps=eps), [mem, keys, beta], which, how, rng)
    else:
        _expect_error(lambda: ops.memory_read(mem, keys, beta, topk=topk, eps=eps))
    P = data.draw(st.integers(1, N))
    vals = torch.from_numpy(rng.standard_normal((P, W) if shared else (E, P, W)).astype(dtype))
    usage = torch.from_numpy(rng.random(mem.shape[:-1]).astype(dtype))
    prev = torch.softmax(torch.from_numpy(rng.standard_normal((*vals.shape[:-1], N)).astype(dtype)), -1)
    alpha = torch.from_numpy(rng.standard_normal(vals.shape[:-1]).astype(dtype))
    gamma = data.draw(st.sampled_from([0.95, 0.0, 1.0, -0.1, 1.5, float("nan")]))
    args = [mem, usage, prev, alpha, vals]
    if 0.0 <= gamma <= 1.0:
        run_case(lambda *a: ops.memory_write_lrua(*a, gamma=gamma)[:3], args,
                 data.draw(st.integers(0, 4)), data.draw(st.sampled_from(MUTATIONS)), rng)
    else:
        _expect_error(lambda: ops.memory_write_lrua(*args, gamma=gamma))


def _expect_error(call):
    try:
        call()
    except BaseException as exc:  # noqa: BLE001
        check_error(exc)
        return
    raise Unclear("an invalid argument was accepted")


def inner_loop_case(data, rng):
    from metarisk_fast import MLP, ops

    dtype = data.draw(st.sampled_from([torch.float32, torch.float64]))
    D, Hd, O = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 8)), data.draw(st.integers(1, 2))
    B, K, Q = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    params = [p.detach().to(dtype) for p in MLP(D, (Hd,), O).parameters()]
    xs, ys = (torch.from_numpy(rng.standard_normal(s)).to(dtype) for s in ((B, K, D), (B, K, O)))
    xq, yq = (torch.from_numpy(rng.standard_normal(s)).to(dtype) for s in ((B, Q, D), (B, Q, O)))
    steps = data.draw(st.sampled_from([0, 1, 3, -1, 10_001, 2 ** 62, 1.5]))
    loss = data.draw(st.sampled_from(["mse", "gaussian_nll", "bce", "hinge"]))
    if loss == "bce":
        ys, yq = (ys > 0).to(dtype), (yq > 0).to(dtype)
    mode = data.draw(st.sampled_from(["second_order", "first_order", "reptile", "zeroth"]))
    lr = data.draw(st.sampled_from([0.05, 0.0, -0.1, float("nan"), 1e300]))
    which = data.draw(st.integers(0, 3))
    how = data.draw(st.sampled_from(MUTATIONS))
    valid = isinstance(steps, int) and 0 <= steps <= 10_000 and loss != "hinge" and np.isfinite(lr)
    kw = dict(steps=steps, loss=loss)

    def meta(xs_, ys_, xq_, yq_):
        ps = [p.clone().requires_grad_() for p in params]
        out = ops.mlp_meta_loss(ps, lr, xs_, ys_, xq_, yq_, mode=mode, **kw)
        return out, torch.autograd.grad(out.sum(), ps, allow_unused=True)

    def predict(xs_, ys_, xq_, yq_):
        return ops.mlp_adapt_predict(params, lr, xs_, ys_, xq_, **kw)

    def numpy_path(xs_, ys_, xq_, yq_):
        theta = np.concatenate([p.numpy().ravel() for p in params])
        as_np = [t.numpy() if isinstance(t, torch.Tensor) else t for t in (xs_, ys_, xq_)]
        return ops.mlp_adapt_predict_numpy(theta, np.array([lr], theta.dtype), [D, Hd, O], *as_np, **kw)

    for fn in (meta, predict, numpy_path):
        if valid and (fn is not meta or mode != "zeroth"):
            # a large lr may legitimately diverge: that must be a FloatingPointError, not NaN
            run_case(fn, [xs, ys, xq, yq], which, how, rng) if abs(lr) < 1 else _diverge_or_finite(
                fn, [xs, ys, xq, yq])
        else:
            _expect_error(lambda: fn(xs, ys, xq, yq))


def _diverge_or_finite(fn, args):
    try:
        out = fn(*args)
    except BaseException as exc:  # noqa: BLE001
        check_error(exc)
        return
    if not finite(out):
        raise Unclear("a diverging inner loop returned non-finite values")


def features_case(data, rng):
    from metarisk_fast import features as F

    T, N = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 4))
    close = np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0)) * 50
    high = close * np.exp(np.abs(rng.normal(0, 0.01, (T, N))))
    low = close * np.exp(-np.abs(rng.normal(0, 0.01, (T, N))))
    open_ = np.clip(close * np.exp(rng.normal(0, 0.005, (T, N))), low, high)
    window = data.draw(st.sampled_from([2, 5, 21, 1, 0, -3, 100_001, 2 ** 40, 2.5, True]))
    lam = data.draw(st.sampled_from([0.94, 0.5, 0.0, 1.0, -0.2, float("nan")]))
    how = data.draw(st.sampled_from(MUTATIONS))
    int_window = isinstance(window, int) and not isinstance(window, bool)
    ok_window = int_window and 2 <= window <= 100_000
    ok_range_window = int_window and 1 <= window <= 100_000  # a one-day range mean, except Yang-Zhang
    calls = [
        (lambda c: F.close_to_close_vol(c, window), [close], ok_window),
        (lambda c: F.ewma_vol(c, lam), [close], 0 < lam < 1),
        (lambda h, lo: F.parkinson_vol(h, lo, window), [high, low], ok_range_window),
        (lambda o, h, lo, c: F.yang_zhang_vol(o, h, lo, c, window), [open_, high, low, close], ok_window),
        (lambda o, h, lo, c: F.garman_klass_vol(o, h, lo, c, window), [open_, high, low, close], ok_range_window),
        (lambda c: F.log_returns(c), [close], True),
    ]
    for fn, args, valid in calls:
        if valid:
            run_case(fn, args, data.draw(st.integers(0, len(args) - 1)), how, rng, nan_ok=True)
        else:
            _expect_error(lambda: fn(*args))
    fs = F.FeatureSet(cc_windows=(2, 5), ewma_lambdas=(0.94,), range_window=3)
    stream = fs.stream(n_assets=N)
    for t in range(min(T, 6)):
        bar = [close[t], open_[t], high[t], low[t]]
        which = data.draw(st.integers(0, 3))
        bar_how = data.draw(st.sampled_from(MUTATIONS))
        before = {k: v.copy() for k, v in stream.state_dict().items()}
        try:
            args = list(bar)
            if bar_how != "none":
                args[which] = mutate(args[which], bar_how, rng)
            stream.update(*args)
        except BaseException as exc:  # noqa: BLE001
            check_error(exc)
            after = stream.state_dict()
            if any(not np.array_equal(before[k], after[k], equal_nan=True) for k in before):
                raise Unclear("a rejected bar changed the stream's state") from exc


def data_case(data, rng):
    import pandas as pd

    from metarisk_fast.data import calendar_breaks, data_report, load_prices
    from metarisk_fast.evaluation import kupiec_pof, qlike_log, value_at_risk

    T = data.draw(st.integers(0, 40))
    dates = pd.date_range("2020-01-01", periods=T, freq="B")
    frame = pd.DataFrame({"Date": dates.astype(str), "A": rng.uniform(1, 100, T), "B": rng.uniform(1, 100, T)})
    how = data.draw(st.sampled_from(["none", "nan", "negative", "text", "unsorted", "duplicate", "no_date",
                                     "inf", "long_no_close", "calendar_gap", "stale", "split", "empty_column",
                                     "tiny_prices"]))
    if how == "nan" and T:
        frame.loc[rng.integers(T), "A"] = np.nan
    elif how == "negative" and T:
        frame.loc[rng.integers(T), "B"] = -1.0
    elif how == "text" and T:
        frame["A"] = frame["A"].astype(object)
        frame.loc[rng.integers(T), "A"] = "n/a"
    elif how == "unsorted" and T > 1:
        frame = frame.iloc[::-1]
    elif how == "duplicate" and T > 1:
        frame.loc[1, "Date"] = frame.loc[0, "Date"]
    elif how == "no_date":
        frame = frame.drop(columns="Date")
    elif how == "inf" and T:
        frame.loc[rng.integers(T), "A"] = np.inf
    elif how == "long_no_close":
        frame = pd.DataFrame({"date": frame["Date"], "asset": "A", "open": 1.0, "high": 2.0})
    elif how == "calendar_gap" and T > 1:
        shift = np.where(np.arange(T) >= T // 2, rng.integers(1, 800), 0)  # a hole of up to 800 business days
        frame["Date"] = np.busday_offset(dates.values.astype("datetime64[D]"), shift).astype(str)
    elif how == "stale" and T:
        frame.loc[rng.integers(T):, "B"] = frame["B"].iloc[0]
    elif how == "split" and T:
        frame.loc[rng.integers(T):, "A"] /= rng.choice([2.0, 3.0, 0.1, 1.5])
    elif how == "empty_column":
        frame["C"] = np.nan
    elif how == "tiny_prices":
        frame[["A", "B"]] *= 1e-300
    try:
        with warnings.catch_warnings():  # the data checks warn; what is checked here is that they run clean
            warnings.simplefilter("ignore")
            panel = load_prices(frame)
        report = data_report(panel)
        json.dumps(report)
        if how == "calendar_gap" and T > 1:
            gaps = calendar_breaks(panel.dates)
            assert len(report["calendar_gaps"]) == int(gaps.sum()), "data_report and calendar_breaks disagree"
    except AssertionError:
        raise
    except BaseException as exc:  # noqa: BLE001
        check_error(exc)
    s = rng.random(T) * data.draw(st.sampled_from([1.0, 0.0, -1.0, np.nan]))
    h = rng.random(T) + data.draw(st.sampled_from([0.1, 0.0, -1.0, np.inf]))
    for call in (lambda: qlike_log(s, h), lambda: value_at_risk(h, data.draw(st.sampled_from([0.01, 0.0, 1.5]))),
                 lambda: kupiec_pof(rng.random(T) < 0.05, 0.01)):
        try:
            out = call()
        except BaseException as exc:  # noqa: BLE001
            check_error(exc)
            continue
        if inputs_finite([s, h]) and not finite(out if not isinstance(out, dict) else list(out.values())):
            raise Unclear("silent non-finite result from finite inputs")


def applications_case(data, rng):
    """The early warning's bar-by-bar scores (a rejected bar leaves the state as it was), its
    model file, and the trading environment's reward kernel and task pool."""
    import json
    import tempfile
    from pathlib import Path

    from metarisk_fast.datasets import synthetic_regimes
    from metarisk_fast.trading import TaskPool, TradingSpec, TradingTasks, episode_rewards
    from metarisk_fast.warning import StressMonitor, StressScore, WarningModel
    from metarisk_fast.warning.evaluate import SCORES

    N = data.draw(st.integers(2, 5))
    names = tuple(data.draw(st.lists(st.sampled_from(SCORES + ("forecast_jump",)), min_size=1, max_size=3,
                                     unique=True)))
    model = WarningModel(names, 0.5, 20, 0.1, data.draw(st.integers(3, 30)), data.draw(st.integers(22, 40)), "2020-01-01")
    score, monitor = StressScore(model, N), StressMonitor(N, window=data.draw(st.integers(3, 30)))
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (8, N)), axis=0))
    for t in range(8):
        args = [close[t], np.full(N, 1e-4)]
        how = data.draw(st.sampled_from(MUTATIONS))
        which = data.draw(st.integers(0, 1))
        if how != "none":
            args[which] = mutate(args[which], how, rng)
        before = score.state_dict()
        try:
            reading = score.update(*args)
        except BaseException as exc:  # noqa: BLE001
            if how == "none":
                raise Unclear(f"a valid bar failed: {type(exc).__name__}: {exc}") from exc
            check_error(exc)
            if any(not np.array_equal(before[k], v, equal_nan=True) for k, v in score.state_dict().items()):
                raise Unclear("a rejected bar changed the stress score's state") from exc
            continue
        if not (np.isnan(reading.score) or 0 <= reading.score <= 1):
            raise Unclear(f"a stress score outside [0, 1]: {reading.score}")
        try:
            monitor.update(mutate(np.log(close[t] / close[max(t - 1, 0)]), how, rng) if how != "none" else np.zeros(N))
        except BaseException as exc:  # noqa: BLE001
            check_error(exc)
    text = model.to_json()
    cut = data.draw(st.sampled_from(["truncate", "drop_key", "wrong_type", "none"]))
    d = json.loads(text)
    if cut == "truncate":
        text = text[: data.draw(st.integers(0, len(text) - 1))]
    elif cut == "drop_key":
        d.pop(data.draw(st.sampled_from(sorted(d))))
        text = json.dumps(d)
    elif cut == "wrong_type":
        d[data.draw(st.sampled_from(sorted(d)))] = data.draw(st.sampled_from([None, "x", [1, 2], -1, float("nan")]))
        text = json.dumps(d)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "warning.json").write_text(text)
        try:
            WarningModel.load(tmp)
        except BaseException as exc:  # noqa: BLE001
            if cut == "none":
                raise Unclear(f"a saved warning model failed to load: {exc}") from exc
            check_error(exc)
    B, T = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    args = [rng.uniform(-1, 1, (B, T)), rng.normal(0, 0.01, (B, T)), np.full((B, T), 1e-4)]
    run_case(lambda p, r, v: episode_rewards(p, r, v, cost=5e-4), args, data.draw(st.integers(0, 2)),
             data.draw(st.sampled_from(MUTATIONS)), rng, nan_ok=True)
    pool = TaskPool([(TradingTasks(synthetic_regimes("crash", n_days=400, n_assets=2, seed=1), TradingSpec()),
                      None, None, None)], block=data.draw(st.sampled_from([252, 100])))
    length = data.draw(st.sampled_from([5, 21, 1, 0, 60, 200]))
    part = data.draw(st.sampled_from(["adapt", "evaluate", "test"]))
    try:
        ep = pool.episodes(np.zeros(2, np.int64), 3, length, rng, part)
    except BaseException as exc:  # noqa: BLE001
        check_error(exc)
    else:
        if not (np.isfinite(ep.obs).all() and np.isfinite(ep.next_returns).all()):
            raise Unclear("a task's episodes hold a non-finite value")


def head_case(data, rng):
    """The head learner's compiled path (learners/head.py): any task shapes, supports of 0 rows
    included, with one argument mutated."""
    from metarisk_fast.learners import HeadNewton

    D, B = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 5))
    K, Q = data.draw(st.integers(0, 12)), data.draw(st.integers(1, 4))
    torch.manual_seed(int(rng.integers(2 ** 31)))
    learner = HeadNewton(D, (data.draw(st.integers(1, 9)),), width=data.draw(st.integers(1, 6)),
                         loss=data.draw(st.sampled_from(["student_t_nll", "gaussian_nll"])))
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(torch.randn_like(p))
    xs, xq = rng.standard_normal((B, K, D)), rng.standard_normal((B, Q, D))
    ys = np.clip(np.abs(rng.standard_t(5, (B, K, 1))), 0.05, 20)
    which, how = data.draw(st.integers(0, 2)), data.draw(st.sampled_from(MUTATIONS))
    run_case(learner.adapt_predict, [xs, ys, xq], which, how, rng)


TARGETS = {"memory": memory_case, "inner_loop": inner_loop_case, "features": features_case, "data": data_case,
           "applications": applications_case, "head": head_case}


def run(target: str, examples: int, seed: int = 0) -> None:
    case = TARGETS[target]

    @settings(max_examples=examples, deadline=None, derandomize=seed == 0, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data(), st.integers(0, 2 ** 32 - 1))
    def prop(data, s):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case(data, np.random.default_rng(s))

    if seed:
        prop = hypothesis_seed(seed)(prop)
    prop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Fuzz one target of the public API.")
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--examples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0, help="0: the fixed cases CI runs; other: new random cases")
    args = p.parse_args()
    torch.set_num_threads(1)
    run(args.target, args.examples, args.seed)
    print(f"fuzz {args.target}: {args.examples} cases, all clear", flush=True)
    sys.exit(0)
