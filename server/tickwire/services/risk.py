"""``tickwire.risk.v1.RiskService``: VaR, CVaR, component VaR, VaR backtests.

Validation and conversion only; the math is in :mod:`tickwire.engines.risk`.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from tickwire.engines import risk as engine
from tickwire.risk.v1 import risk_pb2, risk_pb2_grpc
from tickwire.services import errors, tensors
from tickwire.services.errors import Violations
from tickwire.services.runtime import EngineRuntime, ServiceSpec, rpc

MAX_CONFIDENCE_LEVELS = 64
MAX_HORIZON_DAYS = 3650
MIN_SIMULATIONS = 1_000
MAX_SIMULATIONS = 100_000_000

_METHOD_OPS = {
    risk_pb2.VAR_METHOD_HISTORICAL: engine.HISTORICAL_VAR,
    risk_pb2.VAR_METHOD_PARAMETRIC_NORMAL: engine.PARAMETRIC_NORMAL_VAR,
    risk_pb2.VAR_METHOD_CORNISH_FISHER: engine.CORNISH_FISHER_VAR,
    risk_pb2.VAR_METHOD_MONTE_CARLO: engine.MONTE_CARLO_VAR,
}


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    """Serves :class:`tickwire.risk.v1.RiskService` over an :class:`EngineRuntime`."""

    def __init__(self, runtime: EngineRuntime) -> None:
        self.rt = runtime

    # ----- shared decoding --------------------------------------------------
    def _scenarios(self, request: object, v: Violations) -> tuple[np.ndarray | None, str | None]:
        """The (T, N) scenario matrix of a request and its registry id, if any."""
        source = request.WhichOneof("scenario_source")
        if source == "scenarios":
            return tensors.decode(request.scenarios, "scenarios", v, ndim=2, min_shape=(2, 1)), None
        if source == "scenario_set_id":
            found = self.rt.store.get(request.scenario_set_id)
            if found is None:
                raise errors.not_found("ScenarioSet", request.scenario_set_id, "scenario_set_id")
            return found, request.scenario_set_id
        v.add("scenarios", "required: set `scenarios` or `scenario_set_id`")
        return None, None

    @staticmethod
    def _positions(
        values: object, scenarios: np.ndarray | None, v: Violations
    ) -> np.ndarray | None:
        positions = tensors.finite_values(values, "positions", v)
        if positions is None:
            return None
        if positions.size == 0:
            v.add("positions", "required: one market value per asset")
            return None
        if scenarios is not None and positions.shape[0] != scenarios.shape[1]:
            v.add(
                "positions",
                f"has {positions.shape[0]} values; the scenarios have {scenarios.shape[1]} assets",
            )
            return None
        if not np.any(positions):
            v.add("positions", "must not be all zero")
            return None
        return positions

    @staticmethod
    def _confidence(value: float, field: str, v: Violations) -> None:
        if not (np.isfinite(value) and 0.0 < value < 1.0):
            v.add(field, f"must be in (0, 1), got {value}")

    # ----- decoding (runs off the event loop for large requests) ---------------
    def _decode_register(self, request: risk_pb2.RegisterScenariosRequest) -> np.ndarray:
        v = Violations()
        if not request.HasField("scenarios"):
            v.add("scenarios", "required")
            raise errors.invalid_argument(v)
        s = tensors.decode(request.scenarios, "scenarios", v, ndim=2, min_shape=(2, 1))
        if v:
            raise errors.invalid_argument(v)
        return s

    def _decode_var(self, request: risk_pb2.ComputeVarRequest) -> dict[str, Any]:
        v = Violations()
        scenarios, key = self._scenarios(request, v)
        positions = self._positions(request.positions, scenarios, v)
        if request.method not in _METHOD_OPS:
            v.add(
                "method",
                "must be one of VAR_METHOD_HISTORICAL, _PARAMETRIC_NORMAL, "
                "_CORNISH_FISHER, _MONTE_CARLO",
            )
        levels = tensors.finite_values(request.confidence_levels, "confidence_levels", v)
        if levels is not None:
            if levels.size == 0:
                v.add("confidence_levels", "required: at least one level in (0, 1)")
            elif levels.size > MAX_CONFIDENCE_LEVELS:
                v.add("confidence_levels", f"at most {MAX_CONFIDENCE_LEVELS} levels")
            for i, c in enumerate(levels):
                self._confidence(float(c), f"confidence_levels[{i}]", v)
        horizons = np.asarray(list(request.horizon_days) or [1], dtype=np.int64)
        if horizons.size > MAX_CONFIDENCE_LEVELS:
            v.add("horizon_days", f"at most {MAX_CONFIDENCE_LEVELS} horizons")
        for i, h in enumerate(horizons):
            if not 1 <= h <= MAX_HORIZON_DAYS:
                v.add(f"horizon_days[{i}]", f"must be in [1, {MAX_HORIZON_DAYS}], got {h}")
        inputs = {
            "scenarios": scenarios,
            "positions": positions,
            "confidence_levels": levels,
            "horizon_days": horizons,
            "scenarios_key": key,
        }
        if request.method == risk_pb2.VAR_METHOD_MONTE_CARLO:
            sims = request.monte_carlo.num_simulations or engine.MC_DEFAULT_SIMULATIONS
            if not MIN_SIMULATIONS <= sims <= MAX_SIMULATIONS:
                v.add(
                    "monte_carlo.num_simulations",
                    f"must be in [{MIN_SIMULATIONS}, {MAX_SIMULATIONS}], got {sims}",
                )
            inputs.update(num_simulations=int(sims), seed=int(request.monte_carlo.seed))
            inputs.pop("scenarios_key")
        self.rt.check_execution(request.execution, "execution", v)
        if v:
            raise errors.invalid_argument(v)
        return inputs

    def _decode_component(self, request: risk_pb2.ComputeComponentVarRequest) -> dict[str, Any]:
        v = Violations()
        scenarios, key = self._scenarios(request, v)
        positions = self._positions(request.positions, scenarios, v)
        self._confidence(request.confidence_level, "confidence_level", v)
        horizon = request.horizon_days or 1
        if not 1 <= horizon <= MAX_HORIZON_DAYS:
            v.add("horizon_days", f"must be in [1, {MAX_HORIZON_DAYS}], got {horizon}")
        self.rt.check_execution(request.execution, "execution", v)
        if v:
            raise errors.invalid_argument(v)
        return {
            "scenarios": scenarios,
            "positions": positions,
            "confidence_level": float(request.confidence_level),
            "horizon_days": int(horizon),
            "scenarios_key": key,
        }

    def _decode_backtest(self, request: risk_pb2.BacktestVarRequest) -> dict[str, Any]:
        v = Violations()
        pnl = None
        if not request.HasField("pnl"):
            v.add("pnl", "required: realised P&L per period")
        else:
            pnl = tensors.decode(request.pnl, "pnl", v, ndim=1, min_shape=(2,))
        self._confidence(request.confidence_level, "confidence_level", v)
        alpha = request.significance_level or 0.05
        if not 0.0 < alpha < 1.0:
            v.add("significance_level", f"must be in (0, 1), got {alpha}")
        forecasts = None
        window = int(request.window)
        if request.HasField("var_forecasts"):
            forecasts = tensors.decode(request.var_forecasts, "var_forecasts", v, ndim=1)
            if forecasts is not None and pnl is not None and forecasts.shape != pnl.shape:
                v.add(
                    "var_forecasts",
                    f"has {forecasts.shape[0]} values; pnl has {pnl.shape[0]}",
                )
        elif pnl is not None and not 10 <= window < pnl.shape[0]:
            v.add(
                "window",
                f"must be in [10, {pnl.shape[0] - 1}] when var_forecasts is empty, got {window}",
            )
        self.rt.check_execution(request.execution, "execution", v)
        if v:
            raise errors.invalid_argument(v)
        return {
            "pnl": pnl,
            "confidence_level": float(request.confidence_level),
            "var_forecasts": forecasts,
            "window": window if forecasts is None else 0,
        }

    # ----- RPCs ---------------------------------------------------------------
    @rpc
    async def RegisterScenarios(
        self, request: risk_pb2.RegisterScenariosRequest, context: grpc.aio.ServicerContext
    ) -> risk_pb2.RegisterScenariosResponse:
        """Store a scenario matrix under its content id."""
        s = await self.rt.decode(self._decode_register, request)
        try:
            key, existed = await self.rt.offload(self.rt.store.put, s, nbytes=s.nbytes)
        except ValueError as exc:
            raise errors.invalid_argument([errors.FieldViolation("scenarios", str(exc))]) from exc
        return risk_pb2.RegisterScenariosResponse(
            scenario_set_id=key,
            num_scenarios=s.shape[0],
            num_assets=s.shape[1],
            already_registered=existed,
        )

    @rpc
    async def ComputeVar(
        self, request: risk_pb2.ComputeVarRequest, context: grpc.aio.ServicerContext
    ) -> risk_pb2.ComputeVarResponse:
        """VaR and CVaR for every (confidence level, horizon)."""
        inputs = await self.rt.decode(self._decode_var, request)
        result, info = await self.rt.run(
            _METHOD_OPS[request.method], inputs, request.execution, context
        )
        r: engine.VarResult = result.value
        with self.rt.span("encode"):
            estimates = [
                risk_pb2.VarEstimate(
                    confidence_level=float(c),
                    horizon_days=int(h),
                    var=float(r.var[i, j]),
                    cvar=float(r.cvar[i, j]),
                    var_standard_error=float(r.var_standard_error[i, j]),
                )
                for i, c in enumerate(inputs["confidence_levels"])
                for j, h in enumerate(inputs["horizon_days"])
            ]
            return risk_pb2.ComputeVarResponse(
                estimates=estimates,
                num_scenarios=r.num_scenarios,
                pnl_mean=r.pnl_mean,
                pnl_std=r.pnl_std,
                execution=info,
            )

    @rpc
    async def ComputeComponentVar(
        self, request: risk_pb2.ComputeComponentVarRequest, context: grpc.aio.ServicerContext
    ) -> risk_pb2.ComputeComponentVarResponse:
        """Marginal and component VaR, and component CVaR, per asset."""
        inputs = await self.rt.decode(self._decode_component, request)
        result, info = await self.rt.run(engine.COMPONENT_VAR, inputs, request.execution, context)
        r: engine.ComponentVarResult = result.value
        with self.rt.span("encode"):
            return risk_pb2.ComputeComponentVarResponse(
                var=r.var,
                marginal_var=r.marginal_var.tolist(),
                component_var=r.component_var.tolist(),
                component_var_share=r.component_var_share.tolist(),
                cvar=r.cvar,
                component_cvar=r.component_cvar.tolist(),
                execution=info,
            )

    @rpc
    async def BacktestVar(
        self, request: risk_pb2.BacktestVarRequest, context: grpc.aio.ServicerContext
    ) -> risk_pb2.BacktestVarResponse:
        """Kupiec, Christoffersen and conditional coverage tests of VaR forecasts."""
        inputs = await self.rt.decode(self._decode_backtest, request)
        result, info = await self.rt.run(engine.BACKTEST_VAR, inputs, request.execution, context)
        r: engine.BacktestResult = result.value
        alpha = request.significance_level or 0.05
        with self.rt.span("encode"):

            def lr(t: engine.LikelihoodRatioTest) -> risk_pb2.LikelihoodRatioTest:
                return risk_pb2.LikelihoodRatioTest(
                    statistic=t.statistic,
                    degrees_of_freedom=t.degrees_of_freedom,
                    p_value=t.p_value,
                    reject=t.p_value < alpha,
                )

            return risk_pb2.BacktestVarResponse(
                num_observations=r.num_observations,
                num_exceptions=r.num_exceptions,
                exception_rate=r.num_exceptions / r.num_observations,
                expected_exception_rate=1.0 - request.confidence_level,
                kupiec_pof=lr(r.kupiec_pof),
                christoffersen_independence=lr(r.christoffersen_independence),
                conditional_coverage=lr(r.conditional_coverage),
                exception_indices=r.exception_indices.tolist(),
                var_forecasts=tensors.encode(r.var_forecasts),
                execution=info,
            )


SERVICE = ServiceSpec(
    name=risk_pb2.DESCRIPTOR.services_by_name["RiskService"].full_name,
    create=RiskServicer,
    add_to_server=risk_pb2_grpc.add_RiskServiceServicer_to_server,
)
