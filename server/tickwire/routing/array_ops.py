"""A small NumPy-style array namespace per backend, for elementwise engines.

Engines that price or simulate (Black-Scholes-Merton, Monte Carlo, trees) are
written once against ``ops = array_ops(backend)`` with NumPy's names and
signatures (``ops.exp``, ``ops.sum(x, axis=1)``, ``ops.where``, ...); this
module maps them onto NumPy (+ SciPy), PyTorch or MLX. Every array is
float64 on the backend's device, except boolean masks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from tickwire.routing.backends import Backend, MlxBackend, NumpyBackend, TorchBackend

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class NumpyOps:
    """NumPy on the host."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def asarray(self, x: Any) -> Any:
        """float64 array on the device (a scalar becomes a 0-d array)."""
        return np.asarray(x, dtype=np.float64)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy to a float64 NumPy array on the host."""
        return np.asarray(x, dtype=np.float64)

    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)
    abs = staticmethod(np.abs)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    matmul = staticmethod(np.matmul)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return np.sum(x, axis=axis)

    def mean(self, x: Any, axis: int | None = None) -> Any:
        return np.mean(x, axis=axis)

    def cumsum(self, x: Any, axis: int) -> Any:
        return np.cumsum(x, axis=axis)

    def max(self, x: Any, axis: int | None = None) -> Any:
        return np.max(x, axis=axis)

    def min(self, x: Any, axis: int | None = None) -> Any:
        return np.min(x, axis=axis)

    def norm_cdf(self, x: Any) -> Any:
        """Standard normal CDF."""
        return special.ndtr(x)

    def norm_pdf(self, x: Any) -> Any:
        """Standard normal density."""
        return _INV_SQRT_2PI * np.exp(-0.5 * x * x)

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return np.zeros(shape)

    def full(self, shape: tuple[int, ...], value: float) -> Any:
        return np.full(shape, value, dtype=np.float64)

    def standard_normal(self, shape: tuple[int, ...], seed: int) -> Any:
        """N(0, 1) draws, reproducible per seed (the backend's generator)."""
        return self.backend.standard_normal(shape, seed)

    def stack(self, xs: list[Any], axis: int = 0) -> Any:
        return np.stack(xs, axis=axis)

    def solve(self, a: Any, b: Any) -> Any:
        """Solve ``a x = b`` for square ``a`` (batched over leading axes)."""
        return np.linalg.solve(a, b)


class TorchOps(NumpyOps):
    """PyTorch on the backend's device (CPU or CUDA)."""

    def __init__(self, backend: TorchBackend) -> None:
        super().__init__(backend)
        import torch

        self._t = torch
        self._device = backend.device
        self.exp, self.log, self.sqrt, self.abs = torch.exp, torch.log, torch.sqrt, torch.abs
        self.matmul = torch.matmul

    def asarray(self, x: Any) -> Any:
        if isinstance(x, self._t.Tensor):
            return x.to(device=self._device, dtype=self._t.float64)
        return self._t.as_tensor(np.asarray(x, dtype=np.float64), device=self._device)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, self._t.Tensor):
            return x.detach().to("cpu").numpy().astype(np.float64, copy=False)
        return np.asarray(x, dtype=np.float64)

    def _t_(self, x: Any) -> Any:
        return x if isinstance(x, self._t.Tensor) else self.asarray(x)

    def maximum(self, x: Any, y: Any) -> Any:
        return self._t.maximum(self._t_(x), self._t_(y))

    def minimum(self, x: Any, y: Any) -> Any:
        return self._t.minimum(self._t_(x), self._t_(y))

    def where(self, c: Any, x: Any, y: Any) -> Any:
        return self._t.where(self._t_(c) if not isinstance(c, self._t.Tensor) else c,
                             self._t_(x), self._t_(y))  # fmt: skip

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return self._t.sum(x) if axis is None else self._t.sum(x, dim=axis)

    def mean(self, x: Any, axis: int | None = None) -> Any:
        return self._t.mean(x) if axis is None else self._t.mean(x, dim=axis)

    def cumsum(self, x: Any, axis: int) -> Any:
        return self._t.cumsum(x, dim=axis)

    def max(self, x: Any, axis: int | None = None) -> Any:
        return self._t.max(x) if axis is None else self._t.amax(x, dim=axis)

    def min(self, x: Any, axis: int | None = None) -> Any:
        return self._t.min(x) if axis is None else self._t.amin(x, dim=axis)

    def norm_cdf(self, x: Any) -> Any:
        # 0.5 erfc(-x / sqrt 2) keeps full relative accuracy in the lower tail;
        # torch.special.ndtr (0.5 (1 + erf)) loses it below x = -5.
        return 0.5 * self._t.special.erfc(-x * (1.0 / math.sqrt(2.0)))

    def norm_pdf(self, x: Any) -> Any:
        return _INV_SQRT_2PI * self._t.exp(-0.5 * x * x)

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self._t.zeros(shape, dtype=self._t.float64, device=self._device)

    def full(self, shape: tuple[int, ...], value: float) -> Any:
        return self._t.full(shape, float(value), dtype=self._t.float64, device=self._device)

    def stack(self, xs: list[Any], axis: int = 0) -> Any:
        return self._t.stack(xs, dim=axis)

    def solve(self, a: Any, b: Any) -> Any:
        return self._t.linalg.solve(a, b)


