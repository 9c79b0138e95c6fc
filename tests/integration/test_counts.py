"""GET /api/analytics/pods and /artifacts over the embedded ClickHouse."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import ConsumedRecord, insert_records
from gateway_analytics.shared.events import EventRecord
from tests.integration.count_reference import api_client

POD_A = "00000000-0000-4000-8000-00000000000a"
POD_B = "ffffffff-0000-4000-8000-00000000000b"
ARTIFACT = "6b7ccf45-2a29-4c78-8b21-2d3f1ad97f77"
OTHER_ARTIFACT = "0b7ccf45-2a29-4c78-8b21-2d3f1ad97f77"


def _record(event: dict[str, Any]) -> EventRecord:
    event = {"event_id": str(uuid.uuid4()), **event}
    return EventRecord.model_validate(
        {"received_at": event["occurred_at"], "event": event}
    )


async def _store(clickhouse: ClickHouse, *events: dict[str, Any]) -> None:
    records = [
        ConsumedRecord(_record(event), partition=0, offset=offset)
        for offset, event in enumerate(events)
    ]
    await insert_records(clickhouse, records)


@pytest.fixture
async def client(clickhouse: ClickHouse) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The API on a test server, reading from a fresh database."""
    async with api_client(clickhouse) as test_client:
        yield test_client


async def _get(client: TestClient, path: str) -> dict[str, Any]:  # type: ignore[type-arg]
    response = await client.get(path)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_bucket_edges_belong_to_the_bucket_they_start(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """An event exactly on an edge opens the next bucket; one just before does not."""
    await _store(
        clickhouse,
        {
            "type": "pod_entered",
            "pod_id": POD_A,
            "occurred_at": "2024-05-26T23:59:59.999Z",
        },
        {"type": "pod_entered", "pod_id": POD_A, "occurred_at": "2024-05-27T00:00:00Z"},
        {
            "type": "pod_entered",
            "pod_id": POD_A,
            "occurred_at": "2024-05-27T01:00:00+01:00",
        },
    )

    hours = await _get(client, "/api/analytics/pods?window=hour")
    days = await _get(client, "/api/analytics/pods")
    weeks = await _get(client, "/api/analytics/pods?window=week")

    assert [
        (r["bucket_start"], r["bucket_end"], r["total"]) for r in hours["data"]
    ] == [
        ("2024-05-27T00:00:00Z", "2024-05-27T01:00:00Z", 2),
        ("2024-05-26T23:00:00Z", "2024-05-27T00:00:00Z", 1),
    ]
    assert [(r["bucket_start"], r["total"]) for r in days["data"]] == [
        ("2024-05-27T00:00:00Z", 2),
        ("2024-05-26T00:00:00Z", 1),
    ]
    assert days["window"] == "day"
    assert [
        (r["bucket_start"], r["bucket_end"], r["total"]) for r in weeks["data"]
    ] == [
        ("2024-05-27T00:00:00Z", "2024-06-03T00:00:00Z", 2),
        ("2024-05-20T00:00:00Z", "2024-05-27T00:00:00Z", 1),
    ]


async def test_artifacts_count_every_artifact_an_event_names_once(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """A checkout counts for each distinct artifact it lists; pods are not artifacts."""
    at = "2024-05-20T12:00:00Z"
    await _store(
        clickhouse,
        {
            "type": "checkout_started",
            "artifact_ids": [ARTIFACT, OTHER_ARTIFACT, ARTIFACT],
            "occurred_at": at,
        },
        {
            "type": "artifact_viewed",
            "artifact_id": ARTIFACT,
            "pod_id": POD_A,
            "occurred_at": at,
        },
        {
            "type": "sale_completed",
            "artifact_id": ARTIFACT,
            "order_id": POD_B,
            "occurred_at": at,
        },
        {"type": "pod_entered", "pod_id": POD_A, "occurred_at": at},
    )

    artifacts = await _get(client, "/api/analytics/artifacts")
    pods = await _get(client, "/api/analytics/pods")

    assert artifacts["data"] == [
        {
            "artifact_id": OTHER_ARTIFACT,
            "bucket_start": "2024-05-20T00:00:00Z",
            "bucket_end": "2024-05-21T00:00:00Z",
            "total": 1,
        },
        {
            "artifact_id": ARTIFACT,
            "bucket_start": "2024-05-20T00:00:00Z",
            "bucket_end": "2024-05-21T00:00:00Z",
            "total": 3,
        },
    ]
    assert pods["data"] == [
        {
            "pod_id": POD_A,
            "bucket_start": "2024-05-20T00:00:00Z",
            "bucket_end": "2024-05-21T00:00:00Z",
            "total": 2,
        },
    ]


async def test_pages_walk_every_row_once_in_a_stable_order(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Rows run newest bucket first, then by id as text; has_more is exact."""
    pods = sorted(str(uuid.uuid4()) for _ in range(7))
    days = ["2024-05-20", "2024-05-21", "2024-05-22"]
    await _store(
        clickhouse,
        *(
            {"type": "pod_entered", "pod_id": pod, "occurred_at": f"{day}T08:00:00Z"}
            for pod in pods
            for day in days
        ),
    )
    expected = [(pod, f"{day}T00:00:00Z") for day in reversed(days) for pod in pods]

    seen: list[tuple[str, str]] = []
    pages = []
    for page in range(1, 5):
        body = await _get(client, f"/api/analytics/pods?page={page}&page_size=6")
        seen += [(row["pod_id"], row["bucket_start"]) for row in body["data"]]
        pages.append(
            (body["page"], body["page_size"], len(body["data"]), body["has_more"])
        )

    assert seen == expected
    assert pages == [
        (1, 6, 6, True),
        (2, 6, 6, True),
        (3, 6, 6, True),
        (4, 6, 3, False),
    ]


async def test_page_size_above_the_maximum_is_reduced_and_said(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    """page_size=1000 is answered as page_size 200."""
    body = await _get(client, "/api/analytics/artifacts?page_size=1000")

    assert body == {
        "data": [],
        "window": "day",
        "page": 1,
        "page_size": 200,
        "has_more": False,
    }


@pytest.mark.parametrize(
    "query",
    [
        "window=month",
        "window=",
        "page=0",
        "page=-1",
        "page=x",
        "page_size=0",
        "page_size=2.5",
    ],
)
async def test_bad_parameters_are_refused_with_400(
    client: TestClient,  # type: ignore[type-arg]
    query: str,
) -> None:
    """Unknown windows and non-positive pages get a 400 naming the parameter."""
    for path in ("/api/analytics/pods", "/api/analytics/artifacts"):
        response = await client.get(f"{path}?{query}")

        assert response.status == 400
        body = await response.json()
        assert body["error"] == "invalid_parameter"
        assert query.split("=")[0] in body["message"]


async def test_parameter_values_never_reach_sql_as_text(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """A value built to break out of SQL is refused and leaves the table intact."""
    await _store(
        clickhouse,
        {"type": "pod_entered", "pod_id": POD_A, "occurred_at": "2024-05-20T00:00:00Z"},
    )

    response = await client.get(
        "/api/analytics/pods",
        params={"window": "day'; DROP TABLE analytics_events; --"},
    )

    assert response.status == 400
    rows = await clickhouse.query("SELECT count() FROM analytics_events")
    assert rows == [(1,)]
