"""``tickwire.pricing.v1.PricingService`` from Python: batches of contracts as NumPy.

Every contract field takes a scalar (broadcast to the batch) or a (K,) array;
``option_type`` takes "call"/"put" (or arrays of them) or the enum values 1/2.
Results are (K,) float64 arrays.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tickwire.pricing.v1 import pricing_pb2, pricing_pb2_grpc

from tickwire_client.arrays import from_tensor, to_tensor
from tickwire_client.calls import call, call_async
from tickwire_client.risk import Execution, _execution

PAYOFFS = {
    "european": pricing_pb2.PAYOFF_EUROPEAN,
    "asian_arithmetic": pricing_pb2.PAYOFF_ASIAN_ARITHMETIC,
    "barrier": pricing_pb2.PAYOFF_BARRIER,
}
BARRIER_TYPES = {
    "up_and_out": pricing_pb2.BARRIER_TYPE_UP_AND_OUT,
    "up_and_in": pricing_pb2.BARRIER_TYPE_UP_AND_IN,
    "down_and_out": pricing_pb2.BARRIER_TYPE_DOWN_AND_OUT,
    "down_and_in": pricing_pb2.BARRIER_TYPE_DOWN_AND_IN,
}
MONITORING = {
    "discrete": pricing_pb2.BARRIER_MONITORING_DISCRETE,
    "continuous": pricing_pb2.BARRIER_MONITORING_CONTINUOUS,
}
AMERICAN_METHODS = {
    "binomial_crr": pricing_pb2.AMERICAN_METHOD_BINOMIAL_CRR,
    "binomial_leisen_reimer": pricing_pb2.AMERICAN_METHOD_BINOMIAL_LEISEN_REIMER,
    "longstaff_schwartz": pricing_pb2.AMERICAN_METHOD_LONGSTAFF_SCHWARTZ,
}
#: ImpliedVolatilityStatus values by name.
IV_STATUS = {
    v.number: v.name.removeprefix("IMPLIED_VOLATILITY_STATUS_")
    for v in pricing_pb2.ImpliedVolatilityStatus.DESCRIPTOR.values
}


@dataclass(frozen=True)
class EuropeanPrices:
    """BSM prices and Greeks, (K,) arrays (Greeks None when not requested)."""

    price: np.ndarray
    delta: np.ndarray | None
    gamma: np.ndarray | None
    vega: np.ndarray | None
    theta: np.ndarray | None
    rho: np.ndarray | None
    execution: Execution


@dataclass(frozen=True)
class ImpliedVolatilities:
    """Implied volatility (NaN where not solved), status codes and iterations."""

    implied_volatility: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    execution: Execution

    @property
    def status_names(self) -> list[str]:
        """Status of each contract by name ("OK", "BELOW_INTRINSIC", ...)."""
        return [IV_STATUS.get(int(s), str(int(s))) for s in self.status]


@dataclass(frozen=True)
class MonteCarloPrices:
    """Monte Carlo prices with standard errors, and pathwise Greeks when asked."""

    price: np.ndarray
    standard_error: np.ndarray
    delta: np.ndarray | None
    delta_standard_error: np.ndarray | None
    vega: np.ndarray | None
    vega_standard_error: np.ndarray | None
    num_paths: int
    execution: Execution


@dataclass(frozen=True)
class AmericanPrices:
    """American option prices (standard errors for Longstaff-Schwartz)."""

    price: np.ndarray
    standard_error: np.ndarray
    execution: Execution


def _option_type(value: Any) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind == "O" and a.size and isinstance(a.reshape(-1)[0], str):
        a = a.astype(str)  # e.g. a pandas string column
    if a.dtype.kind in "US":
        low = np.char.lower(a.astype(str))
        bad = ~np.isin(low, ("call", "put"))
        if np.any(bad):
            raise ValueError(f"option_type must be 'call' or 'put', got {a[bad].ravel()[:3]}")
        return np.where(low == "call", 1, 2).astype(np.int32)
    return a.astype(np.int32)


def _contracts(
    option_type: Any,
    spot: Any,
    strike: Any,
    time_to_expiry: Any,
    rate: Any,
    dividend_yield: Any,
    volatility: Any | None,
) -> pricing_pb2.OptionContracts:
    c = pricing_pb2.OptionContracts(
        option_type=to_tensor(_option_type(option_type), "<i4"),
        spot=to_tensor(spot),
        strike=to_tensor(strike),
        time_to_expiry=to_tensor(time_to_expiry),
        rate=to_tensor(rate),
        dividend_yield=to_tensor(dividend_yield),
    )
    if volatility is not None:
        c.volatility.CopyFrom(to_tensor(volatility))
    return c


def _maybe(t: Any) -> np.ndarray | None:
    return from_tensor(t) if t.dtype else None


def _european(r: pricing_pb2.PriceEuropeanResponse) -> EuropeanPrices:
    return EuropeanPrices(
        from_tensor(r.price),
        _maybe(r.delta),
        _maybe(r.gamma),
        _maybe(r.vega),
        _maybe(r.theta),
        _maybe(r.rho),
        Execution.from_proto(r.execution),
    )


def _implied(r: pricing_pb2.ComputeImpliedVolatilityResponse) -> ImpliedVolatilities:
    return ImpliedVolatilities(
        from_tensor(r.implied_volatility),
        from_tensor(r.status),
        from_tensor(r.iterations),
        Execution.from_proto(r.execution),
    )


def _monte_carlo(r: pricing_pb2.PriceMonteCarloResponse) -> MonteCarloPrices:
    return MonteCarloPrices(
        from_tensor(r.price),
        from_tensor(r.standard_error),
        _maybe(r.delta),
        _maybe(r.delta_standard_error),
        _maybe(r.vega),
        _maybe(r.vega_standard_error),
        r.num_paths,
        Execution.from_proto(r.execution),
    )


def _american(r: pricing_pb2.PriceAmericanResponse) -> AmericanPrices:
    return AmericanPrices(
        from_tensor(r.price), from_tensor(r.standard_error), Execution.from_proto(r.execution)
    )


def _lookup(table: dict[str, int], name: str, what: str) -> int:
    if name not in table:
        raise ValueError(f"{what} must be one of {sorted(table)}, got {name!r}")
    return table[name]


class _Requests:
    """Request builders shared by the blocking and asyncio clients."""

    @staticmethod
    def european(
        option_type, spot, strike, time_to_expiry, volatility, rate, dividend_yield, greeks, backend
    ) -> pricing_pb2.PriceEuropeanRequest:
        return pricing_pb2.PriceEuropeanRequest(
            contracts=_contracts(
                option_type, spot, strike, time_to_expiry, rate, dividend_yield, volatility
            ),
            greeks=greeks,
            execution=_execution(backend, False),
        )

    @staticmethod
    def implied(
        option_type, spot, strike, time_to_expiry, price, rate, dividend_yield, tolerance, backend
    ) -> pricing_pb2.ComputeImpliedVolatilityRequest:
        return pricing_pb2.ComputeImpliedVolatilityRequest(
            contracts=_contracts(
                option_type, spot, strike, time_to_expiry, rate, dividend_yield, None
            ),
            price=to_tensor(price),
            tolerance=tolerance,
            execution=_execution(backend, False),
        )

    @staticmethod
    def monte_carlo(
        option_type,
        spot,
        strike,
        time_to_expiry,
        volatility,
        rate,
        dividend_yield,
        payoff,
        num_paths,
        num_steps,
        seed,
        antithetic,
        control_variate,
        greeks,
        barrier_type,
        barrier,
        monitoring,
        backend,
    ) -> pricing_pb2.PriceMonteCarloRequest:
        req = pricing_pb2.PriceMonteCarloRequest(
            contracts=_contracts(
                option_type, spot, strike, time_to_expiry, rate, dividend_yield, volatility
            ),
            payoff=_lookup(PAYOFFS, payoff, "payoff"),
            num_paths=num_paths,
            num_steps=num_steps,
            seed=seed,
            antithetic=antithetic,
            control_variate=control_variate,
            greeks=greeks,
            execution=_execution(backend, False),
        )
        if payoff == "barrier":
            req.barrier.barrier_type = _lookup(BARRIER_TYPES, barrier_type, "barrier_type")
            req.barrier.monitoring = _lookup(MONITORING, monitoring, "monitoring")
            req.barrier.barrier.CopyFrom(to_tensor(barrier))
        return req

    @staticmethod
    def american(
        option_type,
        spot,
        strike,
        time_to_expiry,
        volatility,
        rate,
        dividend_yield,
        method,
        num_steps,
        num_paths,
        seed,
        backend,
    ) -> pricing_pb2.PriceAmericanRequest:
        return pricing_pb2.PriceAmericanRequest(
            contracts=_contracts(
                option_type, spot, strike, time_to_expiry, rate, dividend_yield, volatility
            ),
            method=_lookup(AMERICAN_METHODS, method, "method"),
            num_steps=num_steps,
            num_paths=num_paths,
            seed=seed,
            execution=_execution(backend, False),
        )


class PricingClient:
    """Blocking calls to ``PricingService``; reached as ``Client(...).pricing``.

    Every method takes ``timeout`` (seconds) and ``backend`` (None routes) and
    raises :class:`TickwireError` on a failed call.
    """

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._rpc = pricing_pb2_grpc.PricingServiceStub(channel)
        self._timeout = timeout

    def _call(self, name: str, request: Any, timeout: float | None) -> Any:
        return call(getattr(self._rpc, name), request, timeout or self._timeout)

    def price_european(
        self,
        option_type: Any,
        spot: Any,
        strike: Any,
        time_to_expiry: Any,
        volatility: Any,
        rate: Any = 0.0,
        dividend_yield: Any = 0.0,
        greeks: bool = True,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> EuropeanPrices:
        """Black-Scholes-Merton prices and Greeks (QuantLib's conventions)."""
        req = _Requests.european(
            option_type,
            spot,
            strike,
            time_to_expiry,
            volatility,
            rate,
            dividend_yield,
            greeks,
            backend,
        )
        return _european(self._call("PriceEuropean", req, timeout))

    def implied_volatility(
        self,
        option_type: Any,
        spot: Any,
        strike: Any,
        time_to_expiry: Any,
        price: Any,
        rate: Any = 0.0,
        dividend_yield: Any = 0.0,
        tolerance: float = 0.0,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> ImpliedVolatilities:
        """Implied volatility of ``price`` per contract, with a status per contract."""
        req = _Requests.implied(
            option_type,
            spot,
            strike,
            time_to_expiry,
            price,
            rate,
            dividend_yield,
            tolerance,
            backend,
        )
        return _implied(self._call("ComputeImpliedVolatility", req, timeout))

    def monte_carlo(
        self,
        option_type: Any,
        spot: Any,
        strike: Any,
        time_to_expiry: Any,
        volatility: Any,
        rate: Any = 0.0,
        dividend_yield: Any = 0.0,
        payoff: str = "european",
        num_paths: int = 100_000,
        num_steps: int = 1,
        seed: int = 0,
        antithetic: bool = False,
        control_variate: bool = False,
        greeks: bool = False,
        barrier_type: str | None = None,
        barrier: Any = None,
        monitoring: str | None = None,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> MonteCarloPrices:
        """Monte Carlo prices under GBM ("european", "asian_arithmetic", "barrier")."""
        req = _Requests.monte_carlo(
            option_type,
            spot,
            strike,
            time_to_expiry,
            volatility,
            rate,
            dividend_yield,
            payoff,
            num_paths,
            num_steps,
            seed,
            antithetic,
            control_variate,
            greeks,
            barrier_type,
            barrier,
            monitoring,
            backend,
        )
        return _monte_carlo(self._call("PriceMonteCarlo", req, timeout))

    def american(
        self,
        option_type: Any,
        spot: Any,
        strike: Any,
        time_to_expiry: Any,
        volatility: Any,
        rate: Any = 0.0,
        dividend_yield: Any = 0.0,
        method: str = "binomial_leisen_reimer",
        num_steps: int = 0,
        num_paths: int = 0,
        seed: int = 0,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> AmericanPrices:
        """American prices: "binomial_crr", "binomial_leisen_reimer" or "longstaff_schwartz"."""
        req = _Requests.american(
            option_type,
            spot,
            strike,
            time_to_expiry,
            volatility,
            rate,
            dividend_yield,
            method,
            num_steps,
            num_paths,
            seed,
            backend,
        )
        return _american(self._call("PriceAmerican", req, timeout))


class AsyncPricingClient:
    """asyncio calls to ``PricingService``; the same methods as :class:`PricingClient`."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._rpc = pricing_pb2_grpc.PricingServiceStub(channel)
        self._timeout = timeout

    async def _call(self, name: str, request: Any, timeout: float | None) -> Any:
        return await call_async(getattr(self._rpc, name), request, timeout or self._timeout)

    async def price_european(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> EuropeanPrices:
        """See :meth:`PricingClient.price_european`."""
        req = _Requests.european(*_bind(PricingClient.price_european, args, kwargs))
        return _european(await self._call("PriceEuropean", req, timeout))

    async def implied_volatility(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> ImpliedVolatilities:
        """See :meth:`PricingClient.implied_volatility`."""
        req = _Requests.implied(*_bind(PricingClient.implied_volatility, args, kwargs))
        return _implied(await self._call("ComputeImpliedVolatility", req, timeout))

    async def monte_carlo(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> MonteCarloPrices:
        """See :meth:`PricingClient.monte_carlo`."""
        req = _Requests.monte_carlo(*_bind(PricingClient.monte_carlo, args, kwargs))
        return _monte_carlo(await self._call("PriceMonteCarlo", req, timeout))

    async def american(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> AmericanPrices:
        """See :meth:`PricingClient.american`."""
        req = _Requests.american(*_bind(PricingClient.american, args, kwargs))
        return _american(await self._call("PriceAmerican", req, timeout))


def _bind(method: Any, args: tuple, kwargs: dict) -> list[Any]:
    """The blocking method's arguments in order, defaults applied (minus self, timeout)."""
    bound = inspect.signature(method).bind(None, *args, **kwargs)
    bound.apply_defaults()
    values = list(bound.arguments.values())[1:]
    return values[:-1]  # drop timeout
