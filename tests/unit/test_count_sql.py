"""The count queries: bound paging parameters, window intervals, stable order."""

from __future__ import annotations

import itertools

import pytest

from gateway_analytics.clickhouse.counts import Entity, Window, count_sql

INTERVALS = {
    Window.HOUR: "INTERVAL 1 HOUR",
    Window.DAY: "INTERVAL 1 DAY",
    Window.WEEK: "INTERVAL 1 WEEK",
}
EVERY_QUERY = list(itertools.product(Entity, Window))


def query_id(value: object) -> str:
    """The test id of an Entity or Window parameter."""
    return str(value)


def test_every_window_has_an_interval() -> None:
    """Window lists exactly hour, day and week, each with its interval."""
    windows = list(Window)

    intervals = {window: window.interval for window in windows}

    assert intervals == INTERVALS


@pytest.mark.parametrize(("entity", "window"), EVERY_QUERY, ids=query_id)
def test_paging_is_bound_as_typed_parameters(entity: Entity, window: Window) -> None:
    """LIMIT and OFFSET take the {limit:UInt32} and {offset:UInt64} parameters."""
    sql = count_sql(entity, window)

    last_line = sql.strip().splitlines()[-1]

    assert last_line == "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"


@pytest.mark.parametrize(("entity", "window"), EVERY_QUERY, ids=query_id)
def test_buckets_use_the_window_interval(entity: Entity, window: Window) -> None:
    """bucket_start and bucket_end use the window's interval and no other."""
    sql = count_sql(entity, window)

    used = {name: sql.count(interval) for name, interval in INTERVALS.items()}

    assert used == {name: 2 if name is window else 0 for name in INTERVALS}
    assert f"toStartOfInterval(occurred_at, {INTERVALS[window]})" in sql


@pytest.mark.parametrize(("entity", "window"), EVERY_QUERY, ids=query_id)
def test_rows_are_ordered_newest_bucket_then_entity(
    entity: Entity, window: Window
) -> None:
    """Rows are ordered by bucket_start descending, then entity_id ascending."""
    sql = count_sql(entity, window)

    order_lines = [line for line in sql.splitlines() if "ORDER BY" in line]

    assert order_lines == ["ORDER BY bucket_start DESC, entity_id ASC"]


@pytest.mark.parametrize(("entity", "window"), EVERY_QUERY, ids=query_id)
def test_query_reads_the_events_table_grouped_by_bucket(
    entity: Entity, window: Window
) -> None:
    """Every query counts analytics_events grouped by entity and bucket."""
    sql = count_sql(entity, window)

    lines = [line.strip() for line in sql.splitlines()]

    assert "FROM analytics_events" in lines
    assert "GROUP BY entity_id, bucket_start" in lines
    assert "count() AS total" in lines


@pytest.mark.parametrize("window", list(Window), ids=query_id)
def test_pod_counts_skip_events_without_a_pod(window: Window) -> None:
    """The pod query counts only events that name a pod."""
    sql = count_sql(Entity.POD, window)

    lines = [line.strip() for line in sql.splitlines()]

    assert "WHERE pod_id IS NOT NULL" in lines
    assert "ARRAY JOIN" not in sql


@pytest.mark.parametrize("window", list(Window), ids=query_id)
def test_artifact_counts_read_both_artifact_columns(window: Window) -> None:
    """The artifact query counts artifact_id and every entry of artifact_ids."""
    sql = count_sql(Entity.ARTIFACT, window)

    array_join = next(line for line in sql.splitlines() if "ARRAY JOIN" in line)

    assert "arrayDistinct" in array_join
    assert "artifact_ids" in array_join
    assert "artifact_id IS NULL" in array_join


def test_queries_differ_for_every_entity_and_window() -> None:
    """No two entity and window pairs share the same SQL text."""
    queries = [count_sql(entity, window) for entity, window in EVERY_QUERY]

    distinct = set(queries)

    assert len(distinct) == len(EVERY_QUERY) == 6
