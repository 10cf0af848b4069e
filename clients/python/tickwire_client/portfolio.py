"""``tickwire.portfolio.v1.PortfolioService`` from Python: NumPy in, dataclasses out.

A history is a (T, N) matrix of prices (``kind="prices"``, the default) or
simple returns (``kind="returns"``): any array-like, a DataFrame too, or a
:class:`~tickwire_client.risk.ScenarioSet` from ``client.risk.register_scenarios``
so that a large universe is sent once (a server that lost it answers
NOT_FOUND; the client registers it again and retries once).

>>> tw.portfolio.optimize("max_sharpe", history=prices)             # doctest: +SKIP
>>> tw.portfolio.optimize("hrp", history=prices, kind="prices")     # doctest: +SKIP
>>> tw.portfolio.efficient_frontier(history=prices, num_points=50)  # doctest: +SKIP

An infeasible problem raises :class:`TickwireError` with code
FAILED_PRECONDITION; ``err.message`` names the conflicting constraints.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from tickwire.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from tickwire.risk.v1 import risk_pb2_grpc

from tickwire_client.arrays import from_tensor
from tickwire_client.calls import call, call_async
from tickwire_client.risk import Execution, ScenarioSet, _execution, _register_request

OBJECTIVES = {
    "min_volatility": portfolio_pb2.OBJECTIVE_MIN_VOLATILITY,
    "max_sharpe": portfolio_pb2.OBJECTIVE_MAX_SHARPE,
    "efficient_return": portfolio_pb2.OBJECTIVE_EFFICIENT_RETURN,
    "efficient_risk": portfolio_pb2.OBJECTIVE_EFFICIENT_RISK,
    "max_quadratic_utility": portfolio_pb2.OBJECTIVE_MAX_QUADRATIC_UTILITY,
    "min_cvar": portfolio_pb2.OBJECTIVE_MIN_CVAR,
    "risk_parity": portfolio_pb2.OBJECTIVE_RISK_PARITY,
    "hrp": portfolio_pb2.OBJECTIVE_HIERARCHICAL_RISK_PARITY,
}
COVARIANCE_METHODS = {
    "sample": portfolio_pb2.COVARIANCE_METHOD_SAMPLE,
    "exponential": portfolio_pb2.COVARIANCE_METHOD_EXPONENTIAL,
    "semicovariance": portfolio_pb2.COVARIANCE_METHOD_SEMICOVARIANCE,
    "ledoit_wolf": portfolio_pb2.COVARIANCE_METHOD_LEDOIT_WOLF_CONSTANT_VARIANCE,
    "ledoit_wolf_constant_variance": portfolio_pb2.COVARIANCE_METHOD_LEDOIT_WOLF_CONSTANT_VARIANCE,
    "ledoit_wolf_single_factor": portfolio_pb2.COVARIANCE_METHOD_LEDOIT_WOLF_SINGLE_FACTOR,
    "ledoit_wolf_constant_correlation": (
        portfolio_pb2.COVARIANCE_METHOD_LEDOIT_WOLF_CONSTANT_CORRELATION
    ),
    "oracle_approximating": portfolio_pb2.COVARIANCE_METHOD_ORACLE_APPROXIMATING,
}
RETURN_METHODS = {
    "mean_historical": portfolio_pb2.EXPECTED_RETURNS_METHOD_MEAN_HISTORICAL,
    "ema_historical": portfolio_pb2.EXPECTED_RETURNS_METHOD_EMA_HISTORICAL,
    "capm": portfolio_pb2.EXPECTED_RETURNS_METHOD_CAPM,
}
KINDS = {"prices": portfolio_pb2.HISTORY_KIND_PRICES, "returns": portfolio_pb2.HISTORY_KIND_RETURNS}
ALLOCATION_METHODS = {
    "greedy": portfolio_pb2.ALLOCATION_METHOD_GREEDY,
    "lp": portfolio_pb2.ALLOCATION_METHOD_LP,
}


def _pick(table: Mapping[str, int], value: str, name: str) -> int:
    if value not in table:
        raise ValueError(f"{name} must be one of {sorted(table)}, got {value!r}")
    return table[value]


# --------------------------------------------------------------------------
# request pieces
# --------------------------------------------------------------------------
@dataclass
class WeightConstraints:
    """Constraints on the weights (see ``tickwire.portfolio.v1.WeightConstraints``).

    ``lower`` / ``upper``: one number for every asset or one per asset (None:
    0 or -1 when market neutral, and 1). ``sectors``: the sector of each
    asset; ``sector_lower`` / ``sector_upper``: limits by sector name.
    """

    lower: float | Sequence[float] | None = None
    upper: float | Sequence[float] | None = None
    market_neutral: bool = False
    sectors: Sequence[str] | None = None
    sector_lower: Mapping[str, float] = field(default_factory=dict)
    sector_upper: Mapping[str, float] = field(default_factory=dict)
    l2_gamma: float = 0.0
    current_weights: Sequence[float] | None = None
    max_turnover: float | None = None

    def to_proto(self) -> portfolio_pb2.WeightConstraints:
        """The wire message."""

        def values(x: Any) -> list[float]:
            if x is None:
                return []
            return np.atleast_1d(np.asarray(x, dtype=np.float64)).tolist()

        limits = [
            portfolio_pb2.SectorLimit(
                sector=s, lower=self.sector_lower.get(s), upper=self.sector_upper.get(s)
            )
            for s in dict.fromkeys([*self.sector_lower, *self.sector_upper])
        ]
        return portfolio_pb2.WeightConstraints(
            lower_bounds=values(self.lower),
            upper_bounds=values(self.upper),
            market_neutral=self.market_neutral,
            asset_sectors=list(self.sectors or []),
            sector_limits=limits,
            l2_gamma=self.l2_gamma,
            current_weights=values(self.current_weights),
            max_turnover=self.max_turnover,
        )


@dataclass
class BlackLitterman:
    """A Black-Litterman model: K views ``picking @ E[r] = view_returns``.

    ``picking`` is (K, N) (a unit row for an absolute view); ``confidences``
    (K,) in [0, 1] selects Idzorek's Omega (He-Litterman's when None). The
    prior is ``prior_returns``, else implied by ``market_caps``.
    """

    picking: Any
    view_returns: Sequence[float]
    confidences: Sequence[float] | None = None
    prior_returns: Sequence[float] | None = None
    market_caps: Sequence[float] | None = None
    risk_aversion: float = 1.0
    tau: float = 0.05
    risk_free_rate: float = 0.0
    use_posterior_covariance: bool = False

    @classmethod
    def absolute(
        cls, n: int, views: Mapping[int, float], confidences: Mapping[int, float] | None = None,
        **kw: Any,
    ) -> BlackLitterman:  # fmt: skip
        """Absolute views by asset index: ``{asset: expected return}``."""
        keys = list(views)
        p = np.zeros((len(keys), n))
        p[np.arange(len(keys)), keys] = 1.0
        conf = None if confidences is None else [confidences[k] for k in keys]
        return cls(p, [views[k] for k in keys], conf, **kw)

    def to_proto(self) -> portfolio_pb2.BlackLittermanModel:
        """The wire message."""
        p = np.atleast_2d(np.asarray(self.picking, dtype=np.float64))
        views = [
            portfolio_pb2.BlackLittermanView(
                picking=row.tolist(),
                expected_return=float(q),
                confidence=None if self.confidences is None else float(self.confidences[i]),
            )
            for i, (row, q) in enumerate(zip(p, self.view_returns, strict=True))
        ]
        return portfolio_pb2.BlackLittermanModel(
            views=views,
            prior_returns=[] if self.prior_returns is None else list(self.prior_returns),
            market_caps=[] if self.market_caps is None else list(self.market_caps),
            risk_aversion=self.risk_aversion,
            tau=self.tau,
            risk_free_rate=self.risk_free_rate,
            use_posterior_covariance=self.use_posterior_covariance,
        )


def _fill_tensor(t: Any, array: Any) -> None:
    """Write ``array`` as float64 into the Tensor field ``t`` in place (one copy
    of the bytes; building a message and copying it in would make several)."""
    a = np.ascontiguousarray(np.asarray(array), dtype="<f8")
    t.dtype = 1  # D_TYPE_FLOAT64
    t.shape.extend(a.shape)
    t.data = a.tobytes()


def _fill_inputs(
    target: Any,
    history: Any = None,
    kind: str = "prices",
    periods_per_year: float = 252.0,
    expected_returns: Any = None,
    covariance: Any = None,
    returns_method: str = "mean_historical",
    compounding: bool = True,
    returns_span: float = 0.0,
    market: Any = None,
    capm_risk_free_rate: float = 0.0,
    covariance_method: str = "sample",
    covariance_span: float = 0.0,
    semicovariance_benchmark: float | None = None,
    black_litterman: BlackLitterman | None = None,
) -> None:
    """Fill a PortfolioInputs (or an EstimateInputsRequest) in place."""
    rm = target.expected_returns_model
    rm.method = _pick(RETURN_METHODS, returns_method, "returns_method")
    rm.arithmetic = not compounding
    rm.span = returns_span
    rm.risk_free_rate = capm_risk_free_rate
    if market is not None:
        _fill_tensor(rm.market, market)
    cm = target.covariance_model
    cm.method = _pick(COVARIANCE_METHODS, covariance_method, "covariance_method")
    cm.span = covariance_span
    if semicovariance_benchmark is not None:
        cm.benchmark = semicovariance_benchmark
    if history is not None:
        h = target.history
        h.kind = _pick(KINDS, kind, "kind")
        h.periods_per_year = periods_per_year
        if isinstance(history, ScenarioSet):
            h.dataset_id = history.id
        else:
            _fill_tensor(h.values, history)
    if expected_returns is not None:
        _fill_tensor(target.expected_returns, expected_returns)
    if covariance is not None:
        _fill_tensor(target.covariance, covariance)
    if black_litterman is not None:
        target.black_litterman.CopyFrom(black_litterman.to_proto())


_INPUT_ARGS = (
    "history", "kind", "periods_per_year", "expected_returns", "covariance",
    "returns_method", "compounding", "returns_span", "market", "capm_risk_free_rate",
    "covariance_method", "covariance_span", "semicovariance_benchmark", "black_litterman",
)  # fmt: skip


def _fill(target: Any, kw: dict[str, Any]) -> None:
    """Fill ``target``'s inputs from the input keywords; TypeError for any other."""
    rest = sorted(k for k in kw if k not in _INPUT_ARGS)
    if rest:
        raise TypeError(f"unexpected arguments: {rest}")
    _fill_inputs(target, **kw)


