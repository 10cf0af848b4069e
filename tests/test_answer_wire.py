"""The StreamVpin answer encoder (tickwire.services.answer_wire) against
protobuf's own serialization: the same bytes for every bucket answer, and
responses joined from entries that protobuf parses back into the answers."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tickwire.engines.vpin import Buckets, VpinParameters, VpinState
from tickwire.microstructure.v1 import microstructure_pb2 as pb
from tickwire.services import answer_wire
from tickwire.services.answer_wire import buckets_entry, buckets_to_proto, message_entry

INT64 = st.integers(-(2**63), 2**63 - 1)
#: Any 64-bit pattern as a double: NaNs with payloads and signs, -0.0, infinities.
DOUBLE_BITS = st.integers(0, 2**64 - 1)


def _doubles(bits: list[int]) -> np.ndarray:
    return np.array([struct.unpack("<d", struct.pack("<Q", b))[0] for b in bits], np.float64)


@st.composite
def buckets(draw) -> Buckets:
    k = draw(st.integers(0, 12))
    ints = st.lists(INT64, min_size=k, max_size=k)
    floats = st.lists(DOUBLE_BITS, min_size=k, max_size=k)
    index, end_ts = np.array(draw(ints), np.int64), np.array(draw(ints), np.int64)
    return Buckets(index, end_ts, *(_doubles(draw(floats)) for _ in range(10)))


def _reference(batch_id: int, symbol: str, b: Buckets) -> bytes:
    return message_entry(
        pb.StreamVpinAnswer(client_batch_id=batch_id, buckets=buckets_to_proto(symbol, b))
    )


@settings(max_examples=300, deadline=None)
@given(batch_id=st.integers(0, 2**64 - 1), symbol=st.text(max_size=20), b=buckets())
def test_bucket_answers_are_protobufs_bytes(batch_id: int, symbol: str, b: Buckets) -> None:
    assert buckets_entry(batch_id, symbol, b) == _reference(batch_id, symbol, b)


def test_blocks_of_any_layout_and_large_answers_encode_the_same() -> None:
    """Buckets over strided blocks (an engine result is contiguous; the
    encoder copies others), from the engine itself, and an answer whose
    lengths need multi-byte varints."""
    rng = np.random.default_rng(7)
    k = 5_000
    floats = rng.standard_normal((10, 2 * k))
    idx = np.arange(10**15, 10**15 + 2 * k, dtype=np.int64)
    b = Buckets.from_blocks(np.stack([idx, -idx])[:, ::2], floats[:, ::2])
    assert not b.floats.flags.c_contiguous
    got = buckets_entry(2**40, "AAPL", b)
    assert got == _reference(2**40, "AAPL", b)
    answer = pb.StreamVpinResponse.FromString(got).answers[0]
    np.testing.assert_array_equal(np.array(answer.buckets.vpin), floats[5, ::2])
    np.testing.assert_array_equal(np.array(answer.buckets.cdf_rank), floats[8, ::2])

    state = VpinState(VpinParameters(bucket_volume=50.0, window_buckets=3, bar_ns=1))
    ts = np.arange(1, 401, dtype=np.int64)
    out = state.update(ts, 100.0 + np.sin(ts / 7.0), np.full(400, 10.0))
    assert len(out) > 50 and not np.isnan(out.vpin[-1])
    assert buckets_entry(7, "X", out) == _reference(7, "X", out)


def test_joined_entries_are_a_response_of_those_answers_in_order() -> None:
    rng = np.random.default_rng(3)
    b = Buckets(np.arange(3), np.arange(3) + 10**18, *rng.random((10, 3)))
    ack = pb.StreamVpinAnswer(client_batch_id=1, ack=pb.StreamAck(symbol="X", buckets=2))
    rejection = pb.StreamVpinAnswer(
        client_batch_id=3,
        rejection=pb.StreamRejection(
            symbol="Y", field_violations=[pb.FieldViolation(field="trades.price", description="d")]
        ),
    )
    entries = [message_entry(ack), buckets_entry(2, "MSFT", b), message_entry(rejection)]
    response = pb.StreamVpinResponse.FromString(b"".join(entries))
    want = pb.StreamVpinResponse(
        answers=[
            ack,
            pb.StreamVpinAnswer(client_batch_id=2, buckets=buckets_to_proto("MSFT", b)),
            rejection,
        ]
    )
    assert response == want
    assert b"".join(entries) == want.SerializeToString()


def test_the_response_serializer_passes_bytes_and_serializes_messages() -> None:
    msg = pb.StreamVpinResponse(answers=[pb.StreamVpinAnswer(client_batch_id=9)])
    data = msg.SerializeToString()
    assert answer_wire.serialize_response(data) is data
    assert answer_wire.serialize_response(msg) == data
