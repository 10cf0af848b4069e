"""StreamVpin requests that carry trades, decoded from the wire bytes
straight into NumPy columns.

A ``StreamVpinRequest`` whose payload is ``trades`` is, on the wire, a
varint ``client_batch_id`` and one ``TradeBatch``: a symbol and four packed
columns (``ts_ns`` varints, ``price`` and ``size`` little-endian doubles,
``aggressor_side`` varints). Parsing it into protobuf objects and then
copying each repeated field into an array costs about as much as the VPIN
update itself; :func:`deserialize` reads the columns out of the bytes in one
compiled pass (Numba) instead, and returns a :class:`TradeRequest`.

Anything else is parsed by protobuf itself (``StreamVpinRequest.FromString``),
so the result is always what protobuf would give: other payloads (config,
symbol_parameters, restore), unpacked repeated fields, a field given twice
(protobuf merges), unknown fields, malformed bytes (protobuf raises), an
invalid UTF-8 symbol, and hosts that are not little-endian.

No math here, and the columns are checked by the servicer as for a parsed
message.
"""

from __future__ import annotations

import sys

import numba as nb
import numpy as np

from tickwire.microstructure.v1 import microstructure_pb2 as pb

_PARSE = pb.StreamVpinRequest.FromString
_LITTLE_ENDIAN = sys.byteorder == "little"
_EMPTY = np.empty(0, np.int64)  # an absent varint column

# _scan() result slots
_OK = 0  # 1: let protobuf parse it
_BATCH_ID = 1
_SYMBOL = 2  # start, end
_TS = 4  # start, end of the packed varints
_PRICE = 6  # start, end of the packed doubles
_SIZE = 8
_SIDE = 10  # start, end of the packed varints; -1 when absent
_N = 12


class TradeRequest:
    """A ``StreamVpinRequest`` with a ``trades`` payload, as columns.

    Attributes
    ----------
    client_batch_id : int
    symbol : str
    ts_ns : (N,) int64, ns since the Unix epoch
    price : (P,) float64, US dollars (P should be N; the servicer checks)
    size : (S,) float64, shares
    aggressor_side : (A,) int64 AggressorSide values, A = 0 when absent
    """

    __slots__ = ("aggressor_side", "client_batch_id", "price", "size", "symbol", "ts_ns")

    def __init__(
        self,
        client_batch_id: int,
        symbol: str,
        ts_ns: np.ndarray,
        price: np.ndarray,
        size: np.ndarray,
        aggressor_side: np.ndarray,
    ) -> None:
        self.client_batch_id = client_batch_id
        self.symbol = symbol
        self.ts_ns = ts_ns
        self.price = price
        self.size = size
        self.aggressor_side = aggressor_side


@nb.njit(cache=True, nogil=True)
def _varint(buf, pos, end):
    """(value as uint64, next position), or (0, -1) when malformed."""
    result = np.uint64(0)
    shift = 0
    while pos < end and shift < 64:
        b = buf[pos]
        pos += 1
        result |= np.uint64(b & 0x7F) << np.uint64(shift)
        if b < 0x80:
            return result, pos
        shift += 7
    return np.uint64(0), -1


@nb.njit(cache=True, nogil=True)
def _scan(buf):
    """Field positions of a trades request (see the slots above), or
    ``out[_OK] = 1`` when protobuf should parse the bytes instead."""
    out = np.full(_N, -1, np.int64)
    out[_OK] = 1
    out[_BATCH_ID] = 0
    n = buf.size
    pos = 0
    sub_start = sub_end = -1
    while pos < n:
        tag, pos = _varint(buf, pos, n)
        if pos < 0:
            return out
        field, wire = np.int64(tag >> np.uint64(3)), np.int64(tag & np.uint64(7))
        if field == 1 and wire == 0:
            v, pos = _varint(buf, pos, n)
            if pos < 0:
                return out
            out[_BATCH_ID] = np.int64(v)  # uint64 bits
        elif field == 3 and wire == 2 and sub_start < 0:
            length, pos = _varint(buf, pos, n)
            if pos < 0 or length > np.uint64(n - pos):
                return out
            sub_start, sub_end = pos, pos + np.int64(length)
            pos = sub_end
        else:
            return out  # another payload, a repeated message field, an unknown field
    if sub_start < 0:
        return out
    pos = sub_start
    seen = 0
    while pos < sub_end:
        tag, pos = _varint(buf, pos, sub_end)
        if pos < 0:
            return out
        field, wire = np.int64(tag >> np.uint64(3)), np.int64(tag & np.uint64(7))
        if wire != 2 or field < 1 or field > 5:
            return out  # unpacked columns, unknown fields: protobuf decides
        length, pos = _varint(buf, pos, sub_end)
        if pos < 0 or length > np.uint64(sub_end - pos):
            return out
        start, end = pos, pos + np.int64(length)
        pos = end
        bit = 1 << field
        if field != 1 and seen & bit:
            return out  # a column in two pieces: protobuf concatenates
        seen |= bit
        if field == 1:
            out[_SYMBOL], out[_SYMBOL + 1] = start, end
        elif field == 2:
            out[_TS], out[_TS + 1] = start, end
        elif field == 3:
            if (end - start) % 8:
                return out
            out[_PRICE], out[_PRICE + 1] = start, end
        elif field == 4:
            if (end - start) % 8:
                return out
            out[_SIZE], out[_SIZE + 1] = start, end
        else:
            out[_SIDE], out[_SIDE + 1] = start, end
    out[_OK] = 0
    return out