def _constraints(c: WeightConstraints | Mapping[str, Any] | None) -> Any:
    if c is None:
        return None
    if isinstance(c, Mapping):
        c = WeightConstraints(**c)
    return c.to_proto()


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class CovarianceReport:
    """Shrinkage intensity and whether the estimate needed a PSD repair."""

    shrinkage: float
    psd_repaired: bool
    min_eigenvalue_before_repair: float

    @classmethod
    def from_proto(cls, r: portfolio_pb2.CovarianceReport) -> CovarianceReport:
        """Decode the wire message."""
        return cls(r.shrinkage, r.psd_repaired, r.min_eigenvalue_before_repair)


@dataclass(frozen=True)
class SolverReport:
    """Solver name, status, iterations, screening rounds, working-set size."""

    solver: str
    status: str
    iterations: int
    screening_rounds: int
    working_set_size: int

    @classmethod
    def from_proto(cls, r: portfolio_pb2.SolverReport) -> SolverReport:
        """Decode the wire message."""
        return cls(r.solver, r.status, r.iterations, r.screening_rounds, r.working_set_size)


@dataclass(frozen=True)
class InputsEstimate:
    """Result of ``estimate_inputs``: (N,) annual expected returns, (N, N) covariance."""

    expected_returns: np.ndarray
    covariance: np.ndarray
    covariance_report: CovarianceReport
    num_periods: int
    execution: Execution


