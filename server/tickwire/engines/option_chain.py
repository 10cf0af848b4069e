"""Forwards and discount factors implied by an option chain (put-call parity).

For European options on one expiry, put-call parity gives
``C(K) - P(K) = D (F - K)`` with D the discount factor to settlement and F the
forward. A least-squares line through ``(K, C_mid - P_mid)`` over strikes where
both sides are quoted gives ``slope = -D`` and ``intercept = D F``
(Hull, *Options, Futures and Other Derivatives*, ch. 11; the method behind
Cboe's VIX forward uses the strike where |C - P| is smallest, this uses all
near-the-money strikes). From them, the continuously compounded rate and
dividend yield that BSM needs: ``r = -ln(D) / T`` and ``q = r - ln(F / S) / T``.

Pure NumPy; not routed (a few hundred strikes per expiry).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParityFit:
    """Forward, discount factor and fit quality of one expiry.

    Attributes
    ----------
    forward : float, in the underlying's units
    discount : float, the discount factor to settlement
    rmse : float, root mean square residual of C - P, in price units
    num_strikes : int, strikes used
    """

    forward: float
    discount: float
    rmse: float
    num_strikes: int


def parity_fit(
    strike: np.ndarray,
    call_mid: np.ndarray,
    put_mid: np.ndarray,
    spot: float,
    band: float = 0.1,
    min_strikes: int = 3,
) -> ParityFit:
    """Fit ``C - P = D (F - K)`` on strikes within ``band`` of the spot.

    Parameters
    ----------
    strike, call_mid, put_mid : (M,) ndarrays; strikes with a two-sided
        quote on both sides (mids > 0)
    spot : float, the underlying's price (centres the strike band)
    band : float, the fit uses strikes with ``|K / spot - 1| <= band``,
        widened to the ``min_strikes`` nearest strikes when too few are inside
    min_strikes : int

    Returns
    -------
    ParityFit

    Raises
    ------
    ValueError
        Fewer than ``min_strikes`` strikes, or a fitted discount factor <= 0.
    """
    k = np.asarray(strike, dtype=np.float64)
    y = np.asarray(call_mid, dtype=np.float64) - np.asarray(put_mid, dtype=np.float64)
    if k.shape[0] < min_strikes:
        raise ValueError(f"strike: {k.shape[0]} strikes; parity needs at least {min_strikes}")
    near = np.abs(k / spot - 1.0) <= band
    if near.sum() < min_strikes:
        near = np.zeros_like(near)
        near[np.argsort(np.abs(k - spot))[:min_strikes]] = True
    slope, intercept = np.polyfit(k[near], y[near], 1)
    discount = -slope
    if not discount > 0.0:
        raise ValueError(f"strike: parity fit gives a discount factor of {discount:g}")
    resid = y[near] - (slope * k[near] + intercept)
    return ParityFit(
        forward=float(intercept / discount),
        discount=float(discount),
        rmse=float(np.sqrt(np.mean(resid * resid))),
        num_strikes=int(near.sum()),
    )


def carry_rates(fit: ParityFit, spot: float, time_to_expiry: float) -> tuple[float, float]:
    """Continuously compounded (rate, dividend yield) matching a parity fit.

    ``r = -ln(D) / T`` and ``q = r - ln(F / S) / T``, so that BSM with (S, r, q)
    has forward F and discount factor D.
    """
    rate = -np.log(fit.discount) / time_to_expiry
    return float(rate), float(rate - np.log(fit.forward / spot) / time_to_expiry)
