"""Correctness of the Monte Carlo pricing engine (tickwire.engines.pricing_monte_carlo).

References are independent of the engine: QuantLib's AnalyticEuropeanEngine
(prices, delta, vega), AnalyticDiscreteGeometricAveragePriceAsianEngine,
MCDiscreteArithmeticAPEngine and AnalyticBarrierEngine (continuous
monitoring). Monte Carlo figures are compared within 3 standard errors; with
fixed seeds every test is deterministic.
"""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest
import QuantLib as ql  # noqa: N813
from hypothesis import given, settings
from hypothesis import strategies as st
from option_rows import contract_columns
from tickwire.engines import pricing_monte_carlo as pmc
from tickwire.routing import operation
from tickwire.routing.backends import Backend, MlxBackend, NumpyBackend, TorchBackend

TODAY = ql.Date(2, 1, 2025)
DAY_COUNT = ql.Actual365Fixed()

#: (option_type, spot, strike, days to expiry, rate, dividend yield, volatility)
CONTRACTS = [
    (1, 100.0, 100.0, 365, 0.05, 0.01, 0.20),
    (2, 100.0, 110.0, 182, 0.03, 0.00, 0.30),
    (1, 120.0, 100.0, 730, 0.01, 0.02, 0.25),
    (2, 80.0, 100.0, 91, 0.04, 0.01, 0.40),
]


# --------------------------------------------------------------------------
# fixtures and QuantLib references
# --------------------------------------------------------------------------
@pytest.fixture(autouse=True, scope="module")
def _evaluation_date() -> None:
    ql.Settings.instance().evaluationDate = TODAY


def make_backend(name: str) -> Backend:
    if name == "numpy":
        return NumpyBackend()
    if name == "torch-cpu":
        pytest.importorskip("torch")
        return TorchBackend("cpu")
    pytest.importorskip("mlx.core")
    return MlxBackend()


@pytest.fixture(scope="module")
def numpy_backend() -> NumpyBackend:
    return NumpyBackend()


def ql_process(spot: float, rate: float, dividend: float, vol: float) -> ql.StochasticProcess:
    return ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(spot)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, dividend, DAY_COUNT)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, rate, DAY_COUNT)),
        ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(TODAY, ql.NullCalendar(), vol, DAY_COUNT)
        ),
    )


def ql_payoff(option_type: int, strike: float) -> ql.PlainVanillaPayoff:
    return ql.PlainVanillaPayoff(ql.Option.Call if option_type == 1 else ql.Option.Put, strike)


def ql_european(row: tuple) -> tuple[float, float, float]:
    """QuantLib BSM (price, delta, vega) of one CONTRACTS row."""
    typ, s, k, days, r, q, v = row
    opt = ql.VanillaOption(ql_payoff(typ, k), ql.EuropeanExercise(TODAY + int(days)))
    opt.setPricingEngine(ql.AnalyticEuropeanEngine(ql_process(s, r, q, v)))
    return opt.NPV(), opt.delta(), opt.vega()


def ql_asian(row: tuple, num_fixings: int, average: str, samples: int = 0) -> tuple[float, float]:
    """QuantLib discrete Asian (price, error estimate) with fixings every days/n days."""
    typ, s, k, days, r, q, v = row
    step = int(days) // num_fixings
    fixings = [TODAY + step * (j + 1) for j in range(num_fixings)]
    if average == "geometric":
        opt = ql.DiscreteAveragingAsianOption(
            ql.Average.Geometric,
            1.0,
            0,
            fixings,
            ql_payoff(typ, k),
            ql.EuropeanExercise(fixings[-1]),
        )
        opt.setPricingEngine(
            ql.AnalyticDiscreteGeometricAveragePriceAsianEngine(ql_process(s, r, q, v))
        )
        return opt.NPV(), 0.0
    opt = ql.DiscreteAveragingAsianOption(
        ql.Average.Arithmetic, 0.0, 0, fixings, ql_payoff(typ, k), ql.EuropeanExercise(fixings[-1])
    )
    engine = ql.MCDiscreteArithmeticAPEngine(
        ql_process(s, r, q, v),
        "pseudorandom",
        controlVariate=True,
        requiredSamples=samples,
        seed=42,
    )
    opt.setPricingEngine(engine)
    return opt.NPV(), opt.errorEstimate()


QL_BARRIER = {
    "up_and_out": ql.Barrier.UpOut,
    "up_and_in": ql.Barrier.UpIn,
    "down_and_out": ql.Barrier.DownOut,
    "down_and_in": ql.Barrier.DownIn,
}


