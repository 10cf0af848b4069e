"""Style scores and factor returns against toraniko 1.1.1 on the S&P 500 data.

toraniko is installed with ``--no-deps`` (it pins numpy~=1.26; ours is 2.x).
Its inputs are built from the same arrays as ours, as long Polars frames; the
comparison is to 1e-8 absolute on scores and returns of order 1 and 1e-2.
"""

from __future__ import annotations

import numpy as np
import pytest
from factor_panel import sp500_panel
from tickwire.engines import factor_model, factor_returns, factor_styles
from tickwire.engines.factor_xp import Xp
from tickwire.routing.backends import NumpyBackend, TorchBackend

pl = pytest.importorskip("polars")
toraniko_model = pytest.importorskip("toraniko.model")
toraniko_styles = pytest.importorskip("toraniko.styles")

TOL = 1e-8
BACKENDS = [NumpyBackend(), TorchBackend("cpu")]
IDS = [b.name for b in BACKENDS]
#: Dates of the moderately sized checks (the full size is in bench/bench_factor.py).
T = 250


def _long(dates: np.ndarray, symbols: np.ndarray, **cols: np.ndarray) -> pl.DataFrame:
    d, n = next(iter(cols.values())).shape
    frame = {"date": np.repeat(dates, n), "symbol": np.tile(symbols, d)}
    frame.update({k: v.ravel() for k, v in cols.items()})
    return pl.DataFrame(frame)


def _wide(frame: pl.DataFrame, column: str, n: int) -> np.ndarray:
    return frame.sort(["date", "symbol"])[column].to_numpy().reshape(-1, n)


@pytest.fixture(scope="module")
def panel():
    return sp500_panel()


@pytest.fixture(scope="module")
def subset(panel):
    """First T return dates, every stock."""
    dates = panel.dates[1 : T + 1].to_numpy()
    return dates, np.array(panel.symbols), panel.returns()[:T], panel.market_caps()[:T]


