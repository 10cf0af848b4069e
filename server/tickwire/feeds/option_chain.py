"""Cboe delayed-quotes option chain files (the SPX chain in ``data/options-spx-2022-02-04``).

One row per (expiry, strike) with the call on the left and the put on the
right; see that folder's PROVENANCE.md for the layout.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

#: Settlement times, New York: weekly SPXW options settle on the close (PM),
#: standard monthly SPX options on the opening print (AM) of the expiry date.
_SETTLEMENT_HOUR = {"SPXW": 16.0, "SPX": 9.5}
_SECONDS_PER_YEAR = 365.0 * 86400.0


def load_cboe_chain(
    path: str | Path, quote_time: str = "2022-02-04 16:00"
) -> tuple[float, pd.DataFrame]:
    """Underlying last price and the chain as one row per (root, expiry, strike).

    Parameters
    ----------
    path : Cboe "quotedata" CSV (optionally gzipped)
    quote_time : New York wall-clock time of the quotes (the close of the quote date)

    Returns
    -------
    spot : float, the underlying's last price (index points)
    chain : DataFrame with columns root ("SPX" or "SPXW"), expiry (Timestamp),
        time_to_expiry (years, ACT/365 from ``quote_time`` to settlement),
        strike, call_bid, call_ask, put_bid, put_ask (index points), sorted by
        root, expiry and strike.

    Raises
    ------
    ValueError
        The preamble does not carry the underlying's last price.
    """
    with pd.io.common.get_handle(str(path), "r", compression="infer") as handle:
        preamble = [handle.handle.readline() for _ in range(3)]
    match = re.search(r"Last:\s*([0-9.]+)", preamble[1])
    if match is None:
        raise ValueError(f"{path}: no 'Last:' price in the preamble {preamble[1]!r}")
    spot = float(match.group(1))
    raw = pd.read_csv(path, skiprows=3)
    root = raw["Calls"].str.extract(r"^(SPXW|SPX)", expand=False)
    expiry = pd.to_datetime(raw["Expiration Date"], format="%a %b %d %Y")
    settle = expiry + pd.to_timedelta(root.map(_SETTLEMENT_HOUR), unit="h")
    chain = pd.DataFrame(
        {
            "root": root,
            "expiry": expiry,
            "time_to_expiry": (settle - pd.Timestamp(quote_time)).dt.total_seconds()
            / _SECONDS_PER_YEAR,
            "strike": raw["Strike"].astype(np.float64),
            "call_bid": raw["Bid"].astype(np.float64),
            "call_ask": raw["Ask"].astype(np.float64),
            "put_bid": raw["Bid.1"].astype(np.float64),
            "put_ask": raw["Ask.1"].astype(np.float64),
        }
    )
    return spot, chain.sort_values(["root", "expiry", "strike"]).reset_index(drop=True)
