"""Validation and routing declarations shared by the analytics engine modules
(:mod:`~tickwire.engines.analytics_returns`, :mod:`~tickwire.engines.analytics_drawdown`,
:mod:`~tickwire.engines.analytics_rolling`).

Pure NumPy; registers no operation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tickwire.routing.operation import Transfer

#: empyrical's floor under the benchmark variance of beta (smaller is "no variance").
MIN_BENCHMARK_VARIANCE = 1.0e-30


def check_returns(returns: Any, field: str = "returns", min_periods: int = 2) -> np.ndarray:
    """``returns`` as a (T, K) float64 array (a (T,) vector becomes (T, 1)).

    Raises
    ------
    ValueError
        ``"returns: ..."`` for a wrong shape, fewer than ``min_periods`` rows,
        no column, or an infinite value (NaN is allowed: a missing period).
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2:
        raise ValueError(f"{field}: must be a (T, K) matrix or a (T,) vector, got shape {r.shape}")
    if r.shape[0] < min_periods or r.shape[1] < 1:
        raise ValueError(
            f"{field}: needs at least {min_periods} periods and one series, got shape {r.shape}"
        )
    lo, hi = r.min(), r.max()  # two fast reductions; NaN when any value is missing
    if lo > -1.0 and hi < np.inf:
        return r
    if np.isinf(r).any():
        raise ValueError(f"{field}: must not hold infinities (NaN marks a missing period)")
    if (r <= -1.0).any():
        raise ValueError(f"{field}: simple returns must be > -1 (a loss of more than 100%)")
    return r


def check_benchmark(benchmark: Any, periods: int, field: str = "benchmark") -> np.ndarray:
    """``benchmark`` as a finite (T,) float64 vector of ``periods`` values.

    Raises
    ------
    ValueError
        ``"benchmark: ..."`` for a wrong length or a NaN or infinite value.
    """
    b = np.asarray(benchmark, dtype=np.float64).reshape(-1)
    if b.shape[0] != periods:
        raise ValueError(f"{field}: has {b.shape[0]} values; the returns have {periods} periods")
    if not np.isfinite(b).all():
        raise ValueError(f"{field}: must be finite (no NaN: align it with the returns first)")
    if (b <= -1.0).any():
        raise ValueError(f"{field}: simple returns must be > -1")
    return b


def check_periods_per_year(value: float, field: str = "periods_per_year") -> float:
    """``value`` as a float > 0.

    Raises
    ------
    ValueError
        Not finite or not > 0.
    """
    p = float(value)
    if not (math.isfinite(p) and p > 0.0):
        raise ValueError(f"{field}: must be > 0 (e.g. 252 for daily returns), got {value}")
    return p


def panel_work(inputs: Any) -> float:
    """Work units of the analytics operations: T x K."""
    r = np.asarray(inputs["returns"])
    return float(r.shape[0] * (r.shape[1] if r.ndim > 1 else 1))


def panel_transfers(inputs: Any) -> list[Transfer]:
    """The return matrix is the one array a device would need."""
    return [Transfer(int(np.asarray(inputs["returns"]).nbytes))]


def sample_panel(size: int, rng: np.random.Generator) -> dict[str, Any]:
    """Synthetic daily returns of about ``size`` cells (T = 1,260 days at most)."""
    t = int(min(max(size // 16, 64), 1260))
    k = max(size // t, 1)
    r = rng.standard_normal((t, k)) * 0.015 + 3e-4
    return {
        "returns": r,
        "periods_per_year": 252.0,
        "benchmark": rng.standard_normal(t) * 0.01 + 3e-4,
    }
