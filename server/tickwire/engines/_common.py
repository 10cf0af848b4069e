"""Helpers shared by the engines: the stop poll and contract-batch validation.

``tickwire.routing.operation.load_engines`` imports every module of this
package, this one included: it registers no operation and imports nothing
beyond NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def check_stop(stop: Callable[[], bool] | None) -> None:
    """Raise TimeoutError when ``stop`` is given and returns True."""
    if stop is not None and stop():
        raise TimeoutError("compute stopped: the deadline passed or the caller cancelled")


def contract_vectors(
    option_type: Any,
    spot: Any,
    strike: Any,
    time_to_expiry: Any,
    rate: Any,
    dividend_yield: Any,
    volatility: Any = None,
    *,
    extra: Mapping[str, Any] | None = None,
    broadcast: bool = True,
    allow_empty: bool = False,
) -> dict[str, np.ndarray]:
    """Check a batch of K option contracts; (K,) float64 arrays by field name.

    Every field (``volatility`` when given, then the ``extra`` fields such as
    a barrier or a price) must be numeric, a (K,) vector or a scalar, and
    finite; ``option_type`` must be 1 (call) or 2 (put) and ``spot``,
    ``strike``, ``time_to_expiry`` and ``volatility`` > 0. Any further check
    of an ``extra`` field (a barrier > 0) is the caller's.

    With ``broadcast`` scalars and 1-value vectors stand for every contract
    and K is the length of the other vectors; without it every field must
    have K = ``len(spot)`` values (a scalar counts as one). K = 0 is an error
    unless ``allow_empty``.

    The arrays are the inputs themselves where already (K,) float64, read-only
    broadcast views where broadcast: copy them before writing.

    Raises
    ------
    ValueError
        ``"<field>: <what is wrong>"``, naming the first offending field.
    """
    fields: dict[str, Any] = {
        "option_type": option_type,
        "spot": spot,
        "strike": strike,
        "time_to_expiry": time_to_expiry,
        "rate": rate,
        "dividend_yield": dividend_yield,
    }
    if volatility is not None:
        fields["volatility"] = volatility
    fields.update(extra or {})

    arrays: dict[str, np.ndarray] = {}
    for name, value in fields.items():
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name}: expected numbers, got dtype {a.dtype}")
        if a.ndim > 1:
            raise ValueError(f"{name}: must be a (K,) vector or a scalar, got shape {a.shape}")
        a = np.atleast_1d(a.astype(np.float64, copy=False))
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: must be finite")
        arrays[name] = a

    # K: spot's length, or with broadcasting that of the first vector of
    # other than one value (1 when there is none). An empty spot is reported
    # before a disagreeing field; with broadcasting, only when all agree.
    sizes = {name: a.shape[0] for name, a in arrays.items() if not broadcast or a.shape[0] != 1}
    first = next(iter(sizes), "spot") if broadcast else "spot"
    k = sizes.get(first, 1)
    differs = next((name for name, size in sizes.items() if size != k), None)
    if k < 1 and not allow_empty and (differs is None or not broadcast):
        raise ValueError("spot: at least one contract is required")
    if differs is not None:
        rule = "fields must broadcast to one (K,) shape" if broadcast else "all must have K"
        raise ValueError(f"{differs}: length {sizes[differs]} differs from {first}'s {k}; {rule}")
    arrays = {n: a if a.shape[0] == k else np.broadcast_to(a, (k,)) for n, a in arrays.items()}

    if not np.isin(arrays["option_type"], (1.0, 2.0)).all():
        raise ValueError("option_type: must be 1 (call) or 2 (put)")
    for name in ("spot", "strike", "time_to_expiry", "volatility"):
        if name in arrays and not (arrays[name] > 0.0).all():
            raise ValueError(f"{name}: must be > 0")
    return arrays