class MlxOps(NumpyOps):
    """Apple MLX (float64 on its CPU stream)."""

    def __init__(self, backend: MlxBackend) -> None:
        super().__init__(backend)
        import mlx.core as mx

        self._mx = mx
        self.exp, self.log, self.sqrt, self.abs = mx.exp, mx.log, mx.sqrt, mx.abs
        self.maximum, self.minimum, self.where = mx.maximum, mx.minimum, mx.where
        self.matmul = mx.matmul

    def asarray(self, x: Any) -> Any:
        if isinstance(x, self._mx.array):
            return x.astype(self._mx.float64)
        return self._mx.array(np.asarray(x, dtype=np.float64), dtype=self._mx.float64)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, self._mx.array):
            return np.array(x, dtype=np.float64, copy=True)
        return np.asarray(x, dtype=np.float64)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return self._mx.sum(x, axis=axis)

    def mean(self, x: Any, axis: int | None = None) -> Any:
        return self._mx.mean(x, axis=axis)

    def cumsum(self, x: Any, axis: int) -> Any:
        return self._mx.cumsum(x, axis=axis)

    def max(self, x: Any, axis: int | None = None) -> Any:
        return self._mx.max(x, axis=axis)

    def min(self, x: Any, axis: int | None = None) -> Any:
        return self._mx.min(x, axis=axis)

    def norm_cdf(self, x: Any) -> Any:
        """Standard normal CDF. MLX's ``erf`` is accurate to single precision
        only (about 1e-8 absolute), so operations that need 1e-10 (analytic
        pricing) do not list MLX among their backends."""
        return 0.5 * (1.0 + self._mx.erf(x * (1.0 / math.sqrt(2.0))))

    def norm_pdf(self, x: Any) -> Any:
        return _INV_SQRT_2PI * self._mx.exp(-0.5 * x * x)

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self._mx.zeros(shape, dtype=self._mx.float64)

    def full(self, shape: tuple[int, ...], value: float) -> Any:
        return self._mx.full(shape, float(value), dtype=self._mx.float64)

    def stack(self, xs: list[Any], axis: int = 0) -> Any:
        return self._mx.stack(xs, axis=axis)

    def solve(self, a: Any, b: Any) -> Any:
        return self._mx.linalg.solve(a, b, stream=self._mx.cpu)


def array_ops(backend: Backend) -> NumpyOps:
    """The NumPy-style namespace for ``backend``.

    Raises
    ------
    TypeError
        An unknown backend class.
    """
    if isinstance(backend, TorchBackend):
        return TorchOps(backend)
    if isinstance(backend, MlxBackend):
        return MlxOps(backend)
    if isinstance(backend, NumpyBackend):
        return NumpyOps(backend)
    raise TypeError(f"no array namespace for backend {type(backend).__name__}")
