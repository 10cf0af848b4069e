"""Measure this host's backends and fit the routing cost model (``tickwire calibrate``).

For every registered operation and every backend present, the operation runs
on synthetic inputs at its ``calibration_sizes`` (input already resident on
the device, so compute alone is timed); the median of several runs at each
size gives ``(work, seconds)`` points, and a non-negative least-squares fit
gives ``fixed_ns`` and ``ns_per_unit``. The transfer cost per byte is timed
separately for backends that copy their input. Nothing about which backend is
faster is hard-coded: a slow backend (MLX on a Linux CPU, say) is slow in the
profile because it measured slow.
"""

from __future__ import annotations

import datetime as dt
import platform
import statistics
import time
from collections.abc import Callable, Iterable

import numpy as np
from scipy.optimize import nnls

from tickwire.routing.backends import Backend, content_id
from tickwire.routing.cost_model import Coefficients, CostProfile
from tickwire.routing.operation import Operation, all_operations


def _median_ns(fn: Callable[[], object], repeats: int, budget_s: float) -> float:
    fn()  # warm-up: first-call allocation and kernel selection
    samples = []
    t_end = time.perf_counter() + budget_s
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
        if time.perf_counter() > t_end and len(samples) >= 3:
            break
    return float(statistics.median(samples))


def fit_linear(points: list[tuple[float, float]]) -> Coefficients:
    """Non-negative least-squares fit of ``ns = fixed + per_unit * work``.

    Each point is weighted by 1/ns so that small and large sizes count alike
    (relative error), which matters when sizes span several decades.
    """
    work = np.array([p[0] for p in points], dtype=np.float64)
    ns = np.array([p[1] for p in points], dtype=np.float64)
    weight = 1.0 / ns
    a = np.column_stack([np.ones_like(work), work]) * weight[:, None]
    coef, _ = nnls(a, ns * weight)
    return Coefficients(float(coef[0]), float(coef[1]))


def measure_operation(
    op: Operation,
    backend: Backend,
    sizes: Iterable[int] | None = None,
    repeats: int = 7,
    budget_s: float = 2.0,
    seed: int = 0,
) -> list[tuple[float, float]]:
    """``(work units, median ns)`` of ``op`` on ``backend`` at each size."""
    rng = np.random.default_rng(seed)
    points = []
    for size in sizes if sizes is not None else op.calibration_sizes:
        inputs = op.sample(size, rng)
        if "scenarios" in inputs:
            key = content_id(inputs["scenarios"])
            inputs["scenarios_key"] = key
            backend.asarray(inputs["scenarios"], key=key)  # resident: time compute only

        def call(inputs: dict = inputs) -> object:
            out = op.run(backend, **inputs)
            backend.synchronize()
            return out

        points.append((op.work(inputs), _median_ns(call, repeats, budget_s)))
        if "scenarios_key" in inputs:
            backend.evict(inputs["scenarios_key"])
    return points


def measure_transfer_ns_per_byte(backend: Backend, nbytes: int = 32 << 20) -> float:
    """Time to move a float64 host array of ``nbytes`` to the backend, per byte."""
    if not backend.copies_input:
        return 0.0
    a = np.random.default_rng(1).standard_normal(nbytes // 8)

    def move() -> object:
        x = backend.asarray(a)
        backend.synchronize()
        return x

    return _median_ns(move, 5, 2.0) / nbytes


def calibrate(
    backends: dict[str, Backend],
    operations: list[Operation] | None = None,
    repeats: int = 7,
    budget_s: float = 2.0,
    size_scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> CostProfile:
    """Measure every (operation, backend) pair and return the fitted profile.

    Parameters
    ----------
    size_scale : float
        Multiplies every calibration size (``< 1`` for a quick profile).
    """
    ops = operations if operations is not None else all_operations()
    profile = CostProfile(
        metadata={
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "backends": sorted(backends),
        }
    )
    for name, be in backends.items():
        profile.transfer_ns_per_byte[name] = measure_transfer_ns_per_byte(be)
        for op in ops:
            if not op.runs_on(name):
                continue
            sizes = [max(int(s * size_scale), 1) for s in op.calibration_sizes]
            points = measure_operation(op, be, sizes, repeats, budget_s)
            coeffs = fit_linear(points)
            profile.operations.setdefault(op.name, {})[name] = coeffs
            if progress is not None:
                progress(
                    f"{op.name:<32} {name:<11} fixed {coeffs.fixed_ns / 1e3:9.1f} us"
                    f"  per unit {coeffs.ns_per_unit:8.4f} ns"
                )
    return profile
