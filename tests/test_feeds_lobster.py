"""The LOBSTER reader gives the figures the data's provenance measured."""

import numpy as np
import pandas as pd
from tickwire.feeds import lobster


def test_finds_both_full_days() -> None:
    days = {d.dataset: d for d in lobster.find_days()}
    assert {"lobster-aapl-2012-06-21-l1", "lobster-amzn-2012-06-21-l1"} <= set(days)
    aapl = days["lobster-aapl-2012-06-21-l1"]
    assert (aapl.symbol, aapl.levels, aapl.start_s, aapl.end_s) == ("AAPL", 1, 34200.0, 57600.0)


def test_aapl_executions_and_true_sides() -> None:
    day = lobster.find_day("lobster-aapl-2012-06-21-l1")
    messages = lobster.read_messages(day)
    assert len(messages) == 118_497
    # First message: 34200.004241176 s after midnight EDT (UTC-4), exactly.
    first = pd.Timestamp("2012-06-21 13:30:00.004241176", tz="UTC").value
    assert messages["ts_ns"].iloc[0] == first
    assert np.all(np.diff(messages["ts_ns"]) >= 0)
    trades = lobster.trades_from_messages(day.symbol, messages)
    # PROVENANCE.md: 34,990 executions, 2,850,140 shares, 1,314,336 buyer-initiated.
    assert len(trades) == 34_990
    assert trades.size.sum() == 2_850_140
    assert trades.size[trades.aggressor_side == 1].sum() == 1_314_336
    assert set(np.unique(trades.aggressor_side)) == {-1, 1}
    assert (trades.price.min(), trades.price.max()) == (577.45, 588.21)


def test_quotes_never_cross() -> None:
    day = lobster.find_day("lobster-amzn-2012-06-21-l1")
    quotes = lobster.load_quotes(day)
    assert len(quotes) == 57_515
    assert np.all(quotes.ask_price > quotes.bid_price)
