"""PricingService end to end: a real server on 127.0.0.1, the public Python client,
values against the engines and QuantLib, and one INVALID_ARGUMENT per bad field."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from tickwire.engines import pricing_american, pricing_analytic
from tickwire.engines.option_chain import carry_rates, parity_fit
from tickwire.feeds.daily_prices import data_dir
from tickwire.feeds.option_chain import load_cboe_chain
from tickwire.pricing.v1 import pricing_pb2, pricing_pb2_grpc
from tickwire.routing.backends import NumpyBackend
from tickwire_client import Client, TickwireError, to_tensor

ql = pytest.importorskip("QuantLib")


def _quantlib_european(call: bool, s: float, k: float, t_days: int, r: float, q: float, v: float):
    today = ql.Date(4, 2, 2022)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(s)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), v, dc)),
    )
    option = ql.VanillaOption(
        ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, k),
        ql.EuropeanExercise(today + t_days),
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return option.NPV(), option.delta(), option.vega()


def test_price_european_matches_quantlib_and_broadcasts_scalars(client: Client) -> None:
    strikes = np.array([80.0, 100.0, 125.0])
    out = client.pricing.price_european(["call", "put", "call"], 100.0, strikes, 146 / 365, 0.25,
                                        rate=0.03, dividend_yield=0.01)  # fmt: skip
    assert out.price.shape == (3,)
    for i, (call, k) in enumerate(zip((True, False, True), strikes, strict=True)):
        npv, delta, vega = _quantlib_european(call, 100.0, k, 146, 0.03, 0.01, 0.25)
        assert out.price[i] == pytest.approx(npv, rel=1e-10)
        assert out.delta[i] == pytest.approx(delta, rel=1e-10)
        assert out.vega[i] == pytest.approx(vega, rel=1e-10)
    assert out.execution.operation == "pricing.bsm"
    prices_only = client.pricing.price_european("call", 100.0, strikes, 0.4, 0.25, greeks=False)
    assert prices_only.delta is None and prices_only.price.shape == (3,)


def test_implied_volatility_round_trips_and_reports_bounds(client: Client) -> None:
    vols = np.array([0.12, 0.3, 0.65])
    px = client.pricing.price_european("put", 50.0, [45.0, 50.0, 60.0], 0.5, vols, rate=0.02).price
    iv = client.pricing.implied_volatility("put", 50.0, [45.0, 50.0, 60.0], 0.5, px, rate=0.02)
    np.testing.assert_allclose(iv.implied_volatility, vols, rtol=1e-8)
    assert iv.status_names == ["OK", "OK", "OK"]
    # Below the discounted intrinsic value of a put, and above its upper bound (K e^{-rT}).
    bad = client.pricing.implied_volatility("put", 50.0, [60.0, 60.0], 0.5, [5.0, 61.0], rate=0.02)
    assert bad.status_names == ["BELOW_INTRINSIC", "ABOVE_UPPER_BOUND"]
    assert np.isnan(bad.implied_volatility).all()


def test_monte_carlo_european_within_three_standard_errors(client: Client) -> None:
    mc = client.pricing.monte_carlo("call", 100.0, 105.0, 1.0, 0.2, rate=0.03, num_paths=200_000,
                                    seed=11, antithetic=True, greeks=True)  # fmt: skip
    npv, delta, vega = _quantlib_european(True, 100.0, 105.0, 365, 0.03, 0.0, 0.2)
    assert abs(mc.price[0] - npv) < 3 * mc.standard_error[0]
    assert abs(mc.delta[0] - delta) < 3 * mc.delta_standard_error[0]
    assert abs(mc.vega[0] - vega) < 3 * mc.vega_standard_error[0]
    again = client.pricing.monte_carlo("call", 100.0, 105.0, 1.0, 0.2, rate=0.03, num_paths=200_000,
                                       seed=11, antithetic=True, greeks=True)  # fmt: skip
    assert again.price[0] == mc.price[0]  # same seed, same backend: same draws


def test_monte_carlo_barrier_in_out_parity(client: Client) -> None:
    kwargs = dict(payoff="barrier", num_paths=20_000, num_steps=50, seed=3, barrier=120.0,
                  monitoring="continuous", backend="numpy")  # fmt: skip
    knock_out = client.pricing.monte_carlo(
        "call", 100.0, 100.0, 0.5, 0.25, barrier_type="up_and_out", **kwargs
    )
    knock_in = client.pricing.monte_carlo(
        "call", 100.0, 100.0, 0.5, 0.25, barrier_type="up_and_in", **kwargs
    )
    vanilla = client.pricing.monte_carlo("call", 100.0, 100.0, 0.5, 0.25, payoff="european",
                                         num_paths=20_000, num_steps=50, seed=3, backend="numpy")  # fmt: skip
    assert knock_out.price[0] + knock_in.price[0] == pytest.approx(vanilla.price[0], rel=1e-12)


def test_american_put_equals_the_engine(client: Client) -> None:
    out = client.pricing.american("put", 36.0, [40.0, 44.0], 1.0, 0.2, rate=0.06,
                                  method="binomial_leisen_reimer", num_steps=401)  # fmt: skip
    ref = pricing_american.american_price(
        NumpyBackend(), np.array([2, 2]), np.full(2, 36.0), np.array([40.0, 44.0]), np.ones(2),
        np.full(2, 0.06), np.zeros(2), np.full(2, 0.2), "binomial_leisen_reimer", 401,
    )  # fmt: skip
    np.testing.assert_allclose(out.price, ref.price, rtol=1e-12)
    # Longstaff and Schwartz's (2001) first case, against QuantLib's finite differences.
    today = ql.Date(4, 2, 2022)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(36.0)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, 0.06, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), 0.2, dc)),
    )
    option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Put, 40.0),
                              ql.AmericanExercise(today, today + 365))  # fmt: skip
    option.setPricingEngine(ql.FdBlackScholesVanillaEngine(process, 1000, 1000))
    assert out.price[0] == pytest.approx(option.NPV(), rel=1e-3)
    assert (out.standard_error == 0).all()


# ----- errors ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pricing_rpc(server) -> pricing_pb2_grpc.PricingServiceStub:
    channel = grpc.insecure_channel(server.target)
    yield pricing_pb2_grpc.PricingServiceStub(channel)
    channel.close()


def _contracts(**overrides: object) -> pricing_pb2.OptionContracts:
    fields = {
        "option_type": to_tensor(np.array([1, 2], dtype=np.int32), "<i4"),
        "spot": to_tensor(100.0),
        "strike": to_tensor([95.0, 105.0]),
        "time_to_expiry": to_tensor(0.5),
        "volatility": to_tensor(0.2),
    }
    fields.update(overrides)
    return pricing_pb2.OptionContracts(**{k: v for k, v in fields.items() if v is not None})


def _fields(call, request) -> tuple[grpc.StatusCode, list[str]]:
    with pytest.raises(grpc.RpcError) as exc:
        call(request, timeout=30)
    err = TickwireError.from_rpc_error(exc.value)
    return err.code, err.fields


INVALID = grpc.StatusCode.INVALID_ARGUMENT
BAD_REQUESTS = [
    ("PriceEuropean", pricing_pb2.PriceEuropeanRequest(contracts=_contracts(spot=None)), ["contracts.spot"]),
    ("PriceEuropean", pricing_pb2.PriceEuropeanRequest(contracts=_contracts(strike=to_tensor([-1.0, 5.0]))),
     ["contracts.strike.data"]),
    ("PriceEuropean", pricing_pb2.PriceEuropeanRequest(contracts=_contracts(volatility=to_tensor([0.2, np.nan]))),
     ["contracts.volatility.data"]),
    ("PriceEuropean", pricing_pb2.PriceEuropeanRequest(contracts=_contracts(strike=to_tensor([90.0, 95.0, 99.0]))),
     ["contracts"]),
    ("PriceEuropean", pricing_pb2.PriceEuropeanRequest(
        contracts=_contracts(option_type=to_tensor(np.array([1, 3], dtype=np.int32), "<i4"))),
     ["contracts.option_type"]),
    ("PriceEuropean", pricing_pb2.PriceEuropeanRequest(contracts=_contracts(spot=to_tensor([[100.0]]))),
     ["contracts.spot.shape"]),
    ("PriceEuropean", pricing_pb2.PriceEuropeanRequest(contracts=_contracts(strike=to_tensor(np.full(1_000_001, 100.0)))),
     ["contracts"]),
    ("ComputeImpliedVolatility", pricing_pb2.ComputeImpliedVolatilityRequest(
        contracts=_contracts(), price=to_tensor([1.0, 2.0, 3.0])), ["price"]),
    ("ComputeImpliedVolatility", pricing_pb2.ComputeImpliedVolatilityRequest(
        contracts=_contracts(), price=to_tensor([1.0, -2.0])), ["price.data"]),
    ("PriceMonteCarlo", pricing_pb2.PriceMonteCarloRequest(contracts=_contracts(), num_paths=10_000), ["payoff"]),
    ("PriceMonteCarlo", pricing_pb2.PriceMonteCarloRequest(
        contracts=_contracts(), payoff=pricing_pb2.PAYOFF_EUROPEAN, num_paths=10), ["num_paths"]),
    ("PriceMonteCarlo", pricing_pb2.PriceMonteCarloRequest(
        contracts=_contracts(), payoff=pricing_pb2.PAYOFF_BARRIER, num_paths=10_000),
     ["barrier.barrier_type", "barrier.monitoring", "barrier.barrier"]),
    ("PriceMonteCarlo", pricing_pb2.PriceMonteCarloRequest(
        contracts=_contracts(), payoff=pricing_pb2.PAYOFF_EUROPEAN, num_paths=10_000, control_variate=True),
     ["control_variate"]),
    ("PriceMonteCarlo", pricing_pb2.PriceMonteCarloRequest(
        contracts=_contracts(), payoff=pricing_pb2.PAYOFF_EUROPEAN, num_paths=10_000, num_steps=20_000),
     ["num_steps"]),
    ("PriceAmerican", pricing_pb2.PriceAmericanRequest(contracts=_contracts()), ["method"]),
    ("PriceAmerican", pricing_pb2.PriceAmericanRequest(
        contracts=_contracts(), method=pricing_pb2.AMERICAN_METHOD_LONGSTAFF_SCHWARTZ, num_paths=5),
     ["num_paths"]),
]  # fmt: skip


@pytest.mark.parametrize(("rpc", "request_", "fields"), BAD_REQUESTS)
def test_bad_pricing_input_names_the_field(pricing_rpc, rpc, request_, fields) -> None:
    code, got = _fields(getattr(pricing_rpc, rpc), request_)
    assert code == INVALID
    assert got == fields


def test_monte_carlo_past_its_deadline_is_stopped(client: Client) -> None:
    with pytest.raises(TickwireError) as err:
        client.pricing.monte_carlo("call", 100.0, 100.0, 1.0, 0.2, num_paths=10_000_000_000,
                                   backend="numpy", timeout=0.3)  # fmt: skip
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


# ----- real quotes ----------------------------------------------------------------
def test_spx_chain_implied_vols_reprice_the_mids_and_flag_bound_violations(client: Client) -> None:
    """2022-02-04 SPX, out-of-the-money mids of the expiries with a clean parity fit."""
    spot, chain = load_cboe_chain(
        data_dir() / "options-spx-2022-02-04" / "spx_quotedata_2022-02-04.csv.gz"
    )
    rows = []
    for _, g in chain.groupby(["root", "expiry"]):
        g = g[
            (g.call_bid > 0) & (g.call_ask > g.call_bid) & (g.put_bid > 0) & (g.put_ask > g.put_bid)
        ]
        fit = parity_fit(g.strike.to_numpy(), ((g.call_bid + g.call_ask) / 2).to_numpy(),
                         ((g.put_bid + g.put_ask) / 2).to_numpy(), spot)  # fmt: skip
        if fit.num_strikes < 15:
            continue
        t = float(g.time_to_expiry.iloc[0])
        r, q = carry_rates(fit, spot, t)
        call = g.strike >= fit.forward
        mid = np.where(call, (g.call_bid + g.call_ask) / 2, (g.put_bid + g.put_ask) / 2)
        rows.append((np.where(call, 1, 2), g.strike.to_numpy(), np.full(len(g), t), np.full(len(g), r),
                     np.full(len(g), q), mid))  # fmt: skip
    ot, k, t, r, q, mid = (np.concatenate(c) for c in zip(*rows, strict=True))
    assert len(k) > 3_000
    iv = client.pricing.implied_volatility(ot, spot, k, t, mid, rate=r, dividend_yield=q)
    ok = iv.status == pricing_analytic.IV_OK
    assert ok.mean() > 0.99
    # Independent bound check of the rest: a mid below the discounted intrinsic value.
    fwd_intrinsic = np.where(ot == 1, spot * np.exp(-q * t) - k * np.exp(-r * t),
                             k * np.exp(-r * t) - spot * np.exp(-q * t))  # fmt: skip
    below = mid < np.maximum(fwd_intrinsic, 0.0)
    np.testing.assert_array_equal(iv.status == pricing_analytic.IV_BELOW_INTRINSIC, below)
    repriced = client.pricing.price_european(ot[ok], spot, k[ok], t[ok], iv.implied_volatility[ok],
                                             rate=r[ok], dividend_yield=q[ok], greeks=False)  # fmt: skip
    np.testing.assert_allclose(repriced.price, mid[ok], atol=1e-6 * spot)
    assert np.all((iv.implied_volatility[ok] > 0.03) & (iv.implied_volatility[ok] < 3.0))
    assert math.isfinite(float(np.median(iv.implied_volatility[ok])))
