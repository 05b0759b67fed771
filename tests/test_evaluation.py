"""Each metric against a value computed by hand or a published table."""
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from metarisk_fast import evaluation as E


def test_qlike_forms():
    assert E.qlike([2.0], [1.0])[0] == pytest.approx(2 - np.log(2) - 1)
    assert E.qlike([1.5], [1.5])[0] == 0.0
    assert E.qlike_log([0.0, 2.0], [1.0, 4.0]).tolist() == pytest.approx([0.0, np.log(4) + 0.5])
    # the ranking of the two forms agrees: qlike = qlike_log - ln s - 1
    s, h = np.array([0.3, 2.0]), np.array([0.5, 1.0])
    np.testing.assert_allclose(E.qlike(s, h), E.qlike_log(s, h) - np.log(s) - 1)
    with pytest.raises(ValueError, match="needs s > 0"):
        E.qlike([0.0], [1.0])
    with pytest.raises(ValueError, match="> 0"):
        E.qlike_log([1.0], [0.0])
    assert E.squared_error([3.0], [1.0])[0] == 4.0


def test_diebold_mariano_by_hand():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1, 200), rng.normal(1.2, 1, 200)
    d = a - b
    T = d.size
    dm = d.mean() / np.sqrt(((d - d.mean()) ** 2).mean() / T)
    hln = dm * np.sqrt((T + 1 - 2 + 0) / T)
    res = E.diebold_mariano(a, b, 1)
    assert res.statistic == pytest.approx(hln) and res.statistic < 0
    assert res.pvalue == pytest.approx(2 * stats.t.sf(abs(hln), T - 1))
    # horizon 3 adds two autocovariances and the HLN factor for h = 3
    dc = d - d.mean()
    lrv = dc @ dc / T + 2 * (dc[1:] @ dc[:-1] + dc[2:] @ dc[:-2]) / T
    want = d.mean() / np.sqrt(lrv / T) * np.sqrt((T + 1 - 6 + 3 * 2 / T) / T)
    assert E.diebold_mariano(a, b, 3).statistic == pytest.approx(want)


def test_mincer_zarnowitz_exact_line():
    h = np.linspace(0.5, 2.0, 100)
    mz = E.mincer_zarnowitz(0.5 + 2.0 * h, h)
    assert mz["alpha"] == pytest.approx(0.5) and mz["beta"] == pytest.approx(2.0)
    rng = np.random.default_rng(1)
    h = rng.uniform(0.5, 2, 3000)
    unbiased = E.mincer_zarnowitz(h * rng.chisquare(5, 3000) / 5, h)
    assert unbiased["pvalue"] > 0.01 and abs(unbiased["beta"] - 1) < 0.1


def test_kupiec_transcription_and_test_size():
    n, x, a = 250, 8, 0.01
    lr = -2 * ((n - x) * np.log(1 - a) + x * np.log(a) - (n - x) * np.log(1 - x / n) - x * np.log(x / n))
    hits = np.zeros(n, bool)
    hits[:x] = True
    res = E.kupiec_pof(hits, a)
    assert res["lr"] == pytest.approx(lr) and res["exceedances"] == 8
    # reject at the 5 % test size: LR above chi2(1) 95 % = 3.841, whatever the VaR level
    assert (res["pvalue"] < 0.05) == (lr > 3.841)
    assert E.kupiec_pof(np.zeros(250, bool), 0.01)["lr"] == pytest.approx(-2 * 250 * np.log(0.99))


def test_basel_traffic_light_published_zones():
    def zone(x):
        hits = np.zeros(250, bool)
        hits[:x] = True
        return E.basel_traffic_light(hits, 0.01)["zone"]

    assert [zone(x) for x in (0, 4, 5, 9, 10, 15)] == ["green", "green", "yellow", "yellow", "red", "red"]


def test_christoffersen_detects_clustering():
    spread = np.zeros(500, bool)
    spread[::50] = True
    clustered = np.zeros(500, bool)
    clustered[100:110] = True
    assert E.christoffersen(spread, 0.02)["pvalue_ind"] > 0.2
    res = E.christoffersen(clustered, 0.02)
    assert res["pvalue_ind"] < 1e-3 and res["transitions"] == [488, 1, 1, 9]  # 499 transitions
    assert res["lr_cc"] == pytest.approx(E.kupiec_pof(clustered, 0.02)["lr"] + res["lr_ind"])


