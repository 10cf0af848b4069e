"""The Fama-French three factors, monthly, from the project's ``data/factors`` folder.

Kenneth R. French's Data Library, as shipped by the ``arch`` package
(``data/factors/PROVENANCE.md``): market excess return, SMB, HML and the
one-month T-bill rate, 1926-07 .. 2018-11.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from tickwire.feeds.daily_prices import data_dir

FAMA_FRENCH_FILE = "factors/fama_french_3f_monthly_1926_2018.csv.gz"
#: Factor columns, in the order of the regressions.
FACTORS = ("mkt_rf", "smb", "hml")


@lru_cache(maxsize=1)
def load_fama_french_3f() -> pd.DataFrame:
    """Monthly Fama-French factors as decimal returns (0.0296 = +2.96 %).

    Returns
    -------
    DataFrame indexed by ``month`` (int, YYYYMM), columns ``mkt_rf``, ``smb``,
    ``hml`` and ``rf``; 1,109 rows, 192607 .. 201811. A cached object: copy
    it before changing it.

    Raises
    ------
    FileNotFoundError
        The data folder or the file is missing.
    """
    frame = pd.read_csv(data_dir() / FAMA_FRENCH_FILE)
    frame = frame.rename(
        columns={"Date": "month", "Mkt-RF": "mkt_rf", "SMB": "smb", "HML": "hml", "RF": "rf"}
    ).set_index("month")
    return frame[[*FACTORS, "rf"]].astype(float) / 100.0
