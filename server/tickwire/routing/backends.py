"""Compute backends behind one small interface.

Every engine is written once against :class:`Backend`; the router decides which
backend runs a call. All backends compute in float64 so that every route gives
the same numbers to rounding.

Backends
--------
``numpy``       NumPy on the host CPU; always present.
``torch-cpu``   PyTorch on the host CPU (``pip install tickwire[torch]``).
``torch-cuda``  PyTorch on the first CUDA device, when one is present.
``mlx``         Apple MLX (``pip install tickwire[mlx]``): Metal on Apple
                silicon, the CPU elsewhere (``mlx[cpu]`` on Linux).

Device-resident data
--------------------
``asarray(a, key=...)`` keeps a device copy of ``a`` under ``key`` (an LRU of
bounded bytes), so that registered reference data such as a scenario matrix
is moved to a GPU once and not on every call.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import importlib.util
import threading
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np

BACKEND_NAMES = ("numpy", "torch-cpu", "torch-cuda", "mlx")


class BackendUnavailableError(RuntimeError):
    """The backend's library or device is not present on this host."""


class Backend(abc.ABC):
    """Array operations the engines need, on one device.

    Arrays handed to the engines are whatever the backend uses natively
    (``numpy.ndarray``, ``torch.Tensor``, ``mlx.core.array``); engines only pass
    them back into the backend's methods and call :meth:`to_numpy` at the end.

    Parameters
    ----------
    resident_bytes : int
        Upper bound of the bytes kept by the device-resident cache.
    """

    name: str = ""
    #: True when moving data to the backend copies it (a GPU, or MLX's copy on
    #: creation); the router then charges the transfer.
    copies_input: bool = False

    def __init__(self, resident_bytes: int = 4 << 30) -> None:
        self._resident: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._resident_limit = resident_bytes
        self._resident_used = 0
        self._lock = threading.Lock()

    # ----- data movement -------------------------------------------------
    def asarray(self, a: np.ndarray, *, key: str | None = None) -> Any:
        """Return ``a`` (float64) on this backend; cached under ``key`` if given."""
        if key is None:
            return self._from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        with self._lock:
            hit = self._resident.get(key)
            if hit is not None:
                self._resident.move_to_end(key)
                return hit[0]
        arr = self._from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        nbytes = int(a.size) * 8
        with self._lock:
            if key not in self._resident and nbytes <= self._resident_limit:
                self._resident[key] = (arr, nbytes)
                self._resident_used += nbytes
                while self._resident_used > self._resident_limit:
                    _, (_, freed) = self._resident.popitem(last=False)
                    self._resident_used -= freed
        return arr

    def is_resident(self, key: str | None) -> bool:
        """True when data under ``key`` is already on this backend."""
        if key is None:
            return False
        with self._lock:
            return key in self._resident

    def evict(self, key: str) -> None:
        """Drop the device copy held under ``key``, if any."""
        with self._lock:
            hit = self._resident.pop(key, None)
            if hit is not None:
                self._resident_used -= hit[1]

    @abc.abstractmethod
    def _from_numpy(self, a: np.ndarray) -> Any:
        """Wrap a contiguous float64 host array as this backend's array."""

    @abc.abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy a backend array to a float64 NumPy array on the host."""

    # ----- math ------------------------------------------------------------
    def matmul(self, a: Any, b: Any) -> Any:
        """Matrix product ``a @ b`` (matrix-vector when ``b`` is 1-D)."""
        return a @ b

    @abc.abstractmethod
    def topk(self, x: Any, k: int) -> Any:
        """The ``k`` largest values of 1-D ``x``, in descending order."""

    @abc.abstractmethod
    def sort(self, x: Any) -> Any:
        """1-D ``x`` sorted ascending."""

    @abc.abstractmethod
    def sum(self, x: Any, axis: int | None = None) -> Any:
        """Sum over ``axis`` (all elements when None)."""

    @abc.abstractmethod
    def standard_normal(self, shape: tuple[int, ...], seed: int) -> Any:
        """Independent N(0, 1) float64 draws; the same ``seed`` gives the same draws."""

    def synchronize(self) -> None:  # noqa: B027 - a no-op for synchronous backends
        """Wait until queued device work is done (for timing)."""


class NumpyBackend(Backend):
    """NumPy on the host CPU (PCG64 random numbers)."""

    name = "numpy"

    def _from_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def topk(self, x: np.ndarray, k: int) -> np.ndarray:
        k = min(int(k), x.shape[0])
        part = np.partition(x, x.shape[0] - k)[x.shape[0] - k :]
        return np.sort(part)[::-1]

    def sort(self, x: np.ndarray) -> np.ndarray:
        return np.sort(x)

    def sum(self, x: np.ndarray, axis: int | None = None) -> Any:
        return np.sum(x, axis=axis)

    def standard_normal(self, shape: tuple[int, ...], seed: int) -> np.ndarray:
        return np.random.Generator(np.random.PCG64(seed)).standard_normal(shape)


class TorchBackend(Backend):
    """PyTorch on ``device`` ("cpu" or "cuda"), float64 (Philox on CUDA, MT19937 on CPU)."""

    def __init__(self, device: str, resident_bytes: int = 4 << 30) -> None:
        super().__init__(resident_bytes)
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("torch reports no CUDA device")
        self._torch = torch
        self.device = torch.device(device)
        self.name = f"torch-{device}"
        self.copies_input = device != "cpu"

    def _from_numpy(self, a: np.ndarray) -> Any:
        if a.flags.writeable:
            t = self._torch.from_numpy(a)
        else:
            # Decoded request buffers are read-only views; engines never write
            # to their inputs, so torch's warning about it is noise.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                t = self._torch.from_numpy(a)
        if self.device.type != "cpu":
            t = t.to(self.device, non_blocking=False)
        return t

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, self._torch.Tensor):
            return x.detach().to("cpu").numpy().astype(np.float64, copy=False)
        return np.asarray(x, dtype=np.float64)

    def topk(self, x: Any, k: int) -> Any:
        k = min(int(k), x.shape[0])
        return self._torch.topk(x, k, largest=True, sorted=True).values

    def sort(self, x: Any) -> Any:
        return self._torch.sort(x).values

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return self._torch.sum(x) if axis is None else self._torch.sum(x, dim=axis)

    def standard_normal(self, shape: tuple[int, ...], seed: int) -> Any:
        gen = self._torch.Generator(device=self.device)
        gen.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
        return self._torch.randn(
            shape, generator=gen, dtype=self._torch.float64, device=self.device
        )

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)


class MlxBackend(Backend):
    """Apple MLX on its default device, float64 (CPU stream: MLX's GPU has no float64)."""

    name = "mlx"
    copies_input = True

    def __init__(self, resident_bytes: int = 4 << 30) -> None:
        super().__init__(resident_bytes)
        import mlx.core as mx

        self._mx = mx
        # float64 is supported on MLX's CPU device only.
        self._stream = mx.cpu

    def _from_numpy(self, a: np.ndarray) -> Any:
        return self._mx.array(a, dtype=self._mx.float64)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, self._mx.array):
            return np.array(x, dtype=np.float64, copy=True)
        return np.asarray(x, dtype=np.float64)

    def matmul(self, a: Any, b: Any) -> Any:
        out = self._mx.matmul(a, b, stream=self._stream)
        self._mx.eval(out)
        return out

    def topk(self, x: Any, k: int) -> Any:
        k = min(int(k), x.shape[0])
        # mx.topk returns the k largest unordered; sort them descending.
        vals = self._mx.topk(x, k, stream=self._stream)
        out = self._mx.sort(vals, stream=self._stream)[::-1]
        self._mx.eval(out)
        return out

    def sort(self, x: Any) -> Any:
        out = self._mx.sort(x, stream=self._stream)
        self._mx.eval(out)
        return out

    def sum(self, x: Any, axis: int | None = None) -> Any:
        out = self._mx.sum(x, axis=axis, stream=self._stream)
        self._mx.eval(out)
        return out

    def standard_normal(self, shape: tuple[int, ...], seed: int) -> Any:
        key = self._mx.random.key(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
        out = self._mx.random.normal(shape, dtype=self._mx.float64, key=key, stream=self._stream)
        self._mx.eval(out)
        return out

    def synchronize(self) -> None:
        self._mx.synchronize()


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def detect_backends(resident_bytes: int = 4 << 30) -> dict[str, Backend]:
    """Instantiate every backend this host can run, numpy first.

    Returns
    -------
    dict mapping backend name (one of ``BACKEND_NAMES``) to a ready backend.
    A library that is missing or fails to initialise is left out.
    """
    found: dict[str, Backend] = {"numpy": NumpyBackend(resident_bytes)}
    if _has_module("torch"):
        for device in ("cpu", "cuda"):
            try:
                be = TorchBackend(device, resident_bytes)
            except Exception:  # missing device or a broken install: not present
                continue
            found[be.name] = be
    if _has_module("mlx"):
        # mlx fails to import on hosts it does not support: not present then.
        with contextlib.suppress(Exception):
            found["mlx"] = MlxBackend(resident_bytes)
    return found


def content_id(a: np.ndarray) -> str:
    """Content-derived id of an array: SHA-256 over dtype, shape and bytes.

    Any replica that sees the same array derives the same id.
    """
    h = hashlib.sha256()
    h.update(str(a.dtype.str).encode())
    h.update(repr(tuple(int(s) for s in a.shape)).encode())
    h.update(np.ascontiguousarray(a).data)
    return "sha256:" + h.hexdigest()
