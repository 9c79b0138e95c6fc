"""Takes: a Faust stream's events, gathered into the batches the sink stores.

Faust's own ``take_events`` ends a take when it is full or when its time is
up. That suits the live edge, where events trickle in and a take gathers for
the whole flush interval, but not a backlog: its last part, smaller than a
take, sat out the whole interval with nothing left to wait for. Here a take
that follows a full one, which means the sink is working through a backlog,
also ends as soon as no event has come for a moment: the backlog is drained.
A trickle never fills a take, so its takes still gather for the interval,
and at most one partial take follows each full one.

The next take is gathered while the caller stores the current one, so the
stream's per-event work overlaps the insert instead of following it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

# How long a take that drains a backlog waits for one more event. The
# consumer's fetches refill the stream far quicker while records remain.
DRAINED_AFTER_S = 0.05

_END = None


async def takes(
    stream: Any, *, max_events: int, within_s: float
) -> AsyncGenerator[list[Any], None]:
    """The events of ``stream`` in takes of at most ``max_events``.

    A take ends when it is full, ``within_s`` after its first event, or,
    after a full take, once no event came for :data:`DRAINED_AFTER_S`. As
    with ``take_events``, a take's events are acknowledged only when the
    caller asks for the next take or stops iterating, that is once the
    caller has stored them; close the iterator (``contextlib.aclosing``) so
    that this happens when the caller stops.
    """
    stream.enable_acks = False
    gathered: asyncio.Queue[list[Any] | None] = asyncio.Queue(maxsize=1)
    gatherer = asyncio.ensure_future(
        _gather(stream, gathered, max_events=max_events, within_s=within_s)
    )
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
    stream: Any,
    gathered: asyncio.Queue[list[Any] | None],
    *,
    max_events: int,
    within_s: float,
) -> None:
    events = stream.events().__aiter__()
    loop = asyncio.get_running_loop()
    upcoming: asyncio.Future[Any] | None = None
    # A worker that starts has a backlog to work through, as far as it knows.
    draining = True
    try:
        while True:
            if upcoming is None:
                first = await anext(events, _END)
            else:
                first, upcoming = await upcoming, None
            if first is _END:
                break
            take = [first]
            ends_at = loop.time() + within_s
            while len(take) < max_events:
                if not stream.channel.empty():
                    # Queued already: no timer, which a backlog would pay
                    # for every event.
                    event = await anext(events, _END)
                else:
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
                take.append(event)
            draining = len(take) >= max_events
            await gathered.put(take)
            # Gather the next take only once this one is handed over: two
            # takes at most are held, the one stored and the one waiting.
            await gathered.join()
    finally:
        if upcoming is not None:
            upcoming.cancel()
    await gathered.put(_END)
