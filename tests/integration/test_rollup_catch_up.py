"""Catching the rollups up with the events table after they fell behind.

A rollup falls behind when a crash keeps the view's part of an insert from
landing while the events' part did (simulated by detaching the view around
an insert), or when events were stored before the views existed.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway_analytics.clickhouse.client import ClickHouse, connect
from gateway_analytics.clickhouse.counts import Entity, Window
from gateway_analytics.clickhouse.events_table import (
    TABLE,
    ConsumedRecord,
    insert_records,
)
from gateway_analytics.clickhouse.migrations import load_migrations, migrate
from gateway_analytics.clickhouse.rollups import ROLLUPS, catch_up_rollups
from gateway_analytics.streams.dead_letters import DiscardDeadLetters
from gateway_analytics.streams.replay import REBUILD_TABLE
from gateway_analytics.streams.sink import EventSink
from tests.integration.count_reference import (
    CountFilter,
    assert_counts_match,
    named_entities,
)
from tests.integration.generated_events import (
    PARTITIONS,
    generate_history,
    kafka_positions,
)

FEEDS = [rollup.feed for rollup in ROLLUPS]
# Every window in a zone that changes its clocks, and the hour in a zone offset
# by a quarter hour, for both entities.
CASES = [
    (entity, window, zone, CountFilter())
    for entity, (window, zone) in itertools.product(
        Entity,
        [
            (Window.HOUR, None),
            (Window.DAY, "America/New_York"),
            (Window.WEEK, "Europe/Berlin"),
            (Window.HOUR, "Asia/Kathmandu"),
        ],
    )
]
# Per entity kind and Kafka partition, how many times events name an entity.
Totals = dict[tuple[Entity, int], int]


def _history(seed: int) -> list[ConsumedRecord]:
    """Four hundred events with their positions on three partitions."""
    history = generate_history(seed=seed, events=400, pods=8, artifacts=12)
    return kafka_positions(history.records)


def _later_history(seed: int) -> list[ConsumedRecord]:
    """Four hundred more events, at offsets past those of any ``_history``."""
    return [c._replace(offset=c.offset + 1000) for c in _history(seed)]


async def _store(clickhouse: ClickHouse, consumed: Sequence[ConsumedRecord]) -> None:
    for start in range(0, len(consumed), 100):
        await insert_records(clickhouse, consumed[start : start + 100])


async def _store_past_the_views(
    clickhouse: ClickHouse,
    consumed: Sequence[ConsumedRecord],
    feeds: Sequence[str] = FEEDS,
) -> None:
    """Store events while the views are detached, as if their parts were lost."""
    for feed in feeds:
        await clickhouse.command(f"DETACH TABLE {feed}")
    try:
        await _store(clickhouse, consumed)
    finally:
        for feed in feeds:
            await clickhouse.command(f"ATTACH TABLE {feed}")


def _expected_totals(consumed: Sequence[ConsumedRecord]) -> Totals:
    totals: Counter[tuple[Entity, int]] = Counter()
    for entity in Entity:
        for record in consumed:
            named = named_entities(record.record.event, entity)
            totals[(entity, record.partition)] += len(named)
    return {key: total for key, total in totals.items() if total}


async def _rollup_totals(clickhouse: ClickHouse) -> Totals:
    totals: Totals = {}
    for entity in Entity:
        rows = await clickhouse.query(
            f"SELECT kafka_partition, sum(total) FROM {entity.rollup.table} "
            "GROUP BY kafka_partition"
        )
        totals |= {(entity, int(partition)): int(total) for partition, total in rows}
    return totals


async def test_catch_up_counts_a_batch_whose_rollup_parts_were_lost(
    clickhouse: ClickHouse,
) -> None:
    """Events the views never saw are counted, and the counts match the events."""
    counted, lost = _history(seed=1), _later_history(seed=2)
    await _store(clickhouse, counted)
    await _store_past_the_views(clickhouse, lost)
    behind = await _rollup_totals(clickhouse)

    await catch_up_rollups(clickhouse)

    assert behind == _expected_totals(counted)
    assert await _rollup_totals(clickhouse) == _expected_totals([*counted, *lost])
    records = [c.record for c in [*counted, *lost]]
    await assert_counts_match(clickhouse, records, CASES)


async def test_catching_up_again_counts_nothing_twice(clickhouse: ClickHouse) -> None:
    """A second catch-up, with nothing new stored, leaves every count as it was."""
    counted = _history(seed=3)
    lost = _later_history(seed=4)
    await _store(clickhouse, counted)
    await _store_past_the_views(clickhouse, lost)
    await catch_up_rollups(clickhouse)
    caught_up = await _rollup_totals(clickhouse)

    await catch_up_rollups(clickhouse)
    await catch_up_rollups(clickhouse, partitions=range(PARTITIONS))

    assert await _rollup_totals(clickhouse) == caught_up
    assert caught_up == _expected_totals([*counted, *lost])


async def test_catch_up_with_nothing_lost_changes_nothing(
    clickhouse: ClickHouse,
) -> None:
    """When the views saw every insert, catching up adds no count."""
    consumed = _history(seed=5)
    await _store(clickhouse, consumed)

    await catch_up_rollups(clickhouse)

    assert await _rollup_totals(clickhouse) == _expected_totals(consumed)


async def test_catch_up_touches_only_the_partitions_it_is_given(
    clickhouse: ClickHouse,
) -> None:
    """Partition 1 is caught up; partitions 0 and 2 stay as far behind as they were."""
    counted = _history(seed=6)
    lost = _later_history(seed=7)
    await _store(clickhouse, counted)
    await _store_past_the_views(clickhouse, lost)

    await catch_up_rollups(clickhouse, partitions=[1])

    complete = _expected_totals([*counted, *lost])
    behind = _expected_totals(counted)
    assert await _rollup_totals(clickhouse) == {
        key: complete[key] if key[1] == 1 else behind[key] for key in complete
    }


async def test_a_gap_in_one_rollup_is_filled_without_touching_the_other(
    clickhouse: ClickHouse,
) -> None:
    """Only the artifact view missed a batch: artifacts catch up, pods stay exact."""
    counted = _history(seed=8)
    lost = _later_history(seed=9)
    await _store(clickhouse, counted)
    await _store_past_the_views(clickhouse, lost, feeds=["artifact_counts_feed"])

    await catch_up_rollups(clickhouse)

    assert await _rollup_totals(clickhouse) == _expected_totals([*counted, *lost])


async def test_truncated_rollups_are_counted_again_whole(
    clickhouse: ClickHouse,
) -> None:
    """Rollups emptied under stored events are recounted from all of them."""
    consumed = _history(seed=10)
    await _store(clickhouse, consumed)
    for rollup in ROLLUPS:
        await clickhouse.command(f"TRUNCATE TABLE {rollup.table}")

    await catch_up_rollups(clickhouse)

    assert await _rollup_totals(clickhouse) == _expected_totals(consumed)
    await assert_counts_match(clickhouse, [c.record for c in consumed], CASES)


@pytest.fixture
async def unmigrated(clickhouse_url: str) -> AsyncIterator[ClickHouse]:
    """A database of its own with the events table and its intake, but none of
    the rollups: migrations 1 and 3 run by hand, unrecorded."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    clickhouse = connect(url=clickhouse_url, database=database)
    events_table, _rollups, intake = load_migrations()[:3]
    for statement in (*events_table.statements, *intake.statements):
        await clickhouse.command(statement)
    yield clickhouse
    await clickhouse.command(f"DROP DATABASE IF EXISTS `{database}`")
    await clickhouse.close()


