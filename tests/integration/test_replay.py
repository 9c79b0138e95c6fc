"""replay --rebuild: the table rebuilt from the topic, counts unchanged."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.counts import (
    CountQuery,
    Entity,
    Window,
    fetch_counts,
)
from gateway_analytics.clickhouse.events_table import ConsumedRecord, insert_records
from gateway_analytics.shared.events import (
    EventRecord,
    PodEntered,
    encode_events,
    entity_key,
    resolve_records,
)
from gateway_analytics.shared.local_kafka import LocalKafka
from gateway_analytics.shared.publisher import KafkaPublisher
from gateway_analytics.streams.replay import TimeRange, rebuild
from tests.conftest import TopicFactory

DAY = datetime(2024, 5, 20, tzinfo=UTC)
PODS = [uuid.UUID(int=n, version=4) for n in range(1, 6)]


def _history() -> list[EventRecord]:
    """Ten days of events, plus every fifth event retried by its gateway."""
    events = [
        PodEntered(
            type="pod_entered",
            pod_id=PODS[n % len(PODS)],
            occurred_at=DAY + timedelta(hours=7 * n),
        )
        for n in range(40)
    ]
    records = resolve_records(events, received_at=DAY + timedelta(days=20))
    retries = [
        r.model_copy(update={"received_at": r.received_at + timedelta(seconds=30)})
        for r in records[::5]
    ]
    return records + retries


async def _publish(
    bootstrap_servers: str, topic: str, records: list[EventRecord]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, enable_idempotence=True
    )
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                topic, record.model_dump_json().encode(), key=entity_key(record)
            )
        await producer.send_and_wait(topic, b"poison", key=b"x")
    finally:
        await producer.stop()


async def _counts(clickhouse: ClickHouse) -> list[tuple[str, str, int]]:
    rows = await fetch_counts(
        clickhouse,
        CountQuery(entity=Entity.POD, window=Window.HOUR),
        limit=10_000,
        offset=0,
    )
    return [(row.entity_id, row.bucket_start, row.total) for row in rows]


async def _rebuild(
    clickhouse: ClickHouse, kafka: LocalKafka, topic: str, time_range: TimeRange
) -> int:
    report = await rebuild(
        clickhouse=clickhouse,
        bootstrap_servers=kafka.bootstrap_servers,
        topic=topic,
        time_range=time_range,
        batch_size=7,
        dedup_window_s=3600,
    )
    return report.events_stored


async def test_rebuilding_twice_gives_the_same_counts(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> None:
    """Retries and a poison record are judged alike on every rebuild, and
    nothing of the rebuild is left behind."""
    topic = await topic_factory()
    await _publish(kafka.bootstrap_servers, topic, _history())

    first_stored = await _rebuild(clickhouse, kafka, topic, TimeRange())
    first = await _counts(clickhouse)
    second_stored = await _rebuild(clickhouse, kafka, topic, TimeRange())
    second = await _counts(clickhouse)

    assert first_stored == second_stored == 40
    assert sum(total for *_, total in first) == 40
    assert second == first
    tables = await clickhouse.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND name LIKE 'analytics_events%' ORDER BY name"
    )
    assert tables == [
        ("analytics_events",),
        ("analytics_events_intake",),
        ("analytics_events_intake_feed",),
    ]


async def test_rebuilding_a_time_range_replaces_only_that_range(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> None:
    """A stray row inside the range is replaced; one outside it is kept."""
    topic = await topic_factory()
    await _publish(kafka.bootstrap_servers, topic, _history())
    await _rebuild(clickhouse, kafka, topic, TimeRange())
    expected = await _counts(clickhouse)
    since, until = DAY + timedelta(days=2), DAY + timedelta(days=5)
    strays = [
        EventRecord(
            received_at=DAY,
            event=PodEntered(
                type="pod_entered",
                pod_id=PODS[0],
                event_id=uuid.uuid4(),
                occurred_at=moment,
            ),
        )
        for moment in (since + timedelta(hours=1), until + timedelta(hours=1))
    ]
    # Rows claiming real topic positions, as a faulty earlier load would.
    await insert_records(
        clickhouse, [ConsumedRecord(s, 0, n) for n, s in enumerate(strays)]
    )

    stored = await _rebuild(clickhouse, kafka, topic, TimeRange(since, until))
    rebuilt = await _counts(clickhouse)

    assert 0 < stored < 40
    outside_stray = (str(PODS[0]), "2024-05-25T01:00:00Z", 1)
    assert sorted(rebuilt) == sorted([*expected, outside_stray])


async def _publish_as_the_api(
    bootstrap_servers: str, topic: str, batches: list[list[PodEntered]]
) -> list[str]:
    """Publish each batch as one request to the API would; the ids, in order."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, enable_idempotence=True
    )
    await producer.start()
    try:
        publisher = KafkaPublisher(producer=producer, topic=topic, timeout_s=30)
        event_ids = []
        for number, batch in enumerate(batches):
            received_at = DAY + timedelta(days=20, seconds=30 * number)
            encoded = encode_events(batch, received_at=received_at)
            await publisher.publish(encoded)
            event_ids.extend(event.event_id for event in encoded)
    finally:
        await producer.stop()
    return event_ids