def ql_barrier(row: tuple, barrier_type: str, barrier: float) -> float:
    """QuantLib continuously monitored barrier (no rebate), analytic."""
    typ, s, k, days, r, q, v = row
    opt = ql.BarrierOption(
        QL_BARRIER[barrier_type],
        barrier,
        0.0,
        ql_payoff(typ, k),
        ql.EuropeanExercise(TODAY + int(days)),
    )
    opt.setPricingEngine(ql.AnalyticBarrierEngine(ql_process(s, r, q, v)))
    return opt.NPV()


def price(
    backend: Backend, contracts: list[tuple], payoff: str, num_paths: int, num_steps: int, **kw
) -> pmc.MonteCarloResult:
    return pmc.monte_carlo_price(
        backend,
        **contract_columns(contracts),
        payoff=payoff,
        num_paths=num_paths,
        num_steps=num_steps,
        **kw,
    )


# --------------------------------------------------------------------------
# European
# --------------------------------------------------------------------------
@pytest.mark.parametrize("antithetic", [False, True])
def test_european_within_three_standard_errors_of_quantlib(
    numpy_backend: Backend, antithetic: bool
) -> None:
    res = price(numpy_backend, CONTRACTS, "european", 200_000, 1, seed=11, antithetic=antithetic)
    ref = np.array([ql_european(row)[0] for row in CONTRACTS])
    assert res.num_paths == 200_000
    assert res.delta is None and res.vega is None
    assert np.all(np.abs(res.price - ref) < 3.0 * res.standard_error)
    assert np.all(res.standard_error < 0.005 * ref + 0.01)


def test_antithetic_pairs_reduce_the_standard_error_of_monotone_payoffs(
    numpy_backend: Backend,
) -> None:
    plain = price(numpy_backend, CONTRACTS, "european", 100_000, 1, seed=2)
    anti = price(numpy_backend, CONTRACTS, "european", 100_000, 1, seed=2, antithetic=True)
    assert np.all(anti.standard_error < 0.9 * plain.standard_error)
    # An odd count is rounded up to whole pairs.
    assert price(numpy_backend, CONTRACTS, "european", 1001, 1, antithetic=True).num_paths == 1002


def test_standard_error_shrinks_like_one_over_sqrt_paths(numpy_backend: Backend) -> None:
    small = price(numpy_backend, CONTRACTS, "european", 25_000, 1, seed=5)
    large = price(numpy_backend, CONTRACTS, "european", 400_000, 1, seed=6)
    np.testing.assert_allclose(small.standard_error / large.standard_error, 4.0, rtol=0.06)


def test_european_multi_step_paths_have_the_same_law(numpy_backend: Backend) -> None:
    # Exact log-Euler steps: 8 steps price the European exactly as 1 step does.
    res = price(numpy_backend, CONTRACTS, "european", 100_000, 8, seed=4)
    ref = np.array([ql_european(row)[0] for row in CONTRACTS])
    assert np.all(np.abs(res.price - ref) < 3.0 * res.standard_error)


@pytest.mark.parametrize("antithetic", [False, True])
def test_pathwise_delta_and_vega_within_three_standard_errors_of_bsm(
    numpy_backend: Backend, antithetic: bool
) -> None:
    res = price(
        numpy_backend, CONTRACTS, "european", 200_000, 1, seed=8, greeks=True, antithetic=antithetic
    )
    ref = np.array([ql_european(row) for row in CONTRACTS])
    assert np.all(np.abs(res.delta - ref[:, 1]) < 3.0 * res.delta_standard_error)
    assert np.all(np.abs(res.vega - ref[:, 2]) < 3.0 * res.vega_standard_error)
    assert np.all(res.delta_standard_error < 0.005)
    assert np.all(res.vega_standard_error < 0.01 * ref[:, 2])


# --------------------------------------------------------------------------
# Asian
# --------------------------------------------------------------------------
#: 12 fixings 30 days apart (T = 360/365), so QuantLib's fixing times are j T / 12.
ASIAN = [
    (1, 100.0, 100.0, 360, 0.05, 0.01, 0.20),
    (2, 100.0, 105.0, 360, 0.03, 0.00, 0.35),
    (1, 90.0, 80.0, 360, 0.02, 0.04, 0.25),
]


