"""StreamVpin requests that carry trades, read from the wire bytes
without protobuf objects.

A ``StreamVpinRequest`` whose payload is ``trades`` is, on the wire, a
varint ``client_batch_id`` and one ``TradeBatch``: a symbol and four packed
columns (``ts_ns`` varints, ``price`` and ``size`` little-endian doubles,
``aggressor_side`` varints). Parsing it into protobuf objects and then
copying each repeated field into an array costs about as much as the VPIN
update itself. :func:`deserialize` instead reads only the symbol from the
first bytes and returns a :class:`TradeBytes`; the StreamVpin fast path
hands its bytes to one compiled call that finds the fields (Numba,
:func:`scan_at`), decodes the columns into scratch buffers
(:func:`decode_columns`) and runs the engine: one compiled call per usual
batch, and no column array. Every other path takes :func:`parse`: one compiled
pass over the fields and a :class:`TradeRequest` (the bytes, where each
field is, the symbol) whose columns decode into arrays when first read.

Anything else is parsed by protobuf itself (``StreamVpinRequest.FromString``),
so the result is always what protobuf would give: other payloads (config,
symbol_parameters, restore), unpacked repeated fields, a field given twice
(protobuf merges), unknown fields, malformed bytes (protobuf raises), an
invalid UTF-8 symbol, and hosts that are not little-endian. Malformed
varints inside a column are found when the column is decoded; reading it
then raises protobuf's own error.

The compiled functions hold the GIL: they run on the event loop's thread,
where releasing and retaking it (gRPC's threads take it meanwhile) costs
a few microseconds a call, more than the decoding itself.

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

# _scan() result slots
_OK = 0  # 1: let protobuf parse it
BATCH_ID = 1
_SYMBOL = 2  # start, end
_TS = 4  # start, end of the packed varints
_PRICE = 6  # start, end of the packed doubles
_SIZE = 8
_SIDE = 10  # start, end of the packed varints; -1 when absent
_N = 12


class TradeBytes:
    """A StreamVpin request that starts like a trades request, not yet read
    past its symbol: what :func:`deserialize` returns for the usual batch.

    The StreamVpin fast path hands :attr:`data` to one compiled call that
    scans it (:func:`scan_at`, which also confirms that the symbol is the
    one read here), decodes the columns and runs the engine. Everything else
    takes :meth:`parse`.

    Attributes
    ----------
    data : bytes, the request as received
    symbol : str, ``trades.symbol`` unless the compiled scan finds otherwise
    symbol_at : int, offset of the symbol's first byte in ``data``
    """

    __slots__ = ("data", "symbol", "symbol_at")

    def __init__(self, data: bytes, symbol: str, symbol_at: int) -> None:
        self.data = data
        self.symbol = symbol
        self.symbol_at = symbol_at

    def parse(self) -> TradeRequest | pb.StreamVpinRequest:
        """:func:`parse` of the bytes (raises protobuf's DecodeError for
        bytes it cannot parse)."""
        return parse(self.data)


class TradeRequest:
    """A ``StreamVpinRequest`` with a ``trades`` payload, straight off the wire.

    The symbol is decoded at once; the columns are decoded when first read
    (the StreamVpin fast path never reads them: its compiled call decodes
    them from :attr:`buf` itself, :func:`decode_columns`).

    Attributes
    ----------
    client_batch_id : int in [0, 2**64)
    symbol : str
    ts_ns : (N,) int64, ns since the Unix epoch
    price : (P,) float64, US dollars (P should be N; the servicer checks)
    size : (S,) float64, shares
    aggressor_side : (A,) int64 AggressorSide values, A = 0 when absent
    buf : (B,) uint8, the request's bytes (read-only)
    pos : (12,) int64, where the fields are in ``buf`` (:func:`_scan`)

    Reading a column raises protobuf's ``DecodeError`` when its packed
    varints are malformed (cut short, or longer than 10 bytes).
    """

    __slots__ = ("_columns", "buf", "pos", "symbol")

    def __init__(self, buf: np.ndarray, pos: np.ndarray, symbol: str) -> None:
        self.buf = buf
        self.pos = pos
        self.symbol = symbol
        self._columns: tuple[np.ndarray, ...] | None = None

    @property
    def client_batch_id(self) -> int:
        return int(self.pos[BATCH_ID]) & 0xFFFF_FFFF_FFFF_FFFF

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ts_ns, price, size, aggressor_side), decoded once into new arrays.

        Raises
        ------
        google.protobuf.message.DecodeError
            Malformed packed varints (protobuf's own error for these bytes).
        """
        if self._columns is None:
            buf, pos = self.buf, self.pos
            lengths = pos[_TS + 1 :: 2] - pos[_TS::2]  # bytes of ts, price, size, side
            ints = np.empty((2, max(int(lengths[0]), int(lengths[3]), 0)), np.int64)
            floats = np.empty((2, max(int(lengths[1]), int(lengths[2]), 0) // 8), np.float64)
            n_ts, n_price, n_size, n_side = decode_columns(buf, pos, ints, floats)
            if n_ts < 0:
                _PARSE(buf.tobytes())  # raises protobuf's own DecodeError
                raise RuntimeError("trade_wire and protobuf disagree on these bytes")
            self._columns = (
                ints[0, :n_ts].copy(),
                floats[0, :n_price].copy(),
                floats[1, :n_size].copy(),
                ints[1, :n_side].copy(),
            )
        return self._columns

    @property
    def ts_ns(self) -> np.ndarray:
        return self.columns()[0]

    @property
    def price(self) -> np.ndarray:
        return self.columns()[1]

    @property
    def size(self) -> np.ndarray:
        return self.columns()[2]

    @property
    def aggressor_side(self) -> np.ndarray:
        return self.columns()[3]


@nb.njit(cache=True)
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


@nb.njit(cache=True)
def _scan(buf):
    """Field positions of a trades request (see the slots above), or
    ``out[_OK] = 1`` when protobuf should parse the bytes instead."""
    out = np.full(_N, -1, np.int64)
    out[_OK] = 1
    out[BATCH_ID] = 0
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
            out[BATCH_ID] = np.int64(v)  # uint64 bits
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


@nb.njit(cache=True)
def scan_at(buf, symbol_at, symbol_bytes):
    """:func:`_scan` of a :class:`TradeBytes`'s bytes: (usable, positions).
    Not usable when protobuf should parse the bytes, or when the symbol is
    not the ``symbol_bytes`` bytes at ``symbol_at`` that :func:`_guess` read
    (a message with the symbol twice: protobuf keeps the last)."""
    pos = _scan(buf)
    ok = (
        pos[_OK] == 0 and pos[_SYMBOL] == symbol_at and pos[_SYMBOL + 1] == symbol_at + symbol_bytes
    )
    return ok, pos


# Packed varint columns are decoded by fixed-length fast paths where they
# can be: every ts_ns of this era (ns since 1970, >= 2**56) is a 9-byte
# varint and every aggressor_side a 1-byte one. Anything else, or a column
# these paths reject, goes through the byte-at-a-time loop.
_U0 = np.uint64(0)
_CONTINUE = np.uint64(0x8080808080808080)  # the continuation bit of each byte
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_PAIRS_HI, _PAIRS_LO = np.uint64(0x7F007F007F007F00), np.uint64(0x007F007F007F007F)
_QUADS_HI, _QUADS_LO = np.uint64(0x3FFF00003FFF0000), np.uint64(0x00003FFF00003FFF)
_HALF_HI, _HALF_LO = np.uint64(0x0FFFFFFF00000000), np.uint64(0x000000000FFFFFFF)


@nb.njit(cache=True, inline="always")
def _word(data, at):
    """Bytes ``data[at : at + 8]`` as a little-endian uint64 (one load)."""
    i = np.uint64(at)  # unsigned: no negative-index fix-up, so LLVM merges the loads
    return (
        np.uint64(data[i])
        | np.uint64(data[i + np.uint64(1)]) << np.uint64(8)
        | np.uint64(data[i + np.uint64(2)]) << np.uint64(16)
        | np.uint64(data[i + np.uint64(3)]) << np.uint64(24)
        | np.uint64(data[i + np.uint64(4)]) << np.uint64(32)
        | np.uint64(data[i + np.uint64(5)]) << np.uint64(40)
        | np.uint64(data[i + np.uint64(6)]) << np.uint64(48)
        | np.uint64(data[i + np.uint64(7)]) << np.uint64(56)
    )


@nb.njit(cache=True, inline="always")
def _groups(w):
    """The 7-bit groups of the 8 varint bytes ``w`` (little-endian), joined:
    the low 56 bits of the value."""
    w &= _LOW7
    w = ((w & _PAIRS_HI) >> np.uint64(1)) | (w & _PAIRS_LO)
    w = ((w & _QUADS_HI) >> np.uint64(2)) | (w & _QUADS_LO)
    return ((w & _HALF_HI) >> np.uint64(4)) | (w & _HALF_LO)


@nb.njit(cache=True)
def _varints(data, out):
    """Decode the packed varints ``data`` (uint8) into ``out`` (int64, the
    two's complement of each uint64); the count, -1 when malformed, or -2
    when ``out`` is too short. ``out`` beyond the count may be overwritten."""
    n = data.size
    m = n // 9
    if m * 9 == n and m <= out.size:  # all 9 bytes long?
        stray = _U0  # a byte whose continuation bit is not where a 9-byte varint has it
        for k in range(m):
            i = 9 * k
            w = _word(data, i)
            last = np.uint64(data[i + 8])
            stray |= (~w & _CONTINUE) | (last & np.uint64(0x80))
            out[k] = np.int64(_groups(w) | last << np.uint64(56))
        if stray == _U0:
            return m
    if 0 < n <= out.size and data[0] < 0x80 and data[n - 1] < 0x80:  # all 1 byte long?
        high = 0
        for k in range(n):
            b = data[k]
            high |= b
            out[k] = b
        if high < 0x80:
            return n
    return _varints_bytewise(data, out)


@nb.njit(cache=True)
def _varints_bytewise(data, out):
    """:func:`_varints` for any lengths, one byte at a time."""
    k = 0
    v = np.uint64(0)
    shift = np.uint64(0)
    cap = out.size
    for i in range(data.size):  # indexes from range(size): no negative-index fix-up
        b = data[i]
        v |= np.uint64(b & 0x7F) << shift
        if b < 0x80:
            if k == cap:
                return -2
            out[k] = np.int64(v)
            k += 1
            v = np.uint64(0)
            shift = np.uint64(0)
        else:
            shift += np.uint64(7)
            if shift >= np.uint64(70):
                return -1
    return k if shift == np.uint64(0) else -1


@nb.njit(cache=True)
def decode_columns(buf, pos, ints, floats):
    """The columns of a trades request scanned by :func:`_scan` (``pos``),
    decoded into ``ints`` (2, C) int64 (rows: ts_ns, aggressor_side) and
    ``floats`` (2, D) float64 (rows: price, size), C-contiguous.

    Returns the counts (ts_ns, price, size, aggressor_side); ts_ns is -1
    when a varint column is malformed and -2 when a column does not fit
    (nothing to use then). Callable from compiled code (the StreamVpin fast
    path decodes into its own scratch buffers). Little-endian hosts.
    """
    n_ts = n_side = 0
    if pos[_TS] >= 0:
        n_ts = _varints(buf[pos[_TS] : pos[_TS + 1]], ints[0])
        if n_ts < 0:
            return n_ts, 0, 0, 0
    if pos[_SIDE] >= 0:
        n_side = _varints(buf[pos[_SIDE] : pos[_SIDE + 1]], ints[1])
        if n_side < 0:
            return n_side, 0, 0, 0
    fbytes = floats.view(np.uint8)  # (2, 8 D): each row's doubles as bytes
    n_price = _copy_doubles(buf, pos[_PRICE], pos[_PRICE + 1], fbytes[0])
    n_size = _copy_doubles(buf, pos[_SIZE], pos[_SIZE + 1], fbytes[1])
    if n_price < 0 or n_size < 0:
        return -2, 0, 0, 0
    return n_ts, n_price, n_size, n_side


@nb.njit(cache=True)
def longest_column(buf, pos):
    """The number of values in the longest column of a scanned trades
    request (``pos``): what scratch buffers for :func:`decode_columns` hold."""
    longest = max(pos[_PRICE + 1] - pos[_PRICE], pos[_SIZE + 1] - pos[_SIZE]) // 8
    for col in (_TS, _SIDE):
        if pos[col] >= 0:
            ends = 0  # a varint ends at each byte without the continuation bit
            for i in range(pos[col], pos[col + 1]):
                ends += buf[i] < 0x80
            longest = max(longest, ends)
    return longest


@nb.njit(cache=True)
def _copy_doubles(buf, start, end, out):
    """Copy the packed doubles ``buf[start:end]`` (unaligned bytes) into the
    bytes ``out`` of an aligned float64 row; the count (0 when absent), or -2
    when they do not fit."""
    if start < 0:
        return 0
    if end - start > out.size:
        return -2
    copy_bytes(buf[start:end], out)
    return (end - start) // 8


@nb.njit(cache=True)
def copy_bytes(src, dst):
    """``dst[:src.size] = src`` for uint8 arrays, as a loop LLVM turns into a
    block copy (Numba's slice assignment copies byte by byte: 6 us for 8 kB
    here, the loop 1 us)."""
    for i in range(src.size):
        dst[i] = src[i]


def deserialize(data: bytes) -> TradeBytes | TradeRequest | pb.StreamVpinRequest:
    """The request deserializer of StreamVpin: a :class:`TradeBytes` when the
    bytes start like a trades request (the usual case; nothing is checked
    yet), else :func:`parse`'s result.

    Raises
    ------
    google.protobuf.message.DecodeError
        As :func:`parse` (for a :class:`TradeBytes`, when it is parsed).
    """
    guess = _guess(data) if _LITTLE_ENDIAN else None
    return parse(data) if guess is None else guess


def _guess(data: bytes) -> TradeBytes | None:
    """The symbol of a trades request encoded as protobuf writes it
    (``client_batch_id`` if any, then ``trades`` starting with its symbol),
    read from the first bytes; None for anything else."""
    try:
        i = 0
        if data[0] == 0x08:  # client_batch_id, varint
            i = 1
            while data[i] & 0x80:
                i += 1
            i += 1
        if data[i] != 0x1A:  # trades (field 3, length-delimited)
            return None
        i += 1
        while data[i] & 0x80:  # its length
            i += 1
        if data[i + 1] != 0x0A or data[i + 2] & 0x80:  # symbol (field 1), one length byte
            return None
        at = i + 3
        end = at + data[i + 2]
        if end > len(data):
            return None
        return TradeBytes(data, data[at:end].decode(), at)
    except (IndexError, UnicodeDecodeError):
        return None


def parse(data: bytes) -> TradeRequest | pb.StreamVpinRequest:
    """A StreamVpin request's bytes, scanned: a :class:`TradeRequest` for a
    trades request in the usual encoding, else the protobuf message.

    Raises
    ------
    google.protobuf.message.DecodeError
        Bytes protobuf cannot parse (gRPC ends the call); for malformed
        varints inside a column, when the column is read.
    """
    if not _LITTLE_ENDIAN or len(data) < 2:
        return _PARSE(data)
    buf = np.frombuffer(data, np.uint8)
    pos = _scan(buf)
    if pos[_OK]:
        return _PARSE(data)
    start, end = pos[_SYMBOL], pos[_SYMBOL + 1]
    try:
        symbol = data[start:end].decode() if start >= 0 else ""
    except UnicodeDecodeError:
        return _PARSE(data)  # protobuf rejects it with its own error
    return TradeRequest(buf, pos, symbol)


def warm_up() -> None:
    """Load (or compile, once per checkout) the decoder."""
    req = pb.StreamVpinRequest(client_batch_id=7)
    req.trades.symbol = "X"
    req.trades.ts_ns.extend([1, -2])
    req.trades.price.extend([1.0, 2.0])
    req.trades.size.extend([3.0, 4.0])
    req.trades.aggressor_side.extend([1, 2])
    data = req.SerializeToString()
    got = deserialize(data)
    assert not _LITTLE_ENDIAN or (type(got) is TradeBytes and got.symbol == "X"), got
    got = parse(data)
    assert isinstance(got, TradeRequest) and got.ts_ns.tolist() == [1, -2]
    ok, pos = scan_at(got.buf, data.index(b"X"), 1)
    assert ok and pos[_TS] >= 0
