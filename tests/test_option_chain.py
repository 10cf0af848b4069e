"""Put-call parity fits on a synthetic chain (exact) and on the real SPX chain of 2022-02-04."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from tickwire.engines.option_chain import carry_rates, parity_fit
from tickwire.feeds.daily_prices import data_dir
from tickwire.feeds.option_chain import load_cboe_chain


def _bsm(spot, strike, t, r, q, vol, call):
    f = spot * math.exp((r - q) * t)
    d1 = (np.log(f / strike) + 0.5 * vol * vol * t) / (vol * math.sqrt(t))
    d2 = d1 - vol * math.sqrt(t)
    df = math.exp(-r * t)
    if call:
        return df * (f * norm.cdf(d1) - strike * norm.cdf(d2))
    return df * (strike * norm.cdf(-d2) - f * norm.cdf(-d1))


def test_parity_fit_recovers_forward_and_discount_of_a_bsm_chain() -> None:
    spot, t, r, q = 4500.0, 0.75, 0.031, 0.014
    strikes = np.arange(3600.0, 5400.0, 25.0)
    vols = 0.2 + 0.1 * (strikes / spot - 1.0) ** 2  # a smile: parity must not care
    calls = np.array([_bsm(spot, k, t, r, q, v, True) for k, v in zip(strikes, vols, strict=True)])
    puts = np.array([_bsm(spot, k, t, r, q, v, False) for k, v in zip(strikes, vols, strict=True)])
    fit = parity_fit(strikes, calls, puts, spot)
    assert fit.discount == pytest.approx(math.exp(-r * t), rel=1e-12)
    assert fit.forward == pytest.approx(spot * math.exp((r - q) * t), rel=1e-12)
    assert fit.rmse < 1e-9
    rate, dividend = carry_rates(fit, spot, t)
    assert rate == pytest.approx(r, rel=1e-9)
    assert dividend == pytest.approx(q, rel=1e-9)


def test_parity_fit_rejects_too_few_strikes() -> None:
    with pytest.raises(ValueError, match="strike"):
        parity_fit(np.array([100.0, 110.0]), np.array([5.0, 1.0]), np.array([1.0, 6.0]), 105.0)


@pytest.fixture(scope="module")
def spx():
    return load_cboe_chain(
        data_dir() / "options-spx-2022-02-04" / "spx_quotedata_2022-02-04.csv.gz"
    )


def test_spx_chain_loads_every_row_with_settlement_times(spx) -> None:
    spot, chain = spx
    assert spot == pytest.approx(4500.5298)
    assert len(chain) == 10_257
    assert set(chain.root) == {"SPX", "SPXW"}
    assert chain.expiry.nunique() == 40
    # First expiry: Monday 2022-02-07 16:00 from Friday 16:00 = 3 days.
    first = chain[chain.expiry == chain.expiry.min()].time_to_expiry.iloc[0]
    assert first == pytest.approx(3.0 / 365.0)
    # AM-settled SPX expires 6.5 hours before the PM-settled SPXW of the same date.
    same = chain[chain.expiry == "2022-02-18"].groupby("root").time_to_expiry.first()
    assert same["SPXW"] - same["SPX"] == pytest.approx(6.5 / 24 / 365)


def test_spx_parity_gives_plausible_forwards_and_rates(spx) -> None:
    """Early 2022: policy rates near 0-1%, SPX dividend yield about 1.3-1.5%."""
    spot, chain = spx
    checked = 0
    for (_, _), g in chain.groupby(["root", "expiry"]):
        ok = (
            (g.call_bid > 0) & (g.call_ask > g.call_bid) & (g.put_bid > 0) & (g.put_ask > g.put_bid)
        )
        g = g[ok]
        t = g.time_to_expiry.iloc[0]
        if t < 0.25 or len(g) < 10:
            continue  # short expiries: rates are noise at this precision
        fit = parity_fit(g.strike.to_numpy(), (g.call_bid + g.call_ask).to_numpy() / 2,
                         (g.put_bid + g.put_ask).to_numpy() / 2, spot)  # fmt: skip
        if fit.num_strikes < 15:
            continue  # 2024-2026: nine strikes quoted 190 points wide; parity says little
        rate, dividend = carry_rates(fit, spot, t)
        assert fit.rmse < 2.0
        assert -0.01 < rate < 0.03, (t, rate)
        assert 0.0 < dividend < 0.03, (t, dividend)
        assert 0.85 < fit.discount <= 1.01
        checked += 1
    assert checked >= 15
