"""Takes: how a stream's events are cut into the batches the sink stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from gateway_analytics.streams.takes import takes


class QueuedStream:
    """The part of a Faust stream that takes uses, over an in-memory queue
    that holds a whole backlog from the start.

    Like Faust's, it yields to the event loop before it takes each event.
    With ``emptied_after``, its queue is emptied during that yield once it
    has handed out that many events, as Faust empties it for a rebalance or
    a stop; nothing comes after.
    """

    def __init__(self, events: list[Any], *, emptied_after: int | None = None) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        for event in events:
            self._queue.put_nowait(event)
        self._emptied_after = emptied_after
        self.enable_acks = True
        self.acked: list[Any] = []

    async def events(self) -> AsyncIterator[Any]:
        handed_out = 0
        while True:
            await asyncio.sleep(0)
            if handed_out == self._emptied_after:
                while not self._queue.empty():
                    self._queue.get_nowait()
            yield await self._queue.get()
            handed_out += 1

    async def ack(self, event: Any) -> None:
        self.acked.append(event)


async def _first_takes(stream: QueuedStream, count: int, **bounds: Any) -> list[Any]:
    """The first ``count`` takes; a stream that yields fewer fails the test
    rather than wait for more forever."""
    taken = []
    async with (
        asyncio.timeout(5),
        aclosing(takes(stream, within_s=0.2, **bounds)) as iterator,
    ):
        async for take in iterator:
            taken.append(take)
            if len(taken) == count:
                break
    return taken


async def test_a_take_ends_before_its_rows_pass_the_bound() -> None:
    """Events of 30 rows each go three to a take under a bound of 100, and
    the event that would pass it opens the next take."""
    stream = QueuedStream([(number, 30) for number in range(10)])

    taken = await _first_takes(
        stream, 4, max_events=1000, max_rows=100, rows_in=lambda event: event[1]
    )

    assert [[number for number, _ in take] for take in taken] == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8],
        [9],
    ]


async def test_an_event_larger_than_the_bound_is_a_take_of_its_own() -> None:
    """A first event is never held back, however many rows it makes."""
    stream = QueuedStream([("big", 500), ("small", 1), ("small", 1)])

    taken = await _first_takes(
        stream, 2, max_events=1000, max_rows=100, rows_in=lambda event: event[1]
    )

    assert taken == [[("big", 500)], [("small", 1), ("small", 1)]]


async def test_without_a_row_bound_a_take_holds_max_events() -> None:
    """Only the count of events bounds a take when no row bound is given."""
    stream = QueuedStream(list(range(7)))

    taken = await _first_takes(stream, 3, max_events=3)

    assert taken == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_take_is_acknowledged_once_the_next_is_asked_for() -> None:
    """The events of a take are acknowledged only after the caller is done
    with it, never while it is being stored."""
    stream = QueuedStream(list(range(4)))

    async with aclosing(takes(stream, max_events=2, within_s=0.2)) as iterator:
        first = await anext(iterator)
        acked_while_storing = list(stream.acked)
        await anext(iterator)

    assert first == [0, 1]
    assert acked_while_storing == []
    assert stream.acked[:2] == [0, 1]


async def test_a_take_ends_when_the_stream_is_emptied_under_it() -> None:
    """Events queued when a take looked for more, then cleared away before the
    stream handed them out, do not keep the take from ending: its events are
    stored and acknowledged, which a rebalance waits for."""
    stream = QueuedStream(list(range(5)), emptied_after=2)

    taken = await _first_takes(stream, 1, max_events=1000)

    assert taken == [[0, 1]]
