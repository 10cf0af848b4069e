"""The StreamVpin request decoder (tickwire.services.trade_wire) against
protobuf's own parser: the same columns for every trades request, and
protobuf's result (or its error) for everything it does not decode itself."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from tickwire.common.v1 import market_pb2
from tickwire.microstructure.v1 import microstructure_pb2 as pb
from tickwire.services import trade_wire
from tickwire.services.replay_wire import varint as _varint
from tickwire.services.trade_wire import TradeBytes, TradeRequest

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def assert_same_as_protobuf(data: bytes) -> None:
    assert_symbol_read_first_is_protobufs(data)
    got = trade_wire.parse(data)
    want = pb.StreamVpinRequest.FromString(data)
    assert isinstance(got, TradeRequest)
    assert want.WhichOneof("payload") == "trades"
    tb = want.trades
    assert got.client_batch_id == want.client_batch_id
    assert got.symbol == tb.symbol
    np.testing.assert_array_equal(got.ts_ns, np.array(tb.ts_ns, dtype=np.int64))
    np.testing.assert_array_equal(got.price, np.array(tb.price, dtype=np.float64))
    np.testing.assert_array_equal(got.size, np.array(tb.size, dtype=np.float64))
    np.testing.assert_array_equal(got.aggressor_side, np.array(tb.aggressor_side, np.int64))
    for a in (got.ts_ns, got.price, got.size, got.aggressor_side):
        assert a.flags.c_contiguous and a.flags.aligned and a.flags.writeable


def assert_symbol_read_first_is_protobufs(data: bytes) -> None:
    """deserialize's TradeBytes parses as the bytes do, and its symbol is
    protobuf's whenever the compiled scan accepts it (the fast path's check)."""
    got = trade_wire.deserialize(data)
    if type(got) is not TradeBytes:  # not read first: parse()'s result itself
        parsed = trade_wire.parse(data)
        assert type(got) is type(parsed)
        if type(got) is TradeRequest:
            assert got.symbol == parsed.symbol and (got.pos == parsed.pos).all()
        else:
            assert got == parsed
        return
    want = pb.StreamVpinRequest.FromString(data)
    usable, pos = trade_wire.scan_at(
        np.frombuffer(data, np.uint8), got.symbol_at, len(got.symbol.encode())
    )
    if usable:
        assert want.WhichOneof("payload") == "trades" and got.symbol == want.trades.symbol
        assert (pos == trade_wire.parse(data).pos).all()


@settings(max_examples=200, deadline=None)
@given(
    batch_id=st.integers(0, 2**64 - 1),
    symbol=st.text(max_size=8),
    ts=st.lists(INT64, max_size=40),
    price=st.lists(FLOATS, max_size=40),
    size=st.lists(FLOATS, max_size=40),
    side=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40),
)
def test_every_trades_request_decodes_to_protobufs_columns(
    batch_id, symbol, ts, price, size, side
) -> None:
    # column lengths differ on purpose: the servicer, not the decoder, checks them
    req = pb.StreamVpinRequest(client_batch_id=batch_id)
    req.trades.symbol = symbol
    req.trades.ts_ns.extend(ts)
    req.trades.price.extend(price)
    req.trades.size.extend(size)
    req.trades.aggressor_side.extend(side)
    assert_same_as_protobuf(req.SerializeToString())


#: ts_ns of this era (ns since 1970): 9-byte varints, the decoder's fixed-length fast path
TS_NS_NOW = st.integers(2**56, 2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(
    ts=st.lists(TS_NS_NOW, min_size=1, max_size=40),
    side=st.lists(st.sampled_from([1, 2]), min_size=1, max_size=40),
    odd_ts=st.none() | st.tuples(st.integers(0, 40), INT64),
    odd_side=st.none() | st.tuples(st.integers(0, 40), st.integers(-(2**31), 2**31 - 1)),
)
def test_fixed_length_columns_and_one_odd_value_decode_to_protobufs_columns(
    ts, side, odd_ts, odd_side
) -> None:
    # all 9-byte ts_ns and all 1-byte sides take the fast paths; one value of
    # another length anywhere sends the column through the byte-at-a-time loop
    if odd_ts is not None:
        ts.insert(odd_ts[0] % (len(ts) + 1), odd_ts[1])
    if odd_side is not None:
        side.insert(odd_side[0] % (len(side) + 1), odd_side[1])
    req = pb.StreamVpinRequest(client_batch_id=1)
    req.trades.symbol = "AAPL"
    req.trades.ts_ns.extend(ts)
    req.trades.aggressor_side.extend(side)
    assert_same_as_protobuf(req.SerializeToString())


def test_an_empty_trades_payload_and_field_order_are_decoded() -> None:
    assert_same_as_protobuf(
        pb.StreamVpinRequest(trades=market_pb2.TradeBatch()).SerializeToString()
    )
    # fields in reverse order, the batch id after the trades
    cols = _field(4, 2, np.array([5.0, 6.0]).tobytes()) + _field(1, 2, b"AAPL")
    cols += _field(3, 2, np.array([1.5, 2.5]).tobytes()) + _field(2, 2, _varint(7) + _varint(-1))
    data = _field(3, 2, cols) + _field(1, 0, _varint(42))
    assert_same_as_protobuf(data)
    got = trade_wire.parse(data)
    assert got.ts_ns.tolist() == [7, -1] and got.client_batch_id == 42


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            pb.StreamVpinRequest(
                client_batch_id=1, config=pb.VpinStreamConfig(session_id="s")
            ).SerializeToString(),
            id="config payload",
        ),
        pytest.param(
            _field(3, 2, _field(2, 0, _varint(5)) + _field(2, 0, _varint(6))),
            id="unpacked ts_ns",
        ),
        pytest.param(_field(3, 2, _field(3, 1, np.float64(1.5).tobytes())), id="unpacked price"),
        pytest.param(
            _field(3, 2, _field(2, 2, _varint(1)) + _field(2, 2, _varint(2))),
            id="a column in two pieces",
        ),
        pytest.param(
            _field(3, 2, _field(1, 2, b"A")) + _field(3, 2, _field(2, 2, _varint(9))),
            id="trades given twice (merged)",
        ),
        pytest.param(_field(3, 2, _field(9, 0, _varint(1))), id="unknown field"),
        pytest.param(_field(1, 0, _varint(3)) + _field(15, 2, b"xyz"), id="unknown top field"),
    ],
)
def test_other_encodings_are_protobufs_own_parse(data: bytes) -> None:
    got = trade_wire.parse(data)
    assert isinstance(got, pb.StreamVpinRequest)
    assert got == pb.StreamVpinRequest.FromString(data)
    first = trade_wire.deserialize(data)
    if type(first) is TradeBytes:  # starts like a trades request: the compiled scan refuses it
        assert first.parse() == got
        buf = np.frombuffer(data, np.uint8)
        assert not trade_wire.scan_at(buf, first.symbol_at, len(first.symbol.encode()))[0]
    else:
        assert first == got


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_field(3, 2, _field(1, 2, b"\xff\xfe")), id="symbol not UTF-8"),
        pytest.param(_field(3, 2, _field(3, 2, b"\x00" * 7)), id="price not 8-byte multiple"),
        pytest.param(_field(3, 2, _field(2, 2, b"\x80\x80")), id="truncated varint"),
        pytest.param(_field(3, 2, b"\x12\x05ab"), id="length past the end"),
    ],
)
def test_malformed_bytes_raise_protobufs_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.StreamVpinRequest.FromString(data)
    with pytest.raises(DecodeError):
        # malformed varints inside a column are found when the column is decoded
        trade_wire.parse(data).columns()
    with pytest.raises(DecodeError):
        got = trade_wire.deserialize(data)
        (got.parse() if type(got) is TradeBytes else got).columns()


@pytest.mark.parametrize(
    "column", [pytest.param(2, id="ts_ns"), pytest.param(5, id="aggressor_side")]
)
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x05\x80", id="cut short"),
        pytest.param(b"\x80" * 10 + b"\x01", id="11 bytes"),
        pytest.param(b"\x80" * 8 + b"\x81", id="9 bytes, the last one continuing"),
        pytest.param(b"\x01" + b"\x80" * 10 + b"\x01", id="11 bytes between 1-byte ones"),
    ],
)
def test_malformed_varints_in_a_column_fail_when_decoded(column: int, payload: bytes) -> None:
    data = _field(3, 2, _field(1, 2, b"X") + _field(column, 2, payload))
    first = trade_wire.deserialize(data)
    assert type(first) is TradeBytes and first.symbol == "X"
    got = first.parse()
    assert isinstance(got, TradeRequest) and got.symbol == "X"
    ints, floats = np.zeros((2, 64), np.int64), np.zeros((2, 64))
    assert trade_wire.decode_columns(got.buf, got.pos, ints, floats)[0] == -1
    for read in (got.columns, lambda: got.ts_ns, lambda: got.aggressor_side):
        with pytest.raises(DecodeError):
            read()


def test_columns_that_do_not_fit_the_scratch_buffers_say_so() -> None:
    req = pb.StreamVpinRequest(client_batch_id=3)
    req.trades.symbol = "AAPL"
    req.trades.ts_ns.extend([1, 2, 3])
    req.trades.price.extend([1.0, 2.0, 3.0])
    req.trades.size.extend([4.0, 5.0, 6.0])
    req.trades.aggressor_side.extend([1, 2, 1])
    got = trade_wire.parse(req.SerializeToString())
    assert trade_wire.longest_column(got.buf, got.pos) == 3
    wide = pb.StreamVpinRequest()
    wide.trades.ts_ns.extend([2**62, -1, 2**60, 5])  # 9, 10, 9 and 1 bytes: 4 values
    wide.trades.price.extend([1.0, 2.0])
    parsed = trade_wire.parse(wide.SerializeToString())
    assert trade_wire.longest_column(parsed.buf, parsed.pos) == 4
    for ni, nf in ((2, 3), (3, 2)):
        ints, floats = np.zeros((2, ni), np.int64), np.zeros((2, nf))
        assert trade_wire.decode_columns(got.buf, got.pos, ints, floats)[0] == -2
    ints, floats = np.zeros((2, 3), np.int64), np.zeros((2, 3))
    assert trade_wire.decode_columns(got.buf, got.pos, ints, floats) == (3, 3, 3, 3)
    assert ints.tolist() == [[1, 2, 3], [1, 2, 1]]
    assert floats.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


@settings(max_examples=200, deadline=None)
@given(
    batch_id=st.integers(0, 2**64 - 1),
    symbol=st.text(max_size=140),
    second_symbol=st.none() | st.text(max_size=8),
    ts=st.lists(INT64, max_size=5),
    tail=st.sampled_from([b"", _field(15, 2, b"xyz"), _field(2, 2, b"")]),
)
def test_the_symbol_read_from_the_first_bytes_is_protobufs_or_refused(
    batch_id, symbol, second_symbol, ts, tail
) -> None:
    # the fast path looks the symbol up before anything is scanned; the scan
    # then refuses the batch unless that symbol is the one protobuf reads
    tb = market_pb2.TradeBatch(symbol=symbol, ts_ns=ts).SerializeToString()
    if second_symbol is not None:  # the symbol given twice: protobuf keeps the last
        tb += _field(1, 2, second_symbol.encode())
    data = (_field(1, 0, _varint(batch_id)) if batch_id else b"") + _field(3, 2, tb) + tail
    assert_symbol_read_first_is_protobufs(data)
    if symbol and len(symbol.encode()) < 128 and second_symbol is None and not tail:
        got = trade_wire.deserialize(data)  # the usual encoding: read first and accepted
        assert type(got) is TradeBytes and got.symbol == symbol
        buf = np.frombuffer(data, np.uint8)
        assert trade_wire.scan_at(buf, got.symbol_at, len(symbol.encode()))[0]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x08",
        b"\x08\x80",
        b"\x1a",
        b"\x1a\x05\x0a",
        b"\x1a\x05\x0a\x09ab",
        b"\x1a\x03\x0a\x01\xff",
    ],
)
def test_first_bytes_cut_short_or_not_utf8_go_to_protobuf(data: bytes) -> None:
    try:
        want = pb.StreamVpinRequest.FromString(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            trade_wire.deserialize(data)
    else:
        assert trade_wire.deserialize(data) == want
