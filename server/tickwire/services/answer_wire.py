"""StreamVpin responses encoded straight from bucket columns.

A ``StreamVpinResponse`` is, on the wire, its answers one after the other,
each as field 1 (length-delimited). An answer that carries buckets is a
varint ``client_batch_id`` and one ``VpinBuckets``: a symbol, two packed
varint columns (``bucket_index``, ``end_ts_ns``) and ten packed
little-endian double columns. Building the protobuf objects for it (twelve
lists, twelve repeated fields) costs about 20 us a batch, more than the
bucket math; :func:`buckets_entry` writes the same bytes in one compiled
pass (Numba) from the engine's :class:`~tickwire.engines.vpin.Buckets`.

The bytes equal protobuf's own serialization of the same message
(``StreamVpinAnswer.SerializeToString()``, fields in number order, proto3
defaults left out); ``tests/test_answer_wire.py`` checks that against upb
for random columns, NaN payloads and negative values included. Answers of
any other kind (acks, rejections) are serialized by protobuf and framed by
:func:`message_entry`, and :func:`serialize_response` is the RPC's response
serializer: it passes these bytes through and serializes a
``StreamVpinResponse`` message as usual.

:class:`BucketEncoder` is the stream's usual path: one compiled call
finds the fields of a trades request's bytes (:func:`trade_wire.scan_at`),
decodes its columns into scratch buffers
(:func:`trade_wire.decode_columns`), runs the engine's update
(``vpin_kernel.update`` on a symbol's ``VpinState.kernel_state()``) and
writes the answer of the buckets it completed straight from the engine's
output buffers. Anything it does not take (a new symbol, growth, an error,
a batch too large for the event loop) goes back to the general path.

The compiled functions hold the GIL: they run on the event loop's thread
(see :mod:`tickwire.services.trade_wire`).

The math stays in :mod:`tickwire.engines.vpin_kernel`; this module only
calls it and writes bytes.
"""

from __future__ import annotations

import sys

import numba as nb
import numpy as np

from tickwire.common.v1 import market_pb2
from tickwire.engines import vpin_kernel as kernel
from tickwire.engines.vpin import Buckets, VpinState
from tickwire.microstructure.v1 import microstructure_pb2 as pb
from tickwire.services import trade_wire
from tickwire.services.replay_wire import varint
from tickwire.services.trade_wire import TradeBytes, copy_bytes

_LITTLE_ENDIAN = sys.byteorder == "little"
_SERIALIZE = pb.StreamVpinResponse.SerializeToString

#: Tag of StreamVpinResponse.answers (field 1, length-delimited).
_ANSWERS_TAG = 0x0A
_ANSWERS_KEY = bytes((_ANSWERS_TAG,))
#: Tags of StreamVpinAnswer.client_batch_id (1, varint) and .buckets (2, length-delimited).
_BATCH_ID_TAG, _BUCKETS_TAG = 0x08, 0x12
#: Most bytes of one varint.
_VARINT_MAX = 10


@nb.njit(cache=True)
def _varint_size(v):
    """Bytes of the varint of ``v`` (uint64)."""
    n = 1
    while v >= np.uint64(0x80):
        v >>= np.uint64(7)
        n += 1
    return n


@nb.njit(cache=True)
def _put_varint(out, pos, v):
    """Write the varint of ``v`` (uint64) at ``pos``; the next position."""
    while v >= np.uint64(0x80):
        out[pos] = np.uint8((v & np.uint64(0x7F)) | np.uint64(0x80))
        v >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(v)
    return pos + 1


@nb.njit(cache=True)
def _packed_varints_size(values):
    """Payload bytes of ``values`` (int64, two's complement) as packed varints."""
    n = 0
    for x in values:
        n += _varint_size(np.uint64(x))
    return n


@nb.njit(cache=True)
def _put_packed_varints(out, pos, tag, values, payload):
    if values.size == 0:
        return pos
    out[pos] = tag
    pos = _put_varint(out, pos + 1, np.uint64(payload))
    for x in values:
        pos = _put_varint(out, pos, np.uint64(x))
    return pos


@nb.njit(cache=True)
def _put_packed_doubles(out, pos, tag, row_bytes):
    """Write a packed double column from its little-endian bytes (8 per value)."""
    nbytes = row_bytes.size
    if nbytes == 0:
        return pos
    out[pos] = tag
    pos = _put_varint(out, pos + 1, np.uint64(nbytes))
    copy_bytes(row_bytes, out[pos:])
    return pos + nbytes


