"""Tickwire: a low-latency gRPC engine server for trading analytics.

Packages: ``engines`` (pure math), ``routing`` (backends, cost model, router),
``services`` (gRPC servicers), ``telemetry`` (tracing), ``app`` (wiring).
The ``tickwire.<engine>.v1`` and ``tickwire.common.v1`` modules are generated
from ``protos/`` by ``make proto`` and never edited by hand.
"""

__version__ = "0.1.0"
