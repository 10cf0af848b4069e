"""``tickwire.pricing.v1.PricingService``: BSM prices and Greeks, implied
volatility, Monte Carlo and American options on batches of contracts.

Validation and conversion only; the math is in
:mod:`tickwire.engines.pricing_analytic`, :mod:`~tickwire.engines.pricing_monte_carlo`
and :mod:`~tickwire.engines.pricing_american`.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from tickwire.engines import pricing_american, pricing_analytic, pricing_monte_carlo
from tickwire.pricing.v1 import pricing_pb2, pricing_pb2_grpc
from tickwire.services import errors, tensors
from tickwire.services.errors import Violations
from tickwire.services.runtime import EngineRuntime, ServiceSpec, rpc

#: Contracts per call: analytic formulas, and the path or tree methods.
MAX_ANALYTIC_CONTRACTS = 1_000_000
MAX_SIMULATED_CONTRACTS = 10_000
MIN_PATHS, MAX_PATHS = 1_000, 10_000_000_000
MAX_STEPS = 10_000
MAX_LSM_PATHS = 10_000_000

_PAYOFFS = {
    pricing_pb2.PAYOFF_EUROPEAN: "european",
    pricing_pb2.PAYOFF_ASIAN_ARITHMETIC: "asian_arithmetic",
    pricing_pb2.PAYOFF_BARRIER: "barrier",
}
_BARRIER_TYPES = {
    pricing_pb2.BARRIER_TYPE_UP_AND_OUT: "up_and_out",
    pricing_pb2.BARRIER_TYPE_UP_AND_IN: "up_and_in",
    pricing_pb2.BARRIER_TYPE_DOWN_AND_OUT: "down_and_out",
    pricing_pb2.BARRIER_TYPE_DOWN_AND_IN: "down_and_in",
}
_MONITORING = {
    pricing_pb2.BARRIER_MONITORING_DISCRETE: "discrete",
    pricing_pb2.BARRIER_MONITORING_CONTINUOUS: "continuous",
}
_AMERICAN = {
    pricing_pb2.AMERICAN_METHOD_BINOMIAL_CRR: ("binomial_crr", 500),
    pricing_pb2.AMERICAN_METHOD_BINOMIAL_LEISEN_REIMER: ("binomial_leisen_reimer", 500),
    pricing_pb2.AMERICAN_METHOD_LONGSTAFF_SCHWARTZ: ("longstaff_schwartz", 50),
}


def _column(
    t: Any, field: str, v: Violations, *, required: bool, lower: float | None = None
) -> np.ndarray | None:
    """A (K,) or scalar Tensor field as a float64 array (0-d for scalars).

    ``lower``: every value must exceed it. An absent optional field is 0.
    """
    if not t.shape and not t.data and not t.dtype:
        if required:
            v.add(field, "required: a (K,) tensor or a scalar")
            return None
        return np.zeros(())
    ndim = len(t.shape)
    if ndim > 1:
        v.add(f"{field}.shape", f"must be (K,) or a scalar, got {list(t.shape)}")
        return None
    a = tensors.decode(t, field, v, ndim=ndim)
    if a is not None and a.shape == (1,):
        a = a.reshape(())  # shape [1] is a scalar, as the contract says
    if a is not None and lower is not None and not np.all(a > lower):
        bad = int(np.flatnonzero(~(a.reshape(-1) > lower))[0])
        v.add(f"{field}.data", f"must be > {lower:g}; element {bad} is {a.reshape(-1)[bad]}")
        return None
    return a


def _contracts(
    c: pricing_pb2.OptionContracts,
    v: Violations,
    max_contracts: int,
    volatility: bool = True,
    field: str = "contracts",
) -> dict[str, np.ndarray] | None:
    """Decode, validate and broadcast a contract batch to (K,) arrays."""
    cols = {
        "option_type": _column(c.option_type, f"{field}.option_type", v, required=True),
        "spot": _column(c.spot, f"{field}.spot", v, required=True, lower=0.0),
        "strike": _column(c.strike, f"{field}.strike", v, required=True, lower=0.0),
        "time_to_expiry": _column(
            c.time_to_expiry, f"{field}.time_to_expiry", v, required=True, lower=0.0
        ),
        "rate": _column(c.rate, f"{field}.rate", v, required=False),
        "dividend_yield": _column(c.dividend_yield, f"{field}.dividend_yield", v, required=False),
    }
    if volatility:
        cols["volatility"] = _column(
            c.volatility, f"{field}.volatility", v, required=True, lower=0.0
        )
    ot = cols["option_type"]
    if ot is not None and not np.all(np.isin(ot, (1.0, 2.0))):
        v.add(f"{field}.option_type", "values must be OPTION_TYPE_CALL (1) or OPTION_TYPE_PUT (2)")
    if any(a is None for a in cols.values()) or v:
        return None
    sizes = {name: a.shape[0] for name, a in cols.items() if a.ndim == 1}
    k_values = set(sizes.values())
    if len(k_values) > 1:
        v.add(field, f"(K,) fields disagree on K: {sizes}")
        return None
    k = k_values.pop() if k_values else 1
    if k > max_contracts:
        v.add(field, f"{k} contracts exceed the limit of {max_contracts} per call")
        return None
    out = {name: np.ascontiguousarray(np.broadcast_to(a, (k,))) for name, a in cols.items()}
    out["option_type"] = out["option_type"].astype(np.int64)
    return out


class PricingServicer(pricing_pb2_grpc.PricingServiceServicer):
    """Serves :class:`tickwire.pricing.v1.PricingService` over an :class:`EngineRuntime`."""

    def __init__(self, runtime: EngineRuntime) -> None:
        self.rt = runtime

    # ----- decoding -------------------------------------------------------------
    def _decode_european(self, request: pricing_pb2.PriceEuropeanRequest) -> dict[str, Any]:
        v = Violations()
        inputs = _contracts(request.contracts, v, MAX_ANALYTIC_CONTRACTS)
        self.rt.check_execution(request.execution, "execution", v)
        if v or inputs is None:
            raise errors.invalid_argument(v)
        return {**inputs, "greeks": bool(request.greeks)}

    def _decode_implied(
        self, request: pricing_pb2.ComputeImpliedVolatilityRequest
    ) -> dict[str, Any]:
        v = Violations()
        inputs = _contracts(request.contracts, v, MAX_ANALYTIC_CONTRACTS, volatility=False)
        price = _column(request.price, "price", v, required=True)
        if price is not None and not np.all(price >= 0.0):
            v.add("price.data", "must be >= 0")
        if not (np.isfinite(request.tolerance) and request.tolerance >= 0.0):
            v.add("tolerance", f"must be >= 0, got {request.tolerance}")
        self.rt.check_execution(request.execution, "execution", v)
        if v or inputs is None or price is None:
            raise errors.invalid_argument(v)
        k = inputs["spot"].shape[0]
        if price.ndim == 1 and price.shape[0] != k:
            v.add("price", f"has {price.shape[0]} values; the contracts have {k}")
            raise errors.invalid_argument(v)
        return {
            **inputs,
            "price": np.ascontiguousarray(np.broadcast_to(price, (k,))),
            "tolerance": float(request.tolerance),
        }

    def _decode_monte_carlo(self, request: pricing_pb2.PriceMonteCarloRequest) -> dict[str, Any]:
        v = Violations()
        inputs = _contracts(request.contracts, v, MAX_SIMULATED_CONTRACTS)
        payoff = _PAYOFFS.get(request.payoff)
        if payoff is None:
            v.add("payoff", "must be PAYOFF_EUROPEAN, PAYOFF_ASIAN_ARITHMETIC or PAYOFF_BARRIER")
        if not MIN_PATHS <= request.num_paths <= MAX_PATHS:
            v.add("num_paths", f"must be in [{MIN_PATHS}, {MAX_PATHS}], got {request.num_paths}")
        steps = request.num_steps or 1
        if not 1 <= steps <= MAX_STEPS:
            v.add("num_steps", f"must be in [1, {MAX_STEPS}], got {request.num_steps}")
        barrier_type = barrier = monitoring = None
        if payoff == "barrier":
            barrier_type = _BARRIER_TYPES.get(request.barrier.barrier_type)
            if barrier_type is None:
                v.add("barrier.barrier_type", "required for PAYOFF_BARRIER: UP/DOWN_AND_OUT/IN")
            monitoring = _MONITORING.get(request.barrier.monitoring)
            if monitoring is None:
                v.add("barrier.monitoring", "required for PAYOFF_BARRIER: DISCRETE or CONTINUOUS")
            barrier = _column(
                request.barrier.barrier, "barrier.barrier", v, required=True, lower=0.0
            )
        if request.greeks and payoff == "barrier":
            v.add("greeks", "pathwise Greeks are offered for European and Asian payoffs only")
        if request.control_variate and payoff != "asian_arithmetic":
            v.add("control_variate", "the geometric control variate applies to Asian payoffs only")
        self.rt.check_execution(request.execution, "execution", v)
        if v or inputs is None:
            raise errors.invalid_argument(v)
        k = inputs["spot"].shape[0]
        if barrier is not None:
            if barrier.ndim == 1 and barrier.shape[0] != k:
                v.add("barrier.barrier", f"has {barrier.shape[0]} values; the contracts have {k}")
                raise errors.invalid_argument(v)
            barrier = np.ascontiguousarray(np.broadcast_to(barrier, (k,)))
        return {
            **inputs,
            "payoff": payoff,
            "num_paths": int(request.num_paths),
            "num_steps": int(steps),
            "seed": int(request.seed),
            "antithetic": bool(request.antithetic),
            "control_variate": bool(request.control_variate),
            "greeks": bool(request.greeks),
            "barrier_type": barrier_type,
            "barrier": barrier,
            "monitoring": monitoring,
        }

    def _decode_american(self, request: pricing_pb2.PriceAmericanRequest) -> dict[str, Any]:
        v = Violations()
        inputs = _contracts(request.contracts, v, MAX_SIMULATED_CONTRACTS)
        method, default_steps = _AMERICAN.get(request.method, (None, 500))
        if method is None:
            v.add("method", "must be AMERICAN_METHOD_BINOMIAL_CRR, _BINOMIAL_LEISEN_REIMER or "
                  "_LONGSTAFF_SCHWARTZ")  # fmt: skip
        steps = request.num_steps or default_steps
        if not 1 <= steps <= MAX_STEPS:
            v.add("num_steps", f"must be in [1, {MAX_STEPS}], got {request.num_steps}")
        paths = request.num_paths or 100_000
        if method == "longstaff_schwartz" and not MIN_PATHS <= paths <= MAX_LSM_PATHS:
            v.add(
                "num_paths", f"must be in [{MIN_PATHS}, {MAX_LSM_PATHS}], got {request.num_paths}"
            )
        self.rt.check_execution(request.execution, "execution", v)
        if v or inputs is None:
            raise errors.invalid_argument(v)
        return {
            **inputs,
            "method": method,
            "num_steps": int(steps),
            "num_paths": int(paths),
            "seed": int(request.seed),
        }

    # ----- RPCs -------------------------------------------------------------------
    @rpc
    async def PriceEuropean(
        self, request: pricing_pb2.PriceEuropeanRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.PriceEuropeanResponse:
        """Black-Scholes-Merton prices and Greeks."""
        inputs = await self.rt.decode(self._decode_european, request)
        result, info = await self.rt.run(
            pricing_analytic.BSM_PRICE, inputs, request.execution, context
        )
        r: pricing_analytic.EuropeanResult = result.value
        with self.rt.span("encode"):
            out = pricing_pb2.PriceEuropeanResponse(price=tensors.encode(r.price), execution=info)
            if inputs["greeks"]:
                for name in ("delta", "gamma", "vega", "theta", "rho"):
                    getattr(out, name).CopyFrom(tensors.encode(getattr(r, name)))
            return out

    @rpc
    async def ComputeImpliedVolatility(
        self,
        request: pricing_pb2.ComputeImpliedVolatilityRequest,
        context: grpc.aio.ServicerContext,
    ) -> pricing_pb2.ComputeImpliedVolatilityResponse:
        """Implied volatility per contract, with a status for each."""
        inputs = await self.rt.decode(self._decode_implied, request)
        result, info = await self.rt.run(
            pricing_analytic.IMPLIED_VOLATILITY, inputs, request.execution, context
        )
        r: pricing_analytic.ImpliedVolResult = result.value
        with self.rt.span("encode"):
            return pricing_pb2.ComputeImpliedVolatilityResponse(
                implied_volatility=tensors.encode(r.implied_volatility),
                status=tensors.encode(np.asarray(r.status, dtype=np.int32)),
                iterations=tensors.encode(np.asarray(r.iterations, dtype=np.int32)),
                execution=info,
            )

    @rpc
    async def PriceMonteCarlo(
        self, request: pricing_pb2.PriceMonteCarloRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.PriceMonteCarloResponse:
        """Monte Carlo prices and standard errors under GBM."""
        inputs = await self.rt.decode(self._decode_monte_carlo, request)
        result, info = await self.rt.run(
            pricing_monte_carlo.MONTE_CARLO_PRICE, inputs, request.execution, context
        )
        r: pricing_monte_carlo.MonteCarloResult = result.value
        with self.rt.span("encode"):
            out = pricing_pb2.PriceMonteCarloResponse(
                price=tensors.encode(r.price),
                standard_error=tensors.encode(r.standard_error),
                num_paths=int(r.num_paths),
                execution=info,
            )
            if inputs["greeks"]:
                for name in ("delta", "delta_standard_error", "vega", "vega_standard_error"):
                    getattr(out, name).CopyFrom(tensors.encode(getattr(r, name)))
            return out

    @rpc
    async def PriceAmerican(
        self, request: pricing_pb2.PriceAmericanRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.PriceAmericanResponse:
        """American prices by binomial tree or Longstaff-Schwartz."""
        inputs = await self.rt.decode(self._decode_american, request)
        result, info = await self.rt.run(
            pricing_american.AMERICAN_PRICE, inputs, request.execution, context
        )
        r: pricing_american.AmericanResult = result.value
        with self.rt.span("encode"):
            return pricing_pb2.PriceAmericanResponse(
                price=tensors.encode(r.price),
                standard_error=tensors.encode(r.standard_error),
                execution=info,
            )


SERVICE = ServiceSpec(
    name=pricing_pb2.DESCRIPTOR.services_by_name["PricingService"].full_name,
    create=PricingServicer,
    add_to_server=pricing_pb2_grpc.add_PricingServiceServicer_to_server,
)