#: VpinBuckets fields 4 to 13 (the double columns), as rows of Buckets.floats.
_PROTO_ROWS = np.array(
    [Buckets.FLOAT_COLUMNS.index(f.name) for f in pb.VpinBuckets.DESCRIPTOR.fields[3:]], np.int64
)
if [f.number for f in pb.VpinBuckets.DESCRIPTOR.fields] != list(range(1, 14)):
    raise RuntimeError("VpinBuckets is no longer fields 1-13 in order: update _encode")


@nb.njit(cache=True)
def _encode(out, batch_id, symbol, ints, floats, m, rows):
    """Write one ``answers`` entry (key, length, StreamVpinAnswer{client_batch_id,
    buckets}) into ``out``; the bytes written. batch_id: the uint64 id's bits
    as int64 (:func:`_int64`). ints (2, C) int64 and floats
    (10, C) float64, C-contiguous, C >= m: the buckets are their first m
    columns (Buckets blocks, or the engine's output buffers); rows: the row
    of ``floats`` of each of VpinBuckets fields 4 to 13. Little-endian hosts."""
    index, end_ts = ints[0, :m], ints[1, :m]
    fbytes = floats.view(np.uint8)  # (10, 8 C): each row's doubles as bytes
    index_len = _packed_varints_size(index)
    ts_len = _packed_varints_size(end_ts)
    dbl = 1 + _varint_size(np.uint64(8 * m)) + 8 * m if m else 0
    body = 10 * dbl
    if symbol.size:
        body += 1 + _varint_size(np.uint64(symbol.size)) + symbol.size
    if m:
        body += 1 + _varint_size(np.uint64(index_len)) + index_len
        body += 1 + _varint_size(np.uint64(ts_len)) + ts_len
    answer = 1 + _varint_size(np.uint64(body)) + body
    bid = np.uint64(batch_id)  # int64 two's complement of the uint64 id
    if bid:
        answer += 1 + _varint_size(bid)
    pos = 0
    out[pos] = _ANSWERS_TAG
    pos = _put_varint(out, pos + 1, np.uint64(answer))
    if bid:
        out[pos] = _BATCH_ID_TAG
        pos = _put_varint(out, pos + 1, bid)
    out[pos] = _BUCKETS_TAG
    pos = _put_varint(out, pos + 1, np.uint64(body))
    if symbol.size:
        out[pos] = 0x0A
        pos = _put_varint(out, pos + 1, np.uint64(symbol.size))
        copy_bytes(symbol, out[pos:])
        pos += symbol.size
    pos = _put_packed_varints(out, pos, 0x12, index, index_len)
    pos = _put_packed_varints(out, pos, 0x1A, end_ts, ts_len)
    for j in range(10):  # fields 4..13, keys 0x22, 0x2A, ... (wire type 2)
        tag = np.uint8(((4 + j) << 3) | 2)
        pos = _put_packed_doubles(out, pos, tag, fbytes[rows[j], : 8 * m])
    return pos


def _int64(client_batch_id: int) -> int:
    """A uint64 id as the int64 with its bits (one compiled signature for every id)."""
    return client_batch_id - (1 << 64) if client_batch_id >= 1 << 63 else client_batch_id


@nb.njit(cache=True)
def entry_size(symbol_bytes: int, buckets: int) -> int:
    """The most bytes of one bucket answer entry: four keys with a varint
    each (entry length, batch id, buckets length, symbol length), the
    symbol, two varint columns and ten double columns."""
    return (
        4 * (1 + _VARINT_MAX)
        + symbol_bytes
        + 2 * (1 + _VARINT_MAX + _VARINT_MAX * buckets)
        + 10 * (1 + _VARINT_MAX + 8 * buckets)
    )


def buckets_entry(client_batch_id: int, symbol: str, b: Buckets) -> bytes:
    """One ``answers`` entry of a StreamVpinResponse: the answer
    ``StreamVpinAnswer(client_batch_id=..., buckets=VpinBuckets(symbol, b))``,
    framed (tag and length), as protobuf would serialize it.

    client_batch_id : int in [0, 2**64); symbol : str; b : K buckets.
    """
    if not _LITTLE_ENDIAN:
        answer = pb.StreamVpinAnswer(
            client_batch_id=client_batch_id, buckets=buckets_to_proto(symbol, b)
        )
        return message_entry(answer)
    sym = np.frombuffer(symbol.encode(), np.uint8)
    m = len(b)
    out = np.empty(entry_size(sym.size, m), np.uint8)
    ints, floats = np.ascontiguousarray(b.ints), np.ascontiguousarray(b.floats)
    n = _encode(out, _int64(client_batch_id), sym, ints, floats, m, _PROTO_ROWS)
    return out[:n].tobytes()


