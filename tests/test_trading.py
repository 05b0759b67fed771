"""Trading tasks: the reward kernel against a plain NumPy twin, costs and penalties, episodes
drawn inside their dates, observations from the past only, the synthetic regimes, bad input;
meta-learned policies: the kernel's weighted inner step is the policy-gradient step, and the
point-mass sanity check of ProMP's paper."""
import numpy as np
import pandas as pd
import pytest
import torch

from metarisk_fast.data import DataError
from metarisk_fast.datasets import REGIMES, synthetic_regimes
from metarisk_fast.trading import TradingSpec, TradingTasks, episode_rewards
from metarisk_fast.trading.policy import MetaPolicy, Rollouts, reward_to_go_advantages


def rewards_twin(positions, next_returns, variance, cost, risk_penalty):
    previous = np.concatenate([np.zeros((positions.shape[0], 1)), positions[:, :-1]], axis=1)
    return positions * next_returns - cost * np.abs(positions - previous) - risk_penalty * positions ** 2 * variance


def test_rewards_match_the_twin():
    rng = np.random.default_rng(0)
    p, r, v = rng.uniform(-1, 1, (64, 40)), rng.normal(0, 0.01, (64, 40)), rng.uniform(1e-5, 1e-3, (64, 40))
    np.testing.assert_allclose(episode_rewards(p, r, v, cost=5e-4, risk_penalty=2.0),
                               rewards_twin(p, r, v, 5e-4, 2.0), rtol=1e-13, atol=1e-18)


def test_a_held_position_pays_the_cost_once():
    r = np.full((1, 10), 0.001)
    got = episode_rewards(np.full((1, 10), 0.5), r, np.zeros((1, 10)), cost=1e-3)
    np.testing.assert_allclose(got[0], [0.5 * 0.001 - 0.5e-3] + [0.5 * 0.001] * 9)
    flip = np.tile([1.0, -1.0], (1, 5))
    np.testing.assert_allclose(episode_rewards(flip, r, np.zeros((1, 10)), cost=1e-3)[0, 1:],
                               flip[0, 1:] * 0.001 - 2e-3)


def test_bad_positions_are_named():
    r, v = np.zeros((2, 5)), np.zeros((2, 5))
    with pytest.raises(ValueError, match="episode 1, bar 3"):
        p = np.zeros((2, 5))
        p[1, 3] = np.nan
        episode_rewards(p, r, v, cost=0.0)
    with pytest.raises(ValueError, match="one shape"):
        episode_rewards(np.zeros((2, 4)), r, v, cost=0.0)
    with pytest.raises(ValueError, match="2-D float"):
        episode_rewards(np.zeros(5), r, v, cost=0.0)
    with pytest.raises(ValueError, match="cost"):
        episode_rewards(np.zeros((2, 5)), r, v, cost=-1.0)
    with pytest.raises(ValueError, match="length"):
        TradingSpec(length=1)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        TradingTasks(synthetic_regimes("crash", n_days=200, n_assets=2)).episodes(n=0)


def test_episodes_stay_in_their_dates_and_are_clipped():
    panel = synthetic_regimes("trending", n_days=400, n_assets=4, seed=1)
    tasks = TradingTasks(panel, TradingSpec(length=30, max_position=2.0))
    ep = tasks.episodes(assets=panel.assets[:2], start=panel.dates[100], end=panel.dates[300], n=500, seed=3)
    assert ep.obs.shape == (500, 30, tasks.n_obs) and ep.obs.dtype == np.float32
    assert np.isfinite(ep.obs).all() and np.isfinite(ep.next_returns).all()
    assert (ep.rows.min() >= 100) and (ep.rows.max() + 1 <= 300)  # the last next return is realised by end
    assert set(np.unique(ep.asset)) <= {0, 1}
    assert (np.diff(ep.rows, axis=1) == 1).all()
    big = ep.rewards(np.full((500, 30), 10.0))
    np.testing.assert_allclose(big, ep.rewards(np.full((500, 30), 2.0)))


