"""The whole factor risk model in one call: prices in, risk model out.

From (T+1, N) daily closes, shares outstanding, sectors and per-share
fundamentals:

1. returns ``r_t = close_t / close_{t-1} - 1`` (T, N);
   market caps ``shares x close_{t-1}`` and value ratios
   ``fundamental per share / close_{t-1}`` (known before date t: no look-ahead);
2. style scores (:mod:`~tickwire.engines.factor_styles`): momentum, size and,
   when fundamentals are given, value;
3. factor and residual returns (:mod:`~tickwire.engines.factor_returns`) on
   the D = T - lag - trailing_days + 1 dates where momentum is defined;
4. exponentially weighted factor covariance and specific variances
   (:mod:`~tickwire.engines.factor_risk`), per period;
5. the exposures of the last date and, for the portfolios given, their risk
   decomposition.

Every step runs on the routed backend (NumPy or PyTorch) without leaving it
until the end; only the final (small) risk decomposition runs on the host.

With the S&P 500 data of ``data/`` shares outstanding and fundamentals come
from one constituents snapshot (2017-03-08), not point-in-time data: market
cap per date is shares outstanding times the close, and book value, sales and
earnings per share are held fixed over the five years.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tickwire.engines._common import check_stop
from tickwire.engines.factor_returns import factor_returns_xp, sector_dummies
from tickwire.engines.factor_risk import (
    PortfolioRisk,
    ew_covariance_xp,
    ew_variance_xp,
    portfolio_risk,
)
from tickwire.engines.factor_styles import (
    MomentumParams,
    momentum_scores,
    size_scores,
    value_scores,
)
from tickwire.engines.factor_xp import BACKENDS, Xp
from tickwire.routing.backends import Backend, NumpyBackend
from tickwire.routing.operation import Operation, Transfer, register

#: Style factor names in the order of the factor returns (toraniko sorts by name).
STYLE_NAMES = ("momentum", "size", "value")


@dataclass(frozen=True)
class ModelSettings:
    """Settings of :func:`estimate_risk_model` (defaults in brackets).

    momentum : MomentumParams [504, 126, 20, 0.01 as toraniko]
    size_lower, size_upper : [0.2, 0.8] size tails kept
    value_winsor_factor : [0] winsorising of the value ratios
    winsor_factor : [0.05] winsorising of the returns in the regressions
    residualize_styles : [True]
    sector_constraint : ["equal"] or "cap_weighted"
    covariance_half_life : [126] days, factor covariance
    specific_half_life : [63] days, specific variance
    periods_per_year : [252] annualisation of the portfolio risk
    """

    momentum: MomentumParams = MomentumParams()  # noqa: RUF009 - frozen dataclass
    size_lower: float = 0.2
    size_upper: float = 0.8
    value_winsor_factor: float = 0.0
    winsor_factor: float = 0.05
    residualize_styles: bool = True
    sector_constraint: str = "equal"
    covariance_half_life: float = 126.0
    specific_half_life: float = 63.0
    periods_per_year: float = 252.0


@dataclass(frozen=True)
class RiskModel:
    """An estimated factor risk model.

    Attributes
    ----------
    factor_names : list of str
        "market", the sector names, then the style names.
    first_date : int
        Row of the returns (0 = the second close) of the first estimation date.
    factor_returns : (D, F) ndarray
    residual_returns : (D, N) ndarray
    factor_covariance : (F, F) ndarray, per period
    specific_variance : (N,) ndarray, per period
    exposures : (N, F) ndarray
        Exposures on the last date.
    style_scores : (T, N, K) ndarray or None
        When asked for; momentum is NaN before ``first_date``.
    portfolio : PortfolioRisk or None
    """

    factor_names: list[str]
    first_date: int
    factor_returns: np.ndarray
    residual_returns: np.ndarray
    factor_covariance: np.ndarray
    specific_variance: np.ndarray
    exposures: np.ndarray
    style_scores: np.ndarray | None
    portfolio: PortfolioRisk | None


def estimate_risk_model(
    backend: Backend,
    closes: np.ndarray,
    shares_outstanding: np.ndarray,
    sectors: np.ndarray,
    sector_names: list[str],
    book_value_per_share: np.ndarray | None = None,
    sales_per_share: np.ndarray | None = None,
    earnings_per_share: np.ndarray | None = None,
    settings: ModelSettings = ModelSettings(),
    portfolio_weights: np.ndarray | None = None,
    return_style_scores: bool = False,
    stop: Callable[[], bool] | None = None,
) -> RiskModel:
    """Estimate the factor model from prices (see the module notes).

    Parameters
    ----------
    backend : Backend
        numpy, torch-cpu or torch-cuda.
    closes : (T+1, N) ndarray of float64, > 0
        Daily closes, oldest first.
    shares_outstanding : (N,) ndarray, > 0
    sectors : (N,) ndarray of int in [0, S); sector_names : S names
    book_value_per_share, sales_per_share, earnings_per_share : (N,), optional
        All or none; NaN where unknown. Without them the model has no value factor.
    settings : ModelSettings
    portfolio_weights : (P, N) ndarray, optional
    return_style_scores : bool

    Returns
    -------
    RiskModel

    Raises
    ------
    ValueError
        Bad shapes or settings, too few dates for the momentum window and the
        covariance, a singular regression date.
    """
    closes = np.asarray(closes, dtype=np.float64)
    if closes.ndim != 2 or closes.shape[1] < 2 or not (closes > 0).all():
        raise ValueError("closes: must be (T+1, N) with N >= 2 and every close > 0")
    t1, n = closes.shape
    shares = np.asarray(shares_outstanding, dtype=np.float64)
    if shares.shape != (n,) or not (shares > 0).all():
        raise ValueError(f"shares_outstanding: must be ({n},) and > 0")
    m = settings.momentum
    first = m.lag + m.trailing_days - 1
    if t1 - 1 - first < 2:
        raise ValueError(
            f"closes: {t1} dates leave fewer than 2 estimation dates after the momentum "
            f"warm-up of lag + trailing_days = {m.lag + m.trailing_days} returns"
        )
    fundamentals = [book_value_per_share, sales_per_share, earnings_per_share]
    has_value = book_value_per_share is not None
    if has_value and any(f is None or np.shape(f) != (n,) for f in fundamentals):
        raise ValueError(f"book_value_per_share: the three fundamentals must all be ({n},)")

    xp = Xp(backend)
    c = xp.asarray(closes)
    prev = c[:-1]
    r = c[1:] / prev - 1.0
    caps = prev * xp.asarray(shares)[None, :]
    styles = [momentum_scores(xp, r, m, stop)]
    check_stop(stop)
    styles.append(size_scores(xp, caps, settings.size_lower, settings.size_upper))
    if has_value:
        ratios = [xp.asarray(np.asarray(f, dtype=np.float64))[None, :] / prev for f in fundamentals]
        styles.append(value_scores(xp, *ratios, settings.value_winsor_factor))
    check_stop(stop)
    x = xp.lib.stack(styles, 2)  # (T, N, K)
    names = ["market", *sector_names, *STYLE_NAMES[: len(styles)]]
    dummies = xp.asarray(sector_dummies(sectors, len(sector_names)))
    fr, resid = factor_returns_xp(
        xp,
        r[first:],
        caps[first:],
        dummies,
        x[first:],
        settings.winsor_factor,
        settings.residualize_styles,
        settings.sector_constraint,
        stop,
    )
    cov = ew_covariance_xp(xp, fr, settings.covariance_half_life)
    spec = ew_variance_xp(xp, resid, settings.specific_half_life)
    ones = xp.full((n, 1), 1.0)
    expo = xp.concat([ones, dummies, x[-1]], 1)
    model = RiskModel(
        factor_names=names,
        first_date=first,
        factor_returns=xp.to_numpy(fr),
        residual_returns=xp.to_numpy(resid),
        factor_covariance=xp.to_numpy(cov),
        specific_variance=xp.to_numpy(spec),
        exposures=xp.to_numpy(expo),
        style_scores=xp.to_numpy(x) if return_style_scores else None,
        portfolio=None,
    )
    if portfolio_weights is None:
        return model
    cov_np = model.factor_covariance
    risk = portfolio_risk(
        NumpyBackend(),
        model.exposures,
        0.5 * (cov_np + cov_np.T),
        model.specific_variance,
        portfolio_weights,
        settings.periods_per_year,
    )
    return replace(model, portfolio=risk)


# --------------------------------------------------------------------------
# routing declarations
# --------------------------------------------------------------------------
def _work(inputs: Any) -> float:
    t1, n = inputs["closes"].shape
    settings = inputs.get("settings", ModelSettings())
    f = len(inputs["sector_names"]) + 4
    return float(t1 * n * (settings.momentum.trailing_days + f))


def _transfers(inputs: Any) -> list[Transfer]:
    return [Transfer(int(inputs["closes"].nbytes))]


def _sample(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n, s = 448, 11  # the S&P universe's width: per-date sorts make cost grow with n
    w = int(min(max(size // (n * 300), 5), 252))
    t = max(size // (n * (w + s + 4)), w + 60)
    closes = 50.0 * np.cumprod(1.0 + 0.01 * rng.standard_normal((t, n)), axis=0)
    return {
        "closes": closes,
        "shares_outstanding": np.exp(rng.normal(19.0, 1.0, n)),
        "sectors": np.arange(n) % s,
        "sector_names": [f"s{i}" for i in range(s)],
        "book_value_per_share": rng.uniform(5.0, 40.0, n),
        "sales_per_share": rng.uniform(5.0, 80.0, n),
        "earnings_per_share": rng.normal(3.0, 2.0, n),
        "settings": ModelSettings(
            momentum=MomentumParams(trailing_days=w, half_life=max(w // 2, 1), lag=20),
            covariance_half_life=30.0,
            specific_half_life=20.0,
        ),
    }


RISK_MODEL = register(
    Operation(
        "factor.risk_model",
        estimate_risk_model,
        _work,
        _transfers,
        _sample,
        calibration_sizes=(1_000_000, 20_000_000, 150_000_000),
        backends=BACKENDS,
    )
)
