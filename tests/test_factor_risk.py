"""Factor covariance, specific variance and portfolio risk decomposition; the
Fama-French regression against statsmodels OLS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factor_panel import sp500_panel
from tickwire.engines import factor_fama_french, factor_model, factor_risk, factor_styles
from tickwire.feeds import fama_french
from tickwire.routing.backends import NumpyBackend, TorchBackend

sm = pytest.importorskip("statsmodels.api")


@pytest.fixture(scope="module")
def model():
    p = sp500_panel()
    settings = factor_model.ModelSettings(
        momentum=factor_styles.MomentumParams(126, 63, 20),
        covariance_half_life=90.0,
        specific_half_life=42.0,
    )
    return factor_model.estimate_risk_model(
        NumpyBackend(),
        p.closes[-600:],
        p.shares,
        p.sectors,
        p.sector_names,
        p.book_per_share,
        p.sales_per_share,
        p.earnings_per_share,
        settings,
    )


def test_factor_covariance_is_pandas_ewm_cov(model):
    f = pd.DataFrame(model.factor_returns)
    expected = f.ewm(halflife=90.0).cov().iloc[-f.shape[1] :].to_numpy()
    np.testing.assert_allclose(model.factor_covariance, expected, rtol=1e-12, atol=0)
    # Sector returns sum to zero on every date, so (0, 1, ..., 1, 0, 0, 0) is the
    # covariance's one null direction; every other eigenvalue is positive.
    s = len(sp500_panel().sector_names)
    c = np.r_[0.0, np.ones(s), np.zeros(3)]
    assert np.abs(model.factor_covariance @ c).max() < 1e-18
    eig = np.linalg.eigvalsh(model.factor_covariance)
    assert abs(eig[0]) < 1e-18 and eig[1] > 1e-8


def test_specific_variance_is_pandas_ewm_var(model):
    e = pd.DataFrame(model.residual_returns)
    expected = e.ewm(halflife=42.0).var().iloc[-1].to_numpy()
    np.testing.assert_allclose(model.specific_variance, expected, rtol=1e-12, atol=0)


def test_torch_pipeline_matches_numpy(model):
    p = sp500_panel()
    settings = factor_model.ModelSettings(
        momentum=factor_styles.MomentumParams(126, 63, 20),
        covariance_half_life=90.0,
        specific_half_life=42.0,
    )
    other = factor_model.estimate_risk_model(
        TorchBackend("cpu"),
        p.closes[-600:],
        p.shares,
        p.sectors,
        p.sector_names,
        p.book_per_share,
        p.sales_per_share,
        p.earnings_per_share,
        settings,
    )
    np.testing.assert_allclose(other.factor_returns, model.factor_returns, rtol=0, atol=1e-12)
    np.testing.assert_allclose(other.factor_covariance, model.factor_covariance, rtol=1e-10)
    np.testing.assert_allclose(other.exposures, model.exposures, rtol=0, atol=1e-12)


def test_risk_parts_add_up_and_match_the_asset_covariance(model):
    rng = np.random.default_rng(3)
    n = model.exposures.shape[0]
    weights = np.vstack([np.full(n, 1.0 / n), rng.dirichlet(np.ones(n)), rng.normal(0, 0.01, n)])
    r = factor_risk.portfolio_risk(
        NumpyBackend(),
        model.exposures,
        model.factor_covariance,
        model.specific_variance,
        weights,
        252.0,
    )
    np.testing.assert_allclose(r.factor_contributions.sum(1), r.factor_variance, rtol=1e-12)
    np.testing.assert_allclose(r.factor_variance + r.specific_variance, r.total_variance)
    # Independently: w' (B Sigma B' + diag(delta)) w, annualised.
    b, cov, spec = model.exposures, model.factor_covariance, model.specific_variance
    asset_cov = b @ cov @ b.T + np.diag(spec)
    expected = np.einsum("pi,ij,pj->p", weights, asset_cov, weights) * 252.0
    np.testing.assert_allclose(r.total_variance, expected, rtol=1e-10)
    np.testing.assert_allclose(r.total_volatility, np.sqrt(expected), rtol=1e-10)
    np.testing.assert_allclose(r.exposures, weights @ b, rtol=1e-12)
    # The equal-weight long portfolio has market exposure 1 and mostly factor risk.
    assert r.exposures[0, 0] == pytest.approx(1.0)
    assert r.factor_variance[0] > 10 * r.specific_variance[0]


def test_portfolio_risk_rejects_bad_shapes(model):
    n = model.exposures.shape[0]
    with pytest.raises(ValueError, match=r"^weights:"):
        factor_risk.portfolio_risk(
            NumpyBackend(),
            model.exposures,
            model.factor_covariance,
            model.specific_variance,
            np.ones((1, n + 1)),
        )
    with pytest.raises(ValueError, match=r"^specific_variance:"):
        factor_risk.portfolio_risk(
            NumpyBackend(),
            model.exposures,
            model.factor_covariance,
            -model.specific_variance,
            np.ones((1, n)),
        )


def _monthly_portfolio() -> tuple[np.ndarray, np.ndarray]:
    """Month-end returns of an equal-weight portfolio of 20 S&P stocks, 2013-03 .. 2018-01."""
    p = sp500_panel()
    closes = pd.DataFrame(p.closes[:, :20], index=p.dates)
    month_end = closes.groupby(closes.index.to_period("M")).last()
    monthly = month_end.pct_change().iloc[1:]
    monthly = monthly[monthly.index <= pd.Period("2018-01", "M")]
    months = np.array([int(m.strftime("%Y%m")) for m in monthly.index])
    return monthly.to_numpy(), months


def test_fama_french_regression_equals_statsmodels():
    returns, months = _monthly_portfolio()
    factors = fama_french.load_fama_french_3f().loc[months]
    y = returns - factors["rf"].to_numpy()[:, None]
    x = factors[list(fama_french.FACTORS)].to_numpy()
    ours = factor_fama_french.regress_factors(NumpyBackend(), y, x)
    assert ours.num_observations == len(months) == 59
    for j in range(y.shape[1]):
        fit = sm.OLS(y[:, j], sm.add_constant(x)).fit()
        np.testing.assert_allclose(ours.coefficients[j], fit.params, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(ours.standard_errors[j], fit.bse, rtol=1e-10)
        np.testing.assert_allclose(ours.t_statistics[j], fit.tvalues, rtol=1e-9)
        np.testing.assert_allclose(ours.p_values[j], fit.pvalues, rtol=1e-8, atol=1e-300)
        assert ours.r_squared[j] == pytest.approx(fit.rsquared, rel=1e-10)
        assert ours.adjusted_r_squared[j] == pytest.approx(fit.rsquared_adj, rel=1e-10)
        assert ours.residual_std[j] == pytest.approx(np.sqrt(fit.scale), rel=1e-10)


def test_fama_french_factors_load_in_decimal():
    f = fama_french.load_fama_french_3f()
    assert f.index[0] == 192607 and f.index[-1] == 201811 and len(f) == 1109
    assert f.loc[192607, "mkt_rf"] == pytest.approx(0.0296)
    assert f.loc[192607, "rf"] == pytest.approx(0.0022)