def test_var_and_es_against_integration():
    for dist, nu in (("normal", None), ("t", 5.0)):
        var = E.value_at_risk(4.0, 0.025, dist, nu)
        es = E.expected_shortfall(4.0, 0.025, dist, nu)
        if dist == "normal":
            pdf = lambda x: stats.norm.pdf(x, scale=2.0)
        else:
            sc = 2.0 * np.sqrt((nu - 2) / nu)
            pdf = lambda x, sc=sc, nu=nu: stats.t.pdf(x / sc, nu) / sc
        assert integrate.quad(pdf, -np.inf, var)[0] == pytest.approx(0.025, rel=1e-6)
        assert integrate.quad(lambda x, pdf=pdf: x * pdf(x), -np.inf, var)[0] / 0.025 == pytest.approx(es, rel=1e-6)
    assert E.value_at_risk(1.0, 0.01) == pytest.approx(-2.3263478740)
    with pytest.raises(ValueError, match="nu > 2"):
        E.value_at_risk(1.0, 0.01, "t", 2.0)


def test_risk_columns_are_the_var_and_es_of_each_forecast():
    """risk_columns' one pass: each column is sqrt(variance) times the unit-variance VaR / ES, bit
    for bit (value_at_risk / expected_shortfall to rounding), keeps NaN (no forecast) and the
    input's shape, and refuses an infinite or negative variance."""
    v = np.array([[1e-4, np.nan, 0.0], [4e-4, 2.5e-5, 1e-3]])
    ok = ~np.isnan(v)
    for dist, nu, alphas in (("normal", None, None), ("t", 5.0, None), ("t", 5.0, (0.01, 0.025))):
        cols = E.risk_columns(v, dist, nu, alphas)
        for a, kind in ((0.01, "var"), (0.05, "var"), (0.025, "es")) if alphas is None else (
                (a, kind) for a in alphas for kind in ("var", "es")):
            name, fn = f"{kind}_{100 * a:g}".replace(".", "_"), (E.value_at_risk if kind == "var"
                                                                  else E.expected_shortfall)
            np.testing.assert_array_equal(cols[name][ok], np.sqrt(v[ok]) * fn(1.0, a, dist, nu))
            np.testing.assert_allclose(cols[name][ok], fn(v[ok], a, dist, nu), rtol=1e-15, atol=0)
        assert all(c.shape == v.shape and np.isnan(c[0, 1]) for c in cols.values())
    assert list(E.risk_columns(v)) == ["var_1", "var_5", "es_2_5"]
    for bad in (np.inf, -1e-9):
        with pytest.raises(ValueError, match="finite and >= 0"):
            E.risk_columns([1e-4, bad])


def test_risk_column_factors_are_risk_columns_of_a_unit_variance():
    """The names and factors a compiled caller scales by sqrt(variance) are risk_columns' own, bit
    for bit; a bad distribution or nu is refused as there."""
    for dist, nu, alphas in (("normal", None, None), ("t", 5.0, (0.01, 0.025))):
        names, factors = E.risk.risk_column_factors(dist, nu, alphas)
        cols = E.risk_columns(np.ones(1), dist, nu, alphas)
        assert tuple(cols) == names
        np.testing.assert_array_equal(factors, [cols[n][0] for n in names])
    with pytest.raises(ValueError, match="nu > 2"):
        E.risk.risk_column_factors("t", 2.0)
    with pytest.raises(ValueError, match="dist"):
        E.risk.risk_column_factors("cauchy")


def test_acerbi_szekely_z2():
    rng = np.random.default_rng(0)
    var = np.full(2000, 1e-4)
    r = rng.normal(0, 1e-2, 2000)
    right = E.acerbi_szekely_z2(r, var, 0.025)
    assert abs(right["z2"]) < 0.3 and right["pvalue"] > 0.05
    under = E.acerbi_szekely_z2(r * 2, var, 0.025)
    assert under["z2"] < -0.5 and under["pvalue"] < 0.01


