"""Choose the backend for a call, run it there, fall back on failure.

The router ranks the backends present on the host by the cost model's
estimate for the call (see :mod:`tickwire.routing.cost_model`), runs the
cheapest, and on a backend failure (CUDA out of memory, a missing library)
retries on the next one, recording each failure. A request may pin a backend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tickwire.routing.backends import Backend
from tickwire.routing.cost_model import CostProfile
from tickwire.routing.operation import Inputs, Operation, bytes_to_move


class BackendNotPresentError(LookupError):
    """A pinned backend is not present on this host."""


class ComputeFailedError(RuntimeError):
    """Every backend tried failed; ``fallbacks`` lists (backend, reason)."""

    def __init__(self, op: str, fallbacks: list[tuple[str, str]]) -> None:
        tried = "; ".join(f"{b}: {r}" for b, r in fallbacks)
        super().__init__(f"{op} failed on every backend tried ({tried})")
        self.fallbacks = fallbacks


@dataclass(frozen=True)
class Candidate:
    """A backend and the cost model's estimate for the call on it."""

    backend: str
    estimated_ns: float


@dataclass
class RouteResult:
    """What ran where: the engine's result and the routing record."""

    value: Any
    backend: str
    requested: str | None
    estimated_ns: float
    compute_ns: int
    work_units: float
    fallbacks: list[tuple[str, str]] = field(default_factory=list)


class Router:
    """Places engine operations on backends.

    Parameters
    ----------
    backends : dict of name -> Backend
        The backends present on this host (``detect_backends()``).
    profile : CostProfile
        Calibration coefficients.
    """

    def __init__(self, backends: dict[str, Backend], profile: CostProfile) -> None:
        if "numpy" not in backends:
            raise ValueError("backends must include numpy, the always-present default")
        self.backends = backends
        self.profile = profile

    def candidates(
        self, op: Operation, inputs: Inputs, pinned: str | None = None
    ) -> list[Candidate]:
        """Backends ordered by estimated time; a pinned backend comes first.

        Raises
        ------
        BackendNotPresentError
            ``pinned`` is not present on this host.
        """
        if pinned is not None and pinned not in self.backends:
            raise BackendNotPresentError(
                f"backend {pinned!r} is not present on this server "
                f"(present: {', '.join(self.backends)})"
            )
        if pinned is not None and not op.runs_on(pinned):
            raise BackendNotPresentError(
                f"{op.name} runs only on {', '.join(op.backends or ())}, not on {pinned!r}"
            )
        work = op.work(inputs)
        transfers = op.transfers(inputs)
        ranked = sorted(
            (
                Candidate(
                    name,
                    self.profile.estimate_ns(op.name, name, work, bytes_to_move(be, transfers)),
                )
                for name, be in self.backends.items()
                if op.runs_on(name)
            ),
            # Unknown pairs estimate as inf; numpy wins ties as the safe default.
            key=lambda c: (c.estimated_ns, c.backend != "numpy"),
        )
        if pinned is not None:
            ranked.sort(key=lambda c: c.backend != pinned)
        return ranked

    def estimate_ns(self, op: Operation, inputs: Inputs, pinned: str | None = None) -> float:
        """The estimate of the backend that :meth:`run` would try first."""
        return self.candidates(op, inputs, pinned)[0].estimated_ns

    def run(
        self,
        op: Operation,
        inputs: Inputs,
        pinned: str | None = None,
        allow_fallback: bool = True,
        ranked: list[Candidate] | None = None,
    ) -> RouteResult:
        """Run ``op`` on the best backend, falling back to the next on failure.

        Raises
        ------
        ValueError
            The engine rejected its input (not retried elsewhere).
        BackendNotPresentError
            ``pinned`` is not present.
        ComputeFailedError
            Every backend tried failed.
        """
        ranked = ranked if ranked is not None else self.candidates(op, inputs, pinned)
        if not allow_fallback:
            ranked = ranked[:1]
        fallbacks: list[tuple[str, str]] = []
        work = op.work(inputs)
        for cand in ranked:
            be = self.backends[cand.backend]
            t0 = time.perf_counter_ns()
            try:
                value = op.run(be, **inputs)
                be.synchronize()
            except (ValueError, ArithmeticError, TimeoutError):
                raise
            except Exception as exc:  # a backend failure: try the next backend
                fallbacks.append((cand.backend, f"{type(exc).__name__}: {exc}"[:300]))
                continue
            return RouteResult(
                value=value,
                backend=cand.backend,
                requested=pinned,
                estimated_ns=cand.estimated_ns,
                compute_ns=time.perf_counter_ns() - t0,
                work_units=work,
                fallbacks=fallbacks,
            )
        raise ComputeFailedError(op.name, fallbacks)