@pytest.mark.parametrize("num_fixings", [1, 5, 12, 73])
def test_geometric_asian_closed_form_equals_quantlib(num_fixings: int) -> None:
    rows = [
        (1, 100.0, 100.0, 365, 0.05, 0.01, 0.2),
        (2, 100.0, 105.0, 365, 0.03, 0.0, 0.35),
        (1, 90.0, 80.0, 365, 0.02, 0.04, 0.25),
        (2, 120.0, 100.0, 365, 0.0, 0.03, 0.6),
    ]
    # Expiry on the last fixing: a whole number of days between fixings.
    rows = [(*row[:3], 365 // num_fixings * num_fixings, *row[4:]) for row in rows]
    c = contract_columns(rows)
    mine = pmc.geometric_asian_price(**c, num_steps=num_fixings)
    ref = np.array([ql_asian(row, num_fixings, "geometric")[0] for row in rows])
    np.testing.assert_allclose(mine, ref, rtol=0.0, atol=1e-10)


@pytest.fixture(scope="module")
def ql_arithmetic_asian() -> np.ndarray:
    """(3, 2): QuantLib MC (control variate, 100k samples) price and error of ASIAN."""
    return np.array([ql_asian(row, 12, "arithmetic", samples=100_000) for row in ASIAN])


def test_arithmetic_asian_agrees_with_quantlib_monte_carlo(
    numpy_backend: Backend, ql_arithmetic_asian: np.ndarray
) -> None:
    ref, ref_se = ql_arithmetic_asian[:, 0], ql_arithmetic_asian[:, 1]
    for cv in (False, True):
        res = price(
            numpy_backend, ASIAN, "asian_arithmetic", 100_000, 12, seed=21, control_variate=cv
        )
        tolerance = 3.0 * np.sqrt(res.standard_error**2 + ref_se**2)
        assert np.all(np.abs(res.price - ref) < tolerance), cv


def test_geometric_control_variate_cuts_the_standard_error(numpy_backend: Backend) -> None:
    plain = price(numpy_backend, ASIAN, "asian_arithmetic", 50_000, 12, seed=3)
    cv = price(numpy_backend, ASIAN, "asian_arithmetic", 50_000, 12, seed=3, control_variate=True)
    assert np.all(cv.standard_error * 5.0 < plain.standard_error)
    assert np.all(np.abs(cv.price - plain.price) < 3.0 * plain.standard_error)
    anti = price(
        numpy_backend,
        ASIAN,
        "asian_arithmetic",
        50_000,
        12,
        seed=3,
        control_variate=True,
        antithetic=True,
    )
    assert np.all(
        np.abs(anti.price - cv.price) < 3.0 * np.hypot(anti.standard_error, cv.standard_error)
    )


def test_asian_pathwise_greeks_match_common_random_number_differences(
    numpy_backend: Backend,
) -> None:
    # Same seed, same normals: central differences of the estimator itself
    # converge to the pathwise derivative, far below the Monte Carlo error.
    args = {"payoff": "asian_arithmetic", "num_paths": 50_000, "num_steps": 12, "seed": 9}
    c = contract_columns(ASIAN)
    res = pmc.monte_carlo_price(numpy_backend, **c, greeks=True, **args)
    h_s, h_v = 1e-3 * c["spot"], 1e-4
    up = pmc.monte_carlo_price(numpy_backend, **{**c, "spot": c["spot"] + h_s}, **args).price
    dn = pmc.monte_carlo_price(numpy_backend, **{**c, "spot": c["spot"] - h_s}, **args).price
    np.testing.assert_allclose(res.delta, (up - dn) / (2 * h_s), rtol=2e-3)
    up = pmc.monte_carlo_price(
        numpy_backend, **{**c, "volatility": c["volatility"] + h_v}, **args
    ).price
    dn = pmc.monte_carlo_price(
        numpy_backend, **{**c, "volatility": c["volatility"] - h_v}, **args
    ).price
    np.testing.assert_allclose(res.vega, (up - dn) / (2 * h_v), rtol=2e-3)
    assert np.all(res.delta_standard_error > 0) and np.all(res.vega_standard_error > 0)


# --------------------------------------------------------------------------
# barriers
# --------------------------------------------------------------------------
BARRIER_ROWS = [(1, 100.0, 100.0, 365, 0.03, 0.01, 0.25), (2, 100.0, 100.0, 365, 0.03, 0.01, 0.25)]
BARRIER_LEVEL = {"up_and_out": 125.0, "up_and_in": 125.0, "down_and_out": 85.0, "down_and_in": 85.0}


@pytest.mark.parametrize("barrier_type", list(BARRIER_LEVEL))
def test_continuous_barrier_with_bgk_shift_matches_quantlib_analytic(
    numpy_backend: Backend, barrier_type: str
) -> None:
    h = BARRIER_LEVEL[barrier_type]
    res = price(
        numpy_backend,
        BARRIER_ROWS,
        "barrier",
        40_000,
        250,
        seed=13,
        barrier_type=barrier_type,
        barrier=np.full(2, h),
        monitoring="continuous",
    )
    ref = np.array([ql_barrier(row, barrier_type, h) for row in BARRIER_ROWS])
    # 0.02 (2 bp of the spot) allows for the o(sqrt(dt)) error of the BGK correction.
    assert np.all(np.abs(res.price - ref) < 3.0 * res.standard_error + 0.02)


@pytest.mark.parametrize("monitoring", ["discrete", "continuous"])
def test_knock_in_plus_knock_out_equals_vanilla_on_the_same_paths(
    numpy_backend: Backend, monitoring: str
) -> None:
    rows = CONTRACTS
    up = np.array([row[1] * 1.2 for row in rows])
    down = np.array([row[1] * 0.85 for row in rows])
    vanilla = price(numpy_backend, rows, "european", 20_000, 16, seed=17)
    for direction, level in (("up", up), ("down", down)):
        legs = [
            price(
                numpy_backend,
                rows,
                "barrier",
                20_000,
                16,
                seed=17,
                barrier_type=f"{direction}_and_{e}",
                barrier=level,
                monitoring=monitoring,
            )
            for e in ("in", "out")
        ]
        np.testing.assert_allclose(legs[0].price + legs[1].price, vanilla.price, rtol=1e-12)
        assert np.all(legs[0].price > 0.0) and np.all(legs[1].price > 0.0)


def test_discrete_knock_out_lies_between_continuous_and_vanilla(numpy_backend: Backend) -> None:
    # Fewer monitoring dates, fewer knock-outs: continuous <= discrete <= vanilla.
    row = BARRIER_ROWS[0]
    discrete = price(
        numpy_backend,
        [row],
        "barrier",
        50_000,
        12,
        seed=19,
        barrier_type="up_and_out",
        barrier=np.array([125.0]),
        monitoring="discrete",
    )
    continuous = ql_barrier(row, "up_and_out", 125.0)
    vanilla = ql_european(row)[0]
    se = discrete.standard_error[0]
    assert continuous + 3.0 * se < discrete.price[0] < vanilla - 3.0 * se


def test_continuous_barrier_already_touched_at_the_spot_knocks_at_time_zero(
    numpy_backend: Backend,
) -> None:
    kw = {"barrier": np.array([95.0]), "monitoring": "continuous", "seed": 1}
    out = price(
        numpy_backend, [BARRIER_ROWS[0]], "barrier", 4_000, 4, barrier_type="up_and_out", **kw
    )
    inn = price(
        numpy_backend, [BARRIER_ROWS[0]], "barrier", 4_000, 4, barrier_type="up_and_in", **kw
    )
    vanilla = price(numpy_backend, [BARRIER_ROWS[0]], "european", 4_000, 4, seed=1)
    assert out.price[0] == 0.0
    np.testing.assert_allclose(inn.price, vanilla.price, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    spot=st.floats(50.0, 150.0),
    moneyness=st.floats(0.7, 1.3),
    barrier_ratio=st.floats(0.6, 1.5),
    vol=st.floats(0.05, 0.8),
    days=st.integers(5, 1000),
    option_type=st.sampled_from([1, 2]),
    monitoring=st.sampled_from(["discrete", "continuous"]),
)
def test_barrier_legs_are_bounded_by_vanilla_and_sum_to_it(
    spot: float,
    moneyness: float,
    barrier_ratio: float,
    vol: float,
    days: int,
    option_type: int,
    monitoring: str,
) -> None:
    be = NumpyBackend()
    row = (option_type, spot, spot * moneyness, days, 0.02, 0.01, vol)
    direction = "up" if barrier_ratio >= 1.0 else "down"
    barrier = np.array([spot * barrier_ratio])
    vanilla = price(be, [row], "european", 2_000, 8, seed=3).price[0]
    legs = [
        price(
            be,
            [row],
            "barrier",
            2_000,
            8,
            seed=3,
            barrier_type=f"{direction}_and_{e}",
            barrier=barrier,
            monitoring=monitoring,
        ).price[0]
        for e in ("in", "out")
    ]
    assert 0.0 <= legs[0] <= vanilla * (1 + 1e-12) and 0.0 <= legs[1] <= vanilla * (1 + 1e-12)
    assert legs[0] + legs[1] == pytest.approx(vanilla, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------
# backends, reproducibility, chunks
# --------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["numpy", "torch-cpu", "mlx"])
def test_every_backend_agrees_with_the_analytic_value(backend_name: str) -> None:
    be = make_backend(backend_name)
    res = price(be, CONTRACTS, "european", 100_000, 1, seed=23, greeks=True)
    ref = np.array([ql_european(row) for row in CONTRACTS])
    assert np.all(np.abs(res.price - ref[:, 0]) < 3.0 * res.standard_error)
    assert np.all(np.abs(res.delta - ref[:, 1]) < 3.0 * res.delta_standard_error)
    assert np.all(np.abs(res.vega - ref[:, 2]) < 3.0 * res.vega_standard_error)
    asian = price(
        be,
        ASIAN,
        "asian_arithmetic",
        20_000,
        12,
        seed=23,
        control_variate=True,
        antithetic=True,
        greeks=True,
    )
    geo = pmc.geometric_asian_price(**contract_columns(ASIAN), num_steps=12)
    phi = np.where(contract_columns(ASIAN)["option_type"] == 1, 1.0, -1.0)
    assert np.all(phi * (asian.price - geo) > 0.0)  # AM >= GM: calls above, puts below
    assert np.all(np.isfinite(asian.delta)) and np.all(np.isfinite(asian.vega))
    barrier = price(
        be,
        BARRIER_ROWS,
        "barrier",
        20_000,
        250,
        seed=23,
        barrier_type="down_and_out",
        barrier=np.full(2, 85.0),
        monitoring="continuous",
    )
    ref_b = np.array([ql_barrier(row, "down_and_out", 85.0) for row in BARRIER_ROWS])
    assert np.all(np.abs(barrier.price - ref_b) < 3.0 * barrier.standard_error + 0.02)


@pytest.mark.parametrize("backend_name", ["numpy", "torch-cpu", "mlx"])
def test_same_seed_reproduces_and_another_seed_differs(backend_name: str) -> None:
    be = make_backend(backend_name)
    kw = {"payoff": "asian_arithmetic", "num_paths": 5_000, "num_steps": 6, "greeks": True}
    a = pmc.monte_carlo_price(be, **contract_columns(CONTRACTS), seed=31, **kw)
    b = pmc.monte_carlo_price(be, **contract_columns(CONTRACTS), seed=31, **kw)
    c = pmc.monte_carlo_price(be, **contract_columns(CONTRACTS), seed=32, **kw)
    for field in ("price", "standard_error", "delta", "vega"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert np.all(a.price != c.price)


def test_chunk_shape_bounds_every_live_array() -> None:
    for k, n in itertools.product([1, 4, 100, 10_000], [1, 16, 250, 10_000, 1_000_000]):
        steps, paths = pmc.chunk_shape(k, n)
        assert 1 <= steps <= n and paths >= 1
        assert steps * paths * k <= pmc.MC_CHUNK_VALUES
        assert steps == n or paths <= pmc.MC_MIN_CHUNK_PATHS


@pytest.mark.parametrize("backend_name", ["numpy", "torch-cpu", "mlx"])
def test_paths_split_into_step_blocks_price_the_same(
    backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    be = make_backend(backend_name)
    whole = price(be, ASIAN, "asian_arithmetic", 8_000, 48, seed=5, control_variate=True)
    monkeypatch.setattr(pmc, "MC_CHUNK_VALUES", 1 << 14)  # 3 contracts x 1024 paths x 5 steps
    assert pmc.chunk_shape(3, 48) == (5, 1024)
    blocked = price(
        be,
        ASIAN,
        "asian_arithmetic",
        8_000,
        48,
        seed=5,
        control_variate=True,
        greeks=True,
    )
    assert np.all(
        np.abs(blocked.price - whole.price)
        < 3 * np.hypot(blocked.standard_error, whole.standard_error)
    )
    geo = pmc.geometric_asian_price(**contract_columns(ASIAN), num_steps=48)
    phi = np.where(contract_columns(ASIAN)["option_type"] == 1, 1.0, -1.0)
    assert np.all(phi * (blocked.price - geo) > 0.0)
    vanilla = price(be, ASIAN, "european", 8_000, 48, seed=5)
    legs = [
        price(
            be,
            ASIAN,
            "barrier",
            8_000,
            48,
            seed=5,
            barrier_type=f"up_and_{e}",
            barrier=np.full(3, 110.0),
            monitoring="discrete",
        ).price
        for e in ("in", "out")
    ]
    np.testing.assert_allclose(legs[0] + legs[1], vanilla.price, rtol=1e-12)


def test_twenty_million_paths_run_in_bounded_memory(
    numpy_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks (2 MiB per live array) make the bound sharp: one (2e7,)
    # float64 array alone would be 160 MB.
    monkeypatch.setattr(pmc, "MC_CHUNK_VALUES", 1 << 18)
    row = CONTRACTS[0]

    def traced_peak(num_paths: int) -> tuple[pmc.MonteCarloResult, int]:
        tracemalloc.start()
        try:
            res = price(numpy_backend, [row], "european", num_paths, 1, seed=29)
            return res, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    _, two_chunk_peak = traced_peak(2 << 18)
    res, peak = traced_peak(20_000_000)
    assert res.num_paths == 20_000_000
    assert peak < 1.2 * two_chunk_peak and peak < 24 << 20
    assert abs(res.price[0] - ql_european(row)[0]) < 3.0 * res.standard_error[0]
    assert res.standard_error[0] < 0.005


def test_stop_raises_timeout_between_chunks(
    numpy_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TimeoutError):
        price(numpy_backend, CONTRACTS, "european", 10_000, 1, stop=lambda: True)
    monkeypatch.setattr(pmc, "MC_CHUNK_VALUES", 1 << 16)
    calls = itertools.count()
    with pytest.raises(TimeoutError):  # the third check: after two chunks
        price(numpy_backend, CONTRACTS, "european", 1_000_000, 1, stop=lambda: next(calls) >= 2)


# --------------------------------------------------------------------------
# validation and registration
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"payoff": "american"}, "payoff"),
        ({"num_paths": 0}, "num_paths"),
        ({"num_steps": 0}, "num_steps"),
        ({"seed": -1}, "seed"),
        ({"option_type": np.array([1, 3])}, "option_type"),
        ({"spot": np.array([100.0, -1.0])}, "spot"),
        ({"strike": np.array([100.0, np.nan])}, "strike"),
        ({"time_to_expiry": np.array([0.0, 1.0])}, "time_to_expiry"),
        ({"volatility": np.array([0.2, 0.0])}, "volatility"),
        ({"rate": np.array([0.01, 0.02, 0.03])}, "rate"),
        ({"control_variate": True}, "control_variate"),
        ({"payoff": "barrier"}, "barrier"),
        (
            {"payoff": "barrier", "barrier": np.full(2, 120.0), "monitoring": "discrete"},
            "barrier_type",
        ),
        (
            {"payoff": "barrier", "barrier": np.full(2, 120.0), "barrier_type": "up_and_out"},
            "monitoring",
        ),
        (
            {
                "payoff": "barrier",
                "barrier": np.full(2, 120.0),
                "barrier_type": "up_and_out",
                "monitoring": "continuous",
                "greeks": True,
            },
            "greeks",
        ),
        (
            {
                "payoff": "barrier",
                "barrier": np.array([120.0, -1.0]),
                "barrier_type": "up_and_out",
                "monitoring": "continuous",
            },
            "barrier",
        ),
        ({"barrier_type": "up_and_out"}, "barrier"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_the_field(
    numpy_backend: Backend, change: dict, field: str
) -> None:
    kw = {
        **contract_columns(CONTRACTS[:2]),
        "payoff": "european",
        "num_paths": 1000,
        "num_steps": 1,
        **change,
    }
    with pytest.raises(ValueError, match=rf"^{field}: "):
        pmc.monte_carlo_price(numpy_backend, **kw)


def test_operation_is_registered_with_work_and_samples(numpy_backend: Backend) -> None:
    op = operation.get("pricing.monte_carlo")
    assert op.run is pmc.monte_carlo_price and op.backends is None
    assert op.calibration_sizes == (100_000, 4_000_000, 40_000_000)
    rng = np.random.default_rng(0)
    for size in op.calibration_sizes:
        inputs = op.sample(size, rng)
        assert op.work(inputs) == pytest.approx(size, rel=0.01)
        assert op.transfers(inputs) == []
    res = op.run(numpy_backend, **op.sample(100_000, rng))
    assert (
        res.price.shape == (4,)
        and np.all(res.standard_error > 0)
        and math.isfinite(res.price.sum())
    )
