"""``gateway-analytics run`` as a user starts it: POST events, GET their counts.

The process runs its own Kafka broker and embedded ClickHouse on free ports;
the test computes every expected count itself and compares them with both
endpoints for every window, across all pages.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from gateway_analytics.shared.local_kafka import free_port
from tests.e2e.running import RunProcess

pytestmark = pytest.mark.e2e

WINDOWS = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
EDGE_TIMES = [
    "2024-05-26T23:59:59.999Z",  # last instant of a Sunday, of a week
    "2024-05-27T00:00:00Z",  # Monday midnight: opens hour, day and week
    "2024-05-27T05:30:00+05:30",  # the same instant written in India
    "2024-05-26T20:00:00-04:00",  # and in New York
    "2024-05-27T00:59:59.999+00:00",
    "2024-05-27T01:00:00Z",
]
STORE_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunProcess]:
    """A running ``gateway-analytics run``, which must stop cleanly on SIGTERM."""
    running = RunProcess(
        data_dir=tmp_path_factory.mktemp("run"),
        port=free_port(),
        settings={"ANALYTICS_SINK_FLUSH_INTERVAL_S": "0.3"},
    )
    running.start()
    yield running
    assert running.stop() == 0, running.log_path.read_text()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for one test."""
    async with aiohttp.ClientSession() as session:
        yield session


