"""Python client for Tickwire: sync and asyncio, NumPy in and out.

>>> from tickwire_client import Client
>>> with Client("127.0.0.1:50051") as tw:                     # doctest: +SKIP
...     report = tw.risk.compute_var(returns, positions, method="historical",
...                                  confidence_levels=[0.95, 0.99], horizon_days=[1, 10])
...     print(report.estimates[0].var, report.execution.backend_used)

See :mod:`tickwire_client.client` for connection settings (deadlines, retries
on UNAVAILABLE only, message size limits, keepalive, trace propagation).
"""

from tickwire_client.analytics import (
    DrawdownReport,
    MaxDrawdownInfo,
    PerformanceReport,
    ReturnsSet,
    RollingReport,
)
from tickwire_client.arrays import from_tensor, to_tensor
from tickwire_client.client import AsyncClient, Client, channel_options
from tickwire_client.errors import FieldViolation, TickwireError
from tickwire_client.market_data import DatasetInfo
from tickwire_client.pricing import (
    AmericanPrices,
    EuropeanPrices,
    ImpliedVolatilities,
    MonteCarloPrices,
)
from tickwire_client.risk import (
    BacktestReport,
    ComponentVarReport,
    Execution,
    LikelihoodRatioTest,
    ScenarioSet,
    VarEstimate,
    VarReport,
)

__all__ = [
    "AmericanPrices",
    "AsyncClient",
    "BacktestReport",
    "Client",
    "ComponentVarReport",
    "DatasetInfo",
    "DrawdownReport",
    "EuropeanPrices",
    "Execution",
    "FieldViolation",
    "ImpliedVolatilities",
    "LikelihoodRatioTest",
    "MaxDrawdownInfo",
    "MonteCarloPrices",
    "PerformanceReport",
    "ReturnsSet",
    "RollingReport",
    "ScenarioSet",
    "TickwireError",
    "VarEstimate",
    "VarReport",
    "channel_options",
    "from_tensor",
    "to_tensor",
]
