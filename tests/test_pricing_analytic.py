"""Correctness of the analytic European pricing engine (tickwire.engines.pricing_analytic).

References, independent of the engine: QuantLib 1.44's AnalyticEuropeanEngine
(prices and Greeks) and VanillaOption.impliedVolatility (Brent on its price),
mpmath at 50 digits in the tails where QuantLib's normal CDF is itself only
good to ~1e-8 relative, put-call parity, and central finite differences of the
engine's own price. Contracts are drawn from the engine's sample ranges: calls
and puts, spot 50-150, strike 0.5x-2x spot, T 1 day to 5 years in whole days
(so that QuantLib's Actual365Fixed year fraction is exactly T), rate -1% to 8%,
dividend yield 0-5%, volatility 5%-100%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tickwire.engines import pricing_analytic as pa
from tickwire.routing import operation
from tickwire.routing.backends import Backend, NumpyBackend, TorchBackend

ql = pytest.importorskip("QuantLib")

GREEKS = ("delta", "gamma", "vega", "theta", "rho")
FIELDS = ("price", *GREEKS)
CONTRACT_KEYS = ("option_type", "spot", "strike", "time_to_expiry", "rate", "dividend_yield")


# --------------------------------------------------------------------------
# fixtures and references
# --------------------------------------------------------------------------
def make_backend(name: str) -> Backend:
    if name == "numpy":
        return NumpyBackend()
    torch = pytest.importorskip("torch")
    if name == "torch-cuda" and not torch.cuda.is_available():
        pytest.skip("torch reports no CUDA device")
    return TorchBackend(name.removeprefix("torch-"))


@pytest.fixture(
    scope="module", params=["numpy", "torch-cpu", pytest.param("torch-cuda", marks=pytest.mark.gpu)]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    return make_backend(request.param)


@pytest.fixture(scope="module")
def contracts() -> dict[str, np.ndarray]:
    """10,000 seeded random contracts, volatility included."""
    return pa.sample_contracts(10_000, np.random.default_rng(20240607))


def contract_fields(c: dict[str, np.ndarray], idx: np.ndarray | slice = slice(None)) -> dict:
    return {k: c[k][idx] for k in CONTRACT_KEYS}


class QuantLibPricer:
    """One GeneralizedBlackScholesProcess on mutable quotes, reused for every contract.

    Flat curves and volatility are anchored at the evaluation date with
    Actual365Fixed, and every expiry is a whole number of days, so QuantLib's
    year fraction equals ``time_to_expiry`` exactly.
    """

    def __init__(self) -> None:
        self.today = ql.Date(15, ql.January, 2024)
        ql.Settings.instance().evaluationDate = self.today
        dc = ql.Actual365Fixed()
        self.spot, self.rate = ql.SimpleQuote(100.0), ql.SimpleQuote(0.0)
        self.div, self.vol = ql.SimpleQuote(0.0), ql.SimpleQuote(0.2)
        self.process = ql.GeneralizedBlackScholesProcess(
            ql.QuoteHandle(self.spot),
            ql.YieldTermStructureHandle(ql.FlatForward(self.today, ql.QuoteHandle(self.div), dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(self.today, ql.QuoteHandle(self.rate), dc)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(self.today, ql.NullCalendar(), ql.QuoteHandle(self.vol), dc)
            ),
        )
        self.engine = ql.AnalyticEuropeanEngine(self.process)

    def option(self, c: dict[str, np.ndarray], i: int, vol: float) -> ql.VanillaOption:
        self.spot.setValue(float(c["spot"][i]))
        self.rate.setValue(float(c["rate"][i]))
        self.div.setValue(float(c["dividend_yield"][i]))
        self.vol.setValue(vol)
        days = round(float(c["time_to_expiry"][i]) * 365.0)
        assert days / 365.0 == c["time_to_expiry"][i]
        kind = ql.Option.Call if c["option_type"][i] == pa.CALL else ql.Option.Put
        opt = ql.VanillaOption(
            ql.PlainVanillaPayoff(kind, float(c["strike"][i])),
            ql.EuropeanExercise(self.today + days),
        )
        opt.setPricingEngine(self.engine)
        return opt

    def price_and_greeks(self, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.empty((6, c["spot"].shape[0]))
        for i in range(out.shape[1]):
            o = self.option(c, i, float(c["volatility"][i]))
            out[:, i] = o.NPV(), o.delta(), o.gamma(), o.vega(), o.theta(), o.rho()
        return dict(zip(FIELDS, out, strict=True))

    def implied_volatility(self, c: dict[str, np.ndarray], i: int, price: float) -> float:
        opt = self.option(c, i, 0.2)
        return opt.impliedVolatility(price, self.process, 1e-13, 1000, 1e-4, 4.0)


@pytest.fixture(scope="module")
def quantlib() -> QuantLibPricer:
    return QuantLibPricer()


@pytest.fixture(scope="module")
def quantlib_reference(
    quantlib: QuantLibPricer, contracts: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    return quantlib.price_and_greeks(contracts)


def natural_scale(name: str, spot: np.ndarray) -> np.ndarray | float:
    """Units of each output, for the absolute floor of near-zero values."""
    return {"delta": 1.0, "gamma": 1.0 / spot}.get(name, spot)


def assert_close(
    name: str, got: np.ndarray, ref: np.ndarray, spot: np.ndarray, rel: float, floor: float
) -> None:
    """``|got - ref| <= max(rel |ref|, floor x natural scale)`` elementwise."""
    bound = np.maximum(rel * np.abs(ref), floor * natural_scale(name, spot))
    err = np.abs(got - ref)
    bad = np.flatnonzero(~(err <= bound))
    assert bad.size == 0, (
        f"{name}: {bad.size} values off, worst at {bad[np.argmax((err / bound)[bad])]}: "
        f"got {got[bad[0]]!r}, want {ref[bad[0]]!r}"
    )


def prices(backend: Backend, c: dict[str, np.ndarray], **overrides: np.ndarray) -> np.ndarray:
    fields = {**contract_fields(c), "volatility": c["volatility"], **overrides}
    return pa.bsm_price(backend, greeks=False, **fields).price


# --------------------------------------------------------------------------
# prices and Greeks
# --------------------------------------------------------------------------
def test_price_and_greeks_match_quantlib(
    backend: Backend, contracts: dict[str, np.ndarray], quantlib_reference: dict[str, np.ndarray]
) -> None:
    res = pa.bsm_price(backend, **contract_fields(contracts), volatility=contracts["volatility"])
    for name in FIELDS:
        got = getattr(res, name)
        assert got.shape == (10_000,) and got.dtype == np.float64
        # 1e-12 x spot absolute where QuantLib's own CDF (0.5 (1 + erf) above
        # 1e-8) leaves it less accurate than 1e-10 relative: deep OTM values.
        assert_close(name, got, quantlib_reference[name], contracts["spot"], 1e-10, 1e-12)


def test_price_and_greeks_match_mpmath_in_the_tails(backend: Backend) -> None:
    """Tiny prices (down to 1e-250) stay accurate in relative terms, beyond QuantLib's CDF."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    c = pa.sample_contracts(5_000, np.random.default_rng(11))
    ref_res = pa.bsm_price(NumpyBackend(), **contract_fields(c), volatility=c["volatility"])
    idx = np.concatenate([np.arange(40), np.argsort(ref_res.price)[:60]])
    sub = {k: v[idx] for k, v in c.items()}
    got = pa.bsm_price(backend, **contract_fields(sub), volatility=sub["volatility"])

    ref = np.empty((6, idx.size))
    for j in range(idx.size):
        s, k, t, r, q, v = (
            mp.mpf(float(sub[name][j]))
            for name in ("spot", "strike", "time_to_expiry", "rate", "dividend_yield", "volatility")
        )
        w = 1 if sub["option_type"][j] == pa.CALL else -1
        sq = mp.sqrt(t)
        d1 = (mp.log(s / k) + (r - q + v * v / 2) * t) / (v * sq)
        d2 = d1 - v * sq
        sd, kd = s * mp.exp(-q * t), k * mp.exp(-r * t)
        n1 = mp.npdf(d1)
        ref[:, j] = [
            float(w * (sd * mp.ncdf(w * d1) - kd * mp.ncdf(w * d2))),
            float(w * mp.exp(-q * t) * mp.ncdf(w * d1)),
            float(mp.exp(-q * t) * n1 / (s * v * sq)),
            float(sd * n1 * sq),
            float(
                -sd * n1 * v / (2 * sq) + w * (q * sd * mp.ncdf(w * d1) - r * kd * mp.ncdf(w * d2))
            ),
            float(w * k * t * mp.exp(-r * t) * mp.ncdf(w * d2)),
        ]
    assert np.min(np.abs(ref[0])) < 1e-100  # the tail is really exercised
    for j, name in enumerate(FIELDS):
        rel = 1e-9 if name == "price" else 1e-11  # the OTM price is a difference of two terms
        assert_close(name, getattr(got, name), ref[j], sub["spot"], rel, 0.0)