@dataclass(frozen=True)
class Portfolio:
    """Result of ``optimize``: weights and performance (annual)."""

    weights: np.ndarray
    expected_return: float
    volatility: float
    sharpe_ratio: float
    risk_contributions: np.ndarray
    cvar: float
    solver: SolverReport
    covariance_report: CovarianceReport
    expected_returns: np.ndarray
    execution: Execution
    estimation_execution: Execution | None
    #: The server reused its estimate of the registered dataset.
    estimate_cached: bool = False


@dataclass(frozen=True)
class Frontier:
    """Result of ``efficient_frontier``: P points, lowest return first."""

    target_returns: np.ndarray
    expected_returns: np.ndarray
    volatilities: np.ndarray
    sharpe_ratios: np.ndarray
    weights: np.ndarray
    solver: SolverReport
    execution: Execution
    estimation_execution: Execution | None
    #: The server reused its estimate of the registered dataset.
    estimate_cached: bool = False


@dataclass(frozen=True)
class BlackLittermanPosterior:
    """Result of ``black_litterman``."""

    prior_returns: np.ndarray
    posterior_returns: np.ndarray
    posterior_covariance: np.ndarray
    omega: np.ndarray
    implied_weights: np.ndarray
    execution: Execution


@dataclass(frozen=True)
class ShareAllocation:
    """Result of ``allocate``: shares per asset and the leftover cash."""

    shares: np.ndarray
    leftover: float
    allocated_weights: np.ndarray
    rmse: float
    execution: Execution


