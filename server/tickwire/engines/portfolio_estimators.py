"""Inputs of portfolio construction: expected returns and covariance estimators.

Every estimator matches PyPortfolioOpt 1.6.0 (``pypfopt.expected_returns`` and
``pypfopt.risk_models``) on complete data to 1e-10 relative; the tests check
it on PyPortfolioOpt's own test prices and on 470 S&P 500 stocks.

Conventions
-----------
returns : (T, N) ndarray of float64
    Simple returns per period, one row per period (oldest first), one column
    per asset, no NaN. :func:`returns_from_prices` builds them from prices.
frequency : float
    Periods per year (252 for daily data); every estimate is annualised with
    it: means times ``frequency`` (or compounded to ``frequency`` periods),
    covariances times ``frequency``.

The covariance estimators differ in what they divide by, as PyPortfolioOpt
does: the sample, single-factor and constant-correlation estimators use the
unbiased sample covariance (T - 1) where their authors do; the constant
variance Ledoit-Wolf and the oracle approximating estimators follow
scikit-learn's (1 / T) empirical covariance, as PyPortfolioOpt calls them.

The heavy step of every covariance estimator -- Gram matrices ``X' Y`` of the
(T, N) history -- runs on the routed backend (NumPy, PyTorch); the O(N^2)
rest runs in NumPy on the host.

References
----------
Ledoit, O., Wolf, M. (2004). A well-conditioned estimator for large-dimensional
    covariance matrices. Journal of Multivariate Analysis 88(2), 365-411.
Ledoit, O., Wolf, M. (2003). Improved estimation of the covariance matrix of
    stock returns with an application to portfolio selection. Journal of
    Empirical Finance 10(5), 603-621 (single-factor target).
Ledoit, O., Wolf, M. (2004). Honey, I shrunk the sample covariance matrix.
    Journal of Portfolio Management 30(4), 110-119 (constant correlation).
Chen, Y., Wiesel, A., Eldar, Y. C., Hero, A. O. (2010). Shrinkage algorithms
    for MMSE covariance estimation. IEEE Trans. Signal Processing 58(10)
    (oracle approximating shrinkage).
Estrada, J. (2006). Downside risk in practice. Journal of Applied Corporate
    Finance 18(1) (semicovariance).
PyPortfolioOpt 1.6.0 (Martin, R. A., 2021, JOSS 6(61), 3066): the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.engines._common import check_stop
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, Transfer, register

#: PyPortfolioOpt's defaults.
DEFAULT_FREQUENCY = 252.0
DEFAULT_RETURN_SPAN = 500
DEFAULT_COVARIANCE_SPAN = 180
#: Daily risk-free rate 1.02 ** (1 / 252) - 1, rounded as PyPortfolioOpt does.
DEFAULT_SEMICOVARIANCE_BENCHMARK = 0.000079

COVARIANCE_METHODS = (
    "sample",
    "exponential",
    "semicovariance",
    "ledoit_wolf_constant_variance",
    "ledoit_wolf_single_factor",
    "ledoit_wolf_constant_correlation",
    "oracle_approximating",
)
RETURN_METHODS = ("mean_historical", "ema_historical", "capm")


@dataclass(frozen=True)
class CovarianceEstimate:
    """An annualised covariance matrix and how it was obtained.

    Attributes
    ----------
    matrix : (N, N) ndarray of float64
        Symmetric positive semidefinite, annualised.
    shrinkage : float
        Shrinkage intensity in [0, 1] of the shrinkage estimators; 0 otherwise.
    repaired : bool
        The raw estimate was not positive semidefinite and its negative
        eigenvalues were set to zero (PyPortfolioOpt's ``spectral`` fix).
    min_eigenvalue : float
        Smallest eigenvalue of the raw estimate when it was repaired, else 0.
    """

    matrix: np.ndarray
    shrinkage: float
    repaired: bool
    min_eigenvalue: float


# --------------------------------------------------------------------------
# returns
# --------------------------------------------------------------------------
def returns_from_prices(prices: np.ndarray) -> np.ndarray:
    """Simple returns ``p[t] / p[t-1] - 1``; (T+1, N) prices to (T, N) returns.

    Raises
    ------
    ValueError
        ``prices``: fewer than 3 rows or a price that is not > 0.
    """
    prices = np.asarray(prices, dtype=np.float64)
    if prices.ndim != 2 or prices.shape[0] < 3:
        raise ValueError("prices: need a (T, N) matrix with T >= 3 rows")
    if not (prices > 0.0).all():
        raise ValueError("prices: every price must be > 0")
    return prices[1:] / prices[:-1] - 1.0


def _ewm_weights(t: int, span: float) -> np.ndarray:
    """pandas ``ewm(span=span, adjust=True)`` weights of the last row, summing to 1."""
    alpha = 2.0 / (span + 1.0)
    w = (1.0 - alpha) ** np.arange(t - 1, -1, -1, dtype=np.float64)
    return w / w.sum()


def _compound(mean_per_period: np.ndarray | float, frequency: float) -> Any:
    return (1.0 + mean_per_period) ** frequency - 1.0


def mean_historical_return(
    returns: np.ndarray, frequency: float = DEFAULT_FREQUENCY, compounding: bool = True
) -> np.ndarray:
    """Annualised mean return per asset, (N,).

    Geometric (CAGR, ``prod(1 + r) ** (frequency / T) - 1``) when
    ``compounding``, else arithmetic (``mean(r) * frequency``), as
    ``pypfopt.expected_returns.mean_historical_return``.
    """
    t = returns.shape[0]
    if compounding:
        return np.prod(1.0 + returns, axis=0) ** (frequency / t) - 1.0
    return returns.mean(axis=0) * frequency


def ema_historical_return(
    returns: np.ndarray,
    frequency: float = DEFAULT_FREQUENCY,
    compounding: bool = True,
    span: float = DEFAULT_RETURN_SPAN,
) -> np.ndarray:
    """Exponentially weighted mean return (pandas ``ewm(span)``), annualised, (N,)."""
    m = _ewm_weights(returns.shape[0], span) @ returns
    return _compound(m, frequency) if compounding else m * frequency


def capm_return(
    returns: np.ndarray,
    market_returns: np.ndarray | None = None,
    frequency: float = DEFAULT_FREQUENCY,
    compounding: bool = True,
    risk_free_rate: float = 0.0,
) -> np.ndarray:
    """CAPM expected returns ``rf + beta_i (E[R_m] - rf)``, (N,).

    Parameters
    ----------
    market_returns : (T,) ndarray, optional
        Returns of the market over the same periods; the equally weighted
        average of the assets when None (PyPortfolioOpt's proxy).
    risk_free_rate : float
        Annual.

    Raises
    ------
    ValueError
        ``market_returns``: wrong length, or no variance.
    """
    t = returns.shape[0]
    mkt = returns.mean(axis=1) if market_returns is None else np.asarray(market_returns)
    if mkt.shape != (t,):
        raise ValueError(f"market_returns: need {t} values, one per period, got {mkt.shape}")
    mc = mkt - mkt.mean()
    var_m = float(mc @ mc) / (t - 1)
    if not var_m > 0.0:
        raise ValueError("market_returns: the market returns have no variance")
    betas = ((returns - returns.mean(axis=0)).T @ mc) / (t - 1) / var_m
    if compounding:
        mkt_mean = float(np.prod(1.0 + mkt) ** (frequency / t) - 1.0)
    else:
        mkt_mean = float(mkt.mean() * frequency)
    return risk_free_rate + betas * (mkt_mean - risk_free_rate)


def expected_returns(
    returns: np.ndarray,
    method: str = "mean_historical",
    frequency: float = DEFAULT_FREQUENCY,
    compounding: bool = True,
    span: float = DEFAULT_RETURN_SPAN,
    market_returns: np.ndarray | None = None,
    risk_free_rate: float = 0.0,
) -> np.ndarray:
    """Dispatch to one of :data:`RETURN_METHODS`; (N,) annual expected returns.

    Raises
    ------
    ValueError
        ``expected_returns_model.method``: unknown method.
    """
    if method == "mean_historical":
        return mean_historical_return(returns, frequency, compounding)
    if method == "ema_historical":
        return ema_historical_return(returns, frequency, compounding, span)
    if method == "capm":
        return capm_return(returns, market_returns, frequency, compounding, risk_free_rate)
    raise ValueError(f"expected_returns_model.method: unknown method {method!r}")


# --------------------------------------------------------------------------
# covariance
# --------------------------------------------------------------------------
def _gram(backend: Backend, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``a.T @ b`` (``a.T @ a`` when b is None) on ``backend``, as a host array."""
    xa = backend.asarray(np.ascontiguousarray(a))
    xb = xa if b is None else backend.asarray(np.ascontiguousarray(b))
    return backend.to_numpy(backend.matmul(xa.T, xb))


def is_positive_semidefinite(matrix: np.ndarray) -> bool:
    """PyPortfolioOpt's test: a Cholesky factor of ``matrix + 1e-16 I`` exists."""
    try:
        np.linalg.cholesky(matrix + 1e-16 * np.eye(matrix.shape[0]))
    except np.linalg.LinAlgError:
        return False
    return True


def repair_psd(matrix: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """Spectral repair of a symmetric matrix that is not positive semidefinite.

    Returns
    -------
    fixed : (N, N) ndarray
        ``matrix`` itself when it is PSD; else ``V max(q, 0) V'`` from its
        eigendecomposition ``V q V'`` (``pypfopt.risk_models.
        fix_nonpositive_semidefinite(fix_method="spectral")``).
    repaired : bool
    min_eigenvalue : float
        The smallest eigenvalue before the repair (0 when not repaired).
    """
    if is_positive_semidefinite(matrix):
        return matrix, False, 0.0
    q, v = np.linalg.eigh(matrix)
    fixed = (v * np.where(q > 0.0, q, 0.0)) @ v.T
    return fixed, True, float(q.min())


def _lw_constant_variance(backend: Backend, x: np.ndarray) -> tuple[np.ndarray, float]:
    """scikit-learn's ``ledoit_wolf`` (1 / T empirical covariance, identity target)."""
    t, n = x.shape
    xc = x - x.mean(axis=0)
    emp = _gram(backend, xc) / t
    x2 = xc * xc
    trace = x2.sum(axis=0) / t
    mu = trace.sum() / n
    beta_ = float(_gram(backend, x2).sum())
    delta_ = float(np.sum(emp * emp))  # sum((X'X)^2) / T^2
    beta = (beta_ / t - delta_) / (n * t)
    delta = (delta_ - 2.0 * mu * trace.sum() + n * mu**2) / n
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * emp
    shrunk.flat[:: n + 1] += shrinkage * mu
    return shrunk, float(shrinkage)


def _oracle_approximating(backend: Backend, x: np.ndarray) -> tuple[np.ndarray, float]:
    """scikit-learn's ``oas`` (Chen et al. 2010, as scikit-learn >= 1.3 writes it)."""
    t, n = x.shape
    xc = x - x.mean(axis=0)
    emp = _gram(backend, xc) / t
    alpha = float(np.mean(emp**2))
    mu = float(np.trace(emp)) / n
    num = alpha + mu**2
    den = (t + 1.0) * (alpha - mu**2 / n)
    shrinkage = 1.0 if den == 0 else min(num / den, 1.0)
    shrunk = (1.0 - shrinkage) * emp
    shrunk.flat[:: n + 1] += shrinkage * mu
    return shrunk, float(shrinkage)


def _lw_single_factor(backend: Backend, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2003) with Sharpe's single-factor target (equal-weight market)."""
    t = x.shape[0]
    xm = x - x.mean(axis=0)
    xmkt = xm.mean(axis=1)
    # np.cov of [Xm, xmkt] times (t-1)/t: the 1 / T moments of the demeaned data.
    xmkt_c = xmkt - xmkt.mean()
    xmm = xm - xm.mean(axis=0)
    sample = _gram(backend, xmm) / t
    betas = (xmm.T @ xmkt_c) / t
    varmkt = float(xmkt_c @ xmkt_c) / t
    f = np.outer(betas, betas) / varmkt
    np.fill_diagonal(f, np.diag(sample))
    c = float(np.sum((sample - f) ** 2))
    y = xm * xm
    p = float(_gram(backend, y).sum()) / t - float(np.sum(sample**2))
    rdiag = float(np.sum(y**2)) / t - float(np.sum(np.diag(sample) ** 2))
    z = xm * xmkt[:, None]
    v1 = _gram(backend, y, z) / t - betas[:, None] * sample
    roff1 = (
        float(np.sum(v1 * betas[None, :])) / varmkt - float(np.sum(np.diag(v1) * betas)) / varmkt
    )
    v3 = _gram(backend, z) / t - varmkt * sample
    bb = np.outer(betas, betas)
    roff3 = float(np.sum(v3 * bb)) / varmkt**2 - float(np.sum(np.diag(v3) * betas**2)) / varmkt**2
    r = rdiag + 2.0 * roff1 - roff3
    k = (p - r) / c
    delta = max(0.0, min(1.0, k / t))
    return delta * f + (1.0 - delta) * sample, float(delta)


def _lw_constant_correlation(backend: Backend, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2004, "Honey") with the constant-correlation target."""
    t, n = x.shape
    xm = x - x.mean(axis=0)
    gram = _gram(backend, xm)
    s = gram / (t - 1)  # PyPortfolioOpt's S is the unbiased sample covariance
    var = np.diag(s).copy()
    std = np.sqrt(var)
    r_bar = (float(np.sum(s / np.outer(std, std))) - n) / (n * (n - 1))
    f = r_bar * np.outer(std, std)
    np.fill_diagonal(f, var)
    y = xm * xm
    help_ = gram / t
    pi_mat = _gram(backend, y) / t - 2.0 * help_ * s + s**2
    pi_hat = float(np.sum(pi_mat))
    term1 = _gram(backend, xm * y, xm) / t
    help_diag = np.diag(help_)
    theta = term1 - help_diag[:, None] * s - help_ * var[:, None] + var[:, None] * s
    np.fill_diagonal(theta, 0.0)
    rho_hat = float(np.sum(np.diag(pi_mat))) + r_bar * float(
        np.sum(np.outer(1.0 / std, std) * theta)
    )
    gamma_hat = float(np.sum((s - f) ** 2))
    kappa = (pi_hat - rho_hat) / gamma_hat
    delta = max(0.0, min(1.0, kappa / t))
    return delta * f + (1.0 - delta) * s, float(delta)


def estimate_covariance(
    backend: Backend,
    returns: np.ndarray,
    method: str = "sample",
    frequency: float = DEFAULT_FREQUENCY,
    span: float = DEFAULT_COVARIANCE_SPAN,
    benchmark: float = DEFAULT_SEMICOVARIANCE_BENCHMARK,
    returns_key: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> CovarianceEstimate:
    """Annualised covariance of ``returns`` by one of :data:`COVARIANCE_METHODS`.

    Parameters
    ----------
    backend : Backend
        Runs the Gram matrices.
    returns : (T, N) ndarray, T >= 2
    method : str
        ``sample`` (unbiased), ``exponential`` (pandas ``ewm(span)`` of the
        demeaned cross products, PyPortfolioOpt's ``exp_cov``),
        ``semicovariance`` (``E[min(r_i - B, 0) min(r_j - B, 0)]`` over all T
        periods, ``B = benchmark`` per period), or a shrinkage estimator.
    frequency : float
        Periods per year.
    span : float
        Span of ``exponential`` in periods.
    benchmark : float
        Per-period threshold of ``semicovariance``.

    Returns
    -------
    CovarianceEstimate, repaired to positive semidefinite when needed.

    Raises
    ------
    ValueError
        ``covariance_model.method`` unknown; ``returns`` with T < 2.
    """
    t = returns.shape[0]
    if t < 2:
        raise ValueError("returns: need at least 2 periods")
    check_stop(stop)
    shrinkage = 0.0
    if method == "sample":
        xc = returns - returns.mean(axis=0)
        raw = _gram(backend, xc) / (t - 1)
    elif method == "exponential":
        xc = returns - returns.mean(axis=0)
        w = _ewm_weights(t, span)
        raw = _gram(backend, xc * w[:, None], xc)
    elif method == "semicovariance":
        drops = np.minimum(returns - benchmark, 0.0)
        raw = _gram(backend, drops) / t
    elif method == "ledoit_wolf_constant_variance":
        raw, shrinkage = _lw_constant_variance(backend, returns)
    elif method == "ledoit_wolf_single_factor":
        raw, shrinkage = _lw_single_factor(backend, returns)
    elif method == "ledoit_wolf_constant_correlation":
        raw, shrinkage = _lw_constant_correlation(backend, returns)
    elif method == "oracle_approximating":
        raw, shrinkage = _oracle_approximating(backend, returns)
    else:
        raise ValueError(f"covariance_model.method: unknown method {method!r}")
    check_stop(stop)
    raw = raw * frequency
    raw = 0.5 * (raw + raw.T)  # exact symmetry (GPU sums are not)
    fixed, repaired, min_eig = repair_psd(raw)
    return CovarianceEstimate(fixed, shrinkage, repaired, min_eig)


def covariance_to_correlation(cov: np.ndarray) -> np.ndarray:
    """``D^-1 cov D^-1`` with ``D = sqrt(diag(cov))``; (N, N)."""
    d = 1.0 / np.sqrt(np.diag(cov))
    return cov * np.outer(d, d)


@dataclass(frozen=True)
class InputsEstimate:
    """Expected returns (N,) and a covariance estimate; either may be None."""

    expected_returns: np.ndarray | None
    covariance: CovarianceEstimate | None


def estimate_inputs(
    backend: Backend,
    returns: np.ndarray,
    frequency: float = DEFAULT_FREQUENCY,
    covariance_method: str | None = "sample",
    span: float = DEFAULT_COVARIANCE_SPAN,
    benchmark: float = DEFAULT_SEMICOVARIANCE_BENCHMARK,
    returns_method: str | None = "mean_historical",
    compounding: bool = True,
    return_span: float = DEFAULT_RETURN_SPAN,
    market_returns: np.ndarray | None = None,
    risk_free_rate: float = 0.0,
    returns_key: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> InputsEstimate:
    """Expected returns (:func:`expected_returns`, on the host) and covariance
    (:func:`estimate_covariance`, on ``backend``) of one history; a method of
    None skips that estimate."""
    mu = None
    if returns_method is not None:
        mu = expected_returns(
            returns, returns_method, frequency, compounding, return_span, market_returns,
            risk_free_rate,
        )  # fmt: skip
    cov = None
    if covariance_method is not None:
        cov = estimate_covariance(
            backend, returns, covariance_method, frequency, span, benchmark, returns_key, stop
        )
    return InputsEstimate(mu, cov)


# --------------------------------------------------------------------------
# routed operation
# --------------------------------------------------------------------------
def _cov_work(inputs: Any) -> float:
    t, n = inputs["returns"].shape
    method = inputs.get("covariance_method", "sample")
    if method is None:
        return float(t) * n
    passes = {"ledoit_wolf_single_factor": 4, "ledoit_wolf_constant_correlation": 3}
    return float(t) * n * n * passes.get(method, 1)


def _cov_transfers(inputs: Any) -> list[Transfer]:
    return [Transfer(inputs["returns"].nbytes, None)]


def _sample_cov_inputs(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = int(min(max(round((size / 4) ** (1 / 3)), 4), 2000))
    t = max(int(size // (n * n)), n + 2)
    return {"returns": rng.standard_normal((t, n)) * 0.01, "covariance_method": "sample"}


#: Expected returns and covariance, routed between NumPy and PyTorch by size
#: (work = T x N^2 x passes over the data for the covariance). Not MLX: its
#: matmul is float32, far from the 1e-10 these estimators promise.
ESTIMATE_INPUTS = register(
    Operation(
        "portfolio.estimate_inputs",
        estimate_inputs,
        _cov_work,
        _cov_transfers,
        _sample_cov_inputs,
        calibration_sizes=(100_000, 10_000_000, 1_000_000_000),
        backends=("numpy", "torch-cpu", "torch-cuda"),
    )
)