def test_put_call_parity(backend: Backend, contracts: dict[str, np.ndarray]) -> None:
    c = contract_fields(contracts)
    n = contracts["spot"].shape[0]
    vol = contracts["volatility"]
    call = pa.bsm_price(backend, **{**c, "option_type": np.full(n, pa.CALL)}, volatility=vol)
    put = pa.bsm_price(backend, **{**c, "option_type": np.full(n, pa.PUT)}, volatility=vol)
    s, k, t = c["spot"], c["strike"], c["time_to_expiry"]
    spot_df, strike_df = s * np.exp(-c["dividend_yield"] * t), k * np.exp(-c["rate"] * t)
    scale = spot_df + strike_df
    expected = {
        "price": spot_df - strike_df,
        "delta": np.exp(-c["dividend_yield"] * t),
        "gamma": np.zeros(n),
        "vega": np.zeros(n),
        "theta": c["dividend_yield"] * spot_df - c["rate"] * strike_df,
        "rho": t * strike_df,
    }
    units = {"price": scale, "delta": 1.0, "gamma": 1.0 / s, "vega": scale, "theta": scale}
    for name in FIELDS:
        diff = getattr(call, name) - getattr(put, name)
        tol = 1e-12 * units.get(name, scale * np.maximum(t, 1.0))
        assert np.all(np.abs(diff - expected[name]) <= tol), name


