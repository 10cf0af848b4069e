"""Engine operations as the router sees them.

An engine module declares each routable operation once, with the work it does
and the bytes it must move, and registers it here. The router, the cost model
and ``tickwire calibrate`` only know operations through this registry, so a new
engine needs no change to routing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.routing.backends import Backend

Inputs = Mapping[str, Any]


@dataclass(frozen=True)
class Transfer:
    """An input array that must be on the backend's device before the call.

    ``key`` names device-resident data (a registered matrix); a transfer whose
    key is already resident on a backend costs nothing there.
    """

    nbytes: int
    key: str | None = None


@dataclass(frozen=True)
class Operation:
    """A routable engine operation.

    Attributes
    ----------
    name : str
        ``"<engine>.<operation>"``, e.g. ``"risk.historical_var"``.
    run : callable ``(backend, **inputs) -> result``
        The engine function. Must raise ``ValueError`` for bad input (never
        retried on another backend); any other exception is a backend failure.
    work : callable ``(inputs) -> float``
        Work units of one call, the variable of the cost model
        (e.g. scenarios x assets).
    transfers : callable ``(inputs) -> list[Transfer]``
        Arrays that must move to the device.
    sample : callable ``(size, rng) -> inputs``
        Synthetic inputs of about ``size`` work units, for calibration.
    calibration_sizes : tuple of int
        Work units at which ``tickwire calibrate`` measures the operation.
    backends : tuple of str, optional
        The only backends the operation runs on (host-only work); None: all.
    """

    name: str
    run: Callable[..., Any]
    work: Callable[[Inputs], float]
    transfers: Callable[[Inputs], list[Transfer]]
    sample: Callable[[int, np.random.Generator], dict[str, Any]]
    calibration_sizes: tuple[int, ...] = (1_000, 100_000, 4_000_000)
    backends: tuple[str, ...] | None = None

    def runs_on(self, backend: str) -> bool:
        """True when the operation can run on ``backend``."""
        return self.backends is None or backend in self.backends

    @property
    def engine(self) -> str:
        """The engine part of the name ("risk")."""
        return self.name.split(".", 1)[0]


_REGISTRY: dict[str, Operation] = {}


def register(op: Operation) -> Operation:
    """Add ``op`` to the registry (idempotent by name) and return it."""
    _REGISTRY[op.name] = op
    return op


def get(name: str) -> Operation:
    """The registered operation called ``name``; ``KeyError`` if unknown."""
    load_engines()
    return _REGISTRY[name]


def all_operations() -> list[Operation]:
    """Every registered operation, after importing every engine module."""
    load_engines()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def load_engines() -> None:
    """Import every module of ``tickwire.engines`` so that their operations register."""
    import tickwire.engines as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")


def bytes_to_move(backend: Backend, transfers: list[Transfer]) -> int:
    """Bytes of ``transfers`` that are not yet resident on ``backend``."""
    return sum(t.nbytes for t in transfers if not backend.is_resident(t.key))