def _opt_execution(r: Any) -> Execution | None:
    return (
        Execution.from_proto(r.estimation_execution) if r.HasField("estimation_execution") else None
    )


def _portfolio(r: portfolio_pb2.OptimizePortfolioResponse) -> Portfolio:
    return Portfolio(
        weights=np.asarray(r.weights),
        expected_return=r.expected_return,
        volatility=r.volatility,
        sharpe_ratio=r.sharpe_ratio,
        risk_contributions=np.asarray(r.risk_contributions),
        cvar=r.cvar,
        solver=SolverReport.from_proto(r.solver),
        covariance_report=CovarianceReport.from_proto(r.covariance_report),
        expected_returns=np.asarray(r.expected_returns),
        execution=Execution.from_proto(r.execution),
        estimation_execution=_opt_execution(r),
        estimate_cached=r.estimate_cached,
    )


def _frontier(r: portfolio_pb2.ComputeEfficientFrontierResponse) -> Frontier:
    return Frontier(
        np.asarray(r.target_returns),
        np.asarray(r.expected_returns),
        np.asarray(r.volatilities),
        np.asarray(r.sharpe_ratios),
        from_tensor(r.weights),
        SolverReport.from_proto(r.solver),
        Execution.from_proto(r.execution),
        _opt_execution(r),
        r.estimate_cached,
    )


def _estimate(r: portfolio_pb2.EstimateInputsResponse) -> InputsEstimate:
    return InputsEstimate(
        from_tensor(r.expected_returns),
        from_tensor(r.covariance),
        CovarianceReport.from_proto(r.covariance_report),
        r.num_periods,
        Execution.from_proto(r.execution),
    )


def _posterior(r: portfolio_pb2.ComputeBlackLittermanResponse) -> BlackLittermanPosterior:
    return BlackLittermanPosterior(
        np.asarray(r.prior_returns),
        np.asarray(r.posterior_returns),
        from_tensor(r.posterior_covariance),
        np.asarray(r.omega),
        np.asarray(r.implied_weights),
        Execution.from_proto(r.execution),
    )


def _allocation(r: portfolio_pb2.AllocateSharesResponse) -> ShareAllocation:
    return ShareAllocation(
        np.asarray(r.shares, dtype=np.int64),
        r.leftover,
        np.asarray(r.allocated_weights),
        r.rmse,
        Execution.from_proto(r.execution),
    )


def _optimize_request(
    objective: str,
    constraints: Any,
    risk_free_rate: float,
    target_return: float | None,
    target_volatility: float | None,
    risk_aversion: float,
    cvar_confidence_level: float,
    risk_budgets: Sequence[float] | None,
    linkage_method: str,
    backend: str | None,
    kw: dict[str, Any],
) -> portfolio_pb2.OptimizePortfolioRequest:
    req = portfolio_pb2.OptimizePortfolioRequest(
        objective=_pick(OBJECTIVES, objective, "objective"),
        constraints=_constraints(constraints),
        risk_free_rate=risk_free_rate,
        target_return=target_return,
        target_volatility=target_volatility,
        risk_aversion=risk_aversion,
        cvar_confidence_level=cvar_confidence_level,
        risk_budgets=[] if risk_budgets is None else list(risk_budgets),
        linkage_method=linkage_method,
        execution=_execution(backend, False),
    )
    _fill(req.inputs, kw)
    return req


def _frontier_request(
    constraints: Any, num_points: int, risk_free_rate: float, backend: str | None, kw: dict
) -> portfolio_pb2.ComputeEfficientFrontierRequest:
    req = portfolio_pb2.ComputeEfficientFrontierRequest(
        constraints=_constraints(constraints),
        num_points=num_points,
        risk_free_rate=risk_free_rate,
        execution=_execution(backend, False),
    )
    _fill(req.inputs, kw)
    return req


def _estimate_request(backend: str | None, kw: dict) -> portfolio_pb2.EstimateInputsRequest:
    bad = sorted(k for k in ("expected_returns", "covariance", "black_litterman") if k in kw)
    if bad:
        raise TypeError(f"unexpected arguments: {bad}")
    req = portfolio_pb2.EstimateInputsRequest(execution=_execution(backend, False))
    _fill(req, kw)
    return req


