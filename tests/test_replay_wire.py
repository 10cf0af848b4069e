"""The replay's wire encoder (tickwire.services.replay_wire) gives the bytes
that the generated protobuf classes parse back into the messages built the
ordinary way: every column type, negative and huge int64, NaN, empty
columns, any row range."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.internal.decoder import _DecodeVarint
from hypothesis import given, settings
from hypothesis import strategies as st
from tickwire.common.v1 import market_pb2
from tickwire.feeds import replay
from tickwire.marketdata.v1 import market_data_pb2
from tickwire.services import replay_wire
from tickwire.services.market_data import _encode_streams, _response, _window_bytes


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50))
def test_varint_column_matches_protobufs_decoder(values: list[int]) -> None:
    buffer, offsets = replay_wire.varint_column(np.array(values, dtype=np.int64))
    raw = buffer.tobytes()
    assert offsets[-1] == len(raw)
    for i, v in enumerate(values):
        decoded, end = _DecodeVarint(raw, int(offsets[i]))
        assert end == offsets[i + 1]
        assert decoded == v % 2**64  # int64 on the wire: two's complement


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 40),
    data=st.data(),
)
def test_trade_batch_bytes_parse_to_the_built_message(n: int, data: st.DataObject) -> None:
    ts = np.array(data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)))
    price = np.array(data.draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)))
    size = np.arange(n, dtype=np.float64)
    side = np.array(data.draw(st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n)))
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo + 1, n))
    cols = {"ts_ns": ts, "price": price, "size": size, "aggressor_side": side}
    enc = replay_wire.EncodedColumns(market_pb2.TradeBatch, cols, {"symbol": "AAPL"})
    want = market_pb2.TradeBatch(
        symbol="AAPL",
        ts_ns=ts[lo:hi].tolist(),
        price=price[lo:hi].tolist(),
        size=size[lo:hi].tolist(),
        aggressor_side=side[lo:hi].tolist(),
    )
    got = market_pb2.TradeBatch.FromString(enc.batch(lo, hi))
    assert got.SerializeToString() == want.SerializeToString()


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_replay_responses_equal_the_built_messages(batch_size: int) -> None:
    start = 1_340_285_400_000_000_000 + 3_600_000_000_000
    plan = replay.build_plan(
        replay.ReplaySpec(
            ("lobster-aapl-2012-06-21-l1", "trades-amzn-2012-06-21"),
            start_ts_ns=start,
            end_ts_ns=start + 120_000_000_000,
            quotes=True,
            time_bar_ns=10_000_000_000,
            volume_bar_shares=1_000,
            batch_size=batch_size,
        )
    )
    encoded = _encode_streams(plan)
    kinds = set()
    for window in plan.windows():
        for batch, raw in zip(window.batches, _window_bytes(encoded, window), strict=True):
            got = market_data_pb2.ReplayResponse.FromString(raw)
            want = _response(batch, window)
            assert got.SerializeToString() == want.SerializeToString()
            kinds.add((got.WhichOneof("payload"), got.bars.bar_type))
    assert len(kinds) == 4  # trades, quotes, time bars, volume bars