def test_greeks_match_finite_differences(
    backend: Backend, contracts: dict[str, np.ndarray]
) -> None:
    """Central differences of the engine's own price (a sanity check of the formulas)."""
    c = {k: v[:2_000] for k, v in contracts.items()}
    keep = c["time_to_expiry"] >= 7 / 365  # keep bumps of T small against T
    c = {k: v[keep] for k, v in c.items()}
    res = pa.bsm_price(backend, **contract_fields(c), volatility=c["volatility"])
    s, t = c["spot"], c["time_to_expiry"]

    def bumped(field: str, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            prices(backend, c, **{field: c[field] + h}),
            prices(backend, c, **{field: c[field] - h}),
        )

    hs = 1e-4 * s
    up, down = bumped("spot", hs)
    fd = {
        "delta": (up - down) / (2 * hs),
        "gamma": (up - 2 * res.price + down) / (hs * hs),
    }
    up, down = bumped("volatility", np.full_like(s, 1e-5))
    fd["vega"] = (up - down) / 2e-5
    ht = 1e-5 * t
    up, down = bumped("time_to_expiry", ht)
    fd["theta"] = -(up - down) / (2 * ht)
    up, down = bumped("rate", np.full_like(s, 1e-6))
    fd["rho"] = (up - down) / 2e-6
    for name in GREEKS:
        floor = 1e-4 if name == "gamma" else 1e-7
        assert_close(name, fd[name], getattr(res, name), s, 1e-5, floor)


def test_greeks_false_gives_prices_only(backend: Backend, contracts: dict[str, np.ndarray]) -> None:
    c = {k: v[:100] for k, v in contracts.items()}
    full = pa.bsm_price(backend, **contract_fields(c), volatility=c["volatility"])
    bare = pa.bsm_price(backend, **contract_fields(c), volatility=c["volatility"], greeks=False)
    np.testing.assert_array_equal(bare.price, full.price)
    assert all(getattr(bare, name) is None for name in GREEKS)


