"""Migrations against the embedded ClickHouse: applied once, recorded."""

from __future__ import annotations

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import COLUMNS, TABLE
from gateway_analytics.clickhouse.migrations import load_migrations, migrate


async def test_migrating_again_applies_nothing(clickhouse: ClickHouse) -> None:
    """A migrated database records every version and a second run is a no-op."""
    applied = await migrate(clickhouse)

    rows = await clickhouse.query("SELECT version FROM schema_migrations ORDER BY 1")
    assert applied == []
    assert [row[0] for row in rows] == [m.version for m in load_migrations()]


async def test_events_table_has_the_columns_the_sink_writes(
    clickhouse: ClickHouse,
) -> None:
    """analytics_events is a MergeTree with exactly the sink's columns."""
    columns = await clickhouse.query(
        "SELECT name, type FROM system.columns "
        "WHERE database = currentDatabase() AND table = {table:String} "
        "ORDER BY position",
        {"table": TABLE},
    )
    engine = await clickhouse.query(
        "SELECT engine FROM system.tables "
        "WHERE database = currentDatabase() AND name = {table:String}",
        {"table": TABLE},
    )

    assert tuple(name for name, _ in columns) == COLUMNS
    assert dict(columns)["occurred_at"] == "DateTime64(3, 'UTC')"
    assert dict(columns)["received_at"] == "DateTime64(3, 'UTC')"
    assert engine == [("MergeTree",)]
