"""The count endpoints' from, to, type, id and tz parameters, by example."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import ConsumedRecord, insert_records
from gateway_analytics.shared.events import EventRecord
from tests.integration.count_reference import api_client, shared_database

POD_A = "00000000-0000-4000-8000-00000000000a"
POD_B = "11111111-0000-4000-8000-00000000000b"
POD_C = "22222222-0000-4000-8000-00000000000c"
ARTIFACT = "6b7ccf45-2a29-4c78-8b21-2d3f1ad97f77"

Params = list[tuple[str, str]]


@pytest.fixture
async def client(clickhouse: ClickHouse) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The API on a test server, reading from a fresh database."""
    async with api_client(clickhouse) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def empty_database(clickhouse_url: str) -> Iterator[ClickHouse]:
    """A database no test stores events in, shared by this module."""
    with shared_database(clickhouse_url) as clickhouse:
        yield clickhouse


@pytest.fixture
async def idle_client(empty_database: ClickHouse) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The API over a database without events, for answers that need none."""
    async with api_client(empty_database) as test_client:
        yield test_client


async def _store(clickhouse: ClickHouse, *events: dict[str, Any]) -> None:
    records = []
    for offset, event in enumerate(events):
        record = EventRecord.model_validate(
            {
                "received_at": event["occurred_at"],
                "event": {"event_id": str(uuid.uuid4()), **event},
            }
        )
        records.append(ConsumedRecord(record, partition=0, offset=offset))
    await insert_records(clickhouse, records)


async def _store_pod_visits(clickhouse: ClickHouse, *times: str) -> None:
    await _store(
        clickhouse,
        *({"type": "pod_entered", "pod_id": POD_A, "occurred_at": at} for at in times),
    )


async def _get(
    client: TestClient,  # type: ignore[type-arg]
    params: Params,
    path: str = "/api/analytics/pods",
) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _buckets(
    client: TestClient,  # type: ignore[type-arg]
    params: Params,
) -> list[tuple[str, str, int]]:
    body = await _get(client, params)
    return [(r["bucket_start"], r["bucket_end"], r["total"]) for r in body["data"]]


async def _refusal(
    client: TestClient,  # type: ignore[type-arg]
    params: Params,
    path: str = "/api/analytics/pods",
) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status == 400, await response.text()
    body: dict[str, Any] = await response.json()
    assert body["error"] == "invalid_parameter"
    return body


# --- from and to --------------------------------------------------------------


async def test_from_is_inclusive_and_to_is_exclusive(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """An event exactly at from counts; one exactly at to does not."""
    await _store_pod_visits(
        clickhouse,
        "2024-05-20T09:59:59.999Z",
        "2024-05-20T10:00:00Z",
        "2024-05-20T11:59:59.999Z",
        "2024-05-20T12:00:00Z",
    )

    buckets = await _buckets(
        client,
        [
            ("window", "hour"),
            ("from", "2024-05-20T10:00:00Z"),
            ("to", "2024-05-20T12:00:00Z"),
        ],
    )

    assert buckets == [
        ("2024-05-20T11:00:00Z", "2024-05-20T12:00:00Z", 1),
        ("2024-05-20T10:00:00Z", "2024-05-20T11:00:00Z", 1),
    ]


async def test_a_range_cutting_a_bucket_counts_only_its_own_part(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """A day cut by from and to keeps its whole-day bounds but counts the range."""
    await _store_pod_visits(
        clickhouse,
        "2024-05-20T05:00:00Z",
        "2024-05-20T06:14:00Z",
        "2024-05-20T06:15:00Z",
        "2024-05-20T17:44:59Z",
        "2024-05-20T17:45:00Z",
    )

    buckets = await _buckets(
        client, [("from", "2024-05-20T06:15:00Z"), ("to", "2024-05-20T17:45:00Z")]
    )

    assert buckets == [("2024-05-20T00:00:00Z", "2024-05-21T00:00:00Z", 2)]


async def test_from_and_to_take_any_offset(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """from=2024-03-11T00:00:00-04:00 is the instant 04:00 UTC."""
    await _store_pod_visits(clickhouse, "2024-03-11T03:59:59Z", "2024-03-11T04:00:00Z")

    buckets = await _buckets(
        client, [("window", "hour"), ("from", "2024-03-11T00:00:00-04:00")]
    )

    assert buckets == [("2024-03-11T04:00:00Z", "2024-03-11T05:00:00Z", 1)]


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("2024-05-20T10:00:00Z", "2024-05-20T10:00:00Z"),
        ("2024-05-20T11:00:00Z", "2024-05-20T10:00:00Z"),
        ("2024-05-20T10:00:00+02:00", "2024-05-20T08:00:00Z"),
    ],
)
async def test_a_range_whose_from_is_not_before_its_to_is_refused(
    idle_client: TestClient,  # type: ignore[type-arg]
    since: str,
    until: str,
) -> None:
    """from equal to or after to, compared as instants, is a 400."""
    body = await _refusal(idle_client, [("from", since), ("to", until)])

    assert body["message"] == "from must be before to."


@pytest.mark.parametrize(
    "since",
    ["2024-05-20T10:05:00Z", "2024-05-20T10:00:30Z", "2024-05-20T10:00:00.5Z"],
)
async def test_a_from_off_the_quarter_hour_is_refused_by_name(
    idle_client: TestClient,  # type: ignore[type-arg]
    since: str,
) -> None:
    """Counts are kept per quarter hour, so from must fall on one."""
    body = await _refusal(idle_client, [("from", since)])

    assert body["message"].startswith("from: must fall on a quarter hour")
    assert body["problems"] == [
        {"path": "from", "message": body["message"][len("from: ") : -1]}
    ]


async def test_a_quarter_hour_in_a_half_hour_zone_is_accepted(
    idle_client: TestClient,  # type: ignore[type-arg]
) -> None:
    """17:45+05:30 is 12:15 UTC: on a quarter hour, though not a local hour."""
    body = await _get(idle_client, [("to", "2024-05-20T17:45:00+05:30")])

    assert body["data"] == []


@pytest.mark.parametrize("value", ["yesterday", "1716192000", "2024-05-20T10:00:00"])
async def test_a_from_that_is_not_an_rfc3339_instant_is_refused(
    idle_client: TestClient,  # type: ignore[type-arg]
    value: str,
) -> None:
    """Words, Unix seconds and times without an offset are not instants."""
    body = await _refusal(idle_client, [("from", value)])

    assert body["message"].startswith("from: ")


# --- type, pod_id and artifact_id ---------------------------------------------


async def test_types_repeat_and_select_what_is_counted(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Each type given is counted; the others are left out."""
    at = "2024-05-20T12:00:00Z"
    await _store(
        clickhouse,
        {"type": "pod_entered", "pod_id": POD_A, "occurred_at": at},
        {"type": "pod_entered", "pod_id": POD_A, "occurred_at": at},
        {
            "type": "artifact_viewed",
            "artifact_id": ARTIFACT,
            "pod_id": POD_A,
            "occurred_at": at,
        },
        {
            "type": "checkout_started",
            "artifact_ids": [ARTIFACT],
            "pod_id": POD_A,
            "occurred_at": at,
        },
    )

    entered = await _buckets(client, [("type", "pod_entered")])
    both = await _buckets(
        client, [("type", "pod_entered"), ("type", "checkout_started")]
    )
    sales = await _buckets(client, [("type", "sale_completed")])

    day = ("2024-05-20T00:00:00Z", "2024-05-21T00:00:00Z")
    assert entered == [(*day, 2)]
    assert both == [(*day, 3)]
    assert sales == []


