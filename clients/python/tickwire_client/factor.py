"""``tickwire.factor.v1.FactorService`` from Python: NumPy panels in, dataclasses out.

Panels are (T, N) arrays (dates x assets; a DataFrame works). ``sectors`` is
one label per asset (e.g. GICS sector names); the client sends sorted
distinct labels and a code per asset, so factor columns follow toraniko's
order (market, sectors by name, styles). Settings left at None take the
server's defaults (toraniko's).

>>> model = tw.factor.estimate_risk_model(closes, shares, sectors,      # doctest: +SKIP
...                                       momentum_trailing_days=252,
...                                       portfolio_weights=w)
>>> model.portfolio.total_volatility                                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tickwire.factor.v1 import factor_pb2, factor_pb2_grpc

from tickwire_client.arrays import from_tensor, to_tensor
from tickwire_client.calls import call, call_async
from tickwire_client.risk import Execution, _execution

SECTOR_CONSTRAINTS = {
    "equal": factor_pb2.SECTOR_CONSTRAINT_EQUAL,
    "cap_weighted": factor_pb2.SECTOR_CONSTRAINT_CAP_WEIGHTED,
}


@dataclass(frozen=True)
class StyleScores:
    """(T, N) momentum (NaN before ``first_valid_date``), size and value (or None)."""

    momentum: np.ndarray
    size: np.ndarray
    value: np.ndarray | None
    first_valid_date: int
    execution: Execution


@dataclass(frozen=True)
class FactorReturns:
    """(D, F) factor returns named by ``factor_names`` and (D, N) residual returns."""

    factor_names: list[str]
    factor_returns: np.ndarray
    residual_returns: np.ndarray
    execution: Execution


@dataclass(frozen=True)
class PortfolioRisk:
    """Annualised risk of P portfolios: (P, F) exposures and contributions, (P,) the rest.

    ``total_variance = factor_variance + specific_variance`` and
    ``factor_contributions.sum(axis=1) == factor_variance``.
    """

    exposures: np.ndarray
    total_variance: np.ndarray
    factor_variance: np.ndarray
    specific_variance: np.ndarray
    total_volatility: np.ndarray
    factor_contributions: np.ndarray

    @classmethod
    def from_proto(cls, r: factor_pb2.PortfolioRisk) -> PortfolioRisk:
        """Decode ``tickwire.factor.v1.PortfolioRisk``."""
        return cls(
            from_tensor(r.exposures),
            from_tensor(r.total_variance),
            from_tensor(r.factor_variance),
            from_tensor(r.specific_variance),
            from_tensor(r.total_volatility),
            from_tensor(r.factor_contributions),
        )


@dataclass(frozen=True)
class RiskModel:
    """An estimated factor risk model (daily units; see ``EstimateRiskModelResponse``)."""

    factor_names: list[str]
    first_date_index: int
    factor_returns: np.ndarray
    factor_covariance: np.ndarray
    specific_variance: np.ndarray
    exposures: np.ndarray
    residual_returns: np.ndarray | None
    style_scores: np.ndarray | None
    portfolio: PortfolioRisk | None
    execution: Execution


@dataclass(frozen=True)
class FamaFrenchRegression:
    """OLS on alpha + Mkt-RF, SMB, HML: (P, 4) coefficient arrays, (P,) fit statistics."""

    coefficient_names: list[str]
    coefficients: np.ndarray
    standard_errors: np.ndarray
    t_statistics: np.ndarray
    p_values: np.ndarray
    r_squared: np.ndarray
    adjusted_r_squared: np.ndarray
    residual_std: np.ndarray
    num_observations: int
    execution: Execution


# ----- request builders (shared by the blocking and asyncio clients) ----------------
def _sector_fields(sectors: Any) -> dict[str, Any]:
    labels = [str(s) for s in np.asarray(sectors).ravel()]
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    return {"sectors": [index[s] for s in labels], "sector_names": names}


def _momentum(
    trailing_days, half_life_days, lag_days, winsor_factor
) -> factor_pb2.MomentumSettings:
    m = factor_pb2.MomentumSettings(
        trailing_days=trailing_days or 0, half_life_days=half_life_days or 0.0
    )
    if lag_days is not None:
        m.lag_days = lag_days
    if winsor_factor is not None:
        m.winsor_factor = winsor_factor
    return m


def _size(lower: float | None, upper: float | None) -> factor_pb2.SizeSettings:
    s = factor_pb2.SizeSettings()
    if lower is not None:
        s.lower_quantile = lower
    if upper is not None:
        s.upper_quantile = upper
    return s


def _regression(winsor_factor, residualize_styles, sector_constraint) -> Any:
    if sector_constraint is not None and sector_constraint not in SECTOR_CONSTRAINTS:
        raise ValueError(f"sector_constraint must be one of {sorted(SECTOR_CONSTRAINTS)}")
    r = factor_pb2.RegressionSettings(
        sector_constraint=SECTOR_CONSTRAINTS.get(
            sector_constraint, factor_pb2.SECTOR_CONSTRAINT_UNSPECIFIED
        )
    )
    if winsor_factor is not None:
        r.winsor_factor = winsor_factor
    if residualize_styles is not None:
        r.residualize_styles = residualize_styles
    return r


def style_scores_request(
    returns: Any,
    market_caps: Any,
    book_to_price: Any = None,
    sales_to_price: Any = None,
    earnings_to_price: Any = None,
    momentum_trailing_days: int | None = None,
    momentum_half_life_days: float | None = None,
    momentum_lag_days: int | None = None,
    momentum_winsor_factor: float | None = None,
    size_lower_quantile: float | None = None,
    size_upper_quantile: float | None = None,
    value_winsor_factor: float = 0.0,
    backend: str | None = None,
) -> factor_pb2.ComputeStyleScoresRequest:
    """The ``ComputeStyleScoresRequest`` of :meth:`FactorClient.style_scores`."""
    req = factor_pb2.ComputeStyleScoresRequest(
        returns=to_tensor(returns),
        market_caps=to_tensor(market_caps),
        momentum=_momentum(
            momentum_trailing_days,
            momentum_half_life_days,
            momentum_lag_days,
            momentum_winsor_factor,
        ),
        size=_size(size_lower_quantile, size_upper_quantile),
        value_winsor_factor=value_winsor_factor,
        execution=_execution(backend, False),
    )
    for name, value in (
        ("book_to_price", book_to_price),
        ("sales_to_price", sales_to_price),
        ("earnings_to_price", earnings_to_price),
    ):
        if value is not None:
            getattr(req, name).CopyFrom(to_tensor(value))
    return req


def factor_returns_request(
    returns: Any,
    market_caps: Any,
    sectors: Sequence[Any],
    styles: Any,
    style_names: Sequence[str] = (),
    winsor_factor: float | None = None,
    residualize_styles: bool | None = None,
    sector_constraint: str | None = None,
    backend: str | None = None,
) -> factor_pb2.EstimateFactorReturnsRequest:
    """The ``EstimateFactorReturnsRequest`` of :meth:`FactorClient.factor_returns`."""
    return factor_pb2.EstimateFactorReturnsRequest(
        returns=to_tensor(returns),
        market_caps=to_tensor(market_caps),
        styles=to_tensor(styles),
        style_names=list(style_names),
        regression=_regression(winsor_factor, residualize_styles, sector_constraint),
        execution=_execution(backend, False),
        **_sector_fields(sectors),
    )


def risk_model_request(
    closes: Any,
    shares_outstanding: Any,
    sectors: Sequence[Any],
    book_value_per_share: Any = None,
    sales_per_share: Any = None,
    earnings_per_share: Any = None,
    momentum_trailing_days: int | None = None,
    momentum_half_life_days: float | None = None,
    momentum_lag_days: int | None = None,
    momentum_winsor_factor: float | None = None,
    size_lower_quantile: float | None = None,
    size_upper_quantile: float | None = None,
    value_winsor_factor: float = 0.0,
    winsor_factor: float | None = None,
    residualize_styles: bool | None = None,
    sector_constraint: str | None = None,
    covariance_half_life_days: float = 0.0,
    specific_half_life_days: float = 0.0,
    periods_per_year: float = 0.0,
    portfolio_weights: Any = None,
    include_residual_returns: bool = False,
    include_style_scores: bool = False,
    backend: str | None = None,
) -> factor_pb2.EstimateRiskModelRequest:
    """The ``EstimateRiskModelRequest`` of :meth:`FactorClient.estimate_risk_model`."""
    req = factor_pb2.EstimateRiskModelRequest(
        closes=to_tensor(closes),
        shares_outstanding=to_tensor(shares_outstanding),
        momentum=_momentum(
            momentum_trailing_days,
            momentum_half_life_days,
            momentum_lag_days,
            momentum_winsor_factor,
        ),
        size=_size(size_lower_quantile, size_upper_quantile),
        value_winsor_factor=value_winsor_factor,
        regression=_regression(winsor_factor, residualize_styles, sector_constraint),
        covariance_half_life_days=covariance_half_life_days,
        specific_half_life_days=specific_half_life_days,
        periods_per_year=periods_per_year,
        include_residual_returns=include_residual_returns,
        include_style_scores=include_style_scores,
        execution=_execution(backend, False),
        **_sector_fields(sectors),
    )
    for name, value in (
        ("book_value_per_share", book_value_per_share),
        ("sales_per_share", sales_per_share),
        ("earnings_per_share", earnings_per_share),
    ):
        if value is not None:
            getattr(req, name).CopyFrom(to_tensor(value))
    if portfolio_weights is not None:
        req.portfolio_weights.CopyFrom(to_tensor(np.atleast_2d(np.asarray(portfolio_weights))))
    return req


def decompose_request(
    exposures: Any,
    factor_covariance: Any,
    specific_variance: Any,
    weights: Any,
    periods_per_year: float = 0.0,
    backend: str | None = None,
) -> factor_pb2.DecomposePortfolioRiskRequest:
    """The ``DecomposePortfolioRiskRequest`` of :meth:`FactorClient.decompose_portfolio_risk`."""
    return factor_pb2.DecomposePortfolioRiskRequest(
        exposures=to_tensor(exposures),
        factor_covariance=to_tensor(factor_covariance),
        specific_variance=to_tensor(specific_variance),
        weights=to_tensor(np.atleast_2d(np.asarray(weights, dtype=np.float64))),
        periods_per_year=periods_per_year,
        execution=_execution(backend, False),
    )


def fama_french_request(
    returns: Any,
    months: Sequence[int],
    returns_are_excess: bool = False,
    backend: str | None = None,
) -> factor_pb2.RegressFamaFrenchRequest:
    """The ``RegressFamaFrenchRequest`` of :meth:`FactorClient.regress_fama_french`."""
    r = np.asarray(returns, dtype=np.float64)
    return factor_pb2.RegressFamaFrenchRequest(
        returns=to_tensor(r[:, None] if r.ndim == 1 else r),
        months=[int(m) for m in months],
        returns_are_excess=returns_are_excess,
        execution=_execution(backend, False),
    )


# ----- response decoders -----------------------------------------------------------
def _maybe(t: Any) -> np.ndarray | None:
    return from_tensor(t) if t.dtype else None


def _styles(r: factor_pb2.ComputeStyleScoresResponse) -> StyleScores:
    return StyleScores(
        from_tensor(r.momentum),
        from_tensor(r.size),
        _maybe(r.value),
        r.first_valid_date,
        Execution.from_proto(r.execution),
    )


def _factor_returns(r: factor_pb2.EstimateFactorReturnsResponse) -> FactorReturns:
    return FactorReturns(
        list(r.factor_names),
        from_tensor(r.factor_returns),
        from_tensor(r.residual_returns),
        Execution.from_proto(r.execution),
    )


def _risk_model(r: factor_pb2.EstimateRiskModelResponse) -> RiskModel:
    return RiskModel(
        factor_names=list(r.factor_names),
        first_date_index=r.first_date_index,
        factor_returns=from_tensor(r.factor_returns),
        factor_covariance=from_tensor(r.factor_covariance),
        specific_variance=from_tensor(r.specific_variance),
        exposures=from_tensor(r.exposures),
        residual_returns=_maybe(r.residual_returns),
        style_scores=_maybe(r.style_scores),
        portfolio=PortfolioRisk.from_proto(r.portfolio_risk)
        if r.HasField("portfolio_risk")
        else None,
        execution=Execution.from_proto(r.execution),
    )


def _fama_french(r: factor_pb2.RegressFamaFrenchResponse) -> FamaFrenchRegression:
    return FamaFrenchRegression(
        list(r.coefficient_names),
        from_tensor(r.coefficients),
        from_tensor(r.standard_errors),
        from_tensor(r.t_statistics),
        from_tensor(r.p_values),
        from_tensor(r.r_squared),
        from_tensor(r.adjusted_r_squared),
        from_tensor(r.residual_std),
        r.num_observations,
        Execution.from_proto(r.execution),
    )


class FactorClient:
    """Blocking calls to ``FactorService``; reached as ``Client(...).factor``.

    Every method takes ``timeout`` (seconds) and ``backend`` (None routes) and
    raises :class:`TickwireError` on a failed call. Arguments are those of the
    matching ``*_request`` builder of this module.
    """

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._rpc = factor_pb2_grpc.FactorServiceStub(channel)
        self._timeout = timeout

    def _call(self, name: str, request: Any, timeout: float | None) -> Any:
        return call(getattr(self._rpc, name), request, timeout or self._timeout)

    def style_scores(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> StyleScores:
        """Momentum, size and value scores; see :func:`style_scores_request`."""
        req = style_scores_request(*args, **kwargs)
        return _styles(self._call("ComputeStyleScores", req, timeout))

    def factor_returns(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> FactorReturns:
        """Factor and residual returns; see :func:`factor_returns_request`."""
        req = factor_returns_request(*args, **kwargs)
        return _factor_returns(self._call("EstimateFactorReturns", req, timeout))

    def estimate_risk_model(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> RiskModel:
        """The whole model from closes; see :func:`risk_model_request`."""
        req = risk_model_request(*args, **kwargs)
        return _risk_model(self._call("EstimateRiskModel", req, timeout))

    def decompose_portfolio_risk(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> PortfolioRisk:
        """Factor / specific / per-factor risk; see :func:`decompose_request`."""
        req = decompose_request(*args, **kwargs)
        resp = self._call("DecomposePortfolioRisk", req, timeout)
        return PortfolioRisk.from_proto(resp.portfolio_risk)

    def regress_fama_french(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> FamaFrenchRegression:
        """Fama-French three-factor OLS of monthly returns; see :func:`fama_french_request`."""
        req = fama_french_request(*args, **kwargs)
        return _fama_french(self._call("RegressFamaFrench", req, timeout))


class AsyncFactorClient:
    """asyncio calls to ``FactorService``; the same methods as :class:`FactorClient`."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._rpc = factor_pb2_grpc.FactorServiceStub(channel)
        self._timeout = timeout

    async def _call(self, name: str, request: Any, timeout: float | None) -> Any:
        return await call_async(getattr(self._rpc, name), request, timeout or self._timeout)

    async def style_scores(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> StyleScores:
        """See :meth:`FactorClient.style_scores`."""
        req = style_scores_request(*args, **kwargs)
        return _styles(await self._call("ComputeStyleScores", req, timeout))

    async def factor_returns(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> FactorReturns:
        """See :meth:`FactorClient.factor_returns`."""
        req = factor_returns_request(*args, **kwargs)
        return _factor_returns(await self._call("EstimateFactorReturns", req, timeout))

    async def estimate_risk_model(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> RiskModel:
        """See :meth:`FactorClient.estimate_risk_model`."""
        req = risk_model_request(*args, **kwargs)
        return _risk_model(await self._call("EstimateRiskModel", req, timeout))

    async def decompose_portfolio_risk(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> PortfolioRisk:
        """See :meth:`FactorClient.decompose_portfolio_risk`."""
        req = decompose_request(*args, **kwargs)
        resp = await self._call("DecomposePortfolioRisk", req, timeout)
        return PortfolioRisk.from_proto(resp.portfolio_risk)

    async def regress_fama_french(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> FamaFrenchRegression:
        """See :meth:`FactorClient.regress_fama_french`."""
        req = fama_french_request(*args, **kwargs)
        return _fama_french(await self._call("RegressFamaFrench", req, timeout))
