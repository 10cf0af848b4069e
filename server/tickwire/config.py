"""Server settings: defaults, overridden by ``TICKWIRE_*`` environment variables,
overridden by command-line flags.

OpenTelemetry is configured by the standard ``OTEL_*`` variables (see
:mod:`tickwire.telemetry.tracing`), not here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

MIB = 1 << 20


@dataclass
class Settings:
    """Everything the server reads at start-up.

    Each field ``name`` can be set with the environment variable
    ``TICKWIRE_<NAME>`` (upper case); lists are comma-separated; booleans are
    ``1/0``, ``true/false``, ``yes/no``.
    """

    #: Address to listen on. Keep 127.0.0.1 unless the host is protected.
    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one (printed at start-up).
    port: int = 50051
    #: Threads of the bounded compute executor; 0 means the number of CPU cores.
    workers: int = 0
    #: Calls admitted at once (running + waiting for a worker); more get
    #: RESOURCE_EXHAUSTED instead of queueing without bound.
    max_concurrent_calls: int = 64
    #: Largest message the server receives or sends, bytes.
    max_message_bytes: int = 256 * MIB
    #: Seconds in-flight calls get to finish after SIGTERM.
    grace_seconds: float = 10.0
    #: Calibration profile written by `tickwire calibrate`; empty: shipped default.
    calibration_profile: str = ""
    #: Backends the router may use (subset of numpy, torch-cpu, torch-cuda, mlx);
    #: empty: every backend present.
    backends: list[str] = field(default_factory=list)
    #: Calls whose estimated compute is below this many microseconds run on the
    #: event loop thread: an executor hop would cost more than the work.
    inline_threshold_us: float = 150.0
    #: Bytes of registered scenario matrices kept by the server (LRU).
    registry_bytes: int = 2048 * MIB
    #: Bytes of device-resident copies kept per backend (LRU).
    resident_bytes: int = 4096 * MIB
    #: Threads used by BLAS, torch and MLX inside one compute call; 0: leave the
    #: libraries' defaults.
    compute_threads: int = 0
    #: Python's GIL switch interval, microseconds (CPython's default is 5000).
    #: Background threads (span export, compute) hand the GIL back to the event
    #: loop at most this late; a short interval keeps the p99 of small calls low.
    gil_switch_interval_us: float = 500.0
    #: Create spans (exported where OTEL_* says). False removes tracing entirely.
    tracing: bool = True
    #: Log level name (DEBUG, INFO, WARNING, ...).
    log_level: str = "INFO"
    #: "json" for one JSON object per line, "text" for humans.
    log_format: str = "json"
    #: Server keepalive ping interval for idle connections, ms (long streams).
    keepalive_time_ms: int = 60_000
    #: Fewest ms between client pings the server accepts without GOAWAY;
    #: clients should ping no more often than this.
    min_client_ping_interval_ms: int = 10_000

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TICKWIRE_*`` from ``env`` (default ``os.environ``), then overrides.

        Raises
        ------
        ValueError
            A variable does not parse as its field's type.
        """
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"TICKWIRE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def resolved_workers(self) -> int:
        """Executor threads: ``workers``, or the CPU count when 0."""
        return self.workers or (os.cpu_count() or 1)


def _parse(name: str, typ: Any, raw: str) -> Any:
    typ = str(typ)
    try:
        if typ == "bool":
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ == "int":
            return int(raw)
        if typ == "float":
            return float(raw)
        if typ.startswith("list"):
            return [x.strip() for x in raw.split(",") if x.strip()]
        return raw
    except ValueError as exc:
        raise ValueError(f"TICKWIRE_{name.upper()}={raw!r} is not a valid {typ}") from exc
