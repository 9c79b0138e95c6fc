"""SIGKILL in the middle of ingest: after restarts, every event counted once.

A client posts tens of thousands of events, each with its own event_id, and
retries every request that did not get a 202 (as a gateway does), splitting
the retried batch differently. Meanwhile ``run`` and its broker are killed
with SIGKILL several times, each time while the sink is storing events: it
inserts small batches back to back, and the kill comes at a random moment
up to 0.3 s after the stored count was seen to grow, so kills land before,
during and after inserts and offset commits. After the last restart the
counts must equal what the client was told was accepted: none missing, none
extra.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from gateway_analytics.shared.local_kafka import free_port
from tests.e2e.running import RunProcess, count_rows

pytestmark = pytest.mark.e2e

EVENTS = 30_000
BATCH = 300
KILLS = 3
PODS = [str(uuid.UUID(int=n, version=4)) for n in range(1, 41)]


@pytest.fixture
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunProcess]:
    """``run`` with small, frequent batches, so kills hit every phase."""
    running = RunProcess(
        data_dir=tmp_path_factory.mktemp("crash"),
        port=free_port(),
        settings={
            "ANALYTICS_SINK_BATCH_SIZE": "500",
            "ANALYTICS_SINK_FLUSH_INTERVAL_S": "0.2",
            "ANALYTICS_KAFKA_PRODUCE_TIMEOUT_S": "3",
        },
    )
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def _events(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "type": "pod_entered",
            "event_id": str(uuid.uuid4()),
            "pod_id": rng.choice(PODS),
            "occurred_at": f"2024-05-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:00:00Z",
        }
        for _ in range(EVENTS)
    ]


async def _post_until_accepted(
    http: aiohttp.ClientSession, url: str, batch: list[dict[str, Any]]
) -> int:
    """Post ``batch``; on any failure retry it, in halves, until each half is 202."""
    attempts, pending = 0, [batch]
    while pending:
        chunk = pending.pop()
        attempts += 1
        try:
            async with http.post(url, json={"events": chunk}) as response:
                if response.status == 202:
                    continue
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
        middle = max(1, len(chunk) // 2)
        pending += [chunk[:middle], chunk[middle:]] if len(chunk) > 1 else [chunk]
    return attempts - 1


async def _until_sink_is_storing(http: aiohttp.ClientSession, base_url: str) -> None:
    """Return once the stored count grows, that is while the sink inserts."""
    first = sum((await _counted(http, base_url)).values())
    deadline = time.monotonic() + 90
    # Polls another process over HTTP: there is no event to wait on.
    while sum((await _counted(http, base_url)).values()) == first:
        if time.monotonic() > deadline:
            pytest.fail("the sink stored nothing new for 90 s")
        await asyncio.sleep(0.05)


async def _counted(
    http: aiohttp.ClientSession, base_url: str
) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for row in await count_rows(http, base_url, window="day"):
        counts[(row["pod_id"], row["bucket_start"])] += row["total"]
    return counts


async def test_kills_during_ingest_lose_and_duplicate_nothing(
    pipeline: RunProcess,
) -> None:
    """Counts after three SIGKILLs equal the accepted events exactly."""
    events = _events(random.Random(7))
    expected: Counter[tuple[str, str]] = Counter(
        (e["pod_id"], e["occurred_at"][:10] + "T00:00:00Z") for e in events
    )
    url = pipeline.base_url + "/api/analytics/events"
    retries = kills = 0

    async with aiohttp.ClientSession() as http:
        batches = [events[i : i + BATCH] for i in range(0, EVENTS, BATCH)]

        async def client() -> None:
            nonlocal retries
            for batch in batches:
                retries += await _post_until_accepted(http, url, batch)

        async def killer() -> None:
            nonlocal kills
            for _ in range(KILLS):
                await _until_sink_is_storing(http, pipeline.base_url)
                await asyncio.sleep(random.uniform(0.0, 0.3))
                await asyncio.to_thread(pipeline.kill)
                kills += 1
                await asyncio.to_thread(pipeline.start)

        await asyncio.gather(client(), killer())

        deadline = time.monotonic() + 90
        counted = await _counted(http, pipeline.base_url)
        while sum(counted.values()) < EVENTS and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            counted = await _counted(http, pipeline.base_url)
        await asyncio.sleep(2.0)  # a late duplicate would show up now
        counted = await _counted(http, pipeline.base_url)

    missing = sum((expected - counted).values())
    extra = sum((counted - expected).values())
    print(
        f"\nsent {EVENTS} events in {len(batches)} batches, {kills} kills, "
        f"{retries} retried requests: {missing} missing, {extra} extra"
    )
    assert kills == KILLS
    assert (missing, extra) == (0, 0)
    assert counted == expected
