"""MicrostructureService through a real server: ComputeVpin, the StreamVpin
bidi stream (== unary bucket by bucket under random splits, in-stream
rejections that lose nothing, limits, flow control), named sessions
(snapshot, reset, restore, resume), validation errors and the stream span.
"""

from __future__ import annotations

import gc
import itertools
import math
import threading
import time

import grpc
import numpy as np
import pytest
from conftest import ServerHandle
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tickwire.engines import vpin
from tickwire.feeds import lobster
from tickwire.microstructure.v1 import microstructure_pb2 as pb
from tickwire.microstructure.v1 import microstructure_pb2_grpc as pb_grpc
from tickwire.services.replay_wire import varint
from tickwire_client import AsyncClient, Client
from tickwire_client.errors import TickwireError
from tickwire_client.microstructure import VpinBuckets, trade_batch, vpin_parameters

AAPL = "lobster-aapl-2012-06-21-l1"
AMZN = "lobster-amzn-2012-06-21-l1"
SECOND = 1_000_000_000
BAR = 10 * SECOND
SERVICE = "tickwire.microstructure.v1.MicrostructureService"


@pytest.fixture(scope="module")
def days() -> dict[str, lobster.Trades]:
    out = {}
    for ds in (AAPL, AMZN):
        t = lobster.load_trades(lobster.find_day(ds))
        out[t.symbol] = t
    return out


@pytest.fixture(scope="module")
def volumes(days) -> dict[str, float]:
    """V = a fiftieth of the first 8,000 trades' volume, per symbol."""
    return {s: float(t.size[:8_000].sum() / 50) for s, t in days.items()}


def head(t: lobster.Trades, k: int = 8_000) -> lobster.Trades:
    return lobster.Trades(t.symbol, t.ts_ns[:k], t.price[:k], t.size[:k], t.aggressor_side[:k])


def batches_of(t: lobster.Trades, cuts: list[int]) -> list:
    edges = [0, *sorted(set(c for c in cuts if 0 < c < len(t))), len(t)]
    return [
        trade_batch(t.symbol, t.ts_ns[a:b], t.price[a:b], t.size[a:b], t.aggressor_side[a:b])
        for a, b in itertools.pairwise(edges)
    ]


def collect(responses) -> tuple[dict[str, list[VpinBuckets]], list[pb.StreamVpinAnswer]]:
    """Bucket updates per symbol (in arrival order) and the other responses."""
    per, other = {}, []
    for m in responses:
        if m.WhichOneof("payload") == "buckets":
            per.setdefault(m.buckets.symbol, []).append(VpinBuckets.from_proto(m.buckets))
        else:
            other.append(m)
    return per, other


def joined(updates: list[VpinBuckets], name: str) -> np.ndarray:
    return np.concatenate([getattr(u, name) for u in updates])


COLUMNS = ["bucket_index", "end_ts_ns", "end_price", "buy_volume", "bvc_buy_volume",
           "true_buy_volume", "order_imbalance", "vpin", "cdf_rank", "kyle_lambda",
           "vpin_bvc", "vpin_true_side"]  # fmt: skip


def assert_same(updates: list[VpinBuckets], unary: VpinBuckets) -> None:
    for name in COLUMNS:
        assert np.array_equal(joined(updates, name), getattr(unary, name), equal_nan=True), name


