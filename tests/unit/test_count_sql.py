"""The count queries: rollups only, bound parameters, window intervals, order."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest

from gateway_analytics.clickhouse.counts import (
    CountQuery,
    Entity,
    Window,
    count_sql,
    format_instant,
)

INTERVALS = {
    Window.HOUR: "INTERVAL 1 HOUR",
    Window.DAY: "INTERVAL 1 DAY",
    Window.WEEK: "INTERVAL 1 WEEK",
}
EVERY_QUERY = list(itertools.product(Entity, Window))
ROLLUP_OF = {Entity.POD: "pod_counts", Entity.ARTIFACT: "artifact_counts"}


def query_id(value: object) -> str:
    """The test id of an Entity or Window parameter."""
    return str(value)


@pytest.mark.parametrize(("entity", "window"), EVERY_QUERY, ids=query_id)
def test_paging_is_bound_as_typed_parameters(entity: Entity, window: Window) -> None:
    """LIMIT and OFFSET take the {limit:UInt32} and {offset:UInt64} parameters."""
    sql = count_sql(CountQuery(entity=entity, window=window), ())

    last_line = sql.strip().splitlines()[-1]

    assert last_line == "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"


@pytest.mark.parametrize(("entity", "window"), EVERY_QUERY, ids=query_id)
def test_buckets_use_the_window_interval_in_the_bound_zone(
    entity: Entity, window: Window
) -> None:
    """Buckets start with toStartOfInterval of the window, in zone {tz:String}."""
    sql = count_sql(CountQuery(entity=entity, window=window), ())

    used = {name: interval in sql for name, interval in INTERVALS.items()}

    assert used == {name: name is window for name in INTERVALS}
    assert f"toStartOfInterval(bucket, {INTERVALS[window]}, {{tz:String}})" in sql


@pytest.mark.parametrize(("entity", "window"), EVERY_QUERY, ids=query_id)
def test_counts_are_summed_from_the_rollup_never_the_events_table(
    entity: Entity, window: Window
) -> None:
    """Every query sums its entity's rollup, grouped by entity and bucket."""
    sql = count_sql(CountQuery(entity=entity, window=window), ())

    lines = [line.strip() for line in sql.splitlines()]

    assert f"FROM {ROLLUP_OF[entity]}" in lines
    assert "analytics_events" not in sql
    assert f"GROUP BY {entity.value}, bucket_start" in lines
    assert "sum(total) AS events" in lines
    assert "ORDER BY bucket_start DESC, entity_id ASC" in lines


def test_conditions_are_joined_into_one_where() -> None:
    """Conditions are ANDed; without any the query reads every row."""
    query = CountQuery(entity=Entity.POD, entity_ids=(uuid.uuid4(),))

    filtered = count_sql(query, ("a = 1", "b = 2"))
    unfiltered = count_sql(query, ())

    assert "WHERE a = 1 AND b = 2" in filtered
    assert "WHERE 1" in unfiltered


def test_instants_are_written_in_utc_with_z_without_a_zone() -> None:
    """No zone: RFC 3339 in UTC ending in Z, as the seed shows."""
    seconds = int(datetime(2024, 5, 20, tzinfo=UTC).timestamp())

    text = format_instant(seconds, None)

    assert text == "2024-05-20T00:00:00Z"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/New_York", "2024-03-10T20:00:00-04:00"),
        ("Asia/Kolkata", "2024-03-11T05:30:00+05:30"),
        ("Asia/Kathmandu", "2024-03-11T05:45:00+05:45"),
        ("UTC", "2024-03-11T00:00:00+00:00"),
    ],
)
def test_instants_carry_the_zone_offset_at_that_instant(
    zone: str, expected: str
) -> None:
    """With a zone, the offset written is the zone's at that instant."""
    seconds = int(datetime(2024, 3, 11, tzinfo=UTC).timestamp())

    text = format_instant(seconds, zone)

    assert text == expected
