"""NumPy <-> ``tickwire.common.v1.Tensor`` (row-major, little-endian)."""

from __future__ import annotations

import numpy as np
from tickwire.common.v1 import tensor_pb2

_TO_PROTO = {
    np.dtype("<f8"): tensor_pb2.D_TYPE_FLOAT64,
    np.dtype("<f4"): tensor_pb2.D_TYPE_FLOAT32,
    np.dtype("<i8"): tensor_pb2.D_TYPE_INT64,
    np.dtype("<i4"): tensor_pb2.D_TYPE_INT32,
}
_FROM_PROTO = {v: k for k, v in _TO_PROTO.items()}


def to_tensor(array: object, dtype: str = "<f8") -> tensor_pb2.Tensor:
    """Any array-like (a DataFrame too) to a Tensor of ``dtype`` (float64 by default).

    Raises
    ------
    ValueError
        ``dtype`` has no wire equivalent.
    """
    wire = np.dtype(dtype).newbyteorder("<")
    if wire not in _TO_PROTO:
        raise ValueError(f"dtype {dtype} has no tickwire.common.v1.DType")
    a = np.ascontiguousarray(np.asarray(array), dtype=wire)
    return tensor_pb2.Tensor(dtype=_TO_PROTO[wire], shape=list(a.shape), data=a.tobytes())


def from_tensor(tensor: tensor_pb2.Tensor) -> np.ndarray:
    """A Tensor as a NumPy array of its dtype and shape (a read-only view of the bytes).

    Raises
    ------
    ValueError
        Unknown dtype, or a buffer whose length does not match the shape.
    """
    dtype = _FROM_PROTO.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unknown tensor dtype {tensor.dtype}")
    shape = tuple(tensor.shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    data = tensor.data  # read once: with the upb runtime every read copies the buffer
    if len(data) != n * dtype.itemsize:
        raise ValueError(f"tensor of shape {shape} needs {n * dtype.itemsize} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
