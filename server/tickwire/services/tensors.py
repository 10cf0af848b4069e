"""Conversion between ``tickwire.common.v1.Tensor`` and NumPy, with validation.

Wire layout: row-major, little-endian; float64 decodes zero-copy with
``numpy.frombuffer``. Every check records a field violation instead of
raising, so that one INVALID_ARGUMENT names every bad field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tickwire.common.v1 import tensor_pb2
from tickwire.services.errors import Violations

#: Largest number of elements accepted in one tensor (2 GiB of float64).
MAX_ELEMENTS = 1 << 28

_DTYPES = {
    tensor_pb2.D_TYPE_FLOAT64: np.dtype("<f8"),
    tensor_pb2.D_TYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.D_TYPE_INT64: np.dtype("<i8"),
    tensor_pb2.D_TYPE_INT32: np.dtype("<i4"),
}
_PROTO_DTYPES = {v: k for k, v in _DTYPES.items()}


def encode(array: np.ndarray) -> tensor_pb2.Tensor:
    """NumPy array (float64/32, int64/32) to a Tensor, little-endian row-major.

    Raises
    ------
    ValueError
        The dtype has no wire equivalent.
    """
    a = np.asarray(array)
    wire = a.dtype.newbyteorder("<")
    if wire not in _PROTO_DTYPES:
        raise ValueError(f"dtype {a.dtype} has no tickwire.common.v1.DType")
    return tensor_pb2.Tensor(
        dtype=_PROTO_DTYPES[wire],
        shape=list(a.shape),
        data=np.ascontiguousarray(a, dtype=wire).tobytes(),
    )


def decode(
    tensor: tensor_pb2.Tensor,
    field: str,
    violations: Violations,
    *,
    ndim: int,
    min_shape: Sequence[int] = (),
    allow_nan: bool = False,
) -> np.ndarray | None:
    """Validated float64 view of ``tensor``, or None after recording violations.

    Checks: dtype set and known; ``ndim`` dimensions, each at least
    ``min_shape`` (default 1); at most :data:`MAX_ELEMENTS`; buffer length
    equal to shape x itemsize; every value finite (with ``allow_nan``, NaN
    passes as a missing value and only infinities are rejected).
    """
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        violations.add(f"{field}.dtype", "must be D_TYPE_FLOAT64, FLOAT32, INT64 or INT32")
        return None
    shape = tuple(int(s) for s in tensor.shape)
    if len(shape) != ndim:
        violations.add(f"{field}.shape", f"must have {ndim} dimension(s), got {list(shape)}")
        return None
    mins = tuple(min_shape) or (1,) * ndim
    for i, (s, lo) in enumerate(zip(shape, mins, strict=True)):
        if s < lo:
            violations.add(f"{field}.shape", f"dimension {i} is {s}; it must be at least {lo}")
            return None
    n = 1
    for s in shape:
        n *= s
    if n > MAX_ELEMENTS:
        violations.add(f"{field}.shape", f"{n} elements exceed the limit of {MAX_ELEMENTS}")
        return None
    data = tensor.data  # read once: with the upb runtime every read copies the buffer
    if len(data) != n * dtype.itemsize:
        violations.add(
            f"{field}.data",
            f"holds {len(data)} bytes; shape {list(shape)} of {dtype.name} needs "
            f"{n * dtype.itemsize}",
        )
        return None
    a = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype != np.float64:
        a = a.astype(np.float64)
    if allow_nan:
        if np.isinf(a).any():
            bad = int(np.flatnonzero(np.isinf(a.reshape(-1)))[0])
            violations.add(f"{field}.data", f"must not be infinite; element {bad} is")
            return None
        return a
    if not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a.reshape(-1)))[0])
        violations.add(f"{field}.data", f"must be finite; element {bad} is NaN or infinite")
        return None
    return a


def finite_values(values: Sequence[float], field: str, violations: Violations) -> np.ndarray | None:
    """A repeated double field as float64, or None after recording a violation."""
    a = np.array(values, dtype=np.float64)
    if a.size <= 64:  # a Python loop beats NumPy's ufunc set-up on a handful of values
        bad = next((i for i, x in enumerate(values) if not math.isfinite(x)), None)
    else:
        bad = None if np.isfinite(a).all() else int(np.flatnonzero(~np.isfinite(a))[0])
    if bad is not None:
        violations.add(field, f"must be finite; element {bad} is NaN or infinite")
        return None
    return a