def test_fz0_by_hand():
    got = E.fz0_loss([-0.05], [-0.02], [-0.03], 0.025)[0]
    assert got == pytest.approx(0.03 / (0.025 * 0.03) + (-0.02 / -0.03) + np.log(0.03) - 1)
    assert E.fz0_loss([0.01], [-0.02], [-0.03], 0.025)[0] == pytest.approx(2 / 3 + np.log(0.03) - 1)
    with pytest.raises(ValueError, match="negative"):
        E.fz0_loss([0.0], [0.02], [-0.03], 0.025)


def test_vol_targeting_hits_the_target_with_true_variance():
    rng = np.random.default_rng(0)
    sig = np.repeat([0.01, 0.03], 5000)
    asset = np.repeat([0, 1], 5000)
    res = E.vol_target_backtest(rng.normal(0, sig), sig**2, asset, target_annual=0.10)
    assert res["realised_vol"] == pytest.approx(0.10, rel=0.03)
    assert res["turnover"] == pytest.approx(0.0, abs=1e-12)


def test_model_confidence_set_drops_the_bad_model():
    rng = np.random.default_rng(0)
    base = rng.normal(1, 0.1, 600)
    losses = pd.DataFrame({"good": base, "also_good": base + rng.normal(0, 0.01, 600), "bad": base + 0.2})
    p = E.model_confidence_set(losses, reps=300)
    assert p["bad"] < 0.05 and max(p["good"], p["also_good"]) == 1.0


def test_risk_bad_input():
    with pytest.raises(ValueError, match="finite and >= 0"):
        E.value_at_risk([-1.0], 0.01)
    with pytest.raises(ValueError, match="alpha"):
        E.expected_shortfall([1.0], 1.5)
    with pytest.raises(ValueError, match="no VaR exceedance"):
        E.kupiec_pof([], 0.01)
    with pytest.raises(ValueError, match="at least 3"):
        E.diebold_mariano([1.0], [2.0])


def test_loss_by_age_tests_over_listings_and_scores_each_model_on_its_own_days():
    from scipy import stats

    from metarisk_fast.evaluation import listing_test, loss_by_age

    rng = np.random.default_rng(0)
    M = 600
    unit = np.repeat(np.arange(6), 100)
    age = np.tile(np.arange(2, 102), 6)
    realised = rng.gamma(1.0, 1e-4, M)
    nxt = rng.normal(0, 1e-2, M)
    good = np.full(M, 1e-4)
    late = np.where(age > 60, 1.2e-4, np.nan)  # forecasts from age 61 on only
    table = loss_by_age(realised, {"good": good, "late": late}, age, unit, nxt, nu=5.0, compare_with=("good",))
    assert list(table["ages"].unique()) == ["2-20", "21-60", "61-250"]
    late_young = table[(table.model == "late") & (table.ages == "2-20")].iloc[0]
    assert late_young["n"] == 0 and np.isnan(late_young["qlike"])
    row = table[(table.model == "late") & (table.ages == "61-250")].iloc[0]
    m = (age > 60)
    la, lb = np.log(late) + realised / late, np.log(good) + realised / good
    per = pd.Series((la - lb)[m]).groupby(unit[m]).mean()
    ref = stats.ttest_1samp(per, 0.0)
    assert row["n"] == m.sum() and row["listings"] == 6
    assert row["diff_good"] == pytest.approx(per.mean()) and row["p_good"] == pytest.approx(ref.pvalue)
    assert row["hit_0.01_normal"] == pytest.approx(np.mean(nxt[m] < -2.3263478740408408 * np.sqrt(1.2e-4)))
    assert np.isnan(listing_test(la[:100], lb[:100], unit[:100])[0])  # one listing: no test
    with pytest.raises(ValueError, match="age has shape"):
        loss_by_age(realised, {"good": good}, age[:-1], unit, nxt, nu=5.0)
    with pytest.raises(ValueError, match=r"forecasts\['good'\] has shape"):
        loss_by_age(realised, {"good": good[:-1]}, age, unit, nxt, nu=5.0)