#: :meth:`BucketEncoder.apply` code: a batch the compiled path does not take
#: (malformed or differing columns, a side that is not BUY / SELL, a batch
#: without sides where they are required, or too large); the general path decides.
GENERAL_PATH = -1
#: :meth:`BucketEncoder.apply` code: the scratch buffers are too small (grown
#: for the next batch; the general path takes this one).
NEED_SCRATCH = -2
_BUY, _SELL = market_pb2.AGGRESSOR_SIDE_BUY, market_pb2.AGGRESSOR_SIDE_SELL


@nb.njit(cache=True)
def _apply_encode(
    buf, symbol_at, ints, floats, needs_sides, max_trades, istate, fstate, pend_ts, pend_f, win,
    hist, out_i, out_f, out, symbol, rows,
):  # fmt: skip
    """A trades request's bytes ``buf`` scanned (:func:`trade_wire.scan_at`,
    its symbol the bytes ``symbol`` at ``symbol_at``), its columns decoded
    (:func:`trade_wire.decode_columns`, into the scratch ``ints`` and
    ``floats``), sides mapped (AggressorSide -> +1 / -1), the engine's update
    (:func:`vpin_kernel.update` on the state given), and the answer entry of
    the buckets it completed written into ``out``. Returns (code, trades,
    buckets, bytes written): ``GENERAL_PATH``, ``NEED_SCRATCH`` (then
    trades is the column length the scratch buffers must hold, 0 when they
    do) or the kernel's code (nothing changed unless it is ``OK``)."""
    usable, pos = trade_wire.scan_at(buf, symbol_at, symbol.size)
    if not usable:
        return GENERAL_PATH, 0, 0, 0
    if entry_size(symbol.size, out_i.shape[1]) > out.size:
        return NEED_SCRATCH, 0, 0, 0
    n, n_price, n_size, n_side = trade_wire.decode_columns(buf, pos, ints, floats)
    if n == -2:
        return NEED_SCRATCH, trade_wire.longest_column(buf, pos), 0, 0
    if n < 0 or n_price != n or n_size != n or (n_side and n_side != n) or n >= max_trades:
        return GENERAL_PATH, 0, 0, 0
    has_side = n_side > 0
    if needs_sides and n and not has_side:
        return GENERAL_PATH, 0, 0, 0  # the general path names the missing field
    side = ints[1, :n]
    if has_side:
        for i in range(n):
            v = side[i]
            if v == _BUY:
                side[i] = 1
            elif v == _SELL:
                side[i] = -1
            else:
                return GENERAL_PATH, 0, 0, 0
    code, _, m = kernel.update(
        ints[0, :n], floats[0, :n], floats[1, :n], side, has_side, istate, fstate, pend_ts, pend_f,
        win, hist, out_i, out_f,
    )  # fmt: skip
    if code != kernel.OK or m == 0:
        return code, n, m, 0
    return code, n, m, _encode(out, pos[trade_wire.BATCH_ID], symbol, out_i, out_f, m, rows)


class BucketEncoder:
    """One stream's path from a trades request's bytes to its answer entry
    in one compiled call: the columns decoded into scratch buffers, the
    engine's update on a symbol's state, and the encoding of the buckets it
    completes (no arrays made, no copies). Holds the stream's scratch
    buffers (columns, output bytes) and the UTF-8 of its symbols.

    Parameters
    ----------
    max_trades : batches of this many trades or more are left to the
        general path (which runs them off the event loop)
    """

    def __init__(self, max_trades: int) -> None:
        self._max_trades = max_trades
        self._ints = np.empty((2, 0), np.int64)
        self._floats = np.empty((2, 0), np.float64)
        self._out = np.empty(0, np.uint8)
        self._symbols: dict[str, np.ndarray] = {}

    def apply(self, state: VpinState, req: TradeBytes) -> tuple[int, int, int, bytes | None]:
        """Apply one trades request to ``state`` (its symbol's) and encode its answer.

        Returns (code, trades, buckets, entry): code ``vpin_kernel.OK`` with
        the number of trades applied, of buckets completed and their answer
        entry (None for 0 buckets), or another code (``GENERAL_PATH``,
        ``NEED_SCRATCH``, ``NEED_ROOM``, a validation code) with the state
        unchanged: the caller then takes the general path (``req.parse()``
        and ``VpinState.update``, which grows the buffers or names the error).
        """
        if not _LITTLE_ENDIAN:
            return GENERAL_PATH, 0, 0, None
        symbol = req.symbol
        sym = self._symbols.get(symbol)
        if sym is None:
            sym = self._symbols[symbol] = np.frombuffer(symbol.encode(), np.uint8)
        istate, fstate, pend_ts, pend_f, win, hist, out_i, out_f = state.kernel_state()
        code, n, m, nbytes = _apply_encode(
            np.frombuffer(req.data, np.uint8), req.symbol_at, self._ints, self._floats,
            state.needs_sides, self._max_trades, istate, fstate, pend_ts, pend_f, win, hist, out_i,
            out_f, self._out, sym, _PROTO_ROWS,
        )  # fmt: skip
        if code == NEED_SCRATCH:
            self._grow(sym.size, out_i.shape[1], n)
        return code, n, m, self._out[:nbytes].tobytes() if nbytes else None

    def _grow(self, symbol_bytes: int, most_buckets: int, column: int) -> None:
        """An output buffer for an answer of ``most_buckets`` buckets, and
        scratch buffers for columns of ``column`` values."""
        need = entry_size(symbol_bytes, most_buckets)
        if need > self._out.size:
            self._out = np.empty(max(need, 2 * self._out.size), np.uint8)
        if self._ints.shape[1] < column < self._max_trades:
            cap = max(column, 2 * self._ints.shape[1])
            self._ints = np.empty((2, cap), np.int64)
            self._floats = np.empty((2, cap), np.float64)


