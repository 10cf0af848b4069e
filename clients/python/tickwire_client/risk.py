"""``tickwire.risk.v1.RiskService`` from Python: requests from NumPy, results as dataclasses.

Scenarios are (T, N) simple returns (any array-like; a DataFrame works), or a
:class:`ScenarioSet` returned by ``register_scenarios``. A server that does not
hold a registered set (a restart, another replica, eviction) answers
NOT_FOUND; the client then registers the same matrix again and retries once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tickwire.common.v1 import execution_pb2
from tickwire.risk.v1 import risk_pb2, risk_pb2_grpc

from tickwire_client.arrays import from_tensor, to_tensor
from tickwire_client.calls import call, call_async

METHODS = {
    "historical": risk_pb2.VAR_METHOD_HISTORICAL,
    "parametric": risk_pb2.VAR_METHOD_PARAMETRIC_NORMAL,
    "parametric_normal": risk_pb2.VAR_METHOD_PARAMETRIC_NORMAL,
    "cornish_fisher": risk_pb2.VAR_METHOD_CORNISH_FISHER,
    "monte_carlo": risk_pb2.VAR_METHOD_MONTE_CARLO,
}
BACKENDS = {
    None: execution_pb2.BACKEND_UNSPECIFIED,
    "auto": execution_pb2.BACKEND_UNSPECIFIED,
    "numpy": execution_pb2.BACKEND_NUMPY,
    "torch-cpu": execution_pb2.BACKEND_TORCH_CPU,
    "torch-cuda": execution_pb2.BACKEND_TORCH_CUDA,
    "mlx": execution_pb2.BACKEND_MLX,
}
_BACKEND_NAMES = {v: k for k, v in BACKENDS.items() if k not in (None, "auto")}


@dataclass(frozen=True)
class ScenarioSet:
    """A scenario matrix registered on the server (refer to it instead of resending)."""

    id: str
    num_scenarios: int
    num_assets: int
    #: A read-only copy of the registered matrix, sent again if a server lost it.
    array: np.ndarray
    #: True when the server already held this matrix.
    already_registered: bool = False


@dataclass(frozen=True)
class Execution:
    """Where and how fast the server ran a call."""

    backend_used: str
    backend_requested: str
    compute_ms: float
    estimated_ms: float
    operation: str
    work_units: int
    fallbacks: list[tuple[str, str]]
    trace_id: str

    @classmethod
    def from_proto(cls, info: execution_pb2.ExecutionInfo) -> Execution:
        """Decode ``tickwire.common.v1.ExecutionInfo``."""
        return cls(
            backend_used=_BACKEND_NAMES.get(info.backend_used, "unknown"),
            backend_requested=_BACKEND_NAMES.get(info.backend_requested, "auto"),
            compute_ms=info.compute_ns / 1e6,
            estimated_ms=info.estimated_ns / 1e6,
            operation=info.operation,
            work_units=info.work_units,
            fallbacks=[
                (_BACKEND_NAMES.get(f.backend, "unknown"), f.reason) for f in info.fallbacks
            ],
            trace_id=info.trace_id,
        )


@dataclass(frozen=True)
class VarEstimate:
    """VaR and CVaR (positive losses, currency units) at one level and horizon."""

    confidence_level: float
    horizon_days: int
    var: float
    cvar: float
    var_standard_error: float


@dataclass(frozen=True)
class VarReport:
    """Result of ``compute_var``."""

    estimates: list[VarEstimate]
    num_scenarios: int
    pnl_mean: float
    pnl_std: float
    execution: Execution

    def get(self, confidence_level: float, horizon_days: int = 1) -> VarEstimate:
        """The estimate for one (confidence level, horizon); ``KeyError`` if absent."""
        for e in self.estimates:
            if (
                abs(e.confidence_level - confidence_level) < 1e-12
                and e.horizon_days == horizon_days
            ):
                return e
        raise KeyError((confidence_level, horizon_days))


@dataclass(frozen=True)
class ComponentVarReport:
    """Result of ``component_var``: (N,) arrays in the order of the positions."""

    var: float
    marginal_var: np.ndarray
    component_var: np.ndarray
    component_var_share: np.ndarray
    cvar: float
    component_cvar: np.ndarray
    execution: Execution


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """A likelihood-ratio test: statistic, degrees of freedom, p-value, verdict."""

    statistic: float
    degrees_of_freedom: int
    p_value: float
    reject: bool


@dataclass(frozen=True)
class BacktestReport:
    """Result of ``backtest_var``."""

    num_observations: int
    num_exceptions: int
    exception_rate: float
    expected_exception_rate: float
    kupiec_pof: LikelihoodRatioTest
    christoffersen_independence: LikelihoodRatioTest
    conditional_coverage: LikelihoodRatioTest
    exception_indices: np.ndarray
    var_forecasts: np.ndarray
    execution: Execution


# --------------------------------------------------------------------------
# requests and responses (shared by the blocking and asyncio clients)
# --------------------------------------------------------------------------
def _execution(backend: str | None, disable_fallback: bool) -> execution_pb2.ExecutionOptions:
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {sorted(k for k in BACKENDS if k)}, got {backend!r}"
        )
    return execution_pb2.ExecutionOptions(
        backend=BACKENDS[backend], disable_fallback=disable_fallback
    )


def _scenario_fields(scenarios: Any) -> dict[str, Any]:
    if isinstance(scenarios, ScenarioSet):
        return {"scenario_set_id": scenarios.id}
    return {"scenarios": to_tensor(scenarios)}


def _var_request(
    scenarios: Any,
    positions: Sequence[float],
    method: str,
    confidence_levels: Sequence[float],
    horizon_days: Sequence[int],
    num_simulations: int,
    seed: int,
    backend: str | None,
    disable_fallback: bool,
) -> risk_pb2.ComputeVarRequest:
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return risk_pb2.ComputeVarRequest(
        **_scenario_fields(scenarios),
        positions=np.asarray(positions, dtype=np.float64).tolist(),
        method=METHODS[method],
        confidence_levels=list(confidence_levels),
        horizon_days=[int(h) for h in horizon_days],
        monte_carlo=risk_pb2.MonteCarloOptions(num_simulations=num_simulations, seed=seed),
        execution=_execution(backend, disable_fallback),
    )


def _var_report(r: risk_pb2.ComputeVarResponse) -> VarReport:
    return VarReport(
        estimates=[
            VarEstimate(e.confidence_level, e.horizon_days, e.var, e.cvar, e.var_standard_error)
            for e in r.estimates
        ],
        num_scenarios=r.num_scenarios,
        pnl_mean=r.pnl_mean,
        pnl_std=r.pnl_std,
        execution=Execution.from_proto(r.execution),
    )


def _component_request(
    scenarios: Any,
    positions: Sequence[float],
    confidence_level: float,
    horizon_days: int,
    backend: str | None,
    disable_fallback: bool,
) -> risk_pb2.ComputeComponentVarRequest:
    return risk_pb2.ComputeComponentVarRequest(
        **_scenario_fields(scenarios),
        positions=np.asarray(positions, dtype=np.float64).tolist(),
        confidence_level=confidence_level,
        horizon_days=horizon_days,
        execution=_execution(backend, disable_fallback),
    )


def _component_report(r: risk_pb2.ComputeComponentVarResponse) -> ComponentVarReport:
    return ComponentVarReport(
        var=r.var,
        marginal_var=np.asarray(r.marginal_var),
        component_var=np.asarray(r.component_var),
        component_var_share=np.asarray(r.component_var_share),
        cvar=r.cvar,
        component_cvar=np.asarray(r.component_cvar),
        execution=Execution.from_proto(r.execution),
    )


def _backtest_request(
    pnl: Any,
    var_forecasts: Any | None,
    confidence_level: float,
    window: int,
    significance_level: float,
    backend: str | None,
) -> risk_pb2.BacktestVarRequest:
    req = risk_pb2.BacktestVarRequest(
        pnl=to_tensor(pnl),
        confidence_level=confidence_level,
        window=window,
        significance_level=significance_level,
        execution=_execution(backend, False),
    )
    if var_forecasts is not None:
        req.var_forecasts.CopyFrom(to_tensor(var_forecasts))
    return req


def _lr(t: risk_pb2.LikelihoodRatioTest) -> LikelihoodRatioTest:
    return LikelihoodRatioTest(t.statistic, t.degrees_of_freedom, t.p_value, t.reject)


def _backtest_report(r: risk_pb2.BacktestVarResponse) -> BacktestReport:
    return BacktestReport(
        num_observations=r.num_observations,
        num_exceptions=r.num_exceptions,
        exception_rate=r.exception_rate,
        expected_exception_rate=r.expected_exception_rate,
        kupiec_pof=_lr(r.kupiec_pof),
        christoffersen_independence=_lr(r.christoffersen_independence),
        conditional_coverage=_lr(r.conditional_coverage),
        exception_indices=np.asarray(r.exception_indices, dtype=np.int64),
        var_forecasts=from_tensor(r.var_forecasts),
        execution=Execution.from_proto(r.execution),
    )


def _register_request(array: Any) -> tuple[np.ndarray, risk_pb2.RegisterScenariosRequest]:
    a = np.array(array, dtype=np.float64, order="C", copy=True)  # later edits by the caller
    a.flags.writeable = False  # must not change what a re-registration sends
    return a, risk_pb2.RegisterScenariosRequest(scenarios=to_tensor(a))


def _scenario_set(a: np.ndarray, r: risk_pb2.RegisterScenariosResponse) -> ScenarioSet:
    return ScenarioSet(r.scenario_set_id, r.num_scenarios, r.num_assets, a, r.already_registered)


# --------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------
class RiskClient:
    """Blocking calls to ``RiskService``; reached as ``Client(...).risk``.

    Every method takes ``timeout`` (seconds; the client's default when None)
    and raises :class:`TickwireError` on a failed call, ``ValueError`` for an
    unknown method or backend name before anything is sent.
    """

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._rpc = risk_pb2_grpc.RiskServiceStub(channel)
        self._timeout = timeout

    def _call(self, name: str, request: Any, timeout: float | None, scenarios: Any = None) -> Any:
        again = None
        if isinstance(scenarios, ScenarioSet):
            again = functools.partial(self.register_scenarios, scenarios.array, timeout=timeout)
        return call(getattr(self._rpc, name), request, timeout or self._timeout, again)

    def register_scenarios(self, scenarios: Any, timeout: float | None = None) -> ScenarioSet:
        """Register a (T, N) scenario matrix; pass the result as ``scenarios`` later."""
        a, req = _register_request(scenarios)
        return _scenario_set(a, self._call("RegisterScenarios", req, timeout))

    def compute_var(
        self,
        scenarios: Any,
        positions: Sequence[float],
        method: str = "historical",
        confidence_levels: Sequence[float] = (0.95, 0.99),
        horizon_days: Sequence[int] = (1,),
        num_simulations: int = 0,
        seed: int = 0,
        backend: str | None = None,
        disable_fallback: bool = False,
        timeout: float | None = None,
    ) -> VarReport:
        """VaR and CVaR of ``positions`` (currency units per asset) over ``scenarios``.

        ``method``: "historical", "parametric" (normal), "cornish_fisher" or
        "monte_carlo" (``num_simulations`` draws, 0 for the server default,
        reproducible per ``seed`` and backend). ``backend`` pins "numpy",
        "torch-cpu", "torch-cuda" or "mlx"; None lets the server route.
        """
        req = _var_request(
            scenarios, positions, method, confidence_levels, horizon_days,
            num_simulations, seed, backend, disable_fallback,
        )  # fmt: skip
        return _var_report(self._call("ComputeVar", req, timeout, scenarios))

    def component_var(
        self,
        scenarios: Any,
        positions: Sequence[float],
        confidence_level: float = 0.99,
        horizon_days: int = 1,
        backend: str | None = None,
        disable_fallback: bool = False,
        timeout: float | None = None,
    ) -> ComponentVarReport:
        """Marginal and component VaR (delta-normal) and component CVaR (historical)."""
        req = _component_request(
            scenarios, positions, confidence_level, horizon_days, backend, disable_fallback
        )
        return _component_report(self._call("ComputeComponentVar", req, timeout, scenarios))

    def backtest_var(
        self,
        pnl: Any,
        var_forecasts: Any | None = None,
        confidence_level: float = 0.99,
        window: int = 250,
        significance_level: float = 0.05,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> BacktestReport:
        """Kupiec and Christoffersen tests of ``var_forecasts`` (or rolling historical VaR)."""
        req = _backtest_request(
            pnl, var_forecasts, confidence_level, window, significance_level, backend
        )
        return _backtest_report(self._call("BacktestVar", req, timeout))


class AsyncRiskClient:
    """asyncio calls to ``RiskService``; reached as ``AsyncClient(...).risk``.

    The same methods and arguments as :class:`RiskClient`, as coroutines.
    """

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._rpc = risk_pb2_grpc.RiskServiceStub(channel)
        self._timeout = timeout

    async def _call(
        self, name: str, request: Any, timeout: float | None, scenarios: Any = None
    ) -> Any:
        again = None
        if isinstance(scenarios, ScenarioSet):
            again = functools.partial(self.register_scenarios, scenarios.array, timeout=timeout)
        return await call_async(getattr(self._rpc, name), request, timeout or self._timeout, again)

    async def register_scenarios(self, scenarios: Any, timeout: float | None = None) -> ScenarioSet:
        """See :meth:`RiskClient.register_scenarios`."""
        a, req = _register_request(scenarios)
        return _scenario_set(a, await self._call("RegisterScenarios", req, timeout))

    async def compute_var(
        self,
        scenarios: Any,
        positions: Sequence[float],
        method: str = "historical",
        confidence_levels: Sequence[float] = (0.95, 0.99),
        horizon_days: Sequence[int] = (1,),
        num_simulations: int = 0,
        seed: int = 0,
        backend: str | None = None,
        disable_fallback: bool = False,
        timeout: float | None = None,
    ) -> VarReport:
        """See :meth:`RiskClient.compute_var`."""
        req = _var_request(
            scenarios, positions, method, confidence_levels, horizon_days,
            num_simulations, seed, backend, disable_fallback,
        )  # fmt: skip
        return _var_report(await self._call("ComputeVar", req, timeout, scenarios))

    async def component_var(
        self,
        scenarios: Any,
        positions: Sequence[float],
        confidence_level: float = 0.99,
        horizon_days: int = 1,
        backend: str | None = None,
        disable_fallback: bool = False,
        timeout: float | None = None,
    ) -> ComponentVarReport:
        """See :meth:`RiskClient.component_var`."""
        req = _component_request(
            scenarios, positions, confidence_level, horizon_days, backend, disable_fallback
        )
        return _component_report(await self._call("ComputeComponentVar", req, timeout, scenarios))

    async def backtest_var(
        self,
        pnl: Any,
        var_forecasts: Any | None = None,
        confidence_level: float = 0.99,
        window: int = 250,
        significance_level: float = 0.05,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> BacktestReport:
        """See :meth:`RiskClient.backtest_var`."""
        req = _backtest_request(
            pnl, var_forecasts, confidence_level, window, significance_level, backend
        )
        return _backtest_report(await self._call("BacktestVar", req, timeout))