def test_scalars_broadcast_and_textbook_values() -> None:
    """Hull (2018), example 15.6: S=42, K=40, r=10%, sigma=20%, T=0.5."""
    res = pa.bsm_price(NumpyBackend(), np.array([1, 2]), 42.0, 40.0, 0.5, 0.1, 0.0, 0.2)
    np.testing.assert_allclose(res.price, [4.7594, 0.8086], atol=5e-5)
    assert res.price.shape == (2,)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("option_type", 3),
        ("spot", 0.0),
        ("strike", -1.0),
        ("time_to_expiry", 0.0),
        ("volatility", 0.0),
        ("rate", math.nan),
        ("dividend_yield", math.inf),
    ],
)
def test_bsm_rejects_bad_input(field: str, value: float) -> None:
    args = {
        "option_type": np.array([1, 2]),
        "spot": np.array([100.0, 100.0]),
        "strike": np.array([100.0, 90.0]),
        "time_to_expiry": np.array([1.0, 0.5]),
        "rate": np.array([0.01, 0.01]),
        "dividend_yield": np.array([0.0, 0.0]),
        "volatility": np.array([0.2, 0.3]),
    }
    args[field] = np.array([args[field][0], value])
    with pytest.raises(ValueError, match=field):
        pa.bsm_price(NumpyBackend(), **args)


def test_bsm_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="broadcast"):
        pa.bsm_price(NumpyBackend(), 1, np.ones(3) * 100, np.ones(2) * 100, 1.0, 0.0, 0.0, 0.2)


def test_stop_raises_timeout() -> None:
    with pytest.raises(TimeoutError):
        pa.bsm_price(NumpyBackend(), 1, 100.0, 100.0, 1.0, 0.0, 0.0, 0.2, stop=lambda: True)
    with pytest.raises(TimeoutError):
        pa.implied_volatility(
            NumpyBackend(), 1, 100.0, 100.0, 1.0, 0.0, 0.0, 8.0, stop=lambda: True
        )


# --------------------------------------------------------------------------
# implied volatility
# --------------------------------------------------------------------------
@dataclass
class RoundTrip:
    contracts: dict[str, np.ndarray]
    price: np.ndarray
    vega: np.ndarray
    result: pa.ImpliedVolResult


@pytest.fixture(scope="module")
def round_trip(backend: Backend, contracts: dict[str, np.ndarray]) -> RoundTrip:
    c = contract_fields(contracts)
    ref = pa.bsm_price(NumpyBackend(), **c, volatility=contracts["volatility"])
    return RoundTrip(
        contracts, ref.price, ref.vega, pa.implied_volatility(backend, **c, price=ref.price)
    )


def test_implied_volatility_round_trip(round_trip: RoundTrip) -> None:
    c, res = round_trip.contracts, round_trip.result
    assert res.implied_volatility.dtype == np.float64
    assert res.status.dtype == np.int32 and res.iterations.dtype == np.int32
    assert np.all(res.status == pa.IV_OK)
    assert not np.any(np.isnan(res.implied_volatility))
    # Volatility 0 only for prices that rounded to the discounted intrinsic value.
    solved = res.implied_volatility > 0.0
    assert solved.mean() > 0.99
    assert np.all(res.iterations[solved] > 0) and np.all(res.iterations[~solved] == 0)
    assert np.all(res.iterations <= 20)
    # Every contract whose vega is not negligible recovers its volatility.
    informative = round_trip.vega > 1e-4 * c["spot"]
    assert informative.mean() > 0.9
    err = np.abs(res.implied_volatility - c["volatility"])[informative]
    assert err.max() <= 1e-8, err.max()


def test_implied_volatility_reprices_within_tolerance(
    backend: Backend, round_trip: RoundTrip
) -> None:
    """Every solved contract, tiny vega included, reprices to the default tolerance."""
    c, res = round_trip.contracts, round_trip.result
    ok = (res.status == pa.IV_OK) & (res.implied_volatility > 0.0)
    sub = {k: v[ok] for k, v in contract_fields(c).items()}
    model = pa.bsm_price(backend, **sub, volatility=res.implied_volatility[ok], greeks=False).price
    tol = 1e-10 * np.maximum(sub["spot"], sub["strike"])
    assert np.all(np.abs(model - round_trip.price[ok]) <= tol)


def test_implied_volatility_matches_quantlib(
    backend: Backend, quantlib: QuantLibPricer, contracts: dict[str, np.ndarray]
) -> None:
    c = {k: v[:300] for k, v in contracts.items()}
    ref = pa.bsm_price(NumpyBackend(), **contract_fields(c), volatility=c["volatility"])
    keep = ref.vega > 1e-2 * c["spot"]  # where QuantLib's Brent is well conditioned
    c = {k: v[keep] for k, v in c.items()}
    price = ref.price[keep]
    ql_iv = np.array(
        [quantlib.implied_volatility(c, i, float(price[i])) for i in range(price.size)]
    )
    got = pa.implied_volatility(backend, **contract_fields(c), price=price)
    assert price.size > 200
    assert np.all(got.status == pa.IV_OK)
    np.testing.assert_allclose(got.implied_volatility, ql_iv, rtol=0, atol=1e-8)


