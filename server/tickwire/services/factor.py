"""``tickwire.factor.v1.FactorService``: style scores, factor returns, the risk
model, portfolio risk decomposition and Fama-French regressions.

Validation and conversion only; the math is in ``tickwire.engines.factor_*``.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from tickwire.common.v1 import tensor_pb2
from tickwire.engines import factor_fama_french as ff_engine
from tickwire.engines import factor_model, factor_returns, factor_risk, factor_styles
from tickwire.factor.v1 import factor_pb2, factor_pb2_grpc
from tickwire.feeds import fama_french
from tickwire.services import errors, tensors
from tickwire.services.errors import Violations
from tickwire.services.runtime import EngineRuntime, ServiceSpec, rpc

#: Most sectors, styles or portfolios accepted in one request.
MAX_SECTORS = 256
MAX_STYLES = 64
MAX_PORTFOLIOS = 10_000
#: Longest momentum window and half-lives, in days.
MAX_WINDOW_DAYS = 10_000
#: Largest dates x assets x factors of one regression batch (its temporaries
#: are arrays of this many float64 values: 2 GiB).
MAX_REGRESSION_VALUES = 1 << 28

_CONSTRAINTS = {
    factor_pb2.SECTOR_CONSTRAINT_UNSPECIFIED: "equal",
    factor_pb2.SECTOR_CONSTRAINT_EQUAL: "equal",
    factor_pb2.SECTOR_CONSTRAINT_CAP_WEIGHTED: "cap_weighted",
}
_NAN_OK_DTYPES = {
    tensor_pb2.D_TYPE_FLOAT64: np.dtype("<f8"),
    tensor_pb2.D_TYPE_FLOAT32: np.dtype("<f4"),
}


# ----- field decoding ---------------------------------------------------------------
def _required(request: Any, field: str, v: Violations, ndim: int) -> np.ndarray | None:
    if not request.HasField(field):
        v.add(field, "required")
        return None
    return tensors.decode(getattr(request, field), field, v, ndim=ndim)


def _nan_ok(request: Any, field: str, v: Violations, shape: tuple[int, ...]) -> np.ndarray | None:
    """An optional float tensor of ``shape`` where NaN marks a missing value
    (infinities are still rejected)."""
    t = getattr(request, field)
    dtype = _NAN_OK_DTYPES.get(t.dtype)
    if dtype is None:
        v.add(f"{field}.dtype", "must be D_TYPE_FLOAT64 or D_TYPE_FLOAT32")
        return None
    if tuple(t.shape) != shape:
        v.add(f"{field}.shape", f"must be {list(shape)}, got {list(t.shape)}")
        return None
    data = t.data
    if len(data) != int(np.prod(shape)) * dtype.itemsize:
        v.add(f"{field}.data", f"holds {len(data)} bytes; shape {list(shape)} needs more or less")
        return None
    a = np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.float64)
    if np.isinf(a).any():
        v.add(f"{field}.data", "must not hold infinities (NaN marks a missing value)")
        return None
    return a


def _positive(a: np.ndarray | None, field: str, v: Violations) -> np.ndarray | None:
    if a is not None and not (a > 0).all():
        v.add(field, "every value must be > 0")
        return None
    return a


def _sectors(request: Any, n: int | None, v: Violations) -> tuple[np.ndarray | None, list[str]]:
    names = list(request.sector_names)
    codes = np.asarray(request.sectors, dtype=np.int64)
    if not 2 <= len(names) <= MAX_SECTORS:
        v.add("sector_names", f"give 2 to {MAX_SECTORS} sector names, got {len(names)}")
        return None, names
    if len(set(names)) != len(names):
        v.add("sector_names", "must be distinct")
        return None, names
    if n is not None and codes.shape[0] != n:
        v.add("sectors", f"has {codes.shape[0]} codes; there are {n} assets")
        return None, names
    if codes.size and (codes.min() < 0 or codes.max() >= len(names)):
        v.add("sectors", f"codes must be in [0, {len(names)})")
        return None, names
    empty = np.setdiff1d(np.arange(len(names)), codes)
    if empty.size:
        v.add("sectors", f"sector {names[int(empty[0])]!r} has no assets")
        return None, names
    return codes, names


def _fraction(value: float, field: str, v: Violations, hi: float = 0.5) -> float:
    if not (np.isfinite(value) and 0.0 <= value < hi):
        v.add(field, f"must be in [0, {hi}), got {value}")
    return float(value)


def _momentum(m: factor_pb2.MomentumSettings, v: Violations) -> factor_styles.MomentumParams:
    window = m.trailing_days or 504
    half_life = m.half_life_days or 126.0
    lag = m.lag_days if m.HasField("lag_days") else 20
    winsor = m.winsor_factor if m.HasField("winsor_factor") else 0.01
    if not 1 <= window <= MAX_WINDOW_DAYS:
        v.add("momentum.trailing_days", f"must be in [1, {MAX_WINDOW_DAYS}], got {window}")
    if not (np.isfinite(half_life) and 0 < half_life <= MAX_WINDOW_DAYS):
        v.add("momentum.half_life_days", f"must be in (0, {MAX_WINDOW_DAYS}], got {half_life}")
    if not 0 <= lag <= MAX_WINDOW_DAYS:
        v.add("momentum.lag_days", f"must be in [0, {MAX_WINDOW_DAYS}], got {lag}")
    _fraction(winsor, "momentum.winsor_factor", v)
    return factor_styles.MomentumParams(int(window), float(half_life), int(lag), float(winsor))


def _size(s: factor_pb2.SizeSettings, v: Violations) -> tuple[float, float]:
    lo = s.lower_quantile if s.HasField("lower_quantile") else 0.2
    hi = s.upper_quantile if s.HasField("upper_quantile") else 0.8
    for name, q in (("size.lower_quantile", lo), ("size.upper_quantile", hi)):
        if not (np.isfinite(q) and 0.0 <= q <= 1.0):
            v.add(name, f"must be in [0, 1], got {q}")
    return float(lo), float(hi)


def _regression(r: factor_pb2.RegressionSettings, v: Violations) -> dict[str, Any]:
    winsor = r.winsor_factor if r.HasField("winsor_factor") else 0.05
    _fraction(winsor, "regression.winsor_factor", v)
    if r.sector_constraint not in _CONSTRAINTS:
        v.add("regression.sector_constraint", "must be EQUAL or CAP_WEIGHTED")
    return {
        "winsor_factor": float(winsor),
        "residualize_styles": r.residualize_styles if r.HasField("residualize_styles") else True,
        "sector_constraint": _CONSTRAINTS.get(r.sector_constraint, "equal"),
    }


def _half_life(value: float, default: float, field: str, v: Violations) -> float:
    h = value or default
    if not (np.isfinite(h) and 0 < h <= MAX_WINDOW_DAYS):
        v.add(field, f"must be in (0, {MAX_WINDOW_DAYS}], got {h}")
    return float(h)


def _weights(request: Any, field: str, n: int | None, v: Violations) -> np.ndarray | None:
    w = tensors.decode(getattr(request, field), field, v, ndim=2)
    if w is None:
        return None
    if w.shape[0] > MAX_PORTFOLIOS:
        v.add(f"{field}.shape", f"at most {MAX_PORTFOLIOS} portfolios")
        return None
    if n is not None and w.shape[1] != n:
        v.add(f"{field}.shape", f"must have {n} columns (one per asset), got {w.shape[1]}")
        return None
    return w


def _check_batch(dates: int, assets: int, factors: int, field: str, v: Violations) -> None:
    if dates * assets * factors > MAX_REGRESSION_VALUES:
        v.add(
            field,
            f"{dates} dates x {assets} assets x {factors} factors exceed the "
            f"{MAX_REGRESSION_VALUES} values of one batch; split the dates into several calls",
        )


def _portfolio_risk(r: factor_risk.PortfolioRisk) -> factor_pb2.PortfolioRisk:
    return factor_pb2.PortfolioRisk(
        exposures=tensors.encode(r.exposures),
        total_variance=tensors.encode(r.total_variance),
        factor_variance=tensors.encode(r.factor_variance),
        specific_variance=tensors.encode(r.specific_variance),
        total_volatility=tensors.encode(r.total_volatility),
        factor_contributions=tensors.encode(r.factor_contributions),
    )


class FactorServicer(factor_pb2_grpc.FactorServiceServicer):
    """Serves :class:`tickwire.factor.v1.FactorService` over an :class:`EngineRuntime`."""

    def __init__(self, runtime: EngineRuntime) -> None:
        self.rt = runtime

    def _done(self, v: Violations, request: Any) -> None:
        self.rt.check_execution(request.execution, "execution", v)
        if v:
            raise errors.invalid_argument(v)

    # ----- decoding ------------------------------------------------------------------
    def _decode_styles(self, request: factor_pb2.ComputeStyleScoresRequest) -> dict[str, Any]:
        v = Violations()
        r = _required(request, "returns", v, 2)
        caps = _positive(_required(request, "market_caps", v, 2), "market_caps", v)
        if r is not None and r.shape[1] < 2:
            v.add("returns.shape", "need at least 2 assets")
        if r is not None and caps is not None and caps.shape != r.shape:
            v.add("market_caps.shape", f"must equal returns' {list(r.shape)}")
        momentum = _momentum(request.momentum, v)
        lo, hi = _size(request.size, v)
        vw = _fraction(request.value_winsor_factor, "value_winsor_factor", v)
        if r is not None and momentum.lag + momentum.trailing_days > r.shape[0]:
            v.add(
                "momentum.trailing_days",
                f"lag_days + trailing_days = {momentum.lag + momentum.trailing_days} exceeds "
                f"the {r.shape[0]} dates of returns",
            )
        ratios: list[np.ndarray | None] = [None, None, None]
        fields = ("book_to_price", "sales_to_price", "earnings_to_price")
        given = [request.HasField(f) for f in fields]
        if any(given) and not all(given):
            v.add(fields[given.index(False)], "the value score needs all three ratios")
        elif all(given) and r is not None:
            ratios = [_nan_ok(request, f, v, r.shape) for f in fields]
        self._done(v, request)
        return {
            "returns": r,
            "market_caps": caps,
            "book_to_price": ratios[0],
            "sales_to_price": ratios[1],
            "earnings_to_price": ratios[2],
            "momentum": momentum,
            "size_lower": lo,
            "size_upper": hi,
            "value_winsor_factor": vw,
        }

    def _decode_factor_returns(
        self, request: factor_pb2.EstimateFactorReturnsRequest
    ) -> dict[str, Any]:
        v = Violations()
        r = _required(request, "returns", v, 2)
        n = None if r is None else r.shape[1]
        caps = _positive(_required(request, "market_caps", v, 2), "market_caps", v)
        if r is not None and caps is not None and caps.shape != r.shape:
            v.add("market_caps.shape", f"must equal returns' {list(r.shape)}")
        codes, names = _sectors(request, n, v)
        x = _required(request, "styles", v, 3)
        if x is not None and r is not None and x.shape[:2] != r.shape:
            v.add("styles.shape", f"must be {[*r.shape, 'K']}, got {list(x.shape)}")
        if x is not None and x.shape[2] > MAX_STYLES:
            v.add("styles.shape", f"at most {MAX_STYLES} styles")
        style_names = list(request.style_names)
        if x is not None and style_names and len(style_names) != x.shape[2]:
            v.add("style_names", f"has {len(style_names)} names; styles has {x.shape[2]}")
        if r is not None and x is not None and n < len(names) + x.shape[2] + 1:
            v.add("returns.shape", "fewer assets than factors")
        if r is not None and x is not None:
            _check_batch(r.shape[0], n, len(names) + x.shape[2] + 1, "returns.shape", v)
        settings = _regression(request.regression, v)
        self._done(v, request)
        if not style_names:
            style_names = [f"style_{k}" for k in range(x.shape[2])]
        return {
            "returns": r,
            "market_caps": caps,
            "sectors": codes,
            "num_sectors": len(names),
            "styles": x,
            "names": ["market", *names, *style_names],
            **settings,
        }

    def _decode_model(self, request: factor_pb2.EstimateRiskModelRequest) -> dict[str, Any]:
        v = Violations()
        closes = _positive(_required(request, "closes", v, 2), "closes", v)
        n = None if closes is None else closes.shape[1]
        if n is not None and n < 2:
            v.add("closes.shape", "need at least 2 assets")
        shares = _positive(_required(request, "shares_outstanding", v, 1), "shares_outstanding", v)
        if shares is not None and n is not None and shares.shape[0] != n:
            v.add("shares_outstanding.shape", f"must be [{n}], got {list(shares.shape)}")
        codes, names = _sectors(request, n, v)
        fields = ("book_value_per_share", "sales_per_share", "earnings_per_share")
        given = [request.HasField(f) for f in fields]
        fundamentals: list[np.ndarray | None] = [None, None, None]
        if any(given) and not all(given):
            v.add(fields[given.index(False)], "the value factor needs all three fundamentals")
        elif all(given) and n is not None:
            fundamentals = [_nan_ok(request, f, v, (n,)) for f in fields]
        momentum = _momentum(request.momentum, v)
        lo, hi = _size(request.size, v)
        reg = _regression(request.regression, v)
        if closes is not None:
            usable = closes.shape[0] - 1 - (momentum.lag + momentum.trailing_days - 1)
            if usable < 2:
                v.add(
                    "closes.shape",
                    f"{closes.shape[0]} dates leave {usable} estimation dates after the momentum "
                    "warm-up (lag_days + trailing_days returns); need at least 2",
                )
        n_factors = len(names) + 2 + (1 if all(given) else 0)
        if n is not None and n < n_factors:
            v.add("closes.shape", f"{n} assets are fewer than the {n_factors} factors")
        if closes is not None:
            _check_batch(closes.shape[0], n, n_factors + 1, "closes.shape", v)
        weights = None
        if request.HasField("portfolio_weights"):
            weights = _weights(request, "portfolio_weights", n, v)
        ppy = request.periods_per_year or 252.0
        if not (np.isfinite(ppy) and 0 < ppy <= 1e6):
            v.add("periods_per_year", f"must be in (0, 1e6], got {ppy}")
        settings = factor_model.ModelSettings(
            momentum=momentum,
            size_lower=lo,
            size_upper=hi,
            value_winsor_factor=_fraction(request.value_winsor_factor, "value_winsor_factor", v),
            winsor_factor=reg["winsor_factor"],
            residualize_styles=reg["residualize_styles"],
            sector_constraint=reg["sector_constraint"],
            covariance_half_life=_half_life(
                request.covariance_half_life_days, 126.0, "covariance_half_life_days", v
            ),
            specific_half_life=_half_life(
                request.specific_half_life_days, 63.0, "specific_half_life_days", v
            ),
            periods_per_year=float(ppy),
        )
        self._done(v, request)
        return {
            "closes": closes,
            "shares_outstanding": shares,
            "sectors": codes,
            "sector_names": names,
            "book_value_per_share": fundamentals[0],
            "sales_per_share": fundamentals[1],
            "earnings_per_share": fundamentals[2],
            "settings": settings,
            "portfolio_weights": weights,
            "return_style_scores": request.include_style_scores,
        }

    def _decode_decompose(self, request: factor_pb2.DecomposePortfolioRiskRequest) -> dict:
        v = Violations()
        b = _required(request, "exposures", v, 2)
        cov = _required(request, "factor_covariance", v, 2)
        spec = _required(request, "specific_variance", v, 1)
        n = None if b is None else b.shape[0]
        w = _weights(request, "weights", n, v) if request.HasField("weights") else None
        if not request.HasField("weights"):
            v.add("weights", "required")
        if b is not None and cov is not None:
            f = b.shape[1]
            if cov.shape != (f, f):
                v.add("factor_covariance.shape", f"must be [{f}, {f}], got {list(cov.shape)}")
            elif not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-14):
                v.add("factor_covariance", "must be symmetric")
        if spec is not None and b is not None and spec.shape != (b.shape[0],):
            v.add("specific_variance.shape", f"must be [{b.shape[0]}], got {list(spec.shape)}")
        elif spec is not None and (spec < 0).any():
            v.add("specific_variance", "every value must be >= 0")
        ppy = request.periods_per_year or 252.0
        if not (np.isfinite(ppy) and 0 < ppy <= 1e6):
            v.add("periods_per_year", f"must be in (0, 1e6], got {ppy}")
        self._done(v, request)
        return {
            "exposures": b,
            "factor_covariance": cov,
            "specific_variance": spec,
            "weights": w,
            "periods_per_year": float(ppy),
        }

    def _decode_fama_french(self, request: factor_pb2.RegressFamaFrenchRequest) -> dict:
        v = Violations()
        r = _required(request, "returns", v, 2)
        months = np.asarray(request.months, dtype=np.int64)
        factors = fama_french.load_fama_french_3f()
        if r is not None and months.shape[0] != r.shape[0]:
            v.add("months", f"has {months.shape[0]} months; returns has {r.shape[0]} rows")
        elif r is not None and r.shape[0] < 5:
            v.add("returns.shape", f"need at least 5 months, got {r.shape[0]}")
        elif months.size and (np.diff(months) <= 0).any():
            v.add("months", "must be strictly increasing")
        elif months.size:
            missing = np.setdiff1d(months, factors.index.to_numpy())
            if missing.size:
                v.add(
                    "months",
                    f"{int(missing[0])} is not a month of the factor file "
                    f"({factors.index[0]} .. {factors.index[-1]}, YYYYMM)",
                )
        self._done(v, request)
        rows = factors.loc[months]
        y = r if request.returns_are_excess else r - rows["rf"].to_numpy()[:, None]
        return {
            "excess_returns": y,
            "factors": rows[list(fama_french.FACTORS)].to_numpy(),
        }

    # ----- RPCs ----------------------------------------------------------------------
    @rpc
    async def ComputeStyleScores(
        self, request: factor_pb2.ComputeStyleScoresRequest, context: grpc.aio.ServicerContext
    ) -> factor_pb2.ComputeStyleScoresResponse:
        """Momentum, size and value scores for every date and asset."""
        inputs = await self.rt.decode(self._decode_styles, request)
        result, info = await self.rt.run(
            factor_styles.STYLE_SCORES, inputs, request.execution, context
        )
        s: factor_styles.StyleScores = result.value
        with self.rt.span("encode"):
            resp = factor_pb2.ComputeStyleScoresResponse(
                momentum=tensors.encode(s.momentum),
                size=tensors.encode(s.size),
                first_valid_date=s.first_valid_date,
                execution=info,
            )
            if s.value is not None:
                resp.value.CopyFrom(tensors.encode(s.value))
            return resp

    @rpc
    async def EstimateFactorReturns(
        self, request: factor_pb2.EstimateFactorReturnsRequest, context: grpc.aio.ServicerContext
    ) -> factor_pb2.EstimateFactorReturnsResponse:
        """Factor and residual returns for every date, one batched solve."""
        inputs = await self.rt.decode(self._decode_factor_returns, request)
        names = inputs.pop("names")
        result, info = await self.rt.run(
            factor_returns.FACTOR_RETURNS, inputs, request.execution, context
        )
        r: factor_returns.FactorReturns = result.value
        with self.rt.span("encode"):
            return factor_pb2.EstimateFactorReturnsResponse(
                factor_names=names,
                factor_returns=tensors.encode(r.factor_returns),
                residual_returns=tensors.encode(r.residual_returns),
                execution=info,
            )

    @rpc
    async def EstimateRiskModel(
        self, request: factor_pb2.EstimateRiskModelRequest, context: grpc.aio.ServicerContext
    ) -> factor_pb2.EstimateRiskModelResponse:
        """Styles, factor returns, covariance, specific variance and portfolio risk."""
        inputs = await self.rt.decode(self._decode_model, request)
        result, info = await self.rt.run(
            factor_model.RISK_MODEL, inputs, request.execution, context
        )
        m: factor_model.RiskModel = result.value
        with self.rt.span("encode"):
            resp = factor_pb2.EstimateRiskModelResponse(
                factor_names=m.factor_names,
                first_date_index=m.first_date,
                factor_returns=tensors.encode(m.factor_returns),
                factor_covariance=tensors.encode(m.factor_covariance),
                specific_variance=tensors.encode(m.specific_variance),
                exposures=tensors.encode(m.exposures),
                execution=info,
            )
            if request.include_residual_returns:
                resp.residual_returns.CopyFrom(tensors.encode(m.residual_returns))
            if m.style_scores is not None:
                resp.style_scores.CopyFrom(tensors.encode(m.style_scores))
            if m.portfolio is not None:
                resp.portfolio_risk.CopyFrom(_portfolio_risk(m.portfolio))
            return resp

    @rpc
    async def DecomposePortfolioRisk(
        self, request: factor_pb2.DecomposePortfolioRiskRequest, context: grpc.aio.ServicerContext
    ) -> factor_pb2.DecomposePortfolioRiskResponse:
        """Factor and specific risk of portfolios, and each factor's share."""
        inputs = await self.rt.decode(self._decode_decompose, request)
        result, info = await self.rt.run(
            factor_risk.PORTFOLIO_RISK, inputs, request.execution, context
        )
        with self.rt.span("encode"):
            return factor_pb2.DecomposePortfolioRiskResponse(
                portfolio_risk=_portfolio_risk(result.value), execution=info
            )

    @rpc
    async def RegressFamaFrench(
        self, request: factor_pb2.RegressFamaFrenchRequest, context: grpc.aio.ServicerContext
    ) -> factor_pb2.RegressFamaFrenchResponse:
        """OLS of monthly excess returns on Mkt-RF, SMB and HML."""
        inputs = await self.rt.decode(self._decode_fama_french, request)
        result, info = await self.rt.run(
            ff_engine.REGRESS_FACTORS, inputs, request.execution, context
        )
        r: ff_engine.RegressionResult = result.value
        with self.rt.span("encode"):
            return factor_pb2.RegressFamaFrenchResponse(
                coefficient_names=["alpha", *fama_french.FACTORS],
                coefficients=tensors.encode(r.coefficients),
                standard_errors=tensors.encode(r.standard_errors),
                t_statistics=tensors.encode(r.t_statistics),
                p_values=tensors.encode(r.p_values),
                r_squared=tensors.encode(r.r_squared),
                adjusted_r_squared=tensors.encode(r.adjusted_r_squared),
                residual_std=tensors.encode(r.residual_std),
                num_observations=r.num_observations,
                execution=info,
            )


SERVICE = ServiceSpec(
    name=factor_pb2.DESCRIPTOR.services_by_name["FactorService"].full_name,
    create=FactorServicer,
    add_to_server=factor_pb2_grpc.add_FactorServiceServicer_to_server,
)