async def test_events_stored_before_the_rollups_existed_are_counted_on_catch_up(
    unmigrated: ClickHouse,
) -> None:
    """Migrating creates empty rollups; the first catch-up counts the older events."""
    consumed = _history(seed=11)
    await _store(unmigrated, consumed)
    await migrate(unmigrated)
    empty = await _rollup_totals(unmigrated)

    await catch_up_rollups(unmigrated)

    assert empty == {}
    assert await _rollup_totals(unmigrated) == _expected_totals(consumed)
    await assert_counts_match(unmigrated, [c.record for c in consumed], CASES)


async def test_events_stored_before_the_rollups_existed_survive_a_live_insert(
    unmigrated: ClickHouse,
) -> None:
    """A sink's insert between migrate and the catch-up hides no older event."""
    older = _history(seed=16)
    newer = _later_history(seed=17)
    await _store(unmigrated, older)
    await migrate(unmigrated)
    await _store(unmigrated, newer)

    await catch_up_rollups(unmigrated)

    assert await _rollup_totals(unmigrated) == _expected_totals([*older, *newer])


def _sink(clickhouse: ClickHouse, table: str = TABLE) -> EventSink:
    return EventSink(
        clickhouse=clickhouse,
        dead_letters=DiscardDeadLetters(),
        dedup_window_s=3600,
        table=table,
    )


async def test_resuming_partitions_catches_their_rollups_up(
    clickhouse: ClickHouse,
) -> None:
    """A sink assigned partitions 0 and 2 counts what their rollups lack, no more."""
    counted = _history(seed=12)
    lost = _later_history(seed=13)
    await _store(clickhouse, counted)
    await _store_past_the_views(clickhouse, lost)

    resume_at = await _sink(clickhouse).resume_offsets([0, 2])

    last_lost = {c.partition: c.offset for c in lost}
    assert resume_at == {0: last_lost[0] + 1, 2: last_lost[2] + 1}
    complete = _expected_totals([*counted, *lost])
    behind = _expected_totals(counted)
    assert await _rollup_totals(clickhouse) == {
        key: behind[key] if key[1] == 1 else complete[key] for key in complete
    }


async def test_a_replay_sink_leaves_the_live_rollups_alone(
    clickhouse: ClickHouse,
) -> None:
    """Resuming into the replay's table catches up nothing of the live rollups."""
    counted = _history(seed=14)
    lost = _later_history(seed=15)
    await _store(clickhouse, counted)
    await _store_past_the_views(clickhouse, lost)
    await clickhouse.command(f"CREATE TABLE {REBUILD_TABLE} AS {TABLE}")

    resume_at = await _sink(clickhouse, REBUILD_TABLE).resume_offsets([0, 1, 2])

    assert resume_at == {0: 0, 1: 0, 2: 0}
    assert await _rollup_totals(clickhouse) == _expected_totals(counted)