def _bl_request(
    model: BlackLitterman, backend: str | None, kw: dict
) -> portfolio_pb2.ComputeBlackLittermanRequest:
    req = portfolio_pb2.ComputeBlackLittermanRequest(execution=_execution(backend, False))
    _fill(req.inputs, {**kw, "black_litterman": model})
    return req


def _allocate_request(
    weights: Any,
    latest_prices: Any,
    total_value: float,
    method: str,
    short_ratio: float | None,
) -> portfolio_pb2.AllocateSharesRequest:
    return portfolio_pb2.AllocateSharesRequest(
        weights=np.asarray(weights, dtype=np.float64).tolist(),
        latest_prices=np.asarray(latest_prices, dtype=np.float64).tolist(),
        total_value=total_value,
        method=_pick(ALLOCATION_METHODS, method, "method"),
        short_ratio=short_ratio,
    )


def _register_again(risk_rpc: Any, array: np.ndarray, timeout: float) -> Any:
    """Register ``array`` again (after ``NOT_FOUND``). The request (the whole
    history as a tensor) is built only then, not with every call."""
    return risk_rpc.RegisterScenarios(_register_request(array)[1], timeout=timeout)


# --------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------
class PortfolioClient:
    """Blocking calls to ``PortfolioService``; reached as ``Client(...).portfolio``.

    Input keywords shared by ``optimize``, ``efficient_frontier``,
    ``estimate_inputs`` and ``black_litterman``: ``history`` (array-like or
    ScenarioSet), ``kind`` ("prices" or "returns"), ``periods_per_year``,
    ``expected_returns`` and ``covariance`` (explicit, annual; they override
    the estimators), ``returns_method`` ("mean_historical", "ema_historical",
    "capm"), ``compounding``, ``returns_span``, ``market`` (CAPM),
    ``capm_risk_free_rate``, ``covariance_method`` ("sample", "exponential",
    "semicovariance", "ledoit_wolf", "ledoit_wolf_single_factor",
    "ledoit_wolf_constant_correlation", "oracle_approximating"),
    ``covariance_span``, ``semicovariance_benchmark`` and ``black_litterman``
    (a :class:`BlackLitterman`).
    """

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._rpc = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        self._risk = risk_pb2_grpc.RiskServiceStub(channel)
        self._timeout = timeout

    def _call(self, name: str, request: Any, timeout: float | None, history: Any = None) -> Any:
        timeout = timeout or self._timeout
        again = None
        if isinstance(history, ScenarioSet):
            again = functools.partial(_register_again, self._risk, history.array, timeout)
        return call(getattr(self._rpc, name), request, timeout, again)

    def estimate_inputs(
        self, history: Any, backend: str | None = None, timeout: float | None = None, **kw: Any
    ) -> InputsEstimate:
        """Annual expected returns and covariance of ``history``."""
        req = _estimate_request(backend, {"history": history, **kw})
        return _estimate(self._call("EstimateInputs", req, timeout, history))

    def optimize(
        self,
        objective: str,
        *,
        constraints: WeightConstraints | Mapping[str, Any] | None = None,
        risk_free_rate: float = 0.0,
        target_return: float | None = None,
        target_volatility: float | None = None,
        risk_aversion: float = 0.0,
        cvar_confidence_level: float = 0.0,
        risk_budgets: Sequence[float] | None = None,
        linkage_method: str = "",
        backend: str | None = None,
        timeout: float | None = None,
        **kw: Any,
    ) -> Portfolio:
        """Optimal weights for ``objective``: "min_volatility", "max_sharpe",
        "efficient_return" (``target_return``), "efficient_risk"
        (``target_volatility``), "max_quadratic_utility" (``risk_aversion``),
        "min_cvar" (``cvar_confidence_level``), "risk_parity" (``risk_budgets``)
        or "hrp" (``linkage_method``)."""
        req = _optimize_request(
            objective, constraints, risk_free_rate, target_return, target_volatility,
            risk_aversion, cvar_confidence_level, risk_budgets, linkage_method, backend, kw,
        )  # fmt: skip
        return _portfolio(self._call("OptimizePortfolio", req, timeout, kw.get("history")))

    def efficient_frontier(
        self,
        *,
        num_points: int = 50,
        constraints: WeightConstraints | Mapping[str, Any] | None = None,
        risk_free_rate: float = 0.0,
        backend: str | None = None,
        timeout: float | None = None,
        **kw: Any,
    ) -> Frontier:
        """``num_points`` efficient portfolios from minimum volatility to maximum return."""
        history = kw.get("history")
        req = _frontier_request(constraints, num_points, risk_free_rate, backend, kw)
        return _frontier(self._call("ComputeEfficientFrontier", req, timeout, history))

    def black_litterman(
        self,
        model: BlackLitterman,
        backend: str | None = None,
        timeout: float | None = None,
        **kw: Any,
    ) -> BlackLittermanPosterior:
        """Posterior returns and covariance of ``model`` over the given covariance."""
        history = kw.get("history")
        req = _bl_request(model, backend, kw)
        return _posterior(self._call("ComputeBlackLitterman", req, timeout, history))

    def allocate(
        self,
        weights: Any,
        latest_prices: Any,
        total_value: float,
        method: str = "greedy",
        short_ratio: float | None = None,
        timeout: float | None = None,
    ) -> ShareAllocation:
        """Whole shares of ``weights`` for ``total_value`` at ``latest_prices``."""
        req = _allocate_request(weights, latest_prices, total_value, method, short_ratio)
        return _allocation(self._call("AllocateShares", req, timeout))