def test_observations_use_only_the_past():
    panel = synthetic_regimes("crash", n_days=300, n_assets=3, seed=2)
    base = TradingTasks(panel)
    t = 200
    close = panel.close.copy()
    close[t + 1:] *= np.exp(np.random.default_rng(0).normal(0, 0.05, close[t + 1:].shape))
    from dataclasses import replace
    moved = TradingTasks(replace(panel, close=close))
    np.testing.assert_array_equal(moved.obs[: t + 1], base.obs[: t + 1])
    np.testing.assert_array_equal(moved.next_returns[:t], base.next_returns[:t])
    assert not np.allclose(moved.obs[t + 1:], base.obs[t + 1:], equal_nan=True)


def test_a_forecast_column_is_checked_and_used():
    panel = synthetic_regimes("high_volatility", n_days=200, n_assets=2, seed=0)
    f = np.full(panel.close.shape, 4e-4)
    tasks = TradingTasks(panel, forecast=f)
    assert tasks.n_obs == TradingTasks(panel).n_obs + 1
    with pytest.raises(ValueError, match="> 0"):
        TradingTasks(panel, forecast=-f)
    with pytest.raises(ValueError, match="shape"):
        TradingTasks(panel, forecast=f[:10])


def test_regimes_have_their_signatures():
    r = {g: np.diff(np.log(synthetic_regimes(g, n_days=1000, n_assets=16, seed=0).close), axis=0) for g in REGIMES}
    monthly = {g: x[: len(x) // 20 * 20].reshape(-1, 20, x.shape[1]).sum(axis=1) for g, x in r.items()}

    def lag1(x):
        return np.mean([np.corrcoef(x[1:, j], x[:-1, j])[0, 1] for j in range(x.shape[1])])

    assert lag1(monthly["trending"]) > 0.03 and lag1(monthly["mean_reverting"]) < -0.2
    assert r["high_volatility"].std() > 1.5 * r["mean_reverting"].std()
    worst_week = np.convolve(r["crash"][:, 0], np.ones(5), "valid").min()
    assert worst_week < -0.12
    np.testing.assert_array_equal(synthetic_regimes("crash", seed=5).close, synthetic_regimes("crash", seed=5).close)
    with pytest.raises(ValueError, match="regime"):
        synthetic_regimes("sideways")


# ---------------------------------------------------------------- meta-learned policies

def point_mass_rollouts(policy, goals, episodes, bars, rng, adapted=None):
    """ProMP's 2-D point-mass navigation: start at 0, move by the action clipped to 0.1 a step,
    reward -|position - goal|; the goal is the task and is not observed."""
    B = len(goals)
    s = np.zeros((B, episodes, 2))
    obs, acts, rews = [], [], []
    for _ in range(bars):  # the states depend on the actions: a loop over steps (a test helper)
        o = torch.from_numpy(s.copy())
        a = policy.act(o, rng, adapted).numpy()
        s = s + np.clip(a, -0.1, 0.1)
        obs.append(o.numpy())
        acts.append(a)
        rews.append(-np.linalg.norm(s - goals[:, None, :], axis=-1))
    obs, acts, rews = np.stack(obs, 2), np.stack(acts, 2), np.stack(rews, 2)
    rollouts = Rollouts(torch.from_numpy(obs.reshape(B, -1, 2)), torch.from_numpy(acts.reshape(B, -1, 2)),
                        torch.from_numpy(reward_to_go_advantages(rews).reshape(B, -1)))
    return rollouts, rews.sum(-1).mean()


def _random_policy(n_actions: int, std: float, **kw) -> MetaPolicy:
    """A policy on 3 observations with N(0, std) weights (0: the zero-output start)."""
    policy = MetaPolicy(3, n_actions, hidden=(8,), **kw)
    if std:
        with torch.no_grad():
            for p in policy.net.parameters():
                p.normal_(0, std)
    return policy


def _random_rollouts(g: torch.Generator, tasks: int, rows: int, n_actions: int) -> Rollouts:
    """Standard normal observations (3 a row), actions and advantages, float64."""
    return Rollouts(torch.randn(tasks, rows, 3, dtype=torch.float64, generator=g),
                    torch.randn(tasks, rows, n_actions, dtype=torch.float64, generator=g),
                    torch.randn(tasks, rows, dtype=torch.float64, generator=g))


def _functional_mean(policy: MetaPolicy):
    """The policy's mean action as a function of a list of its parameters (for torch twins)."""
    names = [n for n, _ in policy.net.named_parameters()]
    return lambda ps, x: torch.func.functional_call(policy.net, dict(zip(names, ps)), (x,))


def test_the_inner_step_is_the_policy_gradient_step():
    """adapt() = theta + lr * grad of mean_r A_r log N(a_r; mu_theta(s_r), sigma^2 I), by autograd."""
    torch.manual_seed(0)
    policy = _random_policy(2, 0.3, sigma=0.4, inner_lr=0.05)
    r = _random_rollouts(torch.Generator().manual_seed(1), 4, 12, 2)
    adapted = policy.adapt(r)
    mean = _functional_mean(policy)
    for b in range(4):
        params = [p.detach().clone().requires_grad_() for p in policy.net.parameters()]
        mu = mean(params, r.obs[b])
        log_pi = -((r.actions[b] - mu) ** 2).sum(-1) / (2 * 0.4 ** 2)
        grads = torch.autograd.grad((r.advantages[b] * log_pi).mean(), params)
        for a, p, gr in zip(adapted, params, grads):
            torch.testing.assert_close(a[b], p + 0.05 * gr, rtol=1e-10, atol=1e-12)


def test_the_promp_loss_has_the_clipped_objectives_gradient():
    """promp_loss's gradient = minus the gradient of ProMP's objective written in plain torch
    (inner step by autograd with create_graph, the clipped ratio objective of the adapted
    policy, the KL penalty of the pre-update policy), at parameters moved away from those that
    sampled (ratios off 1, some clipped); at the sampling parameters it is meta_loss's."""
    torch.manual_seed(0)
    sigma, lr, clip, kl_coef = 0.4, 0.05, 0.1, 0.7
    policy = _random_policy(2, 0.3, sigma=sigma, inner_lr=lr)
    g = torch.Generator().manual_seed(1)
    sup, qry = _random_rollouts(g, 4, 12, 2), _random_rollouts(g, 4, 12, 2)
    old_q, old_s = policy.mean(qry.obs, policy.adapt(sup)), policy.mean(sup.obs)
    params = list(policy.net.parameters())

    def grads(loss):
        return torch.autograd.grad(loss, params)

    for a, b in zip(grads(policy.promp_loss(sup, qry, old_q, old_s, clip, kl_coef)), grads(policy.meta_loss(sup, qry))):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        for p in params:
            p.add_(0.15 * torch.randn_like(p))
    mu = _functional_mean(policy)
    total = 0.0
    for b in range(4):
        log_pi = -((sup.actions[b] - mu(params, sup.obs[b])) ** 2).sum(-1) / (2 * sigma ** 2)
        inner = torch.autograd.grad((sup.advantages[b] * log_pi).mean(), params, create_graph=True)
        adapted = [p + lr * gr for p, gr in zip(params, inner)]
        rho = torch.exp(policy.log_ratio(mu(adapted, qry.obs[b]), old_q[b], qry.actions[b]))
        A = qry.advantages[b]
        total = total - torch.minimum(rho * A, rho.clamp(1 - clip, 1 + clip) * A).mean() / 4
    kl = ((mu(params, sup.obs) - old_s) ** 2).sum(-1).mean() / (2 * sigma ** 2)
    rho_now = torch.exp(policy.log_ratio(policy.mean(qry.obs, policy.adapt(sup)), old_q, qry.actions))
    assert ((rho_now > 1 + clip) | (rho_now < 1 - clip)).any() and not torch.allclose(rho_now, torch.ones(1).double())
    for a, b in zip(grads(policy.promp_loss(sup, qry, old_q, old_s, clip, kl_coef)), grads(total + kl_coef * kl)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)
    with pytest.raises(ValueError, match="clip"):
        policy.promp_loss(sup, qry, old_q, old_s, clip=1.5)


def test_the_lvc_meta_gradient_is_the_dice_twins():
    """With lvc, meta_loss's gradient = the meta-gradient written in plain torch with ProMP's
    low-variance curvature inner objective mean_r A_r exp(log pi_r - stop(log pi_r)) (one inner
    step by autograd with create_graph, then the weighted query loss of the adapted policy)."""
    torch.manual_seed(0)
    sigma, lr = 0.5, 0.2
    policy = _random_policy(2, 0.4, sigma=sigma, inner_lr=lr, lvc=True)
    g = torch.Generator().manual_seed(3)
    sup, qry = _random_rollouts(g, 3, 10, 2), _random_rollouts(g, 3, 10, 2)
    params = list(policy.net.parameters())
    mu = _functional_mean(policy)
    total = 0.0
    for b in range(3):
        log_pi = -((sup.actions[b] - mu(params, sup.obs[b])) ** 2).sum(-1) / (2 * sigma ** 2)
        inner = (sup.advantages[b] * torch.exp(log_pi - log_pi.detach())).mean()
        grads = torch.autograd.grad(inner, params, create_graph=True)
        adapted = [p + lr * gr for p, gr in zip(params, grads)]
        w = qry.advantages[b] * 2 / (2 * sigma ** 2)
        total = total + (w[:, None] * (mu(adapted, qry.obs[b]) - qry.actions[b]) ** 2).mean() / 3
    want = torch.autograd.grad(total, params)
    got = torch.autograd.grad(policy.meta_loss(sup, qry), params)
    policy.lvc = False
    plain = torch.autograd.grad(policy.meta_loss(sup, qry), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(plain, want))  # the correction is not nothing
    with pytest.raises(ValueError, match="one second-order inner step"):
        MetaPolicy(3, 2, inner_steps=2, lvc=True)


@pytest.mark.parametrize("mode", ["second_order", "first_order", "promp"])
def test_point_mass_post_adaptation_return_rises_above_pre_adaptation(mode):
    """The sanity check of ProMP's paper: during meta-training on point-mass goals, the return
    after one policy-gradient step rises above the return before it (MAML-PG: one outer step a
    batch; ProMP: three, on the clipped objective, with the low-variance curvature)."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    policy = MetaPolicy(2, 2, hidden=(32, 32), sigma=0.1, inner_lr=0.1,
                        mode="second_order" if mode == "promp" else mode, lvc=mode == "promp")
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    history = []
    for _ in range(60):
        goals = rng.uniform(-0.5, 0.5, (20, 2))
        support, pre = point_mass_rollouts(policy, goals, 10, 20, rng)
        adapted = policy.adapt(support)
        query, post = point_mass_rollouts(policy, goals, 10, 20, rng, adapted)
        old_q, old_s = policy.mean(query.obs, adapted), policy.mean(support.obs)
        for _ in range(3 if mode == "promp" else 1):
            loss = (policy.promp_loss(support, query, old_q, old_s, clip=0.2, kl_coef=0.01) if mode == "promp"
                    else policy.meta_loss(support, query))
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append((pre, post))
    h = np.array(history)
    early, late = h[:10].mean(0), h[-10:].mean(0)
    assert early[1] < early[0]  # untrained: one step of lr 0.1 overshoots
    margin = 1.0 if mode == "promp" else 3.0  # ProMP's pre-update return stays higher (seeds 0-2: +2.1 to +5.4)
    assert late[1] > late[0] + margin and late[1] > early[1] + 5.0


# ---------------------------------------------------------------- tasks, evaluation, command

def _pool(block=252):
    from metarisk_fast.trading import TaskPool

    spec = TradingSpec(length=21, cost=5e-4)
    return TaskPool([(TradingTasks(synthetic_regimes("trending", n_days=900, n_assets=3, seed=1), spec), None, None,
                      None),
                     (TradingTasks(synthetic_regimes("crash", n_days=700, n_assets=2, seed=1), spec), ["CRAS001"],
                      None, "2001-12-31")], block=block)


def test_task_blocks_and_their_halves_keep_time_order():
    """Blocks lie in their source's dates and usable bars; adaptation episodes end (next return
    included) before the evaluation half starts; the evaluation episode is the second half."""
    pool = _pool()
    assert len(pool) > 0 and {n.split(":")[1] for n in pool.names} == {"TREN000", "TREN001", "TREN002", "CRAS001"}
    crash = [i for i in range(len(pool)) if pool.names[pool.column[i]].endswith("CRAS001")]
    assert crash and all(pool.first[i] + 252 <= 520 for i in crash)  # 2001-12-31 is row ~520 of the crash panel
    rng = np.random.default_rng(0)
    tasks = np.arange(len(pool))
    ep = pool.episodes(tasks, 6, 21, rng, "adapt")
    first = np.repeat(pool.first[tasks], 6)[:, None]
    assert ((ep.rows >= first) & (ep.rows + 1 < first + 126)).all()  # r_{t+1} realised before the second half
    assert np.isfinite(ep.obs).all() and np.isfinite(ep.next_returns).all()
    ev = pool.evaluation(tasks)
    np.testing.assert_array_equal(ev.rows[:, 0], pool.first[tasks] + 126)
    assert ev.rows.shape[1] == 125 and (ev.rows + 1 < pool.first[tasks][:, None] + 252).all()
    with pytest.raises(ValueError, match="part"):
        pool.episodes(tasks, 2, 200, rng, "adapt")
    with pytest.raises(DataError, match="no block"):
        _pool(block=5000)


def test_strategy_metrics_follow_their_definitions():
    from metarisk_fast.trading.evaluate import strategy_metrics

    ep = _pool().evaluation([0, 1])
    pos = np.where(np.arange(ep.next_returns.shape[1]) % 10 < 5, 0.5, -0.25)[None].repeat(2, 0)
    m = strategy_metrics(pos, ep)
    pnl = pos * ep.next_returns - 5e-4 * np.abs(np.diff(pos, axis=1, prepend=0.0))
    np.testing.assert_allclose(m["sharpe"], pnl.mean(1) / pnl.std(1, ddof=1) * np.sqrt(252))
    np.testing.assert_allclose(m["turnover"], np.abs(np.diff(pos, axis=1, prepend=0.0)).mean(1))
    wealth = np.cumsum(pnl, axis=1)
    want = [max(max(0.0, wealth[b, :t + 1].max()) - wealth[b, t] for t in range(wealth.shape[1])) for b in range(2)]
    np.testing.assert_allclose(m["max_drawdown"], want)


def test_one_ppo_epoch_from_the_shared_policy_is_the_policy_gradient_step():
    """At the sampling parameters every ratio is 1 and no clip binds: one PPO step is adapt()."""
    from metarisk_fast.trading.evaluate import ppo_fine_tune

    torch.manual_seed(0)
    policy = _random_policy(1, 0.0, sigma=0.4, inner_lr=0.3)
    r = _random_rollouts(torch.Generator().manual_seed(2), 3, 10, 1)
    for a, b in zip(ppo_fine_tune(policy, r, 1), policy.adapt(r)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    two = ppo_fine_tune(policy, r, 2)
    assert not torch.allclose(two[0], policy.adapt(r)[0])


def test_trade_commands_end_to_end(tmp_path, monkeypatch):
    """train (ProMP and pooled), evaluate, and a two-seed demo write their files; every seed is
    reported; a damaged policy directory is a one-line error."""
    import json

    from metarisk_fast.cli import main
    from metarisk_fast.trading import jobs

    pool = _pool()
    monkeypatch.setattr(jobs, "task_pools", lambda *a, **k: (pool, {"regimes": pool}))
    assert main(["trade", "train", "--algorithm", "promp", "--iterations", "2", "--out", str(tmp_path / "p"),
                 "--quiet"]) == 0
    assert main(["trade", "train", "--algorithm", "pooled", "--iterations", "2", "--out", str(tmp_path / "q"),
                 "--quiet"]) == 0
    assert main(["trade", "evaluate", "--policy", str(tmp_path / "p"), "--pooled", str(tmp_path / "q"),
                 "--out", str(tmp_path / "e"), "--quiet"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert "promp (p), after adaptation" in report["groups"]["regimes"]["methods"]
    assert main(["trade", "demo", "--seeds", "2", "--iterations", "3", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    md = (tmp_path / "d" / "report.md").read_text()
    assert "seed 0" in md and "seed 1" in md and "after - PPO fine-tuned" in md
    assert (tmp_path / "d" / "learning_curve.png").stat().st_size > 0
    rows = pd.read_csv(tmp_path / "d" / "results.csv")
    assert set(rows.seed) == {0, 1} and {"buy and hold", "volatility targeting", "pooled"} <= set(rows.method)
    (tmp_path / "p" / "policy.json").write_text("{")
    assert main(["trade", "evaluate", "--policy", str(tmp_path / "p"), "--pooled", str(tmp_path / "q"),
                 "--out", str(tmp_path / "e2"), "--quiet"]) == 2
    assert main(["trade", "evaluate", "--policy", str(tmp_path / "q"), "--pooled", str(tmp_path / "q"),
                 "--out", str(tmp_path / "e3"), "--quiet"]) == 0
    assert main(["trade", "evaluate", "--policy", str(tmp_path / "q"), "--pooled", str(tmp_path / "d"),
                 "--out", str(tmp_path / "e4"), "--quiet"]) == 2
    assert main(["trade", "train", "--algorithm", "maml", "--iterations", "1", "--out", str(tmp_path / "m"),
                 "--model", str(tmp_path / "variance_model"), "--quiet"]) == 0
    assert json.loads((tmp_path / "m" / "policy.json").read_text())["model"] == str(tmp_path / "variance_model")
    assert main(["trade", "evaluate", "--policy", str(tmp_path / "m"), "--pooled", str(tmp_path / "q"),
                 "--out", str(tmp_path / "e5"), "--quiet"]) == 2  # observations of another model


def test_a_variance_model_forecast_joins_the_observation(tmp_path):
    """With a model, each bar's observation ends with log(forecast / EWMA variance) of the
    model's forecast made from data up to that bar (`metarisk forecast`'s number)."""
    from metarisk_fast.forecasting import MetaForecaster, load_model, make_learner, save_model
    from metarisk_fast.tasks import EpisodeBuilder, TaskSpec
    from metarisk_fast.trading import jobs

    torch.manual_seed(0)
    learner = make_learner("maml", TaskSpec().n_features, (8,), 0.05, 1)
    save_model(tmp_path / "v", "maml", learner, TaskSpec(), history=60, hidden=(8,), info={})
    panel = synthetic_regimes("crash", n_days=400, n_assets=3, seed=2)
    forecast = jobs._forecaster(tmp_path / "v")(panel)
    loaded, spec, meta = load_model(tmp_path / "v")
    want = MetaForecaster(loaded, 60).predict(EpisodeBuilder(panel, spec), np.array([1]), np.array([300]))[0]
    assert forecast.shape == (400, 3) and forecast[300, 1] == want and np.isfinite(forecast[200:]).all()
    with_model = TradingTasks(panel, TradingSpec(), forecast=forecast)
    plain = TradingTasks(panel, TradingSpec())
    assert with_model.n_obs == plain.n_obs + 1
    np.testing.assert_allclose(with_model.obs[300, 1, -1], np.clip(np.log(want / plain.variance[300, 1]), -8, 8),
                               rtol=1e-5)