def buckets_to_proto(symbol: str, b: Buckets) -> pb.VpinBuckets:
    """The buckets as a protobuf message (ComputeVpin's answer; the reference
    that :func:`buckets_entry` matches byte for byte)."""
    return pb.VpinBuckets(
        symbol=symbol,
        bucket_index=b.index.tolist(),
        end_ts_ns=b.end_ts_ns.tolist(),
        end_price=b.end_price.tolist(),
        buy_volume=b.buy_volume.tolist(),
        bvc_buy_volume=b.bvc_buy_volume.tolist(),
        true_buy_volume=b.true_buy_volume.tolist(),
        order_imbalance=b.order_imbalance.tolist(),
        vpin=b.vpin.tolist(),
        cdf_rank=b.cdf_rank.tolist(),
        kyle_lambda=b.kyle_lambda.tolist(),
        vpin_bvc=b.vpin_bvc.tolist(),
        vpin_true_side=b.vpin_true_side.tolist(),
    )


def message_entry(answer: pb.StreamVpinAnswer) -> bytes:
    """One ``answers`` entry (tag, length, bytes) of any answer message."""
    data = answer.SerializeToString()
    return _ANSWERS_KEY + varint(len(data)) + data


def serialize_response(response: bytes | pb.StreamVpinResponse) -> bytes:
    """StreamVpin's response serializer: entries already joined into the
    bytes of a StreamVpinResponse pass through; a message is serialized."""
    if type(response) is bytes:
        return response
    return _SERIALIZE(response)


def warm_up() -> None:
    """Load (or compile, once per checkout) the encoder."""
    f = np.array([0.5, np.nan])
    b = Buckets(np.array([0, 1]), np.array([7, -8]), *(f.copy() for _ in range(10)))
    got = buckets_entry(3, "X", b)
    want = message_entry(pb.StreamVpinAnswer(client_batch_id=3, buckets=buckets_to_proto("X", b)))
    assert got == want, (got, want)
    from tickwire.engines.vpin import VpinParameters

    for sides in ([], [_BUY, _SELL] * 4):
        fast, general = (VpinState(VpinParameters(bucket_volume=4.0, bar_ns=1)) for _ in "ab")
        enc = BucketEncoder(max_trades=1000)
        codes = []
        for batch in range(4):  # the first ones need scratch, then room (the general path grows it)
            req = pb.StreamVpinRequest(client_batch_id=batch)
            req.trades.symbol = "X"
            req.trades.ts_ns.extend(range(1 + 8 * batch, 9 + 8 * batch))
            req.trades.price.extend([10.0] * 8)
            req.trades.size.extend([2.0] * 8)
            req.trades.aggressor_side.extend(sides)
            data = req.SerializeToString()
            wire = trade_wire.deserialize(data)
            ts, px, qty, raw_side = trade_wire.parse(data).columns()
            side = np.where(raw_side == _BUY, 1, -1) if raw_side.size else None
            code, n, _, entry = enc.apply(fast, wire)
            codes.append(code)
            assert code != kernel.OK or n == 8, n
            if code != kernel.OK:
                entry = buckets_entry(batch, "X", fast.update(ts, px, qty, side))
            assert entry == buckets_entry(batch, "X", general.update(ts, px, qty, side))
        assert codes[-1] == kernel.OK, codes