class AsyncPortfolioClient:
    """asyncio calls to ``PortfolioService``; reached as ``AsyncClient(...).portfolio``.

    The same methods and arguments as :class:`PortfolioClient`, as coroutines.
    """

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._rpc = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        self._risk = risk_pb2_grpc.RiskServiceStub(channel)
        self._timeout = timeout

    async def _call(
        self, name: str, request: Any, timeout: float | None, history: Any = None
    ) -> Any:
        timeout = timeout or self._timeout
        again = None
        if isinstance(history, ScenarioSet):
            again = functools.partial(_register_again, self._risk, history.array, timeout)
        return await call_async(getattr(self._rpc, name), request, timeout, again)

    async def estimate_inputs(
        self, history: Any, backend: str | None = None, timeout: float | None = None, **kw: Any
    ) -> InputsEstimate:
        """See :meth:`PortfolioClient.estimate_inputs`."""
        req = _estimate_request(backend, {"history": history, **kw})
        return _estimate(await self._call("EstimateInputs", req, timeout, history))

    async def optimize(
        self,
        objective: str,
        *,
        constraints: WeightConstraints | Mapping[str, Any] | None = None,
        risk_free_rate: float = 0.0,
        target_return: float | None = None,
        target_volatility: float | None = None,
        risk_aversion: float = 0.0,
        cvar_confidence_level: float = 0.0,
        risk_budgets: Sequence[float] | None = None,
        linkage_method: str = "",
        backend: str | None = None,
        timeout: float | None = None,
        **kw: Any,
    ) -> Portfolio:
        """See :meth:`PortfolioClient.optimize`."""
        req = _optimize_request(
            objective, constraints, risk_free_rate, target_return, target_volatility,
            risk_aversion, cvar_confidence_level, risk_budgets, linkage_method, backend, kw,
        )  # fmt: skip
        return _portfolio(await self._call("OptimizePortfolio", req, timeout, kw.get("history")))

    async def efficient_frontier(
        self,
        *,
        num_points: int = 50,
        constraints: WeightConstraints | Mapping[str, Any] | None = None,
        risk_free_rate: float = 0.0,
        backend: str | None = None,
        timeout: float | None = None,
        **kw: Any,
    ) -> Frontier:
        """See :meth:`PortfolioClient.efficient_frontier`."""
        history = kw.get("history")
        req = _frontier_request(constraints, num_points, risk_free_rate, backend, kw)
        return _frontier(await self._call("ComputeEfficientFrontier", req, timeout, history))

    async def black_litterman(
        self,
        model: BlackLitterman,
        backend: str | None = None,
        timeout: float | None = None,
        **kw: Any,
    ) -> BlackLittermanPosterior:
        """See :meth:`PortfolioClient.black_litterman`."""
        history = kw.get("history")
        req = _bl_request(model, backend, kw)
        return _posterior(await self._call("ComputeBlackLitterman", req, timeout, history))

    async def allocate(
        self,
        weights: Any,
        latest_prices: Any,
        total_value: float,
        method: str = "greedy",
        short_ratio: float | None = None,
        timeout: float | None = None,
    ) -> ShareAllocation:
        """See :meth:`PortfolioClient.allocate`."""
        req = _allocate_request(weights, latest_prices, total_value, method, short_ratio)
        return _allocation(await self._call("AllocateShares", req, timeout))