# --------------------------------------------------------------------------
# unary
# --------------------------------------------------------------------------
def test_compute_vpin_on_the_aapl_day_matches_the_engine(client: Client, days) -> None:
    t = days["AAPL"]
    v = float(t.size.sum() / 250)
    r = client.microstructure.compute_vpin(
        t.ts_ns, t.price, t.size, t.aggressor_side, symbol="AAPL", bucket_volume=v
    )
    local = vpin.compute_vpin(
        t.ts_ns, t.price, t.size, t.aggressor_side, vpin.VpinParameters(bucket_volume=v)
    )
    assert len(r.buckets) == len(local.buckets) == 244
    np.testing.assert_array_equal(r.buckets.vpin, local.buckets.vpin)
    np.testing.assert_array_equal(r.buckets.cdf_rank, local.buckets.cdf_rank)
    assert r.trades == 34_990 and r.bars == local.bars
    assert r.bvc_accuracy == pytest.approx(0.8662, abs=5e-4)
    assert r.vpin_correlation == pytest.approx(local.vpin_correlation, rel=1e-12)
    assert r.kyle_lambda == pytest.approx(local.kyle_lambda, rel=1e-12)
    assert r.realised_volatility == pytest.approx(local.realised_volatility, rel=1e-12)
    assert r.execution.backend_used == "numpy"
    assert r.execution.operation == "microstructure.compute_vpin"
    # Without sides: no accuracy, and TRUE_SIDE is refused naming the field.
    blind = client.microstructure.compute_vpin(
        t.ts_ns, t.price, t.size, symbol="AAPL", bucket_volume=v
    )
    np.testing.assert_array_equal(blind.buckets.vpin, r.buckets.vpin)
    assert math.isnan(blind.bvc_accuracy) and np.isnan(blind.buckets.true_buy_volume).all()
    with pytest.raises(TickwireError) as err:
        client.microstructure.compute_vpin(
            t.ts_ns, t.price, t.size, symbol="AAPL", bucket_volume=v, classification="true_side"
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["trades.aggressor_side"]
    true = client.microstructure.compute_vpin(t.ts_ns, t.price, t.size, t.aggressor_side,
        symbol="AAPL", bucket_volume=v, classification="true_side")  # fmt: skip
    np.testing.assert_array_equal(true.buckets.buy_volume, r.buckets.true_buy_volume)


def test_compute_vpin_runs_through_the_router(client: Client, server: ServerHandle, days) -> None:
    """Routed like every unary call: route and compute spans, the work in
    trades, ExecutionInfo from the router, a pinned non-NumPy backend refused."""
    t = days["AAPL"]
    server.spans.clear()
    r = client.microstructure.compute_vpin(
        t.ts_ns[:5_000], t.price[:5_000], t.size[:5_000], symbol="AAPL", bucket_volume=20_000.0
    )
    assert r.execution.operation == "microstructure.compute_vpin"
    assert r.execution.work_units == 5_000 and r.execution.backend_used == "numpy"
    name = f"{SERVICE}/ComputeVpin"
    end = time.monotonic() + 5.0
    while time.monotonic() < end:
        names = {s.name: s for s in server.spans.get_finished_spans()}
        if name in names:
            break
        time.sleep(0.02)
    rpc = names[name]
    assert rpc.attributes["tickwire.operation"] == "microstructure.compute_vpin"
    assert rpc.attributes["tickwire.work_units"] == 5_000
    assert rpc.attributes["tickwire.vpin.buckets"] == len(r.buckets) > 0
    assert {"decode", "route", "compute", "encode"} <= set(names)
    with pytest.raises(TickwireError) as err:
        client.microstructure.compute_vpin(
            t.ts_ns[:100], t.price[:100], t.size[:100], symbol="AAPL", bucket_volume=1e3,
            backend="torch-cpu",
        )  # fmt: skip
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION


def _raw_compute(client: Client, **fields) -> TickwireError:
    stub = pb_grpc.MicrostructureServiceStub(client._channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ComputeVpin(pb.ComputeVpinRequest(**fields), timeout=10)
    return TickwireError.from_rpc_error(err.value)


def test_compute_vpin_validation_names_every_bad_field(client: Client) -> None:
    tb = trade_batch("", [3, 2, 1], [1.0, math.nan, 2.0], [1.0, 1.0])
    e = _raw_compute(client, trades=tb,
        parameters=pb.VpinParameters(bucket_volume=-1, window_buckets=-3, cdf=9))  # fmt: skip
    assert e.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(e.fields) == {
        "trades.symbol",
        "trades.size",
        "parameters.bucket_volume",
        "parameters.window_buckets",
        "parameters.cdf",
    }
    ok = pb.VpinParameters(bucket_volume=100)
    e = _raw_compute(client, trades=trade_batch("X", [3, 2], [1.0, 1.0], [1.0, 1.0]), parameters=ok)
    assert e.fields == ["trades.ts_ns"] and "row 1" in e.field_violations[0].description
    e = _raw_compute(client, trades=trade_batch("X", [1, 2], [1.0, math.nan], [1.0, 1.0]),
                     parameters=ok)  # fmt: skip
    assert e.fields == ["trades.price"]
    e = _raw_compute(client, trades=trade_batch("X", [1], [1.0], [1.0]))
    assert e.fields == ["parameters.bucket_volume"]
    e = _raw_compute(client, trades=pb.ComputeVpinRequest().trades, parameters=ok)
    assert set(e.fields) == {"trades.symbol", "trades.ts_ns"}
    bad_side = trade_batch("X", [1], [1.0], [1.0])
    bad_side.aggressor_side.append(0)
    e = _raw_compute(client, trades=bad_side, parameters=ok)
    assert e.fields == ["trades.aggressor_side"]
    # the server still serves
    assert client.health() == "SERVING"


# --------------------------------------------------------------------------
# the stream
# --------------------------------------------------------------------------
# The server thread draws span ids from the global `random` module while
# hypothesis generates examples; hypothesis sees the state move and warns.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts_a=st.lists(st.integers(1, 7_999), max_size=30),
    cuts_b=st.lists(st.integers(1, 7_999), max_size=30),
    order_seed=st.integers(0, 1_000),
)
def test_stream_equals_unary_bucket_by_bucket_under_random_splits(
    client: Client, days, volumes, cuts_a, cuts_b, order_seed
) -> None:
    """Two symbols, randomly split and interleaved, through the real RPC stream."""
    a, b = head(days["AAPL"]), head(days["AMZN"])
    queues = [batches_of(a, cuts_a), batches_of(b, cuts_b)]
    rng = np.random.default_rng(order_seed)
    merged = []
    while any(queues):
        q = queues[int(rng.integers(2))] if all(queues) else next(q for q in queues if q)
        merged.append(q.pop(0))
    sym = {s: vpin_parameters(volumes[s], window_buckets=20, bar_ns=BAR) for s in ("AAPL", "AMZN")}
    per, other = collect(client.microstructure.stream_vpin(merged, symbol_parameters=sym))
    assert [m.WhichOneof("payload") for m in other] == ["ack"]
    for t in (a, b):
        unary = client.microstructure.compute_vpin(
            t.ts_ns, t.price, t.size, t.aggressor_side, symbol=t.symbol,
            bucket_volume=volumes[t.symbol], window_buckets=20, bar_ns=BAR,
        )  # fmt: skip
        assert len(unary.buckets) > 30
        assert_same(per[t.symbol], unary.buckets)


def test_rejected_batches_name_the_batch_and_field_and_lose_nothing(
    client: Client, days, volumes
) -> None:
    a, b = head(days["AAPL"], 4_000), head(days["AMZN"], 4_000)
    good_a, good_b = batches_of(a, list(range(250, 4_000, 250))), batches_of(b, [1_000, 3_000])
    last_a = int(a.ts_ns[999])
    bad = {
        "nan price": (trade_batch("AAPL", [last_a + 5], [math.nan], [10.0]), "trades.price"),
        "zero size": (trade_batch("AMZN", [2**62], [100.0], [0.0]), "trades.size"),
        "time back": (trade_batch("AAPL", [last_a - SECOND], [580.0], [1.0]), "trades.ts_ns"),
        "lengths": (
            trade_batch("AAPL", [last_a + 9, last_a + 10], [580.0], [1.0, 2.0]),
            "trades.price",
        ),
        "no symbol": (trade_batch("", [last_a + 9], [580.0], [1.0]), "trades.symbol"),
        "unknown": (trade_batch("MSFT", [1], [30.0], [1.0]), "trades.symbol"),
    }
    requests, expect = [], {}
    for i, g in enumerate(good_a):
        requests.append(g)
        if i == 3:  # after AAPL's first 1,000 trades: every kind of bad batch
            for name, (tb, field) in bad.items():
                requests.append(tb)
                expect[len(requests)] = (name, field)
            requests.extend(good_b)
    sym = {s: vpin_parameters(volumes[s], window_buckets=10, bar_ns=BAR) for s in ("AAPL", "AMZN")}
    per, other = collect(client.microstructure.stream_vpin(requests, symbol_parameters=sym))
    rejections = {m.client_batch_id: m.rejection for m in other if m.HasField("rejection")}
    assert set(rejections) == set(expect)
    for bid, (_name, field) in expect.items():
        assert [v.field for v in rejections[bid].field_violations] == [field]
    assert rejections[min(expect)].symbol == "AAPL"
    for t in (a, b):  # the accepted trades, all of them, exactly once
        unary = client.microstructure.compute_vpin(
            t.ts_ns, t.price, t.size, t.aggressor_side, symbol=t.symbol,
            bucket_volume=volumes[t.symbol], window_buckets=10, bar_ns=BAR,
        )  # fmt: skip
        assert_same(per[t.symbol], unary.buckets)


def test_a_bad_config_ends_the_stream_with_invalid_argument(client: Client) -> None:
    with pytest.raises(TickwireError) as err:
        list(client.microstructure.stream_vpin([], bucket_volume=-5, window_buckets=-2,
                                               max_symbols=5_000, answer_interval_us=-1))  # fmt: skip
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(err.value.fields) == {
        "config.default_parameters.bucket_volume",
        "config.default_parameters.window_buckets",
        "config.max_symbols",
        "config.answer_interval_us",
    }
    with pytest.raises(TickwireError) as err:
        list(client.microstructure.stream_vpin([], bucket_volume=5, answer_interval_us=2_000_000))
    assert err.value.fields == ["config.answer_interval_us"]
    bad_sym = {"": vpin_parameters(10.0), "X": vpin_parameters(10.0, bar_ns=5)}
    with pytest.raises(TickwireError) as err:
        list(client.microstructure.stream_vpin([], symbol_parameters=bad_sym))
    assert set(err.value.fields) == {
        "config.symbols[0].symbol",
        "config.symbols[1].parameters.bar_ns",
    }


def test_a_true_side_stream_rejects_a_later_batch_without_sides(client: Client, days) -> None:
    """The symbol's state exists (the compiled path serves it), yet a batch
    without sides under classification true_side is rejected, not applied."""
    t = head(days["AAPL"], 3_000)
    with_sides = trade_batch("AAPL", t.ts_ns[:2_000], t.price[:2_000], t.size[:2_000],
                             t.aggressor_side[:2_000])  # fmt: skip
    without = trade_batch("AAPL", t.ts_ns[2_000:], t.price[2_000:], t.size[2_000:])
    rest = trade_batch("AAPL", t.ts_ns[2_000:], t.price[2_000:], t.size[2_000:],
                       t.aggressor_side[2_000:])  # fmt: skip
    answers = list(client.microstructure.stream_vpin(
        [with_sides, without, rest], bucket_volume=2_000.0, classification="true_side",
        bar_ns=BAR, answer_interval_us=1))  # fmt: skip
    rej = {a.client_batch_id: a.rejection for a in answers if a.HasField("rejection")}
    assert list(rej) == [2]
    assert [v.field for v in rej[2].field_violations] == ["trades.aggressor_side"]
    answered = {a.client_batch_id for a in answers if a.HasField("buckets")}
    assert answered == {1, 3}  # the same trades with their sides: nothing of 2 was applied


def test_symbol_limit_and_late_parameters_are_rejected_in_stream(client: Client) -> None:
    reqs = [trade_batch(f"S{i}", [SECOND], [10.0], [1.0]) for i in range(4)]
    reqs.append(pb.StreamVpinRequest(client_batch_id=77, symbol_parameters=pb.SymbolParameters(
        symbol="S0", parameters=vpin_parameters(5.0))))  # fmt: skip
    reqs.append(pb.StreamVpinRequest(client_batch_id=78, symbol_parameters=pb.SymbolParameters(
        symbol="S1", parameters=vpin_parameters(0.0))))  # fmt: skip
    reqs.append(pb.StreamVpinRequest(client_batch_id=79, config=pb.VpinStreamConfig()))
    _, other = collect(client.microstructure.stream_vpin(reqs, bucket_volume=1.0, max_symbols=3))
    rej = {m.client_batch_id: m.rejection for m in other if m.HasField("rejection")}
    assert [v.field for v in rej[4].field_violations] == ["trades.symbol"]
    assert "3 symbols" in rej[4].field_violations[0].description
    assert [v.field for v in rej[77].field_violations] == ["symbol_parameters.symbol"]
    assert [v.field for v in rej[78].field_violations] == [
        "symbol_parameters.parameters.bucket_volume"
    ]
    assert [v.field for v in rej[79].field_violations] == ["config"]
    assert set(rej) == {4, 77, 78, 79}


def test_a_slow_reader_slows_the_writer(server: ServerHandle, days) -> None:
    """The client does not read; the server stops reading requests once its
    writes wait on flow control, so the client's requests are not all consumed."""
    t = head(days["AAPL"], 2_000)
    one = trade_batch("AAPL", t.ts_ns, t.price, t.size, t.aggressor_side)
    total, sent = 200, [0]

    def requests():
        yield pb.StreamVpinRequest(config=pb.VpinStreamConfig(
            default_parameters=pb.VpinParameters(bucket_volume=100.0, window_buckets=5,
                                                 cdf_history=10)))  # fmt: skip
        for i in range(total):
            tb = pb.StreamVpinRequest(client_batch_id=i + 1, trades=one)
            tb.trades.symbol = f"S{i}"  # each batch completes ~1,700 buckets (~200 kB)
            sent[0] += 1
            yield tb

    with grpc.insecure_channel(server.target) as ch:
        call = pb_grpc.MicrostructureServiceStub(ch).StreamVpin(requests(), timeout=120)
        stalled, deadline = -1, time.monotonic() + 30
        while time.monotonic() < deadline:  # until the client's sending stops
            time.sleep(1.0)
            if sent[0] == stalled:
                break
            stalled = sent[0]
        assert sent[0] == stalled < total  # blocked, not buffering everything
        got = sum(1 for m in call for a in m.answers if a.HasField("buckets"))
    assert got == total and sent[0] == total


def test_a_client_that_waits_for_each_answer_gets_it_and_a_streaming_one_gets_them_joined(
    server: ServerHandle, days
) -> None:
    """Ping-pong: the client sends a batch only once the previous batch's
    answer arrived; with answer_interval_us=1 every answer comes alone and
    at once. The same batches streamed with a long interval (1 s, longer
    than the run) come back in fewer responses, the same answers in order."""
    t = head(days["AAPL"], 4_000)
    cuts = list(range(0, len(t) + 1, 200))
    batches = [
        pb.StreamVpinRequest(
            client_batch_id=i + 1,
            trades=trade_batch("AAPL", t.ts_ns[a:b], t.price[a:b], t.size[a:b]),
        )
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]

    def config(interval_us: int) -> pb.StreamVpinRequest:
        return pb.StreamVpinRequest(client_batch_id=0, config=pb.VpinStreamConfig(
            default_parameters=pb.VpinParameters(bucket_volume=2_000.0, window_buckets=5,
                                                 bar_ns=BAR),
            answer_interval_us=interval_us))  # fmt: skip

    with grpc.insecure_channel(server.target) as ch:
        stub = pb_grpc.MicrostructureServiceStub(ch)
        answered = threading.Event()
        out = [config(1)]

        def ping_pong():
            yield out[0]
            for b in batches:
                assert answered.wait(30), "an answer did not come while the client waited"
                answered.clear()
                yield b

        ping, responses = [], 0
        for r in stub.StreamVpin(ping_pong(), timeout=60):
            responses += 1
            ping.extend(r.answers)
            answered.set()  # the config is acked, and each batch here completes buckets
            if len(ping) == 1 + len(batches):
                break
        joined = list(stub.StreamVpin(iter([config(1_000_000), *batches]), timeout=60))
    assert responses == len(ping)  # one response per answer
    assert len(joined) < len(ping) / 2  # the ack at once, the rest within the 1 s interval
    assert ping == [a for r in joined for a in r.answers]
    assert [a.client_batch_id for a in ping] == list(range(len(batches) + 1))


def test_a_client_that_refuses_an_answer_does_not_take_the_server_down(
    client: Client, server: ServerHandle, days
) -> None:
    """The client's receive limit refuses a large answer mid-stream: that call
    fails with RESOURCE_EXHAUSTED on the client, the server drops the stream
    (its session is released) and keeps serving."""
    t = head(days["AAPL"], 2_000)
    one = trade_batch("AAPL", t.ts_ns, t.price, t.size, t.aggressor_side)
    for attempt in range(2):

        def requests(attempt=attempt):
            yield pb.StreamVpinRequest(config=pb.VpinStreamConfig(
                session_id=f"refused-{attempt}",
                default_parameters=pb.VpinParameters(bucket_volume=50.0, window_buckets=5,
                                                     cdf_history=10)))  # fmt: skip
            for i in range(20):  # each answer ~4,000 buckets, ~450 kB
                r = pb.StreamVpinRequest(client_batch_id=i + 1, trades=one)
                r.trades.symbol = f"S{i}"
                yield r

        opts = [("grpc.max_receive_message_length", 256 << 10)]
        with grpc.insecure_channel(server.target, options=opts) as ch:
            with pytest.raises(grpc.RpcError) as err:
                list(pb_grpc.MicrostructureServiceStub(ch).StreamVpin(requests(), timeout=60))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        gc.collect()
    assert client.health() == "SERVING"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the dropped stream's session is released
        try:
            list(client.microstructure.stream_vpin([], session_id="refused-0"))
            break
        except TickwireError as e:
            assert e.code == grpc.StatusCode.ALREADY_EXISTS
            time.sleep(0.1)
    else:
        pytest.fail("the refused stream's session stayed held")


# --------------------------------------------------------------------------
# sessions: snapshot, reset, restore, resume
# --------------------------------------------------------------------------
def test_snapshot_restores_into_a_new_stream_and_reset_clears(
    client: Client, days, volumes
) -> None:
    t = head(days["AMZN"], 6_000)
    v = volumes["AMZN"]
    parts = batches_of(t, [2_500])
    first, _ = collect(client.microstructure.stream_vpin(
        parts[:1], bucket_volume=v, window_buckets=10, bar_ns=BAR, session_id="snap-1"))  # fmt: skip
    snap = client.microstructure.get_state("snap-1", "AMZN")
    assert snap.trades == 2_500 and snap.buckets == len(joined(first["AMZN"], "vpin"))
    assert snap.parameters.bucket_volume == v and snap.parameters.window_buckets == 10
    # a fresh anonymous stream (any replica) continues from the snapshot
    second, other = collect(client.microstructure.stream_vpin(
        parts[1:], bucket_volume=v, window_buckets=10, bar_ns=BAR, restore=[snap]))  # fmt: skip
    assert other[1].ack.symbol == "AMZN" and other[1].ack.buckets == snap.buckets
    unary = client.microstructure.compute_vpin(t.ts_ns, t.price, t.size, t.aggressor_side,
        symbol="AMZN", bucket_volume=v, window_buckets=10, bar_ns=BAR)  # fmt: skip
    assert_same(first["AMZN"] + second["AMZN"], unary.buckets)
    # the same session id resumes the kept state on this server
    resumed, _ = collect(client.microstructure.stream_vpin(
        parts[1:], bucket_volume=v, window_buckets=10, bar_ns=BAR, session_id="snap-1"))  # fmt: skip
    assert_same(first["AMZN"] + resumed["AMZN"], unary.buckets)
    # reset: returns the old state, the next bucket is 0 again
    old = client.microstructure.reset_state("snap-1", "AMZN")
    assert old.trades == 6_000
    assert client.microstructure.get_state("snap-1", "AMZN").trades == 0
    again, _ = collect(client.microstructure.stream_vpin(parts[:1], session_id="snap-1"))
    for name in COLUMNS:
        assert np.array_equal(joined(again["AMZN"], name), joined(first["AMZN"], name),
                              equal_nan=True), name  # fmt: skip


def test_unknown_sessions_and_bad_restores(client: Client) -> None:
    with pytest.raises(TickwireError) as err:
        client.microstructure.get_state("no-such-session", "AAPL")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(TickwireError) as err:
        client.microstructure.reset_state("", "")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(err.value.fields) == {"session_id", "symbol"}
    list(client.microstructure.stream_vpin(
        [trade_batch("AAPL", [SECOND], [10.0], [1.0])], bucket_volume=5.0, session_id="tiny"))  # fmt: skip
    with pytest.raises(TickwireError) as err:
        client.microstructure.get_state("tiny", "MSFT")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    snap = client.microstructure.get_state("tiny", "AAPL")
    broken = pb.VpinSymbolState()
    broken.CopyFrom(snap)
    del broken.engine_state["cum_volume"]
    _, other = collect(client.microstructure.stream_vpin([], restore=[broken]))
    rej = other[1].rejection
    assert [v.field for v in rej.field_violations] == ["restore.engine_state.cum_volume"]


def test_a_live_session_id_cannot_be_opened_twice(client: Client, server: ServerHandle) -> None:
    release = threading.Event()

    def held():
        yield trade_batch("AAPL", [SECOND], [10.0], [1.0])
        release.wait(30)

    out = []
    th = threading.Thread(target=lambda: out.extend(
        client.microstructure.stream_vpin(held(), bucket_volume=5.0, session_id="busy")))  # fmt: skip
    th.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the first stream holds the session
            try:
                if client.microstructure.get_state("busy", "AAPL").trades == 1:
                    break
            except TickwireError:
                time.sleep(0.05)
        with pytest.raises(TickwireError) as err:
            list(client.microstructure.stream_vpin([], bucket_volume=5.0, session_id="busy"))
        assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    finally:
        release.set()
        th.join(30)


# --------------------------------------------------------------------------
# async client and tracing
# --------------------------------------------------------------------------
def test_async_stream_and_one_span_per_stream_with_batch_events(
    server: ServerHandle, days, volumes
) -> None:
    t = head(days["AAPL"], 8_000)
    batches = batches_of(t, list(range(40, 8_000, 40)))  # 200 batches
    batches.insert(7, trade_batch("AAPL", [0], [1.0], [1.0]))  # time goes back: rejected
    server.spans.clear()

    async def run():
        async with AsyncClient(server.target) as c:

            async def gen():
                for b in batches:
                    yield b

            return [m async for m in c.microstructure.stream_vpin(
                gen(), bucket_volume=volumes["AAPL"], bar_ns=BAR, session_id="traced")]  # fmt: skip

    import asyncio

    responses = asyncio.run(run())
    per, _ = collect(responses)
    n_buckets = len(joined(per["AAPL"], "vpin"))
    assert n_buckets > 40

    def stream_spans() -> list:
        return [s for s in server.spans.get_finished_spans() if s.name == f"{SERVICE}/StreamVpin"]

    deadline = time.monotonic() + 10  # the span ends once the handler has returned
    while not stream_spans() and time.monotonic() < deadline:
        time.sleep(0.02)
    spans = stream_spans()
    assert len(spans) == 1  # one span for the whole stream, none per batch or tick
    span = spans[0]
    assert span.attributes["tickwire.vpin.batches"] == 200
    assert span.attributes["tickwire.vpin.trades"] == 8_000
    assert span.attributes["tickwire.vpin.buckets"] == n_buckets
    assert span.attributes["tickwire.vpin.rejections"] == 1
    windows = [e for e in span.events if e.name == "vpin.batches"]
    assert [e.attributes["batches"] for e in windows] == [100, 100, 1]
    assert sum(e.attributes["trades"] for e in windows) == 8_000
    assert sum(e.attributes["buckets_completed"] for e in windows) == n_buckets
    rejection = [e for e in span.events if e.name == "vpin.rejection"]
    assert len(rejection) == 1 and rejection[0].attributes["client_batch_id"] == 8
    assert list(rejection[0].attributes["fields"]) == ["trades.ts_ns"]
    children = [s for s in server.spans.get_finished_spans() if s.parent is not None
                and s.parent.span_id == span.context.span_id]  # fmt: skip
    assert children == []


def raw_stream_answers(
    server: ServerHandle, requests: list[bytes], into: list[pb.StreamVpinAnswer] | None = None
) -> list[pb.StreamVpinAnswer]:
    """The answers of one StreamVpin call that sends these request bytes as
    they are, appended to ``into`` as they arrive (a caller that expects the
    call to fail keeps the answers that came before)."""
    got = [] if into is None else into
    with grpc.insecure_channel(server.target) as ch:
        call = ch.stream_stream(
            "/tickwire.microstructure.v1.MicrostructureService/StreamVpin",
            request_serializer=None,
            response_deserializer=pb.StreamVpinResponse.FromString,
        )(iter(requests), timeout=60)
        for response in call:
            got.extend(response.answers)
    return got


def test_requests_in_any_valid_encoding_give_the_same_answers(server: ServerHandle, days) -> None:
    """StreamVpin decodes usual trades requests straight off the wire and lets
    protobuf parse any other encoding; here every trades request is also sent
    as two concatenated halves (protobuf merges them into the same message):
    the answers are identical."""
    t = head(days["AAPL"], 3_000)
    config = pb.StreamVpinRequest(config=pb.VpinStreamConfig(
        default_parameters=pb.VpinParameters(bucket_volume=2_000.0, window_buckets=5)))  # fmt: skip
    whole, halves = [config.SerializeToString()], [config.SerializeToString()]
    for i, a in enumerate(range(0, len(t), 250)):
        b, mid = a + 250, a + 125
        req = pb.StreamVpinRequest(client_batch_id=i + 1, trades=trade_batch(
            "AAPL", t.ts_ns[a:b], t.price[a:b], t.size[a:b], t.aggressor_side[a:b]))  # fmt: skip
        whole.append(req.SerializeToString())
        first = pb.StreamVpinRequest(client_batch_id=i + 1, trades=trade_batch(
            "AAPL", t.ts_ns[a:mid], t.price[a:mid], t.size[a:mid], t.aggressor_side[a:mid]))  # fmt: skip
        second = pb.StreamVpinRequest(trades=trade_batch(
            "AAPL", t.ts_ns[mid:b], t.price[mid:b], t.size[mid:b], t.aggressor_side[mid:b]))  # fmt: skip
        merged = first.SerializeToString() + second.SerializeToString()
        assert pb.StreamVpinRequest.FromString(merged) == req
        halves.append(merged)

    got, want = raw_stream_answers(server, halves), raw_stream_answers(server, whole)
    assert len(want) > 10 and any(a.HasField("buckets") for a in want)
    assert got == want


def test_a_batch_with_its_symbol_given_twice_goes_to_the_last_symbol(
    server: ServerHandle, days
) -> None:
    """The fast path looks a batch's symbol up from its first bytes; protobuf
    keeps the last of a field given twice. A batch of AMZN whose bytes name
    AAPL first (a stream that already holds AAPL) must update AMZN, as
    protobuf reads it: the answers equal those of the usual encoding."""
    t = head(days["AAPL"], 3_000)
    config = pb.StreamVpinRequest(config=pb.VpinStreamConfig(
        default_parameters=pb.VpinParameters(bucket_volume=2_000.0, window_buckets=5)))  # fmt: skip
    usual, twice = [config.SerializeToString()], [config.SerializeToString()]
    for i, a in enumerate(range(0, len(t), 250)):
        b, symbol = a + 250, ("AAPL", "AMZN")[i % 2]
        tb = trade_batch(symbol, t.ts_ns[a:b], t.price[a:b], t.size[a:b], t.aggressor_side[a:b])
        req = pb.StreamVpinRequest(client_batch_id=i + 1, trades=tb)
        usual.append(req.SerializeToString())
        trades = b"\x0a\x04AAPL" + tb.SerializeToString()  # symbol AAPL, then the batch's own
        data = b"\x08" + bytes([i + 1]) + b"\x1a" + varint(len(trades)) + trades
        assert pb.StreamVpinRequest.FromString(data) == req
        twice.append(data)

    want = raw_stream_answers(server, usual)
    assert {a.buckets.symbol for a in want if a.HasField("buckets")} == {"AAPL", "AMZN"}
    assert raw_stream_answers(server, twice) == want


def test_a_request_protobuf_cannot_parse_ends_the_stream_as_protobuf_would(
    server: ServerHandle, days
) -> None:
    """A request protobuf cannot parse ends the stream with INVALID_ARGUMENT
    naming the request, after the answers to every request before it: here
    one whose ts_ns varints are cut short (found when the compiled path
    decodes the column) and one cut short inside its fields (found by the
    request decoder)."""
    t = head(days["AAPL"], 2_000)
    config = pb.StreamVpinRequest(config=pb.VpinStreamConfig(
        default_parameters=pb.VpinParameters(bucket_volume=2_000.0, window_buckets=5)))  # fmt: skip
    requests = [config.SerializeToString()]
    for i, a in enumerate(range(0, len(t), 500)):
        b = a + 500
        req = pb.StreamVpinRequest(client_batch_id=i + 1, trades=trade_batch(
            "AAPL", t.ts_ns[a:b], t.price[a:b], t.size[a:b], t.aggressor_side[a:b]))  # fmt: skip
        requests.append(req.SerializeToString())
    symbol = b"\x0a\x04AAPL"
    bad_column = b"\x08\x63\x1a" + bytes([len(symbol) + 4]) + symbol + b"\x12\x02\x05\x80"
    for bad in (bad_column, requests[2][:-3]):
        with pytest.raises(DecodeError):
            pb.StreamVpinRequest.FromString(bad)

    want = raw_stream_answers(server, requests)
    assert sum(a.HasField("buckets") for a in want) >= 3
    for bad in (bad_column, requests[2][:-3]):
        got: list[pb.StreamVpinAnswer] = []
        with pytest.raises(grpc.RpcError) as err:
            raw_stream_answers(server, [*requests, bad, requests[1]], got)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert TickwireError.from_rpc_error(err.value).fields == ["request"]
        assert got == want  # every request before it answered, nothing after it
