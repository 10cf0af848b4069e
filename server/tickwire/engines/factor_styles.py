"""Style factor scores of an equity factor model: momentum, size and value.

The definitions are toraniko 1.1.1's (``toraniko.styles`` and
``toraniko.math``, 0xfdf/toraniko), computed for every date and asset in one
batched pass instead of a per-symbol rolling map and a per-date group-by:

momentum (``factor_mom``)
    Returns lagged by ``lag`` days; over the trailing ``trailing_days`` of
    them, ``prod_j (1 + w_j r_j) - 1`` with exponential weights
    ``w_j = exp(-ln 2 (W - 1 - j) / half_life)`` (1 for the most recent).
    Winsorised per date at ``winsor_factor`` and ``1 - winsor_factor``
    (linear percentiles, NumPy's ``nanpercentile``), then centred and divided
    by the cross-sectional sample standard deviation (ddof=1). Undefined (NaN)
    for the first ``lag + trailing_days - 1`` dates.
size (``factor_sze``)
    ``-log(market cap)`` (small minus big), centred and standardised per date;
    values strictly between the ``lower`` and ``upper`` cross-sectional
    quantiles (Polars' "nearest" rule: the ``floor(q (N-1) + 1/2)``-th order
    statistic) are set to 0, keeping only the tails. ``lower >= upper`` keeps
    every value.
value (``factor_val``)
    ``log(book/price)``, ``log(sales/price)`` and ``earnings/price`` (toraniko's
    third feature is cash flow / price; earnings stand in for it, not logged
    since they may be negative), each standardised per date, averaged, and the
    average standardised again. Optionally the three ratios are first
    winsorised per date at ``winsor_factor`` (toraniko always uses 0.05 when
    its ``winsorize_features`` is set). Where toraniko's result is NaN because
    a feature is missing (NaN, or a ratio <= 0 whose log is undefined), ours
    averages the features that exist; an asset with none gets 0 (the
    cross-sectional mean). Equal to toraniko's wherever all three exist.

Conventions
-----------
returns : (T, N) ndarray of float64
    Daily simple returns, dates ascending by row, assets by column.
market_caps : (T, N) ndarray of float64, > 0
    Market capitalisation per date and asset (any currency unit).
book_to_price, sales_to_price, earnings_to_price : (T, N) ndarray of float64
    Ratios per date; NaN where unknown.

With the S&P 500 data of ``data/`` the market caps and ratios come from one
constituents snapshot (2017-03-08): market cap per date is shares outstanding
(cap / price on the snapshot day) times that day's close, and the per-share
book value, sales and earnings are held fixed. It is not point-in-time data.

References
----------
toraniko 1.1.1, https://github.com/0xfdf/toraniko (``styles.py``, ``math.py``).
Menchero, J., Orr, D. J., Wang, J. (2011). The Barra US Equity Model (USE4),
    MSCI methodology notes (momentum, size and value descriptors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.engines._common import check_stop
from tickwire.engines.factor_xp import BACKENDS, Xp
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, Transfer, register

#: Values of one momentum chunk (windows x assets x window length).
_CHUNK_VALUES = 1 << 22


@dataclass(frozen=True)
class MomentumParams:
    """toraniko's ``factor_mom`` settings (its defaults are 504, 126, 20, 0.01)."""

    trailing_days: int = 504
    half_life: int = 126
    lag: int = 20
    winsor_factor: float = 0.01


@dataclass(frozen=True)
class StyleScores:
    """Style scores per date and asset, (T, N) each.

    ``momentum`` is NaN on its first ``lag + trailing_days - 1`` rows;
    ``value`` is None when no value ratios were given.
    """

    momentum: np.ndarray
    size: np.ndarray
    value: np.ndarray | None
    first_valid_date: int


def exp_weights(window: int, half_life: float) -> np.ndarray:
    """toraniko's ``exp_weights``: (window,) weights, 1 for the last element,
    halving every ``half_life`` elements back."""
    return np.exp(-np.log(2.0) / half_life * np.arange(window))[::-1].copy()


def standardize_rows(xp: Xp, x: Any) -> Any:
    """toraniko's ``center_xsection(standardize=True)`` per row: subtract the
    mean and divide by the sample std (ddof=1), both ignoring NaN."""
    mean = xp.nanmean(x, 1)
    return (x - mean) / xp.nanstd(x, 1, mean)


