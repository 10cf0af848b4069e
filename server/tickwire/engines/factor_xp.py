"""The few array operations the factor-model engines need, on NumPy or PyTorch.

The factor engines (``factor_styles``, ``factor_returns``, ``factor_risk``)
write their batched math once against :class:`Xp`, which maps each operation
to NumPy or to PyTorch (CPU or CUDA, float64). Only what differs between the
two libraries lives here (NaN-aware reductions, quantiles, sliding windows,
batched solves); arithmetic, ``@``, ``einsum``, ``log`` and ``sqrt`` are the
libraries' own.

Registers no operation; imports torch lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tickwire.routing.backends import Backend

#: The backends the factor engines run on (MLX lacks batched float64 solves).
BACKENDS = ("numpy", "torch-cpu", "torch-cuda")


class Xp:
    """A NumPy-like namespace over ``backend``: NumPy, or PyTorch on its device."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.is_torch = backend is not None and backend.name.startswith("torch")
        if self.is_torch:
            import torch

            self.lib: Any = torch
            self.device = backend.device  # type: ignore[union-attr]
        else:
            self.lib = np
            self.device = None
        self.nan = float("nan")

    # ----- conversion ---------------------------------------------------------
    def asarray(self, a: Any) -> Any:
        """float64 array on the backend (no copy when already there)."""
        if self.is_torch:
            t = self.lib
            if isinstance(a, t.Tensor):
                return a.to(device=self.device, dtype=t.float64)
            a = np.asarray(a, dtype=np.float64)
            if not a.flags.writeable:
                a = a.copy()
            return t.as_tensor(a, device=self.device)
        return np.asarray(a, dtype=np.float64)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Host float64 NumPy array."""
        if self.is_torch and isinstance(x, self.lib.Tensor):
            return x.detach().to("cpu").numpy()
        return np.asarray(x, dtype=np.float64)

    # ----- elementwise and reductions ----------------------------------------------
    def full(self, shape: tuple[int, ...], value: float) -> Any:
        """An array of ``shape`` filled with ``value``."""
        if self.is_torch:
            return self.lib.full(shape, value, dtype=self.lib.float64, device=self.device)
        return np.full(shape, value)

    def isnan(self, x: Any) -> Any:
        """Elementwise NaN test."""
        return self.lib.isnan(x)

    def where(self, c: Any, x: Any, y: Any) -> Any:
        """``x`` where ``c`` else ``y`` (``y`` may be a Python float)."""
        if self.is_torch and not isinstance(y, self.lib.Tensor):
            y = self.lib.tensor(float(y), dtype=self.lib.float64, device=self.device)
        if self.is_torch and not isinstance(x, self.lib.Tensor):
            x = self.lib.tensor(float(x), dtype=self.lib.float64, device=self.device)
        return self.lib.where(c, x, y)

    def clip(self, x: Any, lo: Any, hi: Any) -> Any:
        """``min(max(x, lo), hi)`` with broadcasting; NaN stays NaN."""
        if self.is_torch:
            return self.lib.minimum(self.lib.maximum(x, lo), hi)
        return np.clip(x, lo, hi)

    def nanmean(self, x: Any, axis: int) -> Any:
        """Mean over ``axis`` ignoring NaN, keeping the axis."""
        if self.is_torch:
            return self.lib.nanmean(x, dim=axis, keepdim=True)
        return np.nanmean(x, axis=axis, keepdims=True)

    def nanstd(self, x: Any, axis: int, mean: Any) -> Any:
        """Sample standard deviation (ddof=1) over ``axis`` ignoring NaN, keeping it."""
        dev = (x - mean) ** 2
        if self.is_torch:
            count = (~self.lib.isnan(x)).sum(dim=axis, keepdim=True)
            return self.lib.sqrt(self.lib.nansum(dev, dim=axis, keepdim=True) / (count - 1))
        count = (~np.isnan(x)).sum(axis=axis, keepdims=True)
        return np.sqrt(np.nansum(dev, axis=axis, keepdims=True) / (count - 1))

    def nanquantile_rows(self, x: Any, qs: tuple[float, ...]) -> list[Any]:
        """Per-row quantiles ``qs`` (each in [0, 1]) of a (R, N) array, NaN
        ignored, linear interpolation (NumPy's ``nanpercentile`` default); a
        (R, 1) array per quantile."""
        if self.is_torch:
            q = self.lib.tensor(qs, dtype=self.lib.float64, device=self.device)
            has_nan = bool(self.lib.isnan(x).any())
            fn = self.lib.nanquantile if has_nan else self.lib.quantile
            out = fn(x, q, dim=1, keepdim=True)  # (Q, R, 1)
            return list(out)
        pct = [q * 100.0 for q in qs]
        fn = np.nanpercentile if np.isnan(x).any() else np.percentile
        return list(fn(x, pct, axis=1, keepdims=True))

    def kth_smallest_rows(self, x: Any, k: int) -> Any:
        """The ``k``-th smallest value (0-based) of each row of a NaN-free (R, N)
        array, by selection rather than a full sort; (R, 1)."""
        if self.is_torch:
            return self.lib.kthvalue(x, k + 1, dim=1, keepdim=True).values
        return np.partition(x, k, axis=1)[:, k : k + 1]

    def prod_last(self, x: Any) -> Any:
        """Product over the last axis."""
        if self.is_torch:
            return self.lib.prod(x, dim=-1)
        return np.prod(x, axis=-1)

    def windows(self, x: Any, window: int) -> Any:
        """Trailing windows along axis 0 of a (T, N) array: a (T - window + 1, N,
        window) view whose ``[s, :, j]`` is ``x[s + j]``."""
        if self.is_torch:
            return x.unfold(0, window, 1)
        return sliding_window_view(x, window, axis=0)

    def transpose_last(self, x: Any) -> Any:
        """Swap the last two axes."""
        if self.is_torch:
            return x.transpose(-1, -2)
        return np.swapaxes(x, -1, -2)

    def solve(self, a: Any, b: Any) -> Any:
        """Batched ``a x = b`` for (..., F, F) ``a`` and (..., F) ``b``; (..., F).

        Raises
        ------
        ValueError
            A system is singular (a factor with no exposure on some date).
        """
        try:
            if self.is_torch:
                return self.lib.linalg.solve(a, b)
            return np.linalg.solve(a, b[..., None])[..., 0]
        except (np.linalg.LinAlgError, RuntimeError) as exc:
            if self.is_torch and "singular" not in str(exc).lower():
                raise
            raise ValueError(
                "styles: the cross-sectional regression is singular on some date "
                "(a sector with no assets, or collinear style scores)"
            ) from exc

    def zeros_like(self, x: Any) -> Any:
        """Zeros of ``x``'s shape."""
        return self.lib.zeros_like(x)

    def concat(self, xs: list[Any], axis: int) -> Any:
        """Concatenate along ``axis``."""
        if self.is_torch:
            return self.lib.cat(xs, dim=axis)
        return np.concatenate(xs, axis=axis)
