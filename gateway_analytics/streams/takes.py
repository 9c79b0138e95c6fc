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
    gatherer = asyncio.ensure_future(_gather(stream, gathered, bounds))
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


async def _gather(
    stream: Any, gathered: asyncio.Queue[list[Any] | None], bounds: _Bounds
) -> None:
    events = stream.events().__aiter__()
    loop = asyncio.get_running_loop()
    upcoming: asyncio.Future[Any] | None = None
    held: Any = _END  # an event that did not fit the take before
    # A worker that starts has a backlog to work through, as far as it knows.
    draining = True
    try:
        while True:
            if held is not _END:
                first, held = held, _END
            elif upcoming is None:
                first = await anext(events, _END)
            else:
                first, upcoming = await upcoming, None
            if first is _END:
                break
            take = [first]
            rows = bounds.rows_in(first)
            ends_at = loop.time() + bounds.within_s
            while len(take) < bounds.max_events:
                # Always waited for with a bound, even when the stream has
                # events queued: Faust yields before it takes one, and a
                # rebalance or a stop may empty its queue meanwhile. Awaited
                # without a bound, the take would then hold its events, never
                # acknowledged, while Faust waits for their acknowledgement.
                wait_s = ends_at - loop.time()
                if draining:
                    wait_s = min(wait_s, DRAINED_AFTER_S)
                if wait_s <= 0:
                    break
                upcoming = asyncio.ensure_future(anext(events, _END))
                done, _ = await asyncio.wait({upcoming}, timeout=wait_s)
                if not done:
                    break  # the next take starts with it
                event, upcoming = upcoming.result(), None
                if event is _END:
                    break
                event_rows = bounds.rows_in(event)
                if bounds.max_rows is not None and rows + event_rows > bounds.max_rows:
                    held = event
                    break
                take.append(event)
                rows += event_rows
            draining = len(take) >= bounds.max_events or held is not _END
            await gathered.put(take)
            # Gather the next take only once this one is handed over: two
            # takes at most are held, the one stored and the one waiting.
            await gathered.join()
    finally:
        if upcoming is not None:
            upcoming.cancel()
    await gathered.put(_END)
