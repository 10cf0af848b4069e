"""Hierarchical risk parity (López de Prado, 2016) and equal risk contribution.

HRP: the correlation distance ``d_ij = sqrt((1 - rho_ij) / 2)`` is clustered
with SciPy's hierarchical linkage (single linkage by default, as
PyPortfolioOpt's ``HRPOpt``), the covariance is quasi-diagonalised by the
dendrogram's leaf order, and the weights come from recursive bisection of that
order: each cluster is split into halves and the halves' weights scale by
``1 - v1 / (v1 + v2)`` and ``1 - v2 / (v1 + v2)``, with ``v`` the variance of a
half's inverse-variance portfolio. The bisection is vectorised per level: a
half's variance ``iv' S iv / (1' iv)^2`` over a contiguous block of the
quasi-diagonal matrix is read off 2-D prefix sums of ``iv_i S_ij iv_j`` in
O(1), so the whole allocation costs O(N^2) after the linkage.

Risk parity: the equal-risk-contribution (or risk-budgeting) long-only
portfolio minimises the strictly convex ``1/2 y' S y - sum b_i log y_i``
(Spinu 2013); Newton's method with a backtracking line search that keeps
``y > 0`` converges quadratically, and ``w = y / sum(y)`` has risk
contributions ``w_i (S w)_i`` proportional to ``b``.

References
----------
López de Prado, M. (2016). Building diversified portfolios that outperform
    out of sample. Journal of Portfolio Management 42(4), 59-69.
Spinu, F. (2013). An algorithm for computing risk parity weights. SSRN 2297383.
Maillard, S., Roncalli, T., Teiletche, J. (2010). The properties of equally
    weighted risk contribution portfolios. Journal of Portfolio Management 36(4).
PyPortfolioOpt 1.6.0, ``pypfopt.hierarchical_portfolio.HRPOpt``: the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.cluster.hierarchy as sch
import scipy.linalg as sla
import scipy.spatial.distance as ssd

from tickwire.engines._common import check_stop
from tickwire.engines.portfolio_estimators import covariance_to_correlation
from tickwire.engines.portfolio_optimise import PortfolioResult, SolverInfo, performance
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register

LINKAGE_METHODS = ("single", "complete", "average", "weighted", "centroid", "median", "ward")


def hrp_order(cov: np.ndarray, linkage_method: str = "single") -> tuple[np.ndarray, np.ndarray]:
    """Quasi-diagonal order of the assets and the linkage matrix.

    Returns
    -------
    order : (N,) ndarray of int
        The dendrogram's leaves left to right (``to_tree(link).pre_order()``).
    link : (N-1, 4) ndarray
        ``scipy.cluster.hierarchy.linkage`` output.

    Raises
    ------
    ValueError
        ``linkage_method`` unknown.
    """
    if linkage_method not in LINKAGE_METHODS:
        raise ValueError(f"linkage_method: must be one of {', '.join(LINKAGE_METHODS)}")
    corr = covariance_to_correlation(cov)
    dist = np.sqrt(np.clip((1.0 - corr) / 2.0, 0.0, 1.0))
    link = sch.linkage(ssd.squareform(dist, checks=False), linkage_method)
    return sch.leaves_list(link), link


def recursive_bisection(cov: np.ndarray, order: np.ndarray) -> np.ndarray:
    """HRP weights (N,) from the quasi-diagonal ``order`` (López de Prado's
    bisection of the ordered list into halves, as ``HRPOpt._raw_hrp_allocation``)."""
    n = order.shape[0]
    c = cov[np.ix_(order, order)]
    iv = 1.0 / np.diag(c)
    z = np.zeros((n + 1, n + 1))
    z[1:, 1:] = np.cumsum(np.cumsum(c * np.outer(iv, iv), axis=0), axis=1)
    civ = np.concatenate([[0.0], np.cumsum(iv)])

    def variance(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        quad = z[e, e] - z[s, e] - z[e, s] + z[s, s]
        return quad / (civ[e] - civ[s]) ** 2

    # log-weights accumulate each level's factors through a difference array:
    # + log(alpha) on [s, m), + log(1 - alpha) on [m, e).
    logw = np.zeros(n)
    starts, ends = np.array([0]), np.array([n])
    while starts.size:
        mids = starts + (ends - starts) // 2
        v1, v2 = variance(starts, mids), variance(mids, ends)
        la, lb = np.log1p(-v1 / (v1 + v2)), np.log1p(-v2 / (v1 + v2))
        diff = np.zeros(n + 1)
        np.add.at(diff, starts, la)
        np.add.at(diff, mids, lb - la)
        np.add.at(diff, ends, -lb)
        logw += np.cumsum(diff[:n])
        s_new = np.concatenate([starts, mids])
        e_new = np.concatenate([mids, ends])
        keep = e_new - s_new > 1
        starts, ends = s_new[keep], e_new[keep]
    out = np.empty(n)
    out[order] = np.exp(logw)
    return out


def hrp(
    backend: Backend,
    cov: np.ndarray,
    mu: np.ndarray | None = None,
    performance_cov: np.ndarray | None = None,
    linkage_method: str = "single",
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> PortfolioResult:
    """Hierarchical risk parity weights and their performance.

    Parameters
    ----------
    cov : (N, N) ndarray
        Covariance (any scaling: the weights do not depend on it).
    mu : (N,) ndarray, optional
        Expected returns for the reported return and Sharpe ratio.
    performance_cov : (N, N) ndarray, optional
        Annual covariance for the reported volatility; ``cov`` when None.
    """
    check_stop(stop)
    order, _ = hrp_order(cov, linkage_method)
    check_stop(stop)
    w = recursive_bisection(cov, order)
    ret, vol, sharpe, rc = performance(
        w, mu, cov if performance_cov is None else performance_cov, risk_free_rate
    )
    return PortfolioResult(w, ret, vol, sharpe, rc, SolverInfo("hrp", "Solved", 0))


def risk_parity(
    backend: Backend,
    cov: np.ndarray,
    mu: np.ndarray | None = None,
    risk_budgets: np.ndarray | None = None,
    risk_free_rate: float = 0.0,
    tol: float = 1e-12,
    max_iter: int = 200,
    stop: Callable[[], bool] | None = None,
) -> PortfolioResult:
    """Long-only equal-risk-contribution (or risk-budgeting) weights.

    Parameters
    ----------
    cov : (N, N) ndarray, positive definite
    risk_budgets : (N,) ndarray > 0, optional
        Target shares of risk (normalised to sum to 1); equal when None.
    tol : float
        Stop when every ``|y_i (S y)_i - b_i| <= tol``.

    Raises
    ------
    ValueError
        ``risk_budgets`` not > 0 or of the wrong length; ``covariance`` not
        positive definite.
    """
    n = cov.shape[0]
    b = np.full(n, 1.0 / n) if risk_budgets is None else np.asarray(risk_budgets, float)
    if b.shape != (n,) or not np.all(b > 0):
        raise ValueError(f"risk_budgets: need {n} values, each > 0")
    b = b / b.sum()
    d = np.diag(cov)
    if not np.all(d > 0):
        raise ValueError("covariance: every variance must be > 0 for risk parity")
    y = np.sqrt(b / d)  # each asset alone at its budget
    iterations = 0
    status = "MaxIterations"
    for iterations in range(1, max_iter + 1):  # noqa: B007 - reported below
        check_stop(stop)
        sy = cov @ y
        grad = sy - b / y
        if np.max(np.abs(y * sy - b)) <= tol:
            status = "Solved"
            break
        hess = cov + np.diag(b / y**2)
        try:
            step = -sla.cho_solve(sla.cho_factor(hess, check_finite=False), grad)
        except np.linalg.LinAlgError as exc:
            raise ValueError("covariance: not positive definite; risk parity needs it") from exc
        f0 = 0.5 * y @ sy - b @ np.log(y)
        t = 1.0
        neg = step < 0
        if neg.any():
            t = min(1.0, 0.99 * float(np.min(-y[neg] / step[neg])))
        while True:
            y_new = y + t * step
            f1 = 0.5 * y_new @ (cov @ y_new) - b @ np.log(y_new)
            if f1 <= f0 + 1e-4 * t * (grad @ step) or t < 1e-12:
                break
            t *= 0.5
        y = y_new
    w = y / y.sum()
    ret, vol, sharpe, rc = performance(w, mu, cov, risk_free_rate)
    return PortfolioResult(w, ret, vol, sharpe, rc, SolverInfo("newton", status, iterations))


def _work(inputs: Any) -> float:
    return float(inputs["cov"].shape[0]) ** 2


def _sample(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = int(min(max(round(size**0.5), 4), 3000))
    r = rng.standard_normal((max(2 * n, 60), n)) * 0.01
    return {"cov": np.cov(r, rowvar=False) * 252}


HRP = register(
    Operation(
        "portfolio.hrp",
        hrp,
        _work,
        lambda inputs: [],
        _sample,
        calibration_sizes=(1_000, 100_000, 4_000_000),
        backends=("numpy",),
    )
)


def _sample_rp(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = int(min(max(round(size ** (1 / 3)), 4), 1000))
    r = rng.standard_normal((max(2 * n, 60), n)) * 0.01
    return {"cov": np.cov(r, rowvar=False) * 252}


RISK_PARITY = register(
    Operation(
        "portfolio.risk_parity",
        risk_parity,
        lambda inputs: float(inputs["cov"].shape[0]) ** 3,
        lambda inputs: [],
        _sample_rp,
        calibration_sizes=(1_000, 1_000_000, 30_000_000),
        backends=("numpy",),
    )
)