async def test_rebuilding_what_the_api_wrote_counts_each_event_once(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> None:
    """Records of fresh events, whole or filtered by a range, and a client's
    resends under the ids the API minted, each count once."""
    topic = await topic_factory()
    moments = [DAY + timedelta(hours=7 * n) for n in range(40)]
    events = [
        PodEntered(type="pod_entered", pod_id=PODS[n % len(PODS)], occurred_at=moment)
        for n, moment in enumerate(moments)
    ]
    minted = await _publish_as_the_api(kafka.bootstrap_servers, topic, [events])
    resent = [
        event.model_copy(update={"event_id": uuid.UUID(event_id)})
        for event, event_id in list(zip(events, minted, strict=True))[::5]
    ]
    await _publish_as_the_api(kafka.bootstrap_servers, topic, [resent])

    stored = await _rebuild(clickhouse, kafka, topic, TimeRange())
    whole = await _counts(clickhouse)
    since, until = DAY + timedelta(days=2), DAY + timedelta(days=5)
    in_range = await _rebuild(clickhouse, kafka, topic, TimeRange(since, until))
    after_range = await _counts(clickhouse)

    assert stored == 40
    assert sum(total for *_, total in whole) == 40
    assert in_range == sum(since <= moment < until for moment in moments)
    assert sorted(after_range) == sorted(whole)
    ids = await clickhouse.query("SELECT toString(event_id) FROM analytics_events")
    assert sorted(row[0] for row in ids) == sorted(minted)


def test_replay_command_rebuilds_from_the_topic(
    kafka: LocalKafka, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    """`gateway-analytics replay --rebuild` reports what it stored, twice alike."""
    topic = asyncio.run(topic_factory())
    asyncio.run(_publish(kafka.bootstrap_servers, topic, _history()))
    env = {
        **os.environ,
        "ANALYTICS_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ANALYTICS_KAFKA_TOPIC": topic,
        "ANALYTICS_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "ANALYTICS_DATA_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "gateway_analytics", "replay", "--rebuild"]

    outputs = [
        subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        for _ in range(2)
    ]

    for done in outputs:
        assert done.returncode == 0, done.stderr
        assert (
            "replayed 49 records: 40 events stored, 8 retried duplicates" in done.stdout
        )
        assert "1 undecodable" in done.stdout
        assert "replay: 49 records" in done.stderr
    bad = subprocess.run(
        [*command, "--since", "2024-05-20"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "RFC 3339" in bad.stderr
    missing = subprocess.run(
        command,
        env={**env, "ANALYTICS_KAFKA_TOPIC": "no-such-topic"},
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