@pytest.mark.parametrize("option_type", [pa.CALL, pa.PUT])
def test_implied_volatility_statuses(backend: Backend, option_type: int) -> None:
    s, k, t, r, q = 100.0, 90.0 if option_type == pa.CALL else 110.0, 0.75, 0.03, 0.01
    spot_df, strike_df = s * math.exp(-q * t), k * math.exp(-r * t)
    w = 1.0 if option_type == pa.CALL else -1.0
    lower = max(w * (spot_df - strike_df), 0.0)
    upper = spot_df if option_type == pa.CALL else strike_df
    fair = float(prices(NumpyBackend(), {
        "option_type": np.array([option_type]), "spot": np.array([s]), "strike": np.array([k]),
        "time_to_expiry": np.array([t]), "rate": np.array([r]),
        "dividend_yield": np.array([q]), "volatility": np.array([0.25]),
    })[0])  # fmt: skip
    cases = {
        "below intrinsic": (lower - 1e-6, pa.IV_BELOW_INTRINSIC),
        "negative": (-1.0, pa.IV_BELOW_INTRINSIC),
        "at intrinsic": (lower, pa.IV_OK),
        "one ulp below intrinsic": (np.nextafter(lower, -1.0), pa.IV_OK),
        "fair": (fair, pa.IV_OK),
        "at upper bound": (upper, pa.IV_ABOVE_UPPER_BOUND),
        "above upper bound": (upper * 1.5, pa.IV_ABOVE_UPPER_BOUND),
        "needs vol above 10": (upper * (1.0 - 1e-14), pa.IV_NOT_CONVERGED),
    }
    price = np.array([p for p, _ in cases.values()])
    n = price.size
    res = pa.implied_volatility(
        backend, np.full(n, option_type), np.full(n, s), np.full(n, k), np.full(n, t),
        np.full(n, r), np.full(n, q), price,
    )  # fmt: skip
    for (name, (_, want)), got, vol, its in zip(
        cases.items(), res.status, res.implied_volatility, res.iterations, strict=True
    ):
        assert got == want, name
        assert np.isnan(vol) == (want != pa.IV_OK), name
        if want in (pa.IV_BELOW_INTRINSIC, pa.IV_ABOVE_UPPER_BOUND):
            assert its == 0, name
        if want == pa.IV_NOT_CONVERGED:
            assert its > 0, name
    at = list(cases).index("at intrinsic")
    assert res.implied_volatility[at] == 0.0 and res.iterations[at] == 0
    assert abs(res.implied_volatility[list(cases).index("fair")] - 0.25) <= 1e-12


def test_implied_volatility_zero_price_of_otm_option_is_zero_vol() -> None:
    res = pa.implied_volatility(NumpyBackend(), 1, 100.0, 150.0, 0.1, 0.0, 0.0, 0.0)
    assert res.status.tolist() == [pa.IV_OK] and res.implied_volatility.tolist() == [0.0]


def test_implied_volatility_hard_contracts(backend: Backend) -> None:
    """Deep out of and in the money, 1-day and 5-year, vols 1% to 300%."""
    rng = np.random.default_rng(3)
    n = 20_000
    c = pa.sample_contracts(n, rng)
    c["strike"] = c["spot"] * np.exp(rng.uniform(math.log(0.2), math.log(5.0), n))
    c["volatility"] = np.exp(rng.uniform(math.log(0.01), math.log(3.0), n))
    ref = pa.bsm_price(NumpyBackend(), **contract_fields(c), volatility=c["volatility"])
    res = pa.implied_volatility(backend, **contract_fields(c), price=ref.price)
    assert np.all(res.status == pa.IV_OK)
    informative = ref.vega > 1e-4 * c["spot"]
    err = np.abs(res.implied_volatility - c["volatility"])[informative]
    assert err.max() <= 1e-8
    assert np.percentile(res.iterations, 99) <= 12


