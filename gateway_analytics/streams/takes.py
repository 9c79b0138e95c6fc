"""Takes: a Faust stream's events, gathered into the batches the sink stores.

Faust's own ``take_events`` ends a take when it is full or when its time is
up. That suits the live edge, where events trickle in and a take gathers for
the whole flush interval, but not a backlog: its last part, smaller than a
take, sat out the whole interval with nothing left to wait for. Here a take
that follows a full one, which means the sink is working through a backlog,
also ends as soon as no event has come for a moment: the backlog is drained.
A trickle never fills a take, so its takes still gather for the interval,
and at most one partial take follows each full one.

A take may also be bounded by the rows its events will make (a Kafka record
can carry many rows): an event that would take it past the bound starts the
next take instead, so that each take of a backlog fills one insert and no
insert is left with the remainder of one.

The next take is gathered while the caller stores the current one, so the
stream's per-event work overlaps the insert instead of following it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any, NamedTuple

# How long a take that drains a backlog waits for one more event. The
# consumer's fetches refill the stream far quicker while records remain.
DRAINED_AFTER_S = 0.05

_END = None


async def takes(
    stream: Any,
    *,
    max_events: int,
    within_s: float,
    max_rows: int | None = None,
    rows_in: Callable[[Any], int] = lambda event: 1,
) -> AsyncGenerator[list[Any], None]:
    """The events of ``stream`` in takes of at most ``max_events``.

    A take ends when it is full, ``within_s`` after its first event, or,
    after a full take, once no event came for :data:`DRAINED_AFTER_S`. With
    ``max_rows``, a take is also full when the next event would take the sum
    of ``rows_in`` over its events past it; a take's first event is never
    held back. As with ``take_events``, a take's events are acknowledged
    only when the caller asks for the next take or stops iterating, that is
    once the caller has stored them; close the iterator
    (``contextlib.aclosing``) so that this happens when the caller stops.
    """
    stream.enable_acks = False
    gathered: asyncio.Queue[list[Any] | None] = asyncio.Queue(maxsize=1)
    bounds = _Bounds(max_events, max_rows, rows_in, within_s)
    gatherer = asyncio.ensure_future(_Gatherer(stream, bounds).run(gathered))
    try:
        while (take := await _next_take(gathered, gatherer)) is not _END:
            gathered.task_done()
            try:
                yield take
            finally:
                for event in take:
                    await stream.ack(event)
    finally:
        gatherer.cancel()
        await asyncio.gather(gatherer, return_exceptions=True)


class _Bounds(NamedTuple):
    """When a take is full, and how long it gathers."""

    max_events: int
    max_rows: int | None
    rows_in: Callable[[Any], int]
    within_s: float


async def _next_take(
    gathered: asyncio.Queue[list[Any] | None], gatherer: asyncio.Future[None]
) -> list[Any] | None:
    """The next take, or ``_END``; the gatherer's failure is raised here."""
    getting = asyncio.ensure_future(gathered.get())
    either: list[asyncio.Future[Any]] = [getting, gatherer]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getting.done():
            getting.cancel()
    if not getting.cancelled():
        return getting.result()
    gatherer.result()  # raises what stopped it
    return _END


class _Gatherer:
    """Gathers a stream's takes, one ahead of the caller that stores them."""

    def __init__(self, stream: Any, bounds: _Bounds) -> None:
        self._events = stream.events().__aiter__()
        self._bounds = bounds
        self._loop = asyncio.get_running_loop()
        # The stream's next event, asked for but not come in time for a take.
        self._upcoming: asyncio.Future[Any] | None = None
        self._held: Any = _END  # an event that did not fit the take before
        # A worker that starts has a backlog to work through, as far as it knows.
        self._draining = True

    async def run(self, gathered: asyncio.Queue[list[Any] | None]) -> None:
        """Put each take on ``gathered``, then ``_END`` once the stream ends."""
        try:
            while (first := await self._first_event()) is not _END:
                take = await self._fill([first])
                full = len(take) >= self._bounds.max_events
                self._draining = full or self._held is not _END
                await gathered.put(take)
                # Gather the next take only once this one is handed over: two
                # takes at most are held, the one stored and the one waiting.
                await gathered.join()
        finally:
            if self._upcoming is not None:
                self._upcoming.cancel()
        await gathered.put(_END)

    async def _first_event(self) -> Any:
        """The event that opens the next take; with no take open, no bound."""
        if self._held is not _END:
            first, self._held = self._held, _END
            return first
        if self._upcoming is None:
            return await anext(self._events, _END)
        first = await self._upcoming
        self._upcoming = None
        return first

    async def _fill(self, take: list[Any]) -> list[Any]:
        """``take`` with the events that follow, until one of its bounds."""
        bounds = self._bounds
        rows = bounds.rows_in(take[0])
        ends_at = self._loop.time() + bounds.within_s
        while len(take) < bounds.max_events:
            event = await self._next_event(ends_at)
            if event is _END:
                break
            event_rows = bounds.rows_in(event)
            if bounds.max_rows is not None and rows + event_rows > bounds.max_rows:
                self._held = event
                break
            take.append(event)
            rows += event_rows
        return take

    async def _next_event(self, ends_at: float) -> Any:
        """The stream's next event, or ``_END`` if none comes in time.

        Always waited for with a bound, even when the stream has events
        queued: Faust yields before it takes one, and a rebalance or a stop
        may empty its queue meanwhile. Awaited without a bound, the take
        would then hold its events, never acknowledged, while Faust waits
        for their acknowledgement.
        """
        wait_s = ends_at - self._loop.time()
        if self._draining:
            wait_s = min(wait_s, DRAINED_AFTER_S)
        if wait_s <= 0:
            return _END
        self._upcoming = asyncio.ensure_future(anext(self._events, _END))
        done, _ = await asyncio.wait({self._upcoming}, timeout=wait_s)
        if not done:
            return _END  # the next take starts with it
        event = self._upcoming.result()
        self._upcoming = None
        return event
