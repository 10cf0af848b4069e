"""Factor risk: exponentially weighted factor covariance, specific variance, and a
portfolio's risk split into factor and specific parts and by factor.

Exponential weighting
    Observation t of D (oldest first) has weight ``lambda^(D-1-t)`` with
    ``lambda = 0.5^(1/half_life)``. The covariance is pandas'
    ``DataFrame.ewm(halflife=half_life).cov()`` at the last date (``adjust=True``,
    ``bias=False``): the weighted mean is removed, and the weighted sum of
    cross-products is divided by ``sum(w) - sum(w^2) / sum(w)``, which makes it
    unbiased for independent observations (it equals the sample covariance,
    ddof=1, as the half-life grows). Specific variance is the same estimator
    per asset on the residual returns (``ewm(...).var()``).

Portfolio risk (the standard factor-model decomposition)
    With exposures ``B`` (N, F), factor covariance ``Sigma_f`` (F, F), specific
    variances ``delta`` (N,) and portfolio weights ``w`` (N,): the portfolio's
    factor exposures are ``x = B' w``; factor variance ``x' Sigma_f x``;
    specific variance ``sum_i w_i^2 delta_i``; total variance is their sum.
    The factor variance splits by factor as ``x_k (Sigma_f x)_k`` (Euler
    allocation: the contributions add up to the factor variance exactly, and
    may be negative for a hedging factor). Variances are annualised by
    ``periods_per_year``; ``volatility = sqrt(variance)``.

References
----------
Grinold, R. C., Kahn, R. N. (2000). *Active Portfolio Management*, 2nd ed.,
    McGraw-Hill, ch. 3 (risk models) and ch. 14 (attribution of risk).
Menchero, J., Orr, D. J., Wang, J. (2011). The Barra US Equity Model (USE4),
    MSCI (exponentially weighted factor covariance and specific risk).
pandas ``DataFrame.ewm(...).cov`` / ``.var`` (the estimator reproduced here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.engines.factor_xp import Xp
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register


@dataclass(frozen=True)
class PortfolioRisk:
    """Risk of P portfolios, annualised.

    Attributes
    ----------
    exposures : (P, F) ndarray
        Portfolio factor exposures ``B' w``.
    total_variance, factor_variance, specific_variance : (P,) ndarray
        ``total = factor + specific``.
    factor_contributions : (P, F) ndarray
        Variance contributed by each factor; sums to ``factor_variance``.
    """

    exposures: np.ndarray
    total_variance: np.ndarray
    factor_variance: np.ndarray
    specific_variance: np.ndarray
    factor_contributions: np.ndarray

    @property
    def total_volatility(self) -> np.ndarray:
        """(P,) annualised volatility."""
        return np.sqrt(self.total_variance)


def ew_weights(num_obs: int, half_life: float) -> np.ndarray:
    """(num_obs,) weights ``0.5^((num_obs - 1 - t) / half_life)``, 1 for the last."""
    return 0.5 ** ((num_obs - 1 - np.arange(num_obs)) / half_life)


def _ew_moments(xp: Xp, x: Any, half_life: float) -> tuple[Any, Any, float]:
    d = x.shape[0]
    w = ew_weights(d, half_life)
    sw = float(w.sum())
    norm = sw - float((w * w).sum()) / sw
    wx = xp.asarray(w / sw)
    mean = wx @ x
    dev = x - mean
    return xp.asarray(w), dev, norm


def ew_covariance_xp(xp: Xp, x: Any, half_life: float) -> Any:
    """(F, F) exponentially weighted covariance of the rows of (D, F) ``x``."""
    w, dev, norm = _ew_moments(xp, x, half_life)
    return (xp.transpose_last(dev * w[:, None]) @ dev) / norm


def ew_variance_xp(xp: Xp, x: Any, half_life: float) -> Any:
    """(N,) exponentially weighted variance of each column of (D, N) ``x``."""
    w, dev, norm = _ew_moments(xp, x, half_life)
    return (w @ (dev * dev)) / norm


def ew_covariance(x: np.ndarray, half_life: float) -> np.ndarray:
    """NumPy :func:`ew_covariance_xp`: pandas ``ewm(halflife).cov()`` at the last row.

    Raises
    ------
    ValueError
        Fewer than two rows, or ``half_life <= 0``.
    """
    _check_ew(x, half_life)
    return ew_covariance_xp(Xp(), np.asarray(x, dtype=np.float64), half_life)


def ew_variance(x: np.ndarray, half_life: float) -> np.ndarray:
    """NumPy :func:`ew_variance_xp`: pandas ``ewm(halflife).var()`` at the last row."""
    _check_ew(x, half_life)
    return ew_variance_xp(Xp(), np.asarray(x, dtype=np.float64), half_life)


def _check_ew(x: np.ndarray, half_life: float) -> None:
    if np.ndim(x) != 2 or np.shape(x)[0] < 2:
        raise ValueError("returns: need a (D, F) array with D >= 2")
    if not half_life > 0:
        raise ValueError("half_life: must be > 0")


def portfolio_risk(
    backend: Backend,
    exposures: np.ndarray,
    factor_covariance: np.ndarray,
    specific_variance: np.ndarray,
    weights: np.ndarray,
    periods_per_year: float = 252.0,
    stop: Callable[[], bool] | None = None,
) -> PortfolioRisk:
    """Split the risk of each portfolio into factor and specific parts and by factor.

    Parameters
    ----------
    backend : Backend
        Host work; runs on NumPy.
    exposures : (N, F) ndarray
    factor_covariance : (F, F) ndarray, symmetric, per period
    specific_variance : (N,) ndarray, >= 0, per period
    weights : (P, N) ndarray
        Holdings as weights (fractions of capital); negative for short.
    periods_per_year : float > 0
        Annualisation of the variances (252 for daily returns).

    Returns
    -------
    PortfolioRisk

    Raises
    ------
    ValueError
        Shapes disagree, a negative specific variance, an asymmetric covariance.
    """
    b = np.asarray(exposures, dtype=np.float64)
    cov = np.asarray(factor_covariance, dtype=np.float64)
    spec = np.asarray(specific_variance, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n, f = b.shape
    if cov.shape != (f, f):
        raise ValueError(f"factor_covariance: must be ({f}, {f}), got {cov.shape}")
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-14):
        raise ValueError("factor_covariance: must be symmetric")
    if spec.shape != (n,) or (spec < 0).any():
        raise ValueError(f"specific_variance: must be ({n},) and >= 0")
    if w.shape[1] != n:
        raise ValueError(f"weights: must have {n} columns (one per asset), got {w.shape[1]}")
    if not periods_per_year > 0:
        raise ValueError("periods_per_year: must be > 0")
    x = w @ b  # (P, F)
    sx = x @ cov  # (P, F)
    contrib = x * sx * periods_per_year
    factor_var = contrib.sum(1)
    specific = (w * w) @ spec * periods_per_year
    return PortfolioRisk(x, factor_var + specific, factor_var, specific, contrib)


def _risk_work(inputs: Any) -> float:
    n, f = inputs["exposures"].shape
    return float(np.atleast_2d(inputs["weights"]).shape[0] * n * f)


def _sample_risk(size: int, rng: np.random.Generator) -> dict[str, Any]:
    f = 15
    n = max(size // f, 20)
    a = rng.standard_normal((f, f)) * 0.01
    return {
        "exposures": rng.standard_normal((n, f)),
        "factor_covariance": a @ a.T,
        "specific_variance": rng.uniform(1e-4, 4e-4, n),
        "weights": rng.dirichlet(np.ones(n))[None, :],
    }


PORTFOLIO_RISK = register(
    Operation(
        "factor.portfolio_risk",
        portfolio_risk,
        _risk_work,
        lambda inputs: [],
        _sample_risk,
        calibration_sizes=(1_000, 100_000, 1_000_000),
        backends=("numpy",),
    )
)
