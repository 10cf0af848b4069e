"""Contract rows of the pricing tests as engine keyword arguments."""

from __future__ import annotations

import numpy as np


def contract_columns(contracts: list[tuple]) -> dict[str, np.ndarray]:
    """Rows ``(option_type, spot, strike, days, rate, dividend_yield, volatility)``
    as the engines' (K,) keyword arrays, with ``time_to_expiry = days / 365``."""
    c = np.array(contracts, dtype=np.float64)
    return {
        "option_type": c[:, 0].astype(np.int64),
        "spot": c[:, 1],
        "strike": c[:, 2],
        "time_to_expiry": c[:, 3] / 365.0,
        "rate": c[:, 4],
        "dividend_yield": c[:, 5],
        "volatility": c[:, 6],
    }