@pytest.mark.parametrize("path", ["/api/analytics/pods", "/api/analytics/artifacts"])
async def test_an_unknown_type_is_refused(
    idle_client: TestClient,  # type: ignore[type-arg]
    path: str,
) -> None:
    """A type that is not an event type is a 400 listing the ones there are."""
    body = await _refusal(
        idle_client, [("type", "pod_entered"), ("type", "pod_left")], path
    )

    assert body["problems"] == [
        {
            "path": "type[1]",
            "message": "must be one of pod_entered, artifact_viewed, "
            "checkout_started, sale_completed (got 'pod_left')",
        }
    ]


async def test_pod_ids_repeat_and_select_the_pods_counted(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Only the pods named are answered, in id order within a bucket."""
    at = "2024-05-20T12:00:00Z"
    await _store(
        clickhouse,
        *(
            {"type": "pod_entered", "pod_id": pod, "occurred_at": at}
            for pod in (POD_C, POD_B, POD_A, POD_B)
        ),
    )

    body = await _get(client, [("pod_id", POD_C), ("pod_id", POD_B)])

    assert [(r["pod_id"], r["total"]) for r in body["data"]] == [
        (POD_B, 2),
        (POD_C, 1),
    ]


@pytest.mark.parametrize(
    ("path", "name"),
    [("/api/analytics/pods", "pod_id"), ("/api/analytics/artifacts", "artifact_id")],
)
@pytest.mark.parametrize("value", ["not-a-uuid", "1234", f"{POD_A}0"])
async def test_a_malformed_id_is_refused(
    idle_client: TestClient,  # type: ignore[type-arg]
    path: str,
    name: str,
    value: str,
) -> None:
    """An id that is not a UUID is a 400 naming the parameter and the value."""
    body = await _refusal(idle_client, [(name, POD_A), (name, value)], path)

    assert [problem["path"] for problem in body["problems"]] == [f"{name}[1]"]
    assert repr(value) in body["message"]


async def test_an_id_of_the_other_endpoint_is_ignored(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """artifact_id means nothing to the pod counts, so every pod is answered."""
    await _store_pod_visits(clickhouse, "2024-05-20T12:00:00Z")

    body = await _get(client, [("artifact_id", ARTIFACT)])

    assert [r["pod_id"] for r in body["data"]] == [POD_A]


# --- has_more with filters ----------------------------------------------------


async def _store_three_days_of_three_pods(clickhouse: ClickHouse) -> None:
    """Pods A, B and C entered on 2024-05-20, 21 and 22; pod A also sold."""
    days = [f"2024-05-{day}T08:00:00Z" for day in (20, 21, 22)]
    sales = [
        {
            "type": "sale_completed",
            "order_id": str(uuid.uuid4()),
            "artifact_id": ARTIFACT,
            "pod_id": POD_A,
            "occurred_at": at,
        }
        for at in days
    ]
    await _store(
        clickhouse,
        *(
            {"type": "pod_entered", "pod_id": pod, "occurred_at": at}
            for pod in (POD_A, POD_B, POD_C)
            for at in days
        ),
        *sales,
    )


async def test_has_more_is_false_when_the_filtered_rows_fill_the_page_exactly(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Two pods on three days are six rows: page_size=6 holds them all."""
    await _store_three_days_of_three_pods(clickhouse)

    body = await _get(
        client,
        [("pod_id", POD_A), ("pod_id", POD_B), ("page_size", "6")],
    )

    assert len(body["data"]) == 6
    assert body["has_more"] is False


async def test_has_more_is_true_when_one_filtered_row_is_left(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """With a seventh matching row, page one says more follow and page two has it."""
    await _store_three_days_of_three_pods(clickhouse)
    await _store_pod_visits(clickhouse, "2024-05-19T08:00:00Z")
    params = [("pod_id", POD_A), ("pod_id", POD_B), ("page_size", "6")]

    first = await _get(client, params)
    second = await _get(client, [*params, ("page", "2")])

    assert (len(first["data"]), first["has_more"]) == (6, True)
    assert [(r["pod_id"], r["bucket_start"]) for r in second["data"]] == [
        (POD_A, "2024-05-19T00:00:00Z")
    ]
    assert second["has_more"] is False


async def test_has_more_is_exact_with_a_type_filter_and_no_ids(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Only pod A has sales: its three days fill page_size=3 with nothing after."""
    await _store_three_days_of_three_pods(clickhouse)

    exact = await _get(client, [("type", "sale_completed"), ("page_size", "3")])
    short = await _get(client, [("type", "sale_completed"), ("page_size", "2")])

    assert [r["pod_id"] for r in exact["data"]] == [POD_A] * 3
    assert exact["has_more"] is False
    assert short["has_more"] is True


# --- tz -----------------------------------------------------------------------


async def test_without_tz_bounds_are_utc_written_with_z(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """No tz: buckets are UTC days and both bounds end in Z."""
    await _store_pod_visits(clickhouse, "2024-03-10T12:00:00-05:00")

    buckets = await _buckets(client, [])

    assert buckets == [("2024-03-10T00:00:00Z", "2024-03-11T00:00:00Z", 1)]


async def test_tz_utc_writes_its_offset_rather_than_z(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """tz=UTC gives the same buckets as no tz, written with +00:00."""
    await _store_pod_visits(clickhouse, "2024-03-10T17:00:00Z")

    buckets = await _buckets(client, [("tz", "UTC")])

    assert buckets == [("2024-03-10T00:00:00+00:00", "2024-03-11T00:00:00+00:00", 1)]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "EST5EDT6", "utc", ""])
async def test_an_unknown_tz_is_refused(
    idle_client: TestClient,  # type: ignore[type-arg]
    zone: str,
) -> None:
    """tz must be an IANA zone name, spelled as the database spells it."""
    body = await _refusal(idle_client, [("tz", zone)])

    assert body["message"].startswith("tz: must be an IANA time zone name")


async def test_a_new_york_day_in_march_lasts_23_hours(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """2024-03-10 runs from 00:00-05:00 to 00:00-04:00; its edges hold."""
    await _store_pod_visits(
        clickhouse,
        "2024-03-10T04:59:59Z",
        "2024-03-10T05:00:00Z",
        "2024-03-11T03:59:59Z",
        "2024-03-11T04:00:00Z",
    )

    buckets = await _buckets(client, [("tz", "America/New_York")])

    assert buckets == [
        ("2024-03-11T00:00:00-04:00", "2024-03-12T00:00:00-04:00", 1),
        ("2024-03-10T00:00:00-05:00", "2024-03-11T00:00:00-04:00", 2),
        ("2024-03-09T00:00:00-05:00", "2024-03-10T00:00:00-05:00", 1),
    ]


async def test_a_new_york_day_in_november_lasts_25_hours(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """2024-11-03 runs from 00:00-04:00 to 00:00-05:00; its edges hold."""
    await _store_pod_visits(
        clickhouse,
        "2024-11-03T03:59:59Z",
        "2024-11-03T04:00:00Z",
        "2024-11-04T04:59:59Z",
        "2024-11-04T05:00:00Z",
    )

    buckets = await _buckets(client, [("tz", "America/New_York")])

    assert buckets == [
        ("2024-11-04T00:00:00-05:00", "2024-11-05T00:00:00-05:00", 1),
        ("2024-11-03T00:00:00-04:00", "2024-11-04T00:00:00-05:00", 2),
        ("2024-11-02T00:00:00-04:00", "2024-11-03T00:00:00-04:00", 1),
    ]


async def test_the_repeated_hour_of_november_is_two_buckets(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """01:00-04:00 and 01:00-05:00 are different hours, an hour apart."""
    await _store_pod_visits(clickhouse, "2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z")

    buckets = await _buckets(client, [("window", "hour"), ("tz", "America/New_York")])

    assert buckets == [
        ("2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00", 1),
        ("2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00", 1),
    ]


async def test_the_missing_hour_of_march_is_skipped(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """The hour after 01:00-05:00 is 03:00-04:00; no bucket is named 02:00."""
    await _store_pod_visits(clickhouse, "2024-03-10T06:59:59Z", "2024-03-10T07:00:00Z")

    buckets = await _buckets(client, [("window", "hour"), ("tz", "America/New_York")])

    assert buckets == [
        ("2024-03-10T03:00:00-04:00", "2024-03-10T04:00:00-04:00", 1),
        ("2024-03-10T01:00:00-05:00", "2024-03-10T03:00:00-04:00", 1),
    ]


async def test_kolkata_hours_start_at_half_past_utc(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """12:29:59Z and 12:30:00Z fall in the local hours 17:00 and 18:00 (+05:30)."""
    await _store_pod_visits(clickhouse, "2024-05-20T12:29:59Z", "2024-05-20T12:30:00Z")

    buckets = await _buckets(client, [("window", "hour"), ("tz", "Asia/Kolkata")])

    assert buckets == [
        ("2024-05-20T18:00:00+05:30", "2024-05-20T19:00:00+05:30", 1),
        ("2024-05-20T17:00:00+05:30", "2024-05-20T18:00:00+05:30", 1),
    ]


async def test_kathmandu_hours_start_at_quarter_past_utc(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """12:14:59Z and 12:15:00Z fall in the local hours 17:00 and 18:00 (+05:45)."""
    await _store_pod_visits(clickhouse, "2024-05-20T12:14:59Z", "2024-05-20T12:15:00Z")

    buckets = await _buckets(client, [("window", "hour"), ("tz", "Asia/Kathmandu")])

    assert buckets == [
        ("2024-05-20T18:00:00+05:45", "2024-05-20T19:00:00+05:45", 1),
        ("2024-05-20T17:00:00+05:45", "2024-05-20T18:00:00+05:45", 1),
    ]


async def test_kathmandu_days_start_at_quarter_past_six_utc_the_day_before(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Local midnight in Kathmandu is 18:15Z; the day edge splits there."""
    await _store_pod_visits(clickhouse, "2024-05-20T18:14:59Z", "2024-05-20T18:15:00Z")

    buckets = await _buckets(client, [("tz", "Asia/Kathmandu")])

    assert buckets == [
        ("2024-05-21T00:00:00+05:45", "2024-05-22T00:00:00+05:45", 1),
        ("2024-05-20T00:00:00+05:45", "2024-05-21T00:00:00+05:45", 1),
    ]


async def test_a_day_whose_midnight_is_skipped_starts_at_one(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Santiago's clocks jump from 00:00 to 01:00 on 2024-09-08: the day starts then."""
    await _store_pod_visits(clickhouse, "2024-09-08T03:59:59Z", "2024-09-08T04:00:00Z")

    buckets = await _buckets(client, [("tz", "America/Santiago")])

    assert buckets == [
        ("2024-09-08T01:00:00-03:00", "2024-09-09T00:00:00-03:00", 1),
        ("2024-09-07T00:00:00-04:00", "2024-09-08T01:00:00-03:00", 1),
    ]


async def test_a_page_past_the_last_is_empty(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Asking beyond the rows with filters set answers no rows and no more."""
    await _store_three_days_of_three_pods(clickhouse)

    body = await _get(
        client, [("pod_id", POD_A), ("type", "pod_entered"), ("page", "2")]
    )

    assert (body["data"], body["has_more"]) == ([], False)


async def test_weeks_start_on_local_monday_midnight(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """Sunday 23:59:59 in New York is Monday in UTC, yet still the week before."""
    await _store_pod_visits(clickhouse, "2024-05-20T03:59:59Z", "2024-05-20T04:00:00Z")

    weeks = await _buckets(client, [("window", "week"), ("tz", "America/New_York")])
    utc_weeks = await _buckets(client, [("window", "week")])

    assert weeks == [
        ("2024-05-20T00:00:00-04:00", "2024-05-27T00:00:00-04:00", 1),
        ("2024-05-13T00:00:00-04:00", "2024-05-20T00:00:00-04:00", 1),
    ]
    assert utc_weeks == [("2024-05-20T00:00:00Z", "2024-05-27T00:00:00Z", 2)]


async def test_a_week_across_the_march_change_ends_an_hour_sooner(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """The New York week of 2024-03-04 ends at Monday 00:00-04:00, 167 hours on."""
    await _store_pod_visits(clickhouse, "2024-03-10T12:00:00Z")

    weeks = await _buckets(client, [("window", "week"), ("tz", "America/New_York")])

    assert weeks == [("2024-03-04T00:00:00-05:00", "2024-03-11T00:00:00-04:00", 1)]


async def test_tz_and_a_range_in_its_offsets_select_one_local_day(
    client: TestClient,  # type: ignore[type-arg]
    clickhouse: ClickHouse,
) -> None:
    """from/to at the local midnights of 2024-03-10 count that 23-hour day."""
    await _store_pod_visits(
        clickhouse,
        "2024-03-10T04:59:59Z",
        "2024-03-10T05:00:00Z",
        "2024-03-11T03:59:59Z",
        "2024-03-11T04:00:00Z",
    )

    buckets = await _buckets(
        client,
        [
            ("tz", "America/New_York"),
            ("from", "2024-03-10T00:00:00-05:00"),
            ("to", "2024-03-11T00:00:00-04:00"),
        ],
    )

    assert buckets == [("2024-03-10T00:00:00-05:00", "2024-03-11T00:00:00-04:00", 2)]