def _generated_events(rng: random.Random) -> list[dict[str, Any]]:
    pods = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(12)]
    artifacts = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(9)]
    base = datetime(2024, 5, 13, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    for index in range(3000):
        if index < len(EDGE_TIMES) * 10:
            occurred_at = EDGE_TIMES[index % len(EDGE_TIMES)]
        else:
            moment = base + timedelta(seconds=rng.randrange(21 * 24 * 3600))
            offset = timedelta(minutes=rng.choice([0, 330, 345, -240, 60]))
            occurred_at = (
                (moment.astimezone(UTC) + offset)
                .replace(tzinfo=timezone(offset))
                .isoformat()
            )
        pod = rng.choice([*pods, None])
        kind = rng.choice(
            ["pod_entered", "artifact_viewed", "checkout_started", "sale_completed"]
        )
        event: dict[str, Any] = {"type": kind, "occurred_at": occurred_at}
        if kind == "pod_entered":
            event["pod_id"] = pod or pods[0]
        elif pod:
            event["pod_id"] = pod
        if kind in ("artifact_viewed", "sale_completed"):
            event["artifact_id"] = rng.choice(artifacts)
        if kind == "sale_completed":
            event["order_id"] = str(uuid.uuid4())
        if kind == "checkout_started":
            event["artifact_ids"] = rng.sample(artifacts, rng.randint(1, 4))
        events.append(event)
    return events


def _bucket(moment: datetime, window: str) -> datetime:
    if window == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "day":
        return day
    return day - timedelta(days=day.weekday())


def _expected(
    events: list[dict[str, Any]], received: dict[int, datetime], window: str
) -> dict[str, Counter[tuple[str, datetime]]]:
    counts: dict[str, Counter[tuple[str, datetime]]] = {
        "pod_id": Counter(),
        "artifact_id": Counter(),
    }
    for index, event in enumerate(events):
        text = event.get("occurred_at")
        moment = (
            datetime.fromisoformat(text).astimezone(UTC) if text else received[index]
        )
        start = _bucket(moment, window)
        if "pod_id" in event:
            counts["pod_id"][(event["pod_id"], start)] += 1
        named = set(event.get("artifact_ids", [])) | (
            {event["artifact_id"]} if "artifact_id" in event else set()
        )
        for artifact in named:
            counts["artifact_id"][(artifact, start)] += 1
    return counts


async def _all_rows(
    http: aiohttp.ClientSession, url: str, window: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        async with http.get(
            url, params={"window": window, "page": page, "page_size": 200}
        ) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        assert (body["window"], body["page"], body["page_size"]) == (window, page, 200)
        rows += body["data"]
        if not body["has_more"]:
            return rows
        page += 1


async def _post(
    http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    async with http.post(url, json={"events": events}) as response:
        assert response.status == 202, await response.text()
        body: dict[str, Any] = await response.json()
        return body


def _wait_clear_of_hour_edge() -> None:
    """Keep events without occurred_at from straddling an hour edge."""
    now = datetime.now(UTC)
    if now.minute == 59 and now.second >= 55:
        time.sleep(6)


async def test_counts_match_what_was_sent_for_every_window(
    service: RunProcess, http: aiohttp.ClientSession
) -> None:
    """A few thousand events in, exactly their counts out, on both endpoints."""
    events = _generated_events(random.Random(20240527))
    timeless = [{"type": "pod_entered", "pod_id": str(uuid.uuid4())} for _ in range(25)]
    ingest_url = service.base_url + "/api/analytics/events"
    accepted = 0
    for start in range(0, len(events), 500):
        accepted += (await _post(http, ingest_url, events[start : start + 500]))[
            "accepted"
        ]
    _wait_clear_of_hour_edge()
    before = datetime.now(UTC)
    accepted += (await _post(http, ingest_url, timeless))["accepted"]
    received = {len(events) + i: before for i in range(len(timeless))}
    all_events = events + timeless

    await _await_total(
        http, service.base_url, len([e for e in all_events if "pod_id" in e])
    )

    assert accepted == len(all_events)
    for window, width in WINDOWS.items():
        expected = _expected(all_events, received, window)
        for entity, path in (("pod_id", "pods"), ("artifact_id", "artifacts")):
            rows = await _all_rows(
                http, f"{service.base_url}/api/analytics/{path}", window
            )
            got = {
                (row[entity], datetime.fromisoformat(row["bucket_start"])): row["total"]
                for row in rows
            }
            assert got == dict(expected[entity]), (window, entity)
            assert all(
                datetime.fromisoformat(row["bucket_end"])
                - datetime.fromisoformat(row["bucket_start"])
                == width
                for row in rows
            )
            assert all(row["bucket_start"].endswith(":00Z") for row in rows)
            order = [
                (-datetime.fromisoformat(r["bucket_start"]).timestamp(), r[entity])
                for r in rows
            ]
            assert order == sorted(order)


async def _await_total(
    http: aiohttp.ClientSession, base_url: str, expected: int
) -> None:
    deadline = time.monotonic() + STORE_TIMEOUT_S
    total = 0
    while time.monotonic() < deadline:
        rows = await _all_rows(http, base_url + "/api/analytics/pods", "week")
        total = sum(row["total"] for row in rows)
        if total >= expected:
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"only {total} of {expected} pod events were counted in time")


async def test_rejections_reach_the_client_from_the_running_service(
    service: RunProcess, http: aiohttp.ClientSession
) -> None:
    """Malformed, invalid and oversized requests get their 4xx from `run`."""
    url = service.base_url + "/api/analytics/events"
    bad_event = {"events": [{"type": "pod_entered", "pod_id": "nope"}]}
    too_many = {"events": [{"type": "pod_entered", "pod_id": str(uuid.uuid4())}] * 1001}

    async with http.post(url, data=b"{") as malformed:
        assert malformed.status == 400
    async with http.post(url, json=bad_event) as invalid:
        assert invalid.status == 400
        assert (await invalid.json())["problems"][0]["path"] == "pod_id"
    async with http.post(url, json=too_many) as crowded:
        assert crowded.status == 413
    async with http.post(
        url,
        data=gzip.compress(json.dumps({"events": []}).encode() + b" " * 5_000_000),
        headers={"Content-Encoding": "gzip"},
    ) as bomb:
        assert bomb.status == 413
    async with http.get(service.base_url + "/api/analytics/pods?window=year") as query:
        assert query.status == 400
