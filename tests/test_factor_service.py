"""FactorService end to end: the public Python client against a real server on
127.0.0.1, checked against the engines run in-process (themselves checked
against toraniko, pandas and statsmodels), and bad input rejected with
INVALID_ARGUMENT naming the field while the server keeps serving."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from factor_panel import sp500_panel
from tickwire.engines import factor_model, factor_returns, factor_styles
from tickwire.factor.v1 import factor_pb2
from tickwire.routing.backends import NumpyBackend
from tickwire_client import AsyncClient, TickwireError
from tickwire_client.factor import risk_model_request

#: A shorter model than the demo's, to keep the suite fast.
MOMENTUM = {"momentum_trailing_days": 126, "momentum_half_life_days": 63, "momentum_lag_days": 20}
SETTINGS = factor_model.ModelSettings(momentum=factor_styles.MomentumParams(126, 63.0, 20, 0.01))


@pytest.fixture(scope="module")
def panel():
    return sp500_panel()


def _labels(panel) -> list[str]:
    return [panel.sector_names[i] for i in panel.sectors]


def _fundamentals(panel) -> dict:
    return {
        "book_value_per_share": panel.book_per_share,
        "sales_per_share": panel.sales_per_share,
        "earnings_per_share": panel.earnings_per_share,
    }


def test_estimate_risk_model_through_the_rpc(client, panel):
    closes = panel.closes[-400:]
    n = closes.shape[1]
    weights = np.vstack([np.full(n, 1.0 / n), np.r_[np.full(50, 0.02), np.zeros(n - 50)]])
    m = client.factor.estimate_risk_model(
        closes,
        panel.shares,
        _labels(panel),
        **_fundamentals(panel),
        **MOMENTUM,
        portfolio_weights=weights,
        include_residual_returns=True,
        backend="numpy",
    )
    expected = factor_model.estimate_risk_model(
        NumpyBackend(),
        closes,
        panel.shares,
        panel.sectors,
        panel.sector_names,
        panel.book_per_share,
        panel.sales_per_share,
        panel.earnings_per_share,
        SETTINGS,
        portfolio_weights=weights,
    )
    assert m.factor_names == ["market", *panel.sector_names, "momentum", "size", "value"]
    assert m.first_date_index == 145
    assert m.factor_returns.shape == (399 - 145, 15)
    np.testing.assert_array_equal(m.factor_returns, expected.factor_returns)
    np.testing.assert_array_equal(m.factor_covariance, expected.factor_covariance)
    np.testing.assert_array_equal(m.residual_returns, expected.residual_returns)
    assert m.style_scores is None
    risk = m.portfolio
    np.testing.assert_allclose(risk.factor_contributions.sum(1), risk.factor_variance, rtol=1e-12)
    np.testing.assert_allclose(
        risk.factor_variance + risk.specific_variance, risk.total_variance, rtol=1e-14
    )
    assert m.execution.operation == "factor.risk_model"
    assert m.execution.backend_used == "numpy"
    # The same decomposition from the model's parts, through DecomposePortfolioRisk.
    d = client.factor.decompose_portfolio_risk(
        m.exposures, m.factor_covariance, m.specific_variance, weights
    )
    np.testing.assert_allclose(d.total_variance, risk.total_variance, rtol=1e-12)
    np.testing.assert_allclose(d.factor_contributions, risk.factor_contributions, rtol=1e-12)


def test_style_scores_and_factor_returns_through_the_rpc(client, panel):
    r, caps = panel.returns()[:200], panel.market_caps()[:200]
    ratios = panel.ratios()
    s = client.factor.style_scores(
        r,
        caps,
        *(x[:200] for x in ratios),
        momentum_trailing_days=60,
        momentum_half_life_days=30,
        momentum_lag_days=10,
        backend="torch-cpu",
    )
    assert s.execution.backend_used == "torch-cpu"
    expected = factor_styles.style_scores(
        NumpyBackend(),
        r,
        caps,
        *(x[:200] for x in ratios),
        momentum=factor_styles.MomentumParams(60, 30.0, 10, 0.01),
    )
    assert s.first_valid_date == 69
    np.testing.assert_allclose(s.momentum, expected.momentum, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.size, expected.size, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.value, expected.value, rtol=0, atol=1e-12)

    first = s.first_valid_date
    styles = np.stack([s.momentum, s.size, s.value], 2)[first:]
    fr = client.factor.factor_returns(
        r[first:],
        caps[first:],
        _labels(panel),
        styles,
        style_names=["mom", "size", "value"],
        sector_constraint="cap_weighted",
    )
    ref = factor_returns.factor_returns(
        NumpyBackend(),
        r[first:],
        caps[first:],
        panel.sectors,
        len(panel.sector_names),
        styles,
        sector_constraint="cap_weighted",
    )
    assert fr.factor_names[-3:] == ["mom", "size", "value"]
    np.testing.assert_allclose(fr.factor_returns, ref.factor_returns, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fr.residual_returns, ref.residual_returns, rtol=0, atol=1e-12)


def test_fama_french_through_the_rpc_with_the_risk_free_rate(client):
    from tickwire.engines import factor_fama_french
    from tickwire.feeds import fama_french

    rng = np.random.default_rng(11)
    months = np.array([y * 100 + m for y in range(2010, 2018) for m in range(1, 13)])
    f = fama_french.load_fama_french_3f().loc[months]
    x = f[list(fama_french.FACTORS)].to_numpy()
    excess = 0.001 + x @ np.array([[1.1, 0.9], [0.3, -0.2], [-0.4, 0.5]])
    excess += rng.normal(0.0, 0.01, excess.shape)
    raw = excess + f["rf"].to_numpy()[:, None]
    out = client.factor.regress_fama_french(raw, months)
    ref = factor_fama_french.regress_factors(NumpyBackend(), excess, x)
    assert out.coefficient_names == ["alpha", "mkt_rf", "smb", "hml"]
    assert out.num_observations == 96
    np.testing.assert_allclose(out.coefficients, ref.coefficients, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out.t_statistics, ref.t_statistics, rtol=1e-10)
    np.testing.assert_allclose(out.r_squared, ref.r_squared, rtol=1e-12)
    assert np.abs(out.coefficients[:, 1:] - [[1.1, 0.3, -0.4], [0.9, -0.2, 0.5]]).max() < 0.15


def test_async_client_estimates_the_model(server, panel):
    async def go():
        async with AsyncClient(server.target, trace=False) as tw:
            return await tw.factor.estimate_risk_model(
                panel.closes[-300:], panel.shares, _labels(panel), **MOMENTUM
            )

    m = asyncio.run(go())
    assert m.factor_names[-2:] == ["momentum", "size"]  # no fundamentals: no value factor
    assert m.exposures.shape == (len(panel.symbols), 14)


def _violations(err: TickwireError) -> dict[str, str]:
    return {v.field: v.description for v in err.field_violations}


def _invalid(call) -> dict[str, str]:
    with pytest.raises(TickwireError) as info:
        call()
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return _violations(info.value)


def test_bad_input_is_rejected_naming_the_field(client, panel):
    closes = panel.closes[-300:].copy()
    labels = _labels(panel)
    bad = closes.copy()
    bad[5, 3] = np.nan
    assert "closes.data" in _invalid(
        lambda: client.factor.estimate_risk_model(bad, panel.shares, labels, **MOMENTUM)
    )
    assert "closes" in _invalid(
        lambda: client.factor.estimate_risk_model(-closes, panel.shares, labels, **MOMENTUM)
    )
    assert "shares_outstanding.shape" in _invalid(
        lambda: client.factor.estimate_risk_model(closes, panel.shares[:-1], labels, **MOMENTUM)
    )
    assert "sectors" in _invalid(
        lambda: client.factor.estimate_risk_model(closes, panel.shares, labels[:-1], **MOMENTUM)
    )
    fields = _invalid(
        lambda: client.factor.estimate_risk_model(
            closes,
            panel.shares,
            labels,
            momentum_trailing_days=400,
            momentum_half_life_days=-1,
            covariance_half_life_days=float("inf"),
            size_lower_quantile=1.5,
        )
    )
    assert {
        "closes.shape",
        "momentum.half_life_days",
        "covariance_half_life_days",
        "size.lower_quantile",
    } <= set(fields)
    assert "portfolio_weights.shape" in _invalid(
        lambda: client.factor.estimate_risk_model(
            closes, panel.shares, labels, portfolio_weights=np.ones((1, 3)), **MOMENTUM
        )
    )
    inf_book = panel.book_per_share.copy()
    inf_book[0] = np.inf
    assert "book_value_per_share.data" in _invalid(
        lambda: client.factor.estimate_risk_model(
            closes,
            panel.shares,
            labels,
            book_value_per_share=inf_book,
            sales_per_share=panel.sales_per_share,
            earnings_per_share=panel.earnings_per_share,
            **MOMENTUM,
        )
    )
    # the server keeps serving
    assert client.health() == "SERVING"


def test_bad_factor_returns_and_regressions_are_rejected(client, panel):
    r, caps = panel.returns()[:20], panel.market_caps()[:20]
    labels = _labels(panel)
    styles = np.random.default_rng(0).standard_normal((20, r.shape[1], 2))
    assert "styles.shape" in _invalid(
        lambda: client.factor.factor_returns(r, caps, labels, styles[:, :10])
    )
    assert "market_caps" in _invalid(lambda: client.factor.factor_returns(r, -caps, labels, styles))
    assert "regression.winsor_factor" in _invalid(
        lambda: client.factor.factor_returns(r, caps, labels, styles, winsor_factor=0.7)
    )
    one_sector = ["Energy"] * r.shape[1]
    assert "sector_names" in _invalid(
        lambda: client.factor.factor_returns(r, caps, one_sector, styles)
    )
    assert "months" in _invalid(
        lambda: client.factor.regress_fama_french(np.zeros(12), range(201801, 201813))
    )
    assert "months" in _invalid(
        lambda: client.factor.regress_fama_french(np.zeros(6), [201001, 201003, 201002] * 2)
    )
    assert "weights.shape" in _invalid(
        lambda: client.factor.decompose_portfolio_risk(
            np.ones((5, 2)), np.eye(2), np.ones(5), np.ones((1, 4))
        )
    )
    assert "factor_covariance" in _invalid(
        lambda: client.factor.decompose_portfolio_risk(
            np.ones((5, 2)), np.array([[1.0, 0.5], [0.0, 1.0]]), np.ones(5), np.ones(5)
        )
    )


def test_missing_required_tensor_and_unknown_enum(client, panel):
    req = risk_model_request(panel.closes[-300:], panel.shares, _labels(panel), **MOMENTUM)
    req.ClearField("closes")
    req.regression.sector_constraint = 7
    with pytest.raises(grpc.RpcError) as info:
        client.factor._rpc.EstimateRiskModel(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = TickwireError.from_rpc_error(info.value)
    assert {"closes", "regression.sector_constraint"} <= set(_violations(err))
    assert factor_pb2.SECTOR_CONSTRAINT_CAP_WEIGHTED == 2


def test_a_batch_too_large_for_one_call_is_rejected(client, panel, monkeypatch):
    from tickwire.services import factor as factor_service

    monkeypatch.setattr(factor_service, "MAX_REGRESSION_VALUES", 100_000)
    fields = _invalid(
        lambda: client.factor.estimate_risk_model(
            panel.closes[-300:], panel.shares, _labels(panel), **MOMENTUM
        )
    )
    assert "split the dates" in fields["closes.shape"]
    r = panel.returns()[:20]
    styles = np.zeros((20, r.shape[1], 1))
    assert "returns.shape" in _invalid(
        lambda: client.factor.factor_returns(r, panel.market_caps()[:20], _labels(panel), styles)
    )


def test_a_deadline_shorter_than_the_model_is_deadline_exceeded(client, panel):
    labels = _labels(panel)
    with pytest.raises(TickwireError) as info:
        client.factor.estimate_risk_model(
            panel.closes, panel.shares, labels, momentum_trailing_days=252, timeout=0.02
        )
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    m = client.factor.estimate_risk_model(panel.closes[-300:], panel.shares, labels, **MOMENTUM)
    assert m.factor_returns.shape[1] == 14
