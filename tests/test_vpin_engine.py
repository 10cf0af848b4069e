"""VPIN engine (tickwire.engines.vpin) against a straightforward loop
implementation written from Easley, Lopez de Prado and O'Hara (2012) on the
real LOBSTER days, the streaming state against the batch function under
random batch splits, BVC accuracy against the true aggressor sides (pinned),
and validation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from tickwire.engines import vpin
from tickwire.engines.vpin import Buckets, VpinParameters, VpinState
from tickwire.feeds import lobster

AAPL = "lobster-aapl-2012-06-21-l1"
AMZN = "lobster-amzn-2012-06-21-l1"
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def days() -> dict[str, lobster.Trades]:
    return {ds: lobster.load_trades(lobster.find_day(ds)) for ds in (AAPL, AMZN)}


# --------------------------------------------------------------------------
# the reference: loops over bars and trades, as the paper describes them
# --------------------------------------------------------------------------
def reference_vpin(
    t: lobster.Trades, v: float, n: int, bar_ns: int, history: int, cdf=stats.norm.cdf
) -> dict[str, np.ndarray]:
    """Bars by pandas groupby; expanding population std of the bar price
    change; buckets filled bar by bar (and trade by trade for the true side)
    in plain Python loops; VPIN by pandas rolling mean; Kyle's lambda by
    np.polyfit per window; CDF rank by counting."""
    df = pd.DataFrame({"bar": t.ts_ns // bar_ns, "price": t.price, "size": t.size})
    g = df.groupby("bar", sort=True)
    bars = pd.DataFrame({"volume": g["size"].sum(), "close": g["price"].last()}).iloc[:-1]
    closes = bars["close"].to_numpy()
    dp = np.diff(np.concatenate([[t.price[0]], closes]))
    buy_frac = []
    for i in range(len(dp)):
        sigma = np.std(dp[: i + 1])
        buy_frac.append(cdf(dp[i] / sigma) if sigma > 0 else 0.5)
    bvc, cur_buy, cur_vol = [], 0.0, 0.0
    for vol, f in zip(bars["volume"], buy_frac, strict=True):
        while vol > 1e-9:
            take = min(vol, v - cur_vol)
            cur_buy += take * f
            cur_vol += take
            vol -= take
            if cur_vol >= v * (1 - 1e-12):
                bvc.append(cur_buy)
                cur_buy = cur_vol = 0.0
    true, end_ts, end_price = [], [], []
    cur_buy = cur_vol = 0.0
    for ts, px, size, side in zip(t.ts_ns, t.price, t.size, t.aggressor_side, strict=True):
        while size > 1e-9:
            take = min(size, v - cur_vol)
            cur_buy += take if side > 0 else 0.0
            cur_vol += take
            size -= take
            if cur_vol >= v * (1 - 1e-12):
                true.append(cur_buy)
                end_ts.append(ts)
                end_price.append(px)
                cur_buy = cur_vol = 0.0
    k = len(bvc)
    bvc = np.array(bvc)
    true = np.array(true[:k])
    oi_bvc = np.abs(2 * bvc - v) / v
    vpin_bvc = pd.Series(oi_bvc).rolling(n).mean().to_numpy()
    vpin_true = pd.Series(np.abs(2 * true - v) / v).rolling(n).mean().to_numpy()
    end_price = np.array(end_price[:k])
    dprice = np.diff(np.concatenate([[t.price[0]], end_price]))
    signed = 2 * bvc - v
    lam = np.full(k, np.nan)
    for i in range(n - 1, k):
        lam[i] = np.polyfit(signed[i - n + 1 : i + 1], dprice[i - n + 1 : i + 1], 1)[0]
    rank = np.full(k, np.nan)
    defined = [x for x in vpin_bvc if not np.isnan(x)]
    for j, i in enumerate(range(k - len(defined), k)):
        past = defined[max(0, j - history + 1) : j + 1]
        rank[i] = sum(x <= vpin_bvc[i] for x in past) / len(past)
    rv = math.sqrt(np.sum(np.diff(np.log(np.concatenate([[t.price[0]], closes]))) ** 2))
    return {
        "bvc_buy_volume": bvc,
        "true_buy_volume": true,
        "end_ts_ns": np.array(end_ts[:k]),
        "end_price": end_price,
        "vpin": vpin_bvc,
        "vpin_true_side": vpin_true,
        "kyle_lambda": lam,
        "cdf_rank": rank,
        "realised_volatility": rv,
        "bars": len(bars),
    }


@pytest.mark.parametrize("dataset", [AAPL, AMZN])
def test_engine_matches_the_loop_reference_on_a_lobster_day(days, dataset) -> None:
    t = days[dataset]
    v = float(t.size.sum() / 250)
    params = VpinParameters(bucket_volume=v, bar_ns=10 * SECOND, cdf_history=100)
    ref = reference_vpin(t, v, 50, 10 * SECOND, 100)
    r = vpin.compute_vpin(t.ts_ns, t.price, t.size, t.aggressor_side, params)
    b = r.buckets
    assert len(b) == len(ref["bvc_buy_volume"]) > 200
    assert r.bars == ref["bars"]
    np.testing.assert_array_equal(b.index, np.arange(len(b)))
    np.testing.assert_array_equal(b.end_ts_ns, ref["end_ts_ns"])
    np.testing.assert_array_equal(b.end_price, ref["end_price"])
    np.testing.assert_allclose(b.bvc_buy_volume, ref["bvc_buy_volume"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(b.true_buy_volume, ref["true_buy_volume"], rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(b.buy_volume, b.bvc_buy_volume)
    np.testing.assert_allclose(b.vpin, ref["vpin"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.vpin_true_side, ref["vpin_true_side"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.kyle_lambda, ref["kyle_lambda"], rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(b.cdf_rank, ref["cdf_rank"], rtol=1e-12)
    np.testing.assert_allclose(
        b.order_imbalance, (2 * ref["bvc_buy_volume"] - v) / v, rtol=1e-9, atol=1e-12
    )
    assert r.realised_volatility == pytest.approx(ref["realised_volatility"], rel=1e-12)
    # VPIN is a mean of |imbalance| in [0, 1]; ranks in (0, 1]
    defined = ~np.isnan(b.vpin)
    assert defined.sum() == len(b) - 49
    assert np.all((b.vpin[defined] >= 0) & (b.vpin[defined] <= 1))
    assert np.all((b.cdf_rank[defined] > 0) & (b.cdf_rank[defined] <= 1))


def test_student_t_and_fixed_sigma_match_the_reference(days) -> None:
    t = days[AMZN]
    v = float(t.size.sum() / 100)
    dof = 0.25
    ref = reference_vpin(t, v, 20, 60 * SECOND, 10_000, cdf=lambda z: stats.t.cdf(z, dof))
    p = VpinParameters(bucket_volume=v, window_buckets=20, cdf="student_t", degrees_of_freedom=dof)
    b = vpin.compute_vpin(t.ts_ns, t.price, t.size, None, p).buckets
    np.testing.assert_allclose(b.bvc_buy_volume, ref["bvc_buy_volume"], rtol=1e-9, atol=1e-6)
    assert np.isnan(b.true_buy_volume).all() and np.isnan(b.vpin_true_side).all()
    # A fixed sigma classifies every bar with Z(dP / sigma).
    fixed = VpinParameters(bucket_volume=v, window_buckets=20, sigma=0.05)
    bars = pd.DataFrame({"bar": t.ts_ns // (60 * SECOND), "p": t.price, "s": t.size})
    g = bars.groupby("bar")
    closes, vols = g["p"].last().to_numpy()[:-1], g["s"].sum().to_numpy()[:-1]
    frac = stats.norm.cdf(np.diff(np.concatenate([[t.price[0]], closes])) / 0.05)
    cum_buy = np.concatenate([[0.0], np.cumsum(frac * vols)])
    cum_vol = np.concatenate([[0.0], np.cumsum(vols)])
    edges = np.arange(1, int(cum_vol[-1] // v) + 1) * v
    expected = np.diff(np.concatenate([[0.0], np.interp(edges, cum_vol, cum_buy)]))
    got = vpin.compute_vpin(t.ts_ns, t.price, t.size, None, fixed).buckets.bvc_buy_volume
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_a_hand_made_session_gives_the_closed_form() -> None:
    """Three one-minute bars of 100 shares each, bucket 150 shares, sigma fixed at 1:
    bar 1 (dP=+1 vs the first trade) buys Z(1) = 0.8413 of its volume, bar 2
    (dP=-1) Z(-1); bar 3 stays open (no later trade), so only bucket 0 is complete."""
    ts = np.array([0, 30, 60, 90, 120, 125], dtype=np.int64) * SECOND
    price = np.array([10.0, 11.0, 10.5, 10.0, 10.0, 10.0])
    size = np.array([50.0, 50.0, 50.0, 50.0, 50.0, 50.0])
    side = np.array([1, 1, -1, -1, 1, 1])
    p = VpinParameters(bucket_volume=150.0, window_buckets=1, sigma=1.0)
    r = vpin.compute_vpin(ts, price, size, side, p)
    z1, zm1 = stats.norm.cdf(1.0), stats.norm.cdf(-1.0)
    assert len(r.buckets) == 1
    b = r.buckets
    assert b.bvc_buy_volume[0] == pytest.approx(100 * z1 + 50 * zm1)
    assert b.true_buy_volume[0] == 100.0
    assert b.end_ts_ns[0] == 60 * SECOND and b.end_price[0] == 10.5
    assert b.vpin[0] == pytest.approx(abs(2 * (100 * z1 + 50 * zm1) - 150) / 150)
    assert r.bars == 2
    assert r.realised_volatility == pytest.approx(math.hypot(math.log(1.1), math.log(10 / 11)))
    # One more trade closes bar 3 and completes bucket 1.
    state = VpinState(p)
    state.update(ts, price, size, side)
    more = state.update(np.array([180 * SECOND]), np.array([10.0]), np.array([1.0]), np.array([1]))
    assert len(more) == 1 and more.index[0] == 1
    assert more.bvc_buy_volume[0] == pytest.approx(50 * zm1 + 100 * 0.5)


# --------------------------------------------------------------------------
# streaming == batch, bit for bit, whatever the splits
# --------------------------------------------------------------------------
def _feed(state: VpinState, t: lobster.Trades, cuts: list[int], sides: bool = True) -> Buckets:
    edges = [0, *sorted(set(cuts)), len(t)]
    parts = []
    for a, b in itertools.pairwise(edges):
        side = t.aggressor_side[a:b] if sides else None
        parts.append(state.update(t.ts_ns[a:b], t.price[a:b], t.size[a:b], side))
    return Buckets.concat(parts)


def assert_same_buckets(a: Buckets, b: Buckets) -> None:
    for name in Buckets.COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=True), name


def assert_same_state(a: VpinState, b: VpinState) -> None:
    """Every entry of the snapshots equal (realised volatility, sigma sums, ...)."""
    x, y = a.to_arrays(), b.to_arrays()
    assert x.keys() == y.keys()
    for k in x:
        assert np.array_equal(x[k], y[k], equal_nan=True), k


@pytest.fixture(scope="module")
def morning(days) -> lobster.Trades:
    """The first 6,000 AAPL executions (about 40 minutes)."""
    t = days[AAPL]
    k = 6_000
    return lobster.Trades(t.symbol, t.ts_ns[:k], t.price[:k], t.size[:k], t.aggressor_side[:k])


PARAMS = [
    VpinParameters(bucket_volume=2_500.0, window_buckets=10, bar_ns=5 * SECOND, cdf_history=30),
    VpinParameters(
        bucket_volume=777.7,
        window_buckets=50,
        bar_ns=SECOND,
        cdf="student_t",
        degrees_of_freedom=0.25,
        classification="true_side",
    ),
    VpinParameters(bucket_volume=10_000.0, window_buckets=3, sigma=0.02),
]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts=st.lists(st.integers(0, 6_000), max_size=40),
    which=st.integers(0, len(PARAMS) - 1),
)
def test_stream_equals_batch_bucket_by_bucket_under_random_splits(morning, cuts, which) -> None:
    params = PARAMS[which]
    whole, final = vpin.compute_buckets(
        morning.ts_ns, morning.price, morning.size, morning.aggressor_side, params
    )
    assert len(whole) > 10
    state = VpinState(params)
    assert_same_buckets(_feed(state, morning, cuts), whole)
    assert_same_state(state, final)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(0, 2_000), max_size=25),
)
def test_stream_equals_batch_with_fractional_sizes_and_equal_times(seed, cuts) -> None:
    rng = np.random.default_rng(seed)
    n = 2_000
    ts = np.cumsum(rng.integers(0, 3 * SECOND, n))  # repeated times included
    price = 50 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    size = rng.exponential(120.0, n) + 0.01
    side = rng.choice([-1, 1], n)
    t = lobster.Trades("X", ts.astype(np.int64), price, size, side.astype(np.int8))
    params = VpinParameters(bucket_volume=float(rng.uniform(50, 3_000)), window_buckets=7,
                            bar_ns=int(rng.integers(1, 30)) * SECOND, cdf_history=11)  # fmt: skip
    whole, final = vpin.compute_buckets(ts, price, size, side, params)
    state = VpinState(params)
    assert_same_buckets(_feed(state, t, cuts), whole)
    assert_same_state(state, final)


def test_a_snapshot_restored_mid_stream_continues_identically(morning) -> None:
    params = PARAMS[0]
    whole, _ = vpin.compute_buckets(
        morning.ts_ns, morning.price, morning.size, morning.aggressor_side, params
    )
    first = VpinState(params)
    head = _feed(first, morning, [1_000, 2_345])  # all of it, in three parts
    assert_same_buckets(head, whole)
    s = VpinState(params)
    a = s.update(morning.ts_ns[:2_345], morning.price[:2_345], morning.size[:2_345],
                 morning.aggressor_side[:2_345])  # fmt: skip
    restored = VpinState.from_arrays(params, {k: v.copy() for k, v in s.to_arrays().items()})
    b = restored.update(morning.ts_ns[2_345:], morning.price[2_345:], morning.size[2_345:],
                        morning.aggressor_side[2_345:])  # fmt: skip
    assert_same_buckets(Buckets.concat([a, b]), whole)


def test_state_stays_bounded_and_a_bad_snapshot_names_the_entry(morning) -> None:
    params = replace(PARAMS[0], window_buckets=5, cdf_history=7)
    s = VpinState(params)
    out = s.update(morning.ts_ns, morning.price, morning.size, morning.aggressor_side)
    assert len(out) > 50
    assert s.window.shape == (5, 4)
    assert s.vpin_history.size == 6
    assert s.pending_end_ts_ns.size <= 2  # buckets waiting only for the open bar
    arrays = s.to_arrays()
    with pytest.raises(ValueError, match=r"^state\.window:"):
        VpinState.from_arrays(params, {**arrays, "window": np.zeros((5, 9))})
    with pytest.raises(ValueError, match=r"^state\.cum_volume: missing"):
        VpinState.from_arrays(params, {k: v for k, v in arrays.items() if k != "cum_volume"})


# --------------------------------------------------------------------------
# BVC against the true aggressor sides (numbers in the README)
# --------------------------------------------------------------------------
#: (dataset, volume divisor, bar seconds) -> (accuracy, VPIN correlation, VPIN MAD).
#: V = the day's executed volume / divisor, n = 50, normal CDF, expanding sigma.
PINNED = {
    (AAPL, 50, 60): (0.9355, math.nan, math.nan),
    (AAPL, 250, 60): (0.8662, 0.404, 0.0455),
    (AAPL, 250, 10): (0.8913, 0.586, 0.0725),
    (AMZN, 50, 60): (0.8934, math.nan, math.nan),
    (AMZN, 250, 60): (0.8146, 0.219, 0.0522),
    (AMZN, 250, 10): (0.8511, 0.629, 0.0957),
}


@pytest.mark.parametrize(("key", "expected"), list(PINNED.items()), ids=str)
def test_bvc_accuracy_against_true_sides_is_pinned(days, key, expected) -> None:
    dataset, divisor, bar_s = key
    t = days[dataset]
    v = float(t.size.sum() / divisor)
    params = VpinParameters(bucket_volume=v, bar_ns=bar_s * SECOND)
    r = vpin.compute_vpin(t.ts_ns, t.price, t.size, t.aggressor_side, params)
    acc, corr, mad = expected
    assert r.bvc_accuracy == pytest.approx(acc, abs=5e-4)
    # the definition, recomputed from the buckets
    b = r.buckets
    correct = np.minimum(b.bvc_buy_volume, b.true_buy_volume) + np.minimum(
        v - b.bvc_buy_volume, v - b.true_buy_volume
    )
    assert r.bvc_accuracy == pytest.approx(correct.sum() / (len(b) * v), rel=1e-12)
    if math.isnan(corr):
        assert math.isnan(r.vpin_correlation)  # 50 buckets: one VPIN value
    else:
        assert r.vpin_correlation == pytest.approx(corr, abs=5e-3)
        assert r.vpin_mean_abs_difference == pytest.approx(mad, abs=5e-4)


def test_true_side_classification_uses_the_true_buy_volume(days) -> None:
    t = days[AMZN]
    v = float(t.size.sum() / 250)
    bvc = vpin.compute_vpin(t.ts_ns, t.price, t.size, t.aggressor_side,
                            VpinParameters(bucket_volume=v))  # fmt: skip
    true = vpin.compute_vpin(t.ts_ns, t.price, t.size, t.aggressor_side,
                             VpinParameters(bucket_volume=v, classification="true_side"))  # fmt: skip
    np.testing.assert_array_equal(true.buckets.buy_volume, bvc.buckets.true_buy_volume)
    np.testing.assert_array_equal(true.buckets.vpin, bvc.buckets.vpin_true_side)
    lam, se, r2 = true.kyle_lambda, true.kyle_lambda_stderr, true.kyle_lambda_r2
    x = (2 * true.buckets.buy_volume - v)[1:]
    y = np.diff(true.buckets.end_price)
    slope, _, rvalue, _, stderr = stats.linregress(x, y)
    assert lam == pytest.approx(slope, rel=1e-9)
    assert se == pytest.approx(stderr, rel=1e-9)
    assert r2 == pytest.approx(rvalue**2, rel=1e-9)
    assert lam > 0  # buying pressure moves the price up


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bucket_volume": 0.0}, "bucket_volume"),
        ({"bucket_volume": math.nan}, "bucket_volume"),
        ({"window_buckets": 0}, "window_buckets"),
        ({"bar_ns": 10}, "bar_ns"),
        ({"cdf": "cauchy"}, "cdf"),
        ({"cdf": "student_t"}, "degrees_of_freedom"),
        ({"sigma": -1.0}, "sigma"),
        ({"classification": "tick_rule"}, "classification"),
        ({"cdf_history": 0}, "cdf_history"),
    ],
)
def test_bad_parameters_name_the_field(change, field) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        replace(VpinParameters(bucket_volume=100.0), **change).validate()


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("price", math.nan, "price"),
        ("price", -1.0, "price"),
        ("size", 0.0, "size"),
        ("size", math.inf, "size"),
        ("ts_ns", -5, "ts_ns"),
    ],
)
def test_bad_trades_name_the_field_and_change_nothing(column, value, field) -> None:
    ts = np.arange(1, 11, dtype=np.int64) * SECOND
    cols = {"ts_ns": ts, "price": np.full(10, 10.0), "size": np.full(10, 100.0)}
    state = VpinState(VpinParameters(bucket_volume=100.0, bar_ns=2 * SECOND))
    state.update(cols["ts_ns"][:5], cols["price"][:5], cols["size"][:5])
    before = state.to_arrays()
    bad = {k: v[5:].copy() for k, v in cols.items()}
    bad[column][2] = value
    with pytest.raises(ValueError, match=rf"^{field}: row"):
        state.update(bad["ts_ns"], bad["price"], bad["size"])
    after = state.to_arrays()
    for k in before:
        assert np.array_equal(before[k], after[k], equal_nan=True), k


def test_times_at_the_int64_limit_close_bars_without_overflow() -> None:
    """The state machine skips the per-trade bar division while trades stay
    before the next bar's start; that start saturates at the int64 limit."""
    big = np.iinfo(np.int64).max
    bar = 1_000_000
    last = big // bar  # the last (partial) bar that int64 times reach
    ts = np.array([last * bar - 2, last * bar - 1, last * bar, big - 1, big], dtype=np.int64)
    price = np.array([10.0, 10.5, 11.0, 11.5, 12.0])
    size = np.full(5, 10.0)
    p = VpinParameters(bucket_volume=15.0, window_buckets=1, bar_ns=bar)
    whole, final = vpin.compute_buckets(ts, price, size, None, p)
    assert final.bars == 1  # bar last - 1 closed by the trade at last * bar; bar last open
    assert final.open_bar_id == last and final.last_bar_close == 10.5
    assert len(whole) == 1 and whole.end_ts_ns[0] == last * bar - 1  # bucket 0: 15 of 20 shares
    state = VpinState(p)
    t = lobster.Trades("X", ts, price, size, np.ones(5, np.int8))
    assert_same_buckets(_feed(state, t, [1, 3, 4], sides=False), whole)
    assert_same_state(state, final)


def test_time_before_the_last_trade_and_mismatched_columns_are_rejected() -> None:
    state = VpinState(VpinParameters(bucket_volume=100.0))
    state.update(np.array([10 * SECOND]), np.array([10.0]), np.array([5.0]))
    with pytest.raises(ValueError, match=r"^ts_ns: row 0 .* before the symbol's last trade"):
        state.update(np.array([9 * SECOND]), np.array([10.0]), np.array([5.0]))
    with pytest.raises(ValueError, match=r"^size: "):
        state.update(np.array([11 * SECOND]), np.array([10.0]), np.array([5.0, 6.0]))
    with pytest.raises(ValueError, match=r"^aggressor_side: required"):
        VpinState(VpinParameters(bucket_volume=1.0, classification="true_side")).update(
            np.array([1]), np.array([1.0]), np.array([1.0])
        )
    with pytest.raises(ValueError, match=r"^aggressor_side: row 0 is 0"):
        state.update(np.array([11 * SECOND]), np.array([10.0]), np.array([5.0]), np.array([0]))
