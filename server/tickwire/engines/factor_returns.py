"""Factor returns of a cross-sectional equity factor model, all dates in one batch.

For every date d, toraniko 1.1.1's ``_factor_returns`` (0xfdf/toraniko,
``model.py``) regresses the cross-section of asset returns on a market
factor, sector dummies and style scores by weighted least squares with
weights ``sqrt(market cap)`` (a proxy for the inverse specific variance):

1. Returns are winsorised per date at ``winsor_factor`` / ``1 - winsor_factor``
   (linear percentiles), as toraniko's ``estimate_factor_returns`` does.
2. Market + sectors: ``r = f_mkt + sum_k s_k f_k + u`` subject to
   ``sum_k c_k f_k = 0``, which makes the market factor the (weighted) market
   return spanned by the sectors. toraniko's constraint is ``c_k = 1``
   (``sector_constraint="equal"``, the default, equal to toraniko's numbers);
   ``"cap_weighted"`` uses each sector's share of total market cap on the date
   (Menchero's USE4 constraint). The constraint is imposed by the change of
   variables ``f = R g`` with ``f_last = -sum_{k<S} c_k g_k / c_S``.
3. Styles: ``u = X h + e`` (``residualize_styles``: styles explain what the
   market and sectors left; otherwise ``r = X h + e'``), with the same weights.
4. Residual (specific) returns ``e = r - f_mkt - s f_sector - X h``.

Instead of toraniko's loop over dates (a filter of a long frame and two
``lstsq`` of N x N-sized products per date), every date's normal equations
are formed with batched matrix products and solved as one (D, F, F) system,
on NumPy or PyTorch. Where a system is full rank, ``solve`` and toraniko's
``lstsq`` agree to rounding (about 1e-14 here); a singular date (a sector
without assets, collinear styles) raises ``ValueError``.

Conventions
-----------
returns : (D, N) ndarray of float64
    Simple returns per date (row) and asset (column).
market_caps : (D, N) ndarray of float64, > 0
sectors : (N,) ndarray of int in [0, S)
    Sector code of each asset; every sector must have at least one asset.
    toraniko orders sectors by name: give codes in name order to get its
    column order.
styles : (D, N, K) ndarray of float64
    Style scores per date (K >= 1), e.g. from :mod:`tickwire.engines.factor_styles`.
factor_returns : (D, 1 + S + K)
    Columns: market, the S sectors in code order, the K styles in order.

References
----------
toraniko 1.1.1, https://github.com/0xfdf/toraniko (``model.py``).
Menchero, J., Orr, D. J., Wang, J. (2011). The Barra US Equity Model (USE4),
    MSCI (the constrained sector regression).
Heston, S., Rouwenhorst, K. G. (1994). Does industrial structure explain the
    benefits of international diversification? Journal of Financial Economics 36.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.engines._common import check_stop
from tickwire.engines.factor_styles import winsorize_rows
from tickwire.engines.factor_xp import BACKENDS, Xp
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, Transfer, register

SECTOR_CONSTRAINTS = ("equal", "cap_weighted")


@dataclass(frozen=True)
class FactorReturns:
    """Factor and residual returns.

    Attributes
    ----------
    factor_returns : (D, 1 + S + K) ndarray
        market, sectors, styles per date (simple-return units).
    residual_returns : (D, N) ndarray
        Specific return of each asset per date.
    """

    factor_returns: np.ndarray
    residual_returns: np.ndarray


def sector_dummies(sectors: np.ndarray, num_sectors: int) -> np.ndarray:
    """(N, S) 0/1 matrix: row i has a 1 in column ``sectors[i]``."""
    return (np.asarray(sectors)[:, None] == np.arange(num_sectors)[None, :]).astype(np.float64)


def exposures(sectors: np.ndarray, num_sectors: int, styles: np.ndarray) -> np.ndarray:
    """Factor exposures (N, 1 + S + K) of the model: 1 (market), sector dummies, styles (N, K)."""
    n = styles.shape[0]
    return np.hstack([np.ones((n, 1)), sector_dummies(sectors, num_sectors), styles])


def factor_returns_xp(
    xp: Xp,
    returns: Any,
    market_caps: Any,
    dummies: Any,
    styles: Any,
    winsor_factor: float = 0.05,
    residualize_styles: bool = True,
    sector_constraint: str = "equal",
    stop: Callable[[], bool] | None = None,
) -> tuple[Any, Any]:
    """:func:`factor_returns` on backend arrays; returns (factor returns, residuals)."""
    lib = xp.lib
    d, n = returns.shape
    s = dummies.shape[1]
    r = winsorize_rows(xp, returns, winsor_factor) if winsor_factor > 0 else returns
    w = lib.sqrt(market_caps)
    ones = xp.full((n, 1), 1.0)
    if sector_constraint == "equal":
        c = None
        # Columns of beta_sector @ R_sector: 1, then s_k - s_last for k < S - 1.
        b = xp.concat([ones, dummies[:, : s - 1] - dummies[:, s - 1 :]], 1)  # (N, S)
        bw = xp.transpose_last(b)[None, :, :] * w[:, None, :]  # (D, S, N)
        a = bw @ b  # (D, S, S)
        rhs = (w * r) @ b  # (D, S)
        g = xp.solve(a, rhs)
        sector_fit = g @ xp.transpose_last(b)  # (D, N)
    else:
        sector_caps = market_caps @ dummies  # (D, S)
        c = sector_caps[:, : s - 1] / sector_caps[:, s - 1 :]  # (D, S-1)
        b = xp.concat(
            [
                xp.full((d, n, 1), 1.0),
                dummies[None, :, : s - 1] - dummies[None, :, s - 1 :] * c[:, None, :],
            ],
            2,
        )  # (D, N, S)
        bw = xp.transpose_last(b * w[:, :, None])  # (D, S, N)
        a = bw @ b
        rhs = (bw @ r[:, :, None])[..., 0]
        g = xp.solve(a, rhs)
        sector_fit = (b @ g[:, :, None])[..., 0]
    check_stop(stop)
    sector_resid = r - sector_fit
    xw = xp.transpose_last(styles * w[:, :, None])  # (D, K, N)
    target = sector_resid if residualize_styles else r
    h = xp.solve(xw @ styles, (xw @ target[:, :, None])[..., 0])  # (D, K)
    resid = sector_resid - (styles @ h[:, :, None])[..., 0]
    sub = g[:, 1:]
    last = -sub.sum(1, keepdims=True) if c is None else -(sub * c).sum(1, keepdims=True)
    fr = xp.concat([g[:, :1], sub, last, h], 1)
    return fr, resid


def factor_returns(
    backend: Backend,
    returns: np.ndarray,
    market_caps: np.ndarray,
    sectors: np.ndarray,
    num_sectors: int,
    styles: np.ndarray,
    winsor_factor: float = 0.05,
    residualize_styles: bool = True,
    sector_constraint: str = "equal",
    stop: Callable[[], bool] | None = None,
) -> FactorReturns:
    """Market, sector and style factor returns and residual returns for all dates.

    Parameters
    ----------
    backend : Backend
        numpy, torch-cpu or torch-cuda.
    returns, market_caps : (D, N) ndarray of float64
    sectors : (N,) ndarray of int, codes in [0, num_sectors)
    num_sectors : int >= 2
    styles : (D, N, K) ndarray of float64
    winsor_factor : float in [0, 0.5)
        0 disables winsorising the returns (toraniko's ``winsor_factor=None``).
    residualize_styles : bool
    sector_constraint : "equal" (toraniko) or "cap_weighted"

    Returns
    -------
    FactorReturns

    Raises
    ------
    ValueError
        Bad shapes, a sector without assets, non-positive caps, a singular date.
    """
    _check(returns, market_caps, sectors, num_sectors, styles, winsor_factor, sector_constraint)
    xp = Xp(backend)
    fr, resid = factor_returns_xp(
        xp,
        xp.asarray(returns),
        xp.asarray(market_caps),
        xp.asarray(sector_dummies(sectors, num_sectors)),
        xp.asarray(styles),
        winsor_factor,
        residualize_styles,
        sector_constraint,
        stop,
    )
    return FactorReturns(xp.to_numpy(fr), xp.to_numpy(resid))


def _check(
    returns: np.ndarray,
    market_caps: np.ndarray,
    sectors: np.ndarray,
    num_sectors: int,
    styles: np.ndarray,
    winsor_factor: float,
    sector_constraint: str,
) -> None:
    if returns.ndim != 2:
        raise ValueError("returns: must be (D, N)")
    d, n = returns.shape
    if market_caps.shape != (d, n):
        raise ValueError(f"market_caps: shape {market_caps.shape} differs from returns' {(d, n)}")
    if not (market_caps > 0).all():
        raise ValueError("market_caps: must be > 0")
    if styles.ndim != 3 or styles.shape[:2] != (d, n) or styles.shape[2] < 1:
        raise ValueError(f"styles: must be (D, N, K) = ({d}, {n}, K >= 1), got {styles.shape}")
    if num_sectors < 2:
        raise ValueError("sectors: at least two sectors are required")
    sec = np.asarray(sectors)
    if sec.shape != (n,) or sec.min() < 0 or sec.max() >= num_sectors:
        raise ValueError(f"sectors: must be (N,) = ({n},) codes in [0, {num_sectors})")
    empty = np.setdiff1d(np.arange(num_sectors), sec)
    if empty.size:
        raise ValueError(f"sectors: sector {int(empty[0])} has no assets")
    if n < num_sectors + styles.shape[2] + 1:
        raise ValueError("returns: fewer assets than factors")
    if not 0.0 <= winsor_factor < 0.5:
        raise ValueError("winsor_factor: must be in [0, 0.5)")
    if sector_constraint not in SECTOR_CONSTRAINTS:
        raise ValueError(f"sector_constraint: must be one of {SECTOR_CONSTRAINTS}")


# --------------------------------------------------------------------------
# routing declarations
# --------------------------------------------------------------------------
def _work(inputs: Any) -> float:
    d, n, k = inputs["styles"].shape
    f = int(inputs["num_sectors"]) + k + 1
    return float(d * n * f)


def _transfers(inputs: Any) -> list[Transfer]:
    return [Transfer(int(inputs["returns"].nbytes) * 2 + int(inputs["styles"].nbytes))]


def _sample(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n, s, k = 448, 11, 3  # the S&P universe's width
    d = max(size // (n * (s + k + 1)), 2)
    sectors = np.arange(n) % s
    return {
        "returns": rng.standard_normal((d, n)) * 0.01,
        "market_caps": np.exp(rng.normal(3.0, 1.0, (d, n))),
        "sectors": sectors,
        "num_sectors": s,
        "styles": rng.standard_normal((d, n, k)),
    }


FACTOR_RETURNS = register(
    Operation(
        "factor.factor_returns",
        factor_returns,
        _work,
        _transfers,
        _sample,
        calibration_sizes=(50_000, 1_000_000, 20_000_000),
        backends=BACKENDS,
    )
)
