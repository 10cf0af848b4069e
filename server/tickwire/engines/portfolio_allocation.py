"""Discrete allocation: whole shares for a capital amount at the latest prices.

Two methods, as PyPortfolioOpt's ``DiscreteAllocation``:

- ``greedy``: buy ``floor(w_i V / p_i)`` shares of each asset, largest weight
  first, then spend what is left one share at a time on the asset furthest
  below its target weight that the cash still affords
  (``greedy_portfolio``, the same rules and tie-breaks);
- ``lp``: the mixed-integer programme ``min sum_i |w_i V - x_i p_i| + r``
  with ``r = V - p' x >= 0`` and integer ``x >= 0`` (``lp_portfolio``),
  solved with HiGHS through ``scipy.optimize.milp``.

Short positions (negative weights) are allocated as a separate short book of
value ``short_ratio * V`` (the sum of the negative weights when not given);
their share counts are negative.

References
----------
PyPortfolioOpt 1.6.0, ``pypfopt.discrete_allocation``: the reference.
Huangfu, Q., Hall, J. A. J. (2018). Parallelizing the dual revised simplex
    method. Mathematical Programming Computation 10(1) (HiGHS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, sparse

from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register


@dataclass(frozen=True)
class Allocation:
    """Shares per asset (negative for shorts), the cash left over, the value
    weights of the holdings (``shares * price / sum |shares * price|``) and the
    root mean square of target minus held weights (targets scaled to a gross
    of one)."""

    shares: np.ndarray
    leftover: float
    allocated_weights: np.ndarray
    rmse: float


def _allocation(shares: np.ndarray, leftover: float, weights: np.ndarray, prices: np.ndarray):
    value = shares * prices
    gross = float(np.abs(value).sum())
    held = value / gross if gross > 0 else np.zeros_like(value)
    target = weights / float(np.abs(weights).sum())
    return Allocation(shares, leftover, held, float(np.sqrt(np.mean((target - held) ** 2))))


def _greedy_long(weights: np.ndarray, prices: np.ndarray, value: float) -> tuple[np.ndarray, float]:
    order = sorted(range(len(weights)), key=lambda i: weights[i], reverse=True)
    w = weights[order]
    p = prices[order]
    funds = value
    shares = np.zeros(len(w), dtype=np.int64)
    for j in range(len(w)):
        k = int(w[j] * value / p[j])
        funds -= k * p[j]
        shares[j] = k
    while funds > 0:
        held = p * shares
        current = held / held.sum() if held.sum() > 0 else held
        deficit = w - current
        idx = int(np.argmax(deficit))
        price = p[idx]
        counter = 0
        while price > funds:
            deficit[idx] = 0
            idx = int(np.argmax(deficit))
            if deficit[idx] < 0 or counter == 10:
                break
            price = p[idx]
            counter += 1
        if deficit[idx] <= 0 or counter == 10:
            break
        shares[idx] += 1
        funds -= price
    out = np.zeros(len(w), dtype=np.int64)
    out[order] = shares
    return out, float(funds)


def _lp_long(weights: np.ndarray, prices: np.ndarray, value: float) -> tuple[np.ndarray, float]:
    n = len(weights)
    # variables [x (n, integer), u (n)]; minimise sum u - p'x (+ V, a constant)
    c = np.concatenate([-prices, np.ones(n)])
    eye = sparse.identity(n, format="csr")
    dp = sparse.diags(prices)
    a = sparse.vstack(
        [
            sparse.hstack([-dp, -eye]),  # w V - x p <= u
            sparse.hstack([dp, -eye]),  # -(w V - x p) <= u
            sparse.hstack([sparse.csr_matrix(prices[None, :]), sparse.csr_matrix((1, n))]),
        ],
        format="csr",
    )
    target = weights * value
    lb = np.concatenate([np.full(n, -np.inf), np.full(n, -np.inf), [-np.inf]])
    ub = np.concatenate([-target, target, [value]])
    res = optimize.milp(
        c,
        constraints=optimize.LinearConstraint(a, lb, ub),
        integrality=np.concatenate([np.ones(n), np.zeros(n)]),
        bounds=optimize.Bounds(np.zeros(2 * n), np.full(2 * n, np.inf)),
    )
    if res.x is None:
        raise RuntimeError(f"HiGHS found no allocation: {res.message}")
    x = np.rint(res.x[:n]).astype(np.int64)
    return x, float(value - prices @ x)


def allocate(
    backend: Backend,
    weights: np.ndarray,
    prices: np.ndarray,
    total_value: float,
    method: str = "greedy",
    short_ratio: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> Allocation:
    """Whole shares for ``weights`` of ``total_value`` at ``prices``.

    Parameters
    ----------
    weights : (N,) ndarray
        Target weights; negative for shorts.
    prices : (N,) ndarray > 0
        Latest price per share, in the currency of ``total_value``.
    total_value : float > 0
    method : "greedy" or "lp"
    short_ratio : float >= 0, optional
        Short book value as a fraction of ``total_value``.

    Raises
    ------
    ValueError
        ``method`` unknown; ``weights`` all zero.
    """
    if method not in ("greedy", "lp"):
        raise ValueError("method: must be greedy or lp")
    if not np.any(weights):
        raise ValueError("weights: must not be all zero")
    run = _greedy_long if method == "greedy" else _lp_long
    n = weights.shape[0]
    if np.all(weights >= 0):
        shares, left = run(weights, prices, total_value)
        return _allocation(shares, left, weights, prices)
    longs, shorts = weights >= 0, weights < 0
    ratio = float(-weights[shorts].sum()) if short_ratio is None else short_ratio
    shares = np.zeros(n, dtype=np.int64)
    left = 0.0
    for mask, sign, value in ((longs, 1, total_value), (shorts, -1, total_value * ratio)):
        w = np.abs(weights[mask])
        if w.sum() > 0 and value > 0:
            s, lo = run(w / w.sum(), prices[mask], value)
            shares[mask] = sign * s
            left += lo
    return _allocation(shares, left, weights, prices)


def _sample(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = int(min(max(size, 2), 2000))
    w = rng.uniform(0, 1, n)
    return {"weights": w / w.sum(), "prices": rng.uniform(10, 500, n), "total_value": 1e6}


ALLOCATE = register(
    Operation(
        "portfolio.allocate",
        allocate,
        lambda inputs: float(inputs["weights"].shape[0]),
        lambda inputs: [],
        _sample,
        calibration_sizes=(10, 100, 1000),
        backends=("numpy",),
    )
)
