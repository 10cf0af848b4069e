"""The stream answer writer (tickwire.services.answer_writer): a response at
once after a quiet interval, answers joined while the interval runs, a
bounded queue that holds the handler back, and a failed write surfacing."""

from __future__ import annotations

import asyncio

import pytest
from tickwire.services.answer_writer import AnswerWriter


class Sink:
    """A call's ``write``: records each response; optionally blocks until released."""

    def __init__(self) -> None:
        self.responses: list[list[bytes]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def write(self, response: list[bytes]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.responses.append(response)


def writer(sink: Sink, interval_s: float, max_answers: int = 100, max_bytes: int = 1 << 20):
    return AnswerWriter(sink.write, list, interval_s, max_answers, max_bytes)


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_an_answer_after_a_quiet_interval_goes_at_once_and_later_ones_are_joined() -> None:
    async def run() -> list[list[bytes]]:
        sink = Sink()
        w = writer(sink, interval_s=60.0)  # longer than the test: nothing waits it out
        await w.put(b"a")
        await turns()
        assert sink.responses == [[b"a"]]  # no interval before the first response
        for x in (b"b", b"c", b"d"):
            await w.put(x)
            await turns()
        assert sink.responses == [[b"a"]]  # within the interval: held, in order
        await w.drain()  # the end of the stream writes what is held, without waiting
        assert w.responses == 2
        return sink.responses

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [[b"a"], [b"b", b"c", b"d"]]


def test_answers_held_for_the_interval_go_when_it_has_passed() -> None:
    async def run() -> list[list[bytes]]:
        sink = Sink()
        w = writer(sink, interval_s=0.05)
        await w.put(b"a")
        await turns()
        await w.put(b"b")
        await w.put(b"c")
        await asyncio.sleep(0.5)  # well past the interval
        assert sink.responses == [[b"a"], [b"b", b"c"]]
        await asyncio.sleep(0.1)
        await w.put(b"d")  # quiet for longer than the interval: at once
        await turns()
        return sink.responses

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [[b"a"], [b"b", b"c"], [b"d"]]


def test_a_full_queue_is_written_without_the_interval_and_holds_the_handler() -> None:
    """While a write waits (the client does not read), put() returns until
    max_answers are queued, then waits for the writes: nothing beyond that."""

    async def run() -> tuple[list[list[bytes]], int]:
        sink = Sink()
        sink.gate = asyncio.Event()
        w = writer(sink, interval_s=60.0, max_answers=4)
        queued = 0
        for i in range(10):
            put = asyncio.ensure_future(w.put(bytes([i])))
            await turns()
            if not put.done():
                break  # the handler is held here
            queued += 1
        assert not put.done() and queued == 4  # a0 in the blocked write, a1..a4 queued
        sink.gate.set()  # the client reads again
        await put
        await w.drain()
        return sink.responses, queued

    responses, _ = asyncio.run(asyncio.wait_for(run(), 10))
    assert responses == [[b"\x00"], [b"\x01", b"\x02", b"\x03", b"\x04"]]


def test_put_nowait_says_when_the_handler_must_wait() -> None:
    """put_nowait() queues without waiting and returns False exactly when the
    queue is full while a write is in flight; wait() then returns once the
    queue is written."""

    async def run() -> tuple[list[bool], list[list[bytes]]]:
        sink = Sink()
        sink.gate = asyncio.Event()
        w = writer(sink, interval_s=60.0, max_answers=3)
        room = [w.put_nowait(b"\x00")]
        await turns()  # a0 is being written (the client does not read)
        room += [w.put_nowait(bytes([i])) for i in range(1, 4)]
        waiting = asyncio.ensure_future(w.wait())
        await turns()
        assert not waiting.done()
        sink.gate.set()
        await waiting
        await w.drain()
        return room, sink.responses

    room, responses = asyncio.run(asyncio.wait_for(run(), 10))
    assert room == [True, True, True, False]
    assert responses == [[b"\x00"], [b"\x01", b"\x02", b"\x03"]]


def test_the_byte_bound_also_holds_the_handler() -> None:
    async def run() -> bool:
        sink = Sink()
        sink.gate = asyncio.Event()
        w = writer(sink, interval_s=60.0, max_bytes=1_000)
        await w.put(b"x" * 10)
        await turns()
        await w.put(b"y" * 600)
        put = asyncio.ensure_future(w.put(b"z" * 600))
        await turns()
        held = not put.done()
        sink.gate.set()
        await put
        await w.drain()
        assert sink.responses == [[b"x" * 10], [b"y" * 600, b"z" * 600]]
        return held

    assert asyncio.run(asyncio.wait_for(run(), 10))


def test_a_failed_write_raises_from_the_next_put_and_close_cancels_a_write() -> None:
    async def run() -> None:
        sink = Sink()
        sink.fail = ConnectionError("the call ended")
        w = writer(sink, interval_s=0.0)
        await w.put(b"a")
        await turns()
        with pytest.raises(ConnectionError):
            await w.put(b"b")
        sink.fail, sink.gate = None, asyncio.Event()
        w2 = writer(sink, interval_s=0.0)
        await w2.put(b"c")
        await turns()
        task = w2._task
        w2.close()
        await turns()
        assert task is not None and task.cancelled()
        w.close()  # a finished, failed task: nothing raised, nothing logged

    asyncio.run(asyncio.wait_for(run(), 10))
