"""The S&P 500 loaders read the project's real data as its provenance describes it."""

import numpy as np
import pandas as pd
from tickwire.feeds import sp500


def test_closes_are_the_complete_universe() -> None:
    closes = sp500.load_closes()
    assert closes.shape == (1259, 470)
    assert not closes.isna().any().any()
    assert closes.index[0] == pd.Timestamp("2013-02-08")
    assert closes.index[-1] == pd.Timestamp("2018-02-07")
    # PROVENANCE.md: split-adjusted, AAPL 2013-02-08 close 474.98 / 7; XOM raw 88.61.
    assert closes.at[pd.Timestamp("2013-02-08"), "AAPL"] == 67.8542
    assert closes.at[pd.Timestamp("2013-02-08"), "XOM"] == 88.61
    assert sp500.load_closes(complete=False).shape == (1259, 505)


def test_constituents_snapshot() -> None:
    c = sp500.load_constituents()
    assert len(c) == 505
    assert c["sector"].nunique() == 11
    mmm = c.loc["MMM"]
    assert mmm["sector"] == "Industrials"
    np.testing.assert_allclose(mmm["shares_outstanding"], 112.74e9 / 189.09)