# toraniko winsorises the all-NaN warm-up dates too, and NumPy warns about it.
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_momentum_equals_toraniko(subset, backend):
    dates, symbols, r, caps = subset
    n = 120  # toraniko's rolling map calls Python once per value: keep it short
    ref = toraniko_styles.factor_mom(
        _long(dates, symbols[:n], asset_returns=r[:, :n]),
        trailing_days=126,
        half_life=42,
        lag=20,
        winsor_factor=0.02,
    ).collect()
    expected = _wide(ref, "mom_score", n)
    params = factor_styles.MomentumParams(126, 42, 20, 0.02)
    ours = factor_styles.style_scores(backend, r[:, :n], caps[:, :n], momentum=params)
    assert ours.first_valid_date == 20 + 126 - 1
    assert np.array_equal(np.isnan(ours.momentum), np.isnan(expected))
    assert np.isnan(ours.momentum[: ours.first_valid_date]).all()
    np.testing.assert_allclose(ours.momentum, expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize(("lower", "upper"), [(0.2, 0.8), (0.1, 0.7)])
def test_size_equals_toraniko(subset, backend, lower, upper):
    dates, symbols, r, caps = subset
    ref = toraniko_styles.factor_sze(
        _long(dates, symbols, market_cap=caps), lower_decile=lower, upper_decile=upper
    ).collect()
    expected = _wide(ref, "sze_score", len(symbols))
    params = factor_styles.MomentumParams(5, 2, 0, 0.01)
    ours = factor_styles.style_scores(
        backend, r, caps, momentum=params, size_lower=lower, size_upper=upper
    )
    np.testing.assert_allclose(ours.size, expected, rtol=0, atol=TOL)
    # the middle of the cross-section is zeroed, the tails kept
    assert 0.55 < np.mean(ours.size == 0.0) < upper - lower + 0.01


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("winsor", [None, 0.05])
def test_value_equals_toraniko_where_all_ratios_exist(panel, subset, backend, winsor):
    dates, symbols, _, _ = subset
    bp, sp, ep = (x[:T] for x in panel.ratios())
    ok = (bp[0] > 0) & (sp[0] > 0) & np.isfinite(ep[0])
    assert ok.sum() > 350
    ref = toraniko_styles.factor_val(
        _long(dates, symbols[ok], book_price=bp[:, ok], sales_price=sp[:, ok], cf_price=ep[:, ok]),
        winsorize_features=winsor,
    ).collect()
    expected = _wide(ref, "val_score", int(ok.sum()))
    xp = Xp(backend)
    ours = factor_styles.value_scores(
        xp, *(xp.asarray(x[:, ok]) for x in (bp, sp, ep)), winsor_factor=winsor or 0.0
    )
    np.testing.assert_allclose(xp.to_numpy(ours), expected, rtol=0, atol=TOL)


def test_value_scores_missing_ratios_get_the_mean(panel):
    bp, sp, ep = (x[:20] for x in panel.ratios())
    scores = factor_styles.style_scores(
        NumpyBackend(),
        panel.returns()[:20],
        panel.market_caps()[:20],
        bp,
        sp,
        ep,
        momentum=factor_styles.MomentumParams(5, 2, 0, 0.01),
    ).value
    none = ~((bp[0] > 0) | (sp[0] > 0) | np.isfinite(ep[0]))
    assert np.isfinite(scores).all()
    assert (scores[:, none] == 0.0).all()


def _styles_for_regression(panel, d0: int, d1: int) -> np.ndarray:
    s = factor_styles.style_scores(
        NumpyBackend(),
        panel.returns()[:d1],
        panel.market_caps()[:d1],
        *(x[:d1] for x in panel.ratios()),
        momentum=factor_styles.MomentumParams(20, 10, 5, 0.01),
    )
    assert d0 >= s.first_valid_date
    return np.stack([s.momentum, s.size, s.value], 2)[d0:d1]


def _toraniko_factor_returns(panel, d0, d1, styles, winsor, residualize):
    dates = panel.dates[1 + d0 : 1 + d1].to_numpy()
    symbols = np.array(panel.symbols)
    r, caps = panel.returns()[d0:d1], panel.market_caps()[d0:d1]
    d = r.shape[0]
    sectors = {
        name: np.repeat((panel.sectors == i).astype(float)[None, :], d, 0)
        for i, name in enumerate(panel.sector_names)
    }
    fr, eps = toraniko_model.estimate_factor_returns(
        _long(dates, symbols, asset_returns=r),
        _long(dates, symbols, market_cap=caps),
        _long(dates, symbols, **sectors),
        _long(
            dates,
            symbols,
            mom_score=styles[..., 0],
            sze_score=styles[..., 1],
            val_score=styles[..., 2],
        ),
        winsor_factor=winsor,
        residualize_styles=residualize,
    )
    fr = fr.sort("date")
    assert fr.columns[: 1 + len(panel.sector_names)] == ["market", *panel.sector_names]
    return fr.drop("date").to_numpy(), eps.sort("date").select(list(symbols)).to_numpy()


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize(("winsor", "residualize"), [(0.05, True), (None, False)])
def test_factor_returns_equal_toraniko(panel, backend, winsor, residualize):
    d0, d1 = 30, 30 + T
    styles = _styles_for_regression(panel, d0, d1)
    expected_f, expected_e = _toraniko_factor_returns(panel, d0, d1, styles, winsor, residualize)
    ours = factor_returns.factor_returns(
        backend,
        panel.returns()[d0:d1],
        panel.market_caps()[d0:d1],
        panel.sectors,
        len(panel.sector_names),
        styles,
        winsor_factor=winsor or 0.0,
        residualize_styles=residualize,
    )
    np.testing.assert_allclose(ours.factor_returns, expected_f, rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.residual_returns, expected_e, rtol=0, atol=TOL)


@pytest.mark.parametrize("constraint", ["equal", "cap_weighted"])
def test_sector_constraint_holds_on_every_date(panel, constraint):
    d0, d1 = 30, 30 + T
    styles = _styles_for_regression(panel, d0, d1)
    caps = panel.market_caps()[d0:d1]
    s = len(panel.sector_names)
    out = factor_returns.factor_returns(
        NumpyBackend(),
        panel.returns()[d0:d1],
        caps,
        panel.sectors,
        s,
        styles,
        sector_constraint=constraint,
    )
    sector_f = out.factor_returns[:, 1 : 1 + s]
    if constraint == "equal":
        weights = np.ones_like(sector_f)
    else:
        sector_caps = caps @ factor_returns.sector_dummies(panel.sectors, s)
        weights = sector_caps / sector_caps.sum(1, keepdims=True)
    assert np.abs((weights * sector_f).sum(1)).max() < 1e-15
    assert np.abs(sector_f).max() > 1e-4  # the constraint is not met by all-zero returns
    # Both parametrisations span the same model: the same residual returns.
    other = "cap_weighted" if constraint == "equal" else "equal"
    alt = factor_returns.factor_returns(
        NumpyBackend(),
        panel.returns()[d0:d1],
        caps,
        panel.sectors,
        s,
        styles,
        sector_constraint=other,
    )
    np.testing.assert_allclose(alt.residual_returns, out.residual_returns, rtol=0, atol=1e-13)


def test_returns_decompose_exactly_into_factors_and_residuals(panel):
    """Unwinsorised and not residualised: r = B f + e for every date (toraniko's model)."""
    d0, d1 = 30, 80
    styles = _styles_for_regression(panel, d0, d1)
    s = len(panel.sector_names)
    r = panel.returns()[d0:d1]
    out = factor_returns.factor_returns(
        NumpyBackend(),
        r,
        panel.market_caps()[d0:d1],
        panel.sectors,
        s,
        styles,
        winsor_factor=0.0,
        residualize_styles=False,
    )
    d = r.shape[0]
    expo = np.stack([factor_returns.exposures(panel.sectors, s, styles[i]) for i in range(d)])
    fitted = np.einsum("dnf,df->dn", expo, out.factor_returns)
    # the market + sector fit plus the style fit is r minus the residual
    np.testing.assert_allclose(fitted + out.residual_returns, r, rtol=0, atol=1e-14)


def test_full_size_pipeline_factor_returns_equal_toraniko(panel):
    """The whole 987-date model of the benchmark, factor returns against toraniko."""
    settings = factor_model.ModelSettings(momentum=factor_styles.MomentumParams(252, 126, 20))
    model = factor_model.estimate_risk_model(
        NumpyBackend(),
        panel.closes,
        panel.shares,
        panel.sectors,
        panel.sector_names,
        panel.book_per_share,
        panel.sales_per_share,
        panel.earnings_per_share,
        settings,
        return_style_scores=True,
    )
    assert model.factor_returns.shape == (987, 1 + 11 + 3)
    first = model.first_date
    styles = model.style_scores[first:]
    expected_f, expected_e = _toraniko_factor_returns(panel, first, first + 987, styles, 0.05, True)
    np.testing.assert_allclose(model.factor_returns, expected_f, rtol=0, atol=TOL)
    np.testing.assert_allclose(model.residual_returns, expected_e, rtol=0, atol=TOL)