def test_implied_volatility_explicit_tolerance(
    backend: Backend, contracts: dict[str, np.ndarray]
) -> None:
    c = {k: v[:500] for k, v in contracts.items()}
    price = prices(NumpyBackend(), c)
    res = pa.implied_volatility(backend, **contract_fields(c), price=price, tolerance=1e-4)
    assert np.all(res.status == pa.IV_OK)
    solved = res.implied_volatility > 0.0  # 0: a price at the discounted intrinsic value
    assert solved.mean() > 0.99
    sub = {k: v[solved] for k, v in c.items()}
    model = prices(NumpyBackend(), sub, volatility=res.implied_volatility[solved])
    assert np.all(np.abs(model - price[solved]) <= 1e-4)
    # A loose tolerance stops sooner than the default, which also pins sigma.
    full = pa.implied_volatility(backend, **contract_fields(c), price=price)
    assert res.iterations.mean() < full.iterations.mean()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"price": np.array([math.nan])}, "price"),
        ({"tolerance": -1.0}, "tolerance"),
        ({"tolerance": math.nan}, "tolerance"),
        ({"option_type": np.array([0])}, "option_type"),
        ({"time_to_expiry": np.array([-1.0])}, "time_to_expiry"),
    ],
)
def test_implied_volatility_rejects_bad_input(kwargs: dict, match: str) -> None:
    args = {
        "option_type": np.array([1]),
        "spot": np.array([100.0]),
        "strike": np.array([100.0]),
        "time_to_expiry": np.array([1.0]),
        "rate": np.array([0.0]),
        "dividend_yield": np.array([0.0]),
        "price": np.array([8.0]),
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        pa.implied_volatility(NumpyBackend(), **args)


@settings(max_examples=60, deadline=None, database=None)
@given(
    option_type=st.sampled_from([pa.CALL, pa.PUT]),
    spot=st.floats(1.0, 1_000.0),
    log_moneyness=st.floats(-1.0, 1.0),
    days=st.integers(1, 3650),
    rate=st.floats(-0.02, 0.15),
    dividend_yield=st.floats(0.0, 0.1),
    vol=st.floats(0.01, 3.0),
)
def test_property_implied_volatility_recovers_volatility(
    option_type: int, spot: float, log_moneyness: float, days: int, rate: float,
    dividend_yield: float, vol: float,
) -> None:  # fmt: skip
    fields = {
        "option_type": np.array([option_type]),
        "spot": np.array([spot]),
        "strike": np.array([spot * math.exp(log_moneyness)]),
        "time_to_expiry": np.array([days / 365.0]),
        "rate": np.array([rate]),
        "dividend_yield": np.array([dividend_yield]),
    }
    ref = pa.bsm_price(NumpyBackend(), **fields, volatility=np.array([vol]))
    res = pa.implied_volatility(NumpyBackend(), **fields, price=ref.price)
    assert res.status[0] == pa.IV_OK
    strike, t = float(fields["strike"][0]), days / 365.0
    if ref.vega[0] > 1e-4 * spot:
        assert abs(res.implied_volatility[0] - vol) <= 1e-8
    elif res.implied_volatility[0] > 0.0:  # tiny vega: solved in price, not in vol
        model = pa.bsm_price(
            NumpyBackend(), **fields, volatility=res.implied_volatility, greeks=False
        )
        assert abs(model.price[0] - ref.price[0]) <= 1e-10 * max(spot, strike)
    else:  # the price rounded to the discounted intrinsic value: the sigma -> 0 limit
        spot_df, strike_df = spot * math.exp(-dividend_yield * t), strike * math.exp(-rate * t)
        w = 1.0 if option_type == pa.CALL else -1.0
        lower = max(w * (spot_df - strike_df), 0.0)
        assert abs(ref.price[0] - lower) <= 8 * np.finfo(float).eps * max(spot_df, strike_df)


# --------------------------------------------------------------------------
# routing declarations
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pricing.bsm", "pricing.implied_volatility"])
def test_operations_are_registered(name: str) -> None:
    op = operation.get(name)
    assert op.backends == ("numpy", "torch-cpu", "torch-cuda")
    assert op.calibration_sizes == (1_000, 100_000, 1_000_000)
    inputs = op.sample(1_000, np.random.default_rng(0))
    assert op.work(inputs) == 1_000.0
    assert op.transfers(inputs) == []
    out = op.run(NumpyBackend(), **inputs)
    if name == "pricing.bsm":
        assert out.price.shape == (1_000,) and out.rho is not None
    else:
        assert out.status.shape == (1_000,) and np.all(out.status == pa.IV_OK)