@nb.njit(cache=True, nogil=True)
def _varints(buf, start, end, out):
    """Decode the packed varints ``buf[start:end]`` into ``out`` (int64, the
    two's complement of each uint64); the count, or -1 when malformed."""
    k = 0
    v = np.uint64(0)
    shift = np.uint64(0)
    data = buf[start:end]  # indexes from range(size) need no negative-index fix-up
    for i in range(data.size):
        b = data[i]
        v |= np.uint64(b & 0x7F) << shift
        if b < 0x80:
            out[k] = np.int64(v)
            k += 1
            v = np.uint64(0)
            shift = np.uint64(0)
        else:
            shift += np.uint64(7)
            if shift >= np.uint64(70):
                return -1
    return k if shift == np.uint64(0) else -1


def _column(buf: np.ndarray, start: int, end: int) -> np.ndarray | None:
    """Packed varints as an int64 array, None when malformed."""
    out = np.empty(end - start, np.int64)  # a varint takes at least one byte
    k = _varints(buf, start, end, out)
    return None if k < 0 else out[:k]


def _doubles(buf: np.ndarray, start: int, end: int) -> np.ndarray:
    """Packed little-endian doubles, copied into an aligned array."""
    if start < 0:
        return np.empty(0)
    return buf[start:end].copy().view("<f8")


def deserialize(data: bytes) -> TradeRequest | pb.StreamVpinRequest:
    """The request deserializer of StreamVpin: a :class:`TradeRequest` for a
    trades request in the usual encoding, else the protobuf message.

    Raises
    ------
    google.protobuf.message.DecodeError
        Bytes protobuf cannot parse (gRPC ends the call).
    """
    if not _LITTLE_ENDIAN or len(data) < 2:
        return _PARSE(data)
    buf = np.frombuffer(data, np.uint8)
    pos = _scan(buf)
    if pos[_OK]:
        return _PARSE(data)
    p = pos.tolist()
    ts = _column(buf, p[_TS], p[_TS + 1]) if p[_TS] >= 0 else _EMPTY
    side = _column(buf, p[_SIDE], p[_SIDE + 1]) if p[_SIDE] >= 0 else _EMPTY
    if ts is None or side is None:
        return _PARSE(data)
    try:
        symbol = data[p[_SYMBOL] : p[_SYMBOL + 1]].decode() if p[_SYMBOL] >= 0 else ""
    except UnicodeDecodeError:
        return _PARSE(data)  # protobuf rejects it with its own error
    return TradeRequest(
        p[_BATCH_ID] & 0xFFFF_FFFF_FFFF_FFFF,
        symbol,
        ts,
        _doubles(buf, p[_PRICE], p[_PRICE + 1]),
        _doubles(buf, p[_SIZE], p[_SIZE + 1]),
        side,
    )


def warm_up() -> None:
    """Load (or compile, once per checkout) the decoder."""
    req = pb.StreamVpinRequest(client_batch_id=7)
    req.trades.symbol = "X"
    req.trades.ts_ns.extend([1, -2])
    req.trades.price.extend([1.0, 2.0])
    req.trades.size.extend([3.0, 4.0])
    req.trades.aggressor_side.extend([1, 2])
    got = deserialize(req.SerializeToString())
    assert isinstance(got, TradeRequest) and got.ts_ns.tolist() == [1, -2]
