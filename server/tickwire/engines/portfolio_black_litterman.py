"""Black-Litterman posterior returns with Idzorek's view confidences.

The prior ``pi`` is either given or implied by market capitalisation weights
(``pi = delta S w_mkt + rf``, reverse optimisation). Views are rows of the
(K, N) picking matrix ``P`` with expected returns ``Q`` (an absolute view is
a unit row, a relative view has positive and negative entries summing to 0).
The view uncertainty ``Omega`` is diagonal: He & Litterman's
``diag(tau P S P')`` by default, or from confidences in [0, 1] by Idzorek's
method as PyPortfolioOpt writes it (``omega_k = tau (1 - c_k) / c_k
p_k' S p_k``; c = 0 gives 1e6, an ignored view). Then::

    posterior mean  = pi + tau S P' (P tau S P' + Omega)^-1 (Q - P pi)
    posterior cov   = S + tau S - tau S P' (P tau S P' + Omega)^-1 P tau S

References
----------
Black, F., Litterman, R. (1992). Global portfolio optimization. Financial
    Analysts Journal 48(5), 28-43.
He, G., Litterman, R. (1999). The intuition behind Black-Litterman model
    portfolios. Goldman Sachs Investment Management Research.
Idzorek, T. (2005). A step-by-step guide to the Black-Litterman model.
    Zephyr Associates.
PyPortfolioOpt 1.6.0, ``pypfopt.black_litterman``: the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register


@dataclass(frozen=True)
class BlackLittermanResult:
    """Posterior of the Black-Litterman model.

    Attributes
    ----------
    prior_returns : (N,) ndarray
        ``pi``, annual.
    posterior_returns : (N,) ndarray
        Annual expected returns to optimise with.
    posterior_covariance : (N, N) ndarray
    omega : (K,) ndarray
        Diagonal of the view uncertainty.
    implied_weights : (N,) ndarray
        ``(delta S)^-1 posterior_returns``, normalised to sum to 1
        (``BlackLittermanModel.bl_weights``).
    """

    prior_returns: np.ndarray
    posterior_returns: np.ndarray
    posterior_covariance: np.ndarray
    omega: np.ndarray
    implied_weights: np.ndarray


def market_implied_prior_returns(
    market_caps: np.ndarray, risk_aversion: float, cov: np.ndarray, risk_free_rate: float = 0.0
) -> np.ndarray:
    """``delta S w_mkt + rf`` with ``w_mkt`` the capitalisation weights, (N,)."""
    w = market_caps / market_caps.sum()
    return risk_aversion * cov @ w + risk_free_rate


def idzorek_omega(
    confidences: np.ndarray, cov: np.ndarray, picking: np.ndarray, tau: float
) -> np.ndarray:
    """Diagonal of Omega from confidences in [0, 1] (PyPortfolioOpt's ``idzorek_method``)."""
    var = np.einsum("ki,ij,kj->k", picking, cov, picking)
    with np.errstate(divide="ignore"):
        alpha = np.where(confidences > 0, (1.0 - confidences) / confidences, 0.0)
    return np.where(confidences > 0, tau * alpha * var, 1e6)


def black_litterman(
    backend: Backend,
    cov: np.ndarray,
    picking: np.ndarray,
    view_returns: np.ndarray,
    confidences: np.ndarray | None = None,
    prior_returns: np.ndarray | None = None,
    market_caps: np.ndarray | None = None,
    risk_aversion: float = 1.0,
    tau: float = 0.05,
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> BlackLittermanResult:
    """Posterior returns and covariance.

    Parameters
    ----------
    cov : (N, N) ndarray
        Annual covariance S.
    picking : (K, N) ndarray
        P, one row per view.
    view_returns : (K,) ndarray
        Q, annual.
    confidences : (K,) ndarray in [0, 1], optional
        Idzorek confidences; He-Litterman Omega when None.
    prior_returns : (N,) ndarray, optional
        pi; else implied by ``market_caps``; else zero (PyPortfolioOpt's
        no-prior behaviour).
    risk_aversion : float > 0
        delta, for the market-implied prior and the implied weights.
    tau : float in (0, 1]

    Raises
    ------
    ValueError
        Naming ``tau``, ``risk_aversion``, ``views`` or ``market_caps``.
    """
    n = cov.shape[0]
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau: must be in (0, 1], got {tau}")
    if not risk_aversion > 0:
        raise ValueError(f"risk_aversion: must be > 0, got {risk_aversion}")
    if picking.ndim != 2 or picking.shape[1] != n or picking.shape[0] != view_returns.shape[0]:
        raise ValueError(f"views: each view needs {n} picking weights and one expected return")
    if prior_returns is not None:
        pi = prior_returns
    elif market_caps is not None:
        if not np.all(market_caps >= 0) or not market_caps.sum() > 0:
            raise ValueError("market_caps: must be >= 0 with a positive total")
        pi = market_implied_prior_returns(market_caps, risk_aversion, cov, risk_free_rate)
    else:
        pi = np.zeros(n)
    if confidences is None:
        omega = tau * np.einsum("ki,ij,kj->k", picking, cov, picking)
    else:
        if confidences.shape != view_returns.shape or not np.all(
            (confidences >= 0) & (confidences <= 1)
        ):
            raise ValueError("views: every confidence must be in [0, 1]")
        omega = idzorek_omega(confidences, cov, picking, tau)
    tsp = tau * cov @ picking.T  # (N, K)
    a = picking @ tsp + np.diag(omega)
    try:
        sol = np.linalg.solve(a, view_returns - picking @ pi)
        m_sol = np.linalg.solve(a, tsp.T)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(a, view_returns - picking @ pi, rcond=None)[0]
        m_sol = np.linalg.lstsq(a, tsp.T, rcond=None)[0]
    post = pi + tsp @ sol
    post_cov = cov + tau * cov - tsp @ m_sol
    raw = np.linalg.solve(risk_aversion * cov, post)
    return BlackLittermanResult(pi, post, post_cov, omega, raw / raw.sum())


def _sample(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = int(min(max(round(size ** (1 / 3)), 4), 1000))
    r = rng.standard_normal((2 * n + 10, n)) * 0.01
    p = np.zeros((2, n))
    p[0, 0] = 1.0
    p[1, 1], p[1, 2 % n] = 1.0, -1.0
    return {
        "cov": np.cov(r, rowvar=False) * 252,
        "picking": p,
        "view_returns": np.array([0.1, 0.02]),
        "confidences": np.array([0.5, 0.8]),
        "market_caps": rng.uniform(1, 100, n),
    }


BLACK_LITTERMAN = register(
    Operation(
        "portfolio.black_litterman",
        black_litterman,
        lambda inputs: float(inputs["cov"].shape[0]) ** 2 * max(inputs["picking"].shape[0], 1),
        lambda inputs: [],
        _sample,
        calibration_sizes=(1_000, 100_000, 10_000_000),
        backends=("numpy",),
    )
)
