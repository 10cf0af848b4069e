"""Stream sessions of the VPIN stream: per-stream, per-symbol engine state,
bounded, and a registry that names sessions so that unary calls (snapshot,
reset) and later streams (resume) can reach them.

A :class:`VpinSession` belongs to one stream at a time. It holds at most
``max_symbols`` symbols, each a :class:`~tickwire.engines.vpin.VpinState`
(memory O(window + CDF history + buckets waiting for their bar), never
O(trades)). :meth:`VpinSession.apply` applies one symbol's batch whole or
not at all: on bad data it raises :class:`BatchRejectedError` with every reason,
and no state changes.

:class:`SessionRegistry` keeps named sessions: a live stream holds its
session; when the stream ends, the session stays for ``ttl_s`` seconds, so
that GetVpinState / ResetVpinState still reach it and a new stream with the
same ``session_id`` resumes it. At most ``max_sessions`` are kept; the least
recently used ended session goes first, and a live session is never evicted
(a new stream is refused instead when all are live).

No gRPC and no protobuf here: the servicer converts messages.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tickwire.engines.vpin import Buckets, VpinParameters, VpinState

#: Symbols one stream may hold (a config may ask for fewer).
MAX_SYMBOLS_PER_STREAM = 1_000
#: Trades in one batch.
MAX_TRADES_PER_BATCH = 1_000_000
#: Longest symbol, characters.
MAX_SYMBOL_LENGTH = 64
#: Longest session id, characters.
MAX_SESSION_ID_LENGTH = 128
#: Named sessions one server keeps.
MAX_SESSIONS = 1_000
#: Seconds an ended session stays reachable.
SESSION_TTL_S = 600.0


class BatchRejectedError(Exception):
    """A batch or control message that was not applied.

    Attributes
    ----------
    symbol : str
    violations : list of (field, description)
    """

    def __init__(self, symbol: str, violations: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, d in violations))
        self.symbol = symbol
        self.violations = violations


class SessionBusyError(Exception):
    """The session id is held by another live stream."""


class RegistryFullError(Exception):
    """Every kept session is live; no room for another named one."""


def check_symbol(symbol: str, field_name: str) -> list[tuple[str, str]]:
    """Violations of a symbol name (empty, too long)."""
    if not symbol:
        return [(field_name, "required: a non-empty symbol")]
    if len(symbol) > MAX_SYMBOL_LENGTH:
        return [(field_name, f"at most {MAX_SYMBOL_LENGTH} characters, got {len(symbol)}")]
    return []


@dataclass
class SessionStats:
    """Counters of a session over its life (for the stream span)."""

    batches: int = 0
    trades: int = 0
    buckets: int = 0
    rejections: int = 0


@dataclass
class VpinSession:
    """Per-symbol VPIN state of one stream.

    Parameters
    ----------
    defaults : VpinParameters or None
        Parameters of symbols not configured otherwise; None: every symbol
        must be configured before its first trade.
    max_symbols : int
    session_id : str
        "" for an anonymous stream.
    """

    defaults: VpinParameters | None = None
    max_symbols: int = MAX_SYMBOLS_PER_STREAM
    session_id: str = ""
    symbols: dict[str, VpinState] = field(default_factory=dict)
    parameters: dict[str, VpinParameters] = field(default_factory=dict)
    stats: SessionStats = field(default_factory=SessionStats)
    #: Serialises updates that leave the event loop with unary snapshot / reset.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    live: bool = False
    ended_at: float = 0.0

    def configure(self, symbol: str, params: VpinParameters) -> None:
        """Set a symbol's parameters before its first trade.

        Raises
        ------
        BatchRejectedError
            Bad symbol, the symbol already traded, or the symbol limit.
        """
        bad = check_symbol(symbol, "symbol_parameters.symbol")
        state = self.symbols.get(symbol)
        if not bad and state is not None and state.trades:
            bad.append(("symbol_parameters.symbol", f"{symbol} has traded; reset it first"))
        if not bad and symbol not in self.parameters and self._full():
            bad.append(self._limit_violation("symbol_parameters.symbol"))
        if bad:
            raise BatchRejectedError(symbol, bad)
        self.parameters[symbol] = params
        self.symbols.pop(symbol, None)

    def restore(self, symbol: str, params: VpinParameters, arrays: dict[str, np.ndarray]) -> int:
        """Put a snapshot of ``symbol`` into this session; returns its bucket count.

        Raises
        ------
        BatchRejectedError
            Bad snapshot, the symbol already traded here, or the symbol limit.
        """
        bad = check_symbol(symbol, "restore.symbol")
        state = self.symbols.get(symbol)
        if not bad and state is not None and state.trades:
            bad.append(("restore.symbol", f"{symbol} has traded in this stream"))
        known = symbol in self.parameters or symbol in self.symbols
        if not bad and not known and self._full():
            bad.append(self._limit_violation("restore.symbol"))
        if not bad:
            try:
                restored = VpinState.from_arrays(params, arrays)
            except ValueError as exc:
                name, _, msg = str(exc).partition(": ")
                bad.append((f"restore.engine_state.{name.removeprefix('state.')}", msg))
        if bad:
            raise BatchRejectedError(symbol, bad)
        self.parameters[symbol] = params
        self.symbols[symbol] = restored
        return restored.buckets

    def state_for(self, symbol: str, field_name: str) -> VpinState:
        """The symbol's state, created from its parameters on first use.

        Raises
        ------
        BatchRejectedError
            Bad symbol, no parameters, or the symbol limit.
        """
        state = self.symbols.get(symbol)
        if state is not None:
            return state
        bad = check_symbol(symbol, field_name)
        if bad:
            raise BatchRejectedError(symbol, bad)
        params = self.parameters.get(symbol, self.defaults)
        if params is None:
            raise BatchRejectedError(
                symbol,
                [
                    (
                        field_name,
                        f"{symbol} has no parameters: set config.default_parameters."
                        "bucket_volume or send symbol_parameters first",
                    )
                ],
            )
        if symbol not in self.parameters and self._full():
            raise BatchRejectedError(symbol, [self._limit_violation(field_name)])
        state = VpinState(params)
        self.symbols[symbol] = state
        return state

    def apply(
        self,
        symbol: str,
        ts_ns: np.ndarray,
        price: np.ndarray,
        size: np.ndarray,
        aggressor_side: np.ndarray | None,
    ) -> Buckets:
        """Apply one symbol's trades; the buckets they complete.

        Raises
        ------
        BatchRejectedError
            Anything wrong with the batch (field names prefixed ``trades.``);
            no state changed.
        """
        n = len(ts_ns)
        if n > MAX_TRADES_PER_BATCH:
            self.stats.rejections += 1
            raise BatchRejectedError(
                symbol, [("trades.ts_ns", f"{n} trades; at most {MAX_TRADES_PER_BATCH} a batch")]
            )
        created = symbol not in self.symbols
        try:
            state = self.state_for(symbol, "trades.symbol")
            out = state.update(ts_ns, price, size, aggressor_side)
        except BatchRejectedError:
            self.stats.rejections += 1
            raise
        except ValueError as exc:
            if created:
                self.symbols.pop(symbol, None)
            self.stats.rejections += 1
            name, _, msg = str(exc).partition(": ")
            raise BatchRejectedError(symbol, [(f"trades.{name}", msg)]) from None
        self.count(n, len(out))
        return out

    def count(self, trades: int, buckets: int) -> None:
        """Count one applied batch (for callers that ran the kernel themselves)."""
        self.stats.batches += 1
        self.stats.trades += trades
        self.stats.buckets += buckets

    def reset(self, symbol: str) -> VpinState:
        """Clear ``symbol``'s state (parameters kept); returns the old state.

        Raises
        ------
        KeyError
            The symbol is not in this session.
        """
        old = self.symbols[symbol]
        self.symbols[symbol] = VpinState(old.params)
        return old

    def _full(self) -> bool:
        return len(set(self.symbols) | set(self.parameters)) >= self.max_symbols

    def _limit_violation(self, field_name: str) -> tuple[str, str]:
        return (
            field_name,
            f"this stream already holds {self.max_symbols} symbols (its limit); "
            "open another stream for more",
        )


class SessionRegistry:
    """Named sessions, LRU-bounded, ended ones expiring after ``ttl_s``.

    Parameters
    ----------
    max_sessions : int
    ttl_s : float
    clock : callable returning seconds (monotonic); for tests.
    """

    def __init__(
        self,
        max_sessions: int = MAX_SESSIONS,
        ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: OrderedDict[str, VpinSession] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def open(self, session_id: str, make: Callable[[], VpinSession]) -> tuple[VpinSession, bool]:
        """The session to run a stream on: the kept one of that id (resumed),
        or a new one from ``make()``; marks it live. Returns (session, resumed).

        Raises
        ------
        SessionBusyError
            A live stream holds ``session_id``.
        RegistryFullError
            No room: every kept session is live.
        """
        self._expire()
        found = self._sessions.get(session_id)
        if found is not None:
            if found.live:
                raise SessionBusyError(session_id)
            found.live = True
            self._sessions.move_to_end(session_id)
            return found, True
        while len(self._sessions) >= self.max_sessions:
            victim = next((k for k, s in self._sessions.items() if not s.live), None)
            if victim is None:
                raise RegistryFullError(f"{self.max_sessions} live sessions")
            del self._sessions[victim]
        session = make()
        session.session_id = session_id
        session.live = True
        self._sessions[session_id] = session
        return session, False

    def close(self, session: VpinSession) -> None:
        """The stream of ``session`` ended: keep it for ``ttl_s``."""
        session.live = False
        session.ended_at = self._clock()

    def get(self, session_id: str) -> VpinSession | None:
        """The kept session of that id (live or not expired), or None."""
        self._expire()
        s = self._sessions.get(session_id)
        if s is not None:
            self._sessions.move_to_end(session_id)
        return s

    def _expire(self) -> None:
        now = self._clock()
        for k in [
            k for k, s in self._sessions.items() if not s.live and now - s.ended_at > self.ttl_s
        ]:
            del self._sessions[k]
