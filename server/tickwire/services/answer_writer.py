"""The response side of a bidirectional stream: answers coalesced into
responses at most once per interval, written by their own task.

A write costs a gRPC server about as much as reading a 25 kB request
(measured with a bare grpc.aio stream in bench/results/stream-cpu.md: one
small response per request halves the requests it takes per second). A
stream that answers many requests a millisecond therefore joins answers
into fewer responses; a stream that answers now and then must not wait.

:class:`AnswerWriter` does both with one rule: a response goes out at once
unless the previous one went out less than ``interval_s`` ago; then it goes
when ``interval_s`` has passed since that one, with every answer that came
meanwhile. So an answer waits at most ``interval_s``, and only on a stream
that already got a response within the last ``interval_s``.

Flow control: while a write is in flight (gRPC's write waits for HTTP/2
flow control, i.e. for the client to read), answers queue up to
``max_answers`` or ``max_bytes``; then :meth:`AnswerWriter.put` waits until
they are written, so the handler stops reading and a slow reader slows the
writer. Nothing else is buffered.

No grpc import: the writer takes the call's ``write`` coroutine function.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class AnswerWriter:
    """Queue of serialized answers of one stream, and the task that writes them.

    Parameters
    ----------
    write : the call's ``context.write`` (takes one response, bytes or message)
    join : makes one response of the queued answers (a list, oldest first)
    interval_s : least time between two responses, seconds (>= 0)
    max_answers, max_bytes : queue size after which :meth:`put` waits
    """

    def __init__(
        self,
        write: Callable[[object], Awaitable[None]],
        join: Callable[[list], object],
        interval_s: float,
        max_answers: int,
        max_bytes: int,
    ) -> None:
        self._write = write
        self._join = join
        self._interval = interval_s
        self._max_answers = max_answers
        self._max_bytes = max_bytes
        self._pending: list = []
        self._bytes = 0
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Future | None = None  # set while the writer waits out the interval
        self._last = -math.inf  # loop time of the last write
        self._draining = False
        self.responses = 0

    def _full(self) -> bool:
        return len(self._pending) >= self._max_answers or self._bytes >= self._max_bytes

    def put_nowait(self, answer: bytes) -> bool:
        """Queue one answer (``len(answer)`` counts against ``max_bytes``);
        whether there is room for the next. When there is not, the caller
        awaits :meth:`wait` before it queues more (the client reads slower
        than it sends).

        Raises whatever the last write raised (the call has ended).
        """
        self._pending.append(answer)
        self._bytes += len(answer)
        task = self._task
        if task is None or task.done():
            if task is not None:
                task.result()
            self._task = asyncio.ensure_future(self._run())
            return True  # the new task writes at once when the queue is full
        return not self._full()

    async def wait(self) -> None:
        """Wait until the answers queued now are written (no more waiting
        for the interval). Raises whatever the write raised."""
        if self._wake is not None:
            _resolve(self._wake)
        if self._task is not None:
            await self._task

    async def put(self, answer: bytes) -> None:
        """:meth:`put_nowait`, then :meth:`wait` when the queue is full."""
        if not self.put_nowait(answer):
            await self.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last + self._interval - loop.time()
            if wait > 0 and not self._draining and not self._full():
                self._wake = loop.create_future()
                timer = loop.call_later(wait, _resolve, self._wake)
                try:
                    await self._wake
                finally:
                    timer.cancel()
                    self._wake = None
            response = self._join(self._pending)
            self._pending = []
            self._bytes = 0
            self._last = loop.time()
            self.responses += 1
            await self._write(response)

    async def drain(self) -> None:
        """Write everything queued now (the end of the stream)."""
        self._draining = True
        if self._wake is not None:
            _resolve(self._wake)
        if self._task is not None:
            await self._task
        if self._pending:
            await self._run()

    def close(self) -> None:
        """Cancel the write in flight, if any (the stream failed or was cancelled)."""
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: the call's own error is what counts