def winsorize_rows(xp: Xp, x: Any, percentile: float) -> Any:
    """toraniko's ``winsorize`` per row: clip to the ``percentile`` and
    ``1 - percentile`` linear quantiles of the finite values."""
    lo, hi = xp.nanquantile_rows(x, (percentile, 1.0 - percentile))
    return xp.clip(x, lo, hi)


def momentum_scores(
    xp: Xp,
    returns: Any,
    params: MomentumParams,
    stop: Callable[[], bool] | None = None,
) -> Any:
    """Momentum scores (T, N), NaN before date ``lag + trailing_days - 1``.

    The weighted compounded return of every trailing window is one product
    over a (windows, N, W) strided view, in chunks of about 4M values.
    """
    t, n = returns.shape
    w_len, lag = params.trailing_days, params.lag
    first = lag + w_len - 1
    out = xp.full((t, n), xp.nan)
    if first >= t:
        return out
    weights = xp.asarray(exp_weights(w_len, params.half_life))
    # Window s covers lagged rows s .. s+W-1 of the raw returns, i.e. it is the
    # momentum of date s + W - 1 + lag.
    step = max(1, _CHUNK_VALUES // max(n * w_len, 1))
    raw = []
    if xp.is_torch:
        # Assets-major windows (N, S, W) read each window contiguously: 4x
        # faster in torch than the dates-major view NumPy prefers.
        win = returns[: t - lag].T.contiguous().unfold(1, w_len, 1)
        for s in range(0, win.shape[1], step):
            check_stop(stop)
            raw.append(xp.prod_last(1.0 + win[:, s : s + step] * weights) - 1.0)
        mom = xp.concat(raw, 1).T
    else:
        win = xp.windows(returns[: t - lag], w_len)
        for s in range(0, win.shape[0], step):
            check_stop(stop)
            raw.append(xp.prod_last(1.0 + win[s : s + step] * weights) - 1.0)
        mom = xp.concat(raw, 0)
    if params.winsor_factor > 0:
        mom = winsorize_rows(xp, mom, params.winsor_factor)
    out[first:] = standardize_rows(xp, mom)
    return out


def nearest_quantile_rows(xp: Xp, x: Any, q: float) -> Any:
    """Polars' ``quantile(q, "nearest")`` of each row of a NaN-free (R, N) array: the
    ``floor(q (N - 1) + 0.5)``-th smallest value; (R, 1)."""
    n = x.shape[1]
    k = int(np.floor(q * (n - 1) + 0.5))
    return xp.kth_smallest_rows(x, k)


def size_scores(xp: Xp, market_caps: Any, lower: float = 0.2, upper: float = 0.8) -> Any:
    """Size scores (T, N): standardised ``-log(cap)``, middle quantiles zeroed."""
    s = standardize_rows(xp, -xp.lib.log(market_caps))
    lo = nearest_quantile_rows(xp, s, lower)
    hi = nearest_quantile_rows(xp, s, upper)
    keep = (s <= lo) | (s >= hi)
    return xp.where(keep, s, 0.0)


def value_scores(
    xp: Xp,
    book_to_price: Any,
    sales_to_price: Any,
    earnings_to_price: Any,
    winsor_factor: float = 0.0,
) -> Any:
    """Value scores (T, N) from three ratios (see the module notes on NaN)."""
    feats = [book_to_price, sales_to_price, earnings_to_price]
    if winsor_factor > 0:
        feats = [winsorize_rows(xp, f, winsor_factor) for f in feats]
    bp, sp, ep = feats
    # log of a ratio <= 0 is undefined: NaN, as toraniko's Polars log gives.
    logs = [xp.where(f > 0, xp.lib.log(xp.where(f > 0, f, 1.0)), xp.nan) for f in (bp, sp)]
    z = [standardize_rows(xp, f) for f in (*logs, ep)]
    stacked = xp.lib.stack(z, 0)
    valid = ~xp.isnan(stacked)
    count = valid.sum(0)
    total = xp.where(valid, stacked, 0.0).sum(0)
    avg = xp.where(count > 0, total / xp.where(count > 0, count * 1.0, 1.0), xp.nan)
    score = standardize_rows(xp, avg)
    return xp.where(xp.isnan(score), 0.0, score)


def style_scores(
    backend: Backend,
    returns: np.ndarray,
    market_caps: np.ndarray,
    book_to_price: np.ndarray | None = None,
    sales_to_price: np.ndarray | None = None,
    earnings_to_price: np.ndarray | None = None,
    momentum: MomentumParams = MomentumParams(),
    size_lower: float = 0.2,
    size_upper: float = 0.8,
    value_winsor_factor: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> StyleScores:
    """Momentum, size and value scores for every date and asset.

    Parameters
    ----------
    backend : Backend
        numpy, torch-cpu or torch-cuda.
    returns, market_caps : (T, N) ndarray of float64
        See the module conventions; caps > 0.
    book_to_price, sales_to_price, earnings_to_price : (T, N) ndarray, optional
        All three or none; NaN allowed (missing).
    momentum : MomentumParams
    size_lower, size_upper : float in [0, 1]
    value_winsor_factor : float in [0, 0.5)
        0 leaves the value ratios as they are.

    Returns
    -------
    StyleScores

    Raises
    ------
    ValueError
        Inconsistent shapes or parameters out of range, naming the argument.
    """
    _check_style_inputs(returns, market_caps, momentum, size_lower, size_upper)
    xp = Xp(backend)
    r = xp.asarray(returns)
    mom = momentum_scores(xp, r, momentum, stop)
    size = size_scores(xp, xp.asarray(market_caps), size_lower, size_upper)
    value = None
    if book_to_price is not None:
        ratios = [book_to_price, sales_to_price, earnings_to_price]
        if any(x is None or np.shape(x) != returns.shape for x in ratios):
            raise ValueError("book_to_price: the three value ratios must all be (T, N)")
        value = xp.to_numpy(value_scores(xp, *(xp.asarray(x) for x in ratios), value_winsor_factor))
    first = momentum.lag + momentum.trailing_days - 1
    return StyleScores(xp.to_numpy(mom), xp.to_numpy(size), value, first)


def _check_style_inputs(
    returns: np.ndarray,
    market_caps: np.ndarray,
    momentum: MomentumParams,
    size_lower: float,
    size_upper: float,
) -> None:
    if returns.ndim != 2 or returns.shape[1] < 2:
        raise ValueError("returns: must be (T, N) with N >= 2 assets")
    if market_caps.shape != returns.shape:
        raise ValueError(f"market_caps: shape {market_caps.shape} differs from returns'")
    if not (market_caps > 0).all():
        raise ValueError("market_caps: must be > 0")
    if momentum.trailing_days < 1 or momentum.lag < 0 or momentum.half_life <= 0:
        raise ValueError("momentum: trailing_days >= 1, lag >= 0 and half_life > 0 required")
    if momentum.lag + momentum.trailing_days > returns.shape[0]:
        raise ValueError(
            f"momentum: lag + trailing_days = {momentum.lag + momentum.trailing_days} "
            f"exceeds the {returns.shape[0]} dates of returns"
        )
    if not 0.0 <= momentum.winsor_factor < 0.5:
        raise ValueError("momentum.winsor_factor: must be in [0, 0.5)")
    if not (0.0 <= size_lower <= 1.0 and 0.0 <= size_upper <= 1.0):
        raise ValueError("size: quantiles must be in [0, 1]")


# --------------------------------------------------------------------------
# routing declarations
# --------------------------------------------------------------------------
def _style_work(inputs: Any) -> float:
    t, n = inputs["returns"].shape
    return float(t * n * inputs.get("momentum", MomentumParams()).trailing_days)


def _style_transfers(inputs: Any) -> list[Transfer]:
    return [Transfer(int(inputs["returns"].nbytes) * 2)]


def _sample_styles(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = 448  # the S&P universe's width: per-date percentiles grow with n
    w = int(min(max(size // (n * 200), 5), 252))
    t = max(size // (n * w), w + 40)
    r = rng.standard_normal((t, n)) * 0.01
    caps = np.exp(rng.normal(3.0, 1.0, n))[None, :] * np.cumprod(1.0 + r, axis=0)
    return {
        "returns": r,
        "market_caps": caps,
        "momentum": MomentumParams(trailing_days=w, half_life=max(w // 2, 1), lag=20),
    }


STYLE_SCORES = register(
    Operation(
        "factor.style_scores",
        style_scores,
        _style_work,
        _style_transfers,
        _sample_styles,
        calibration_sizes=(100_000, 10_000_000, 100_000_000),
        backends=BACKENDS,
    )
)
