"""backfill: newline-delimited events through the ingest path, counted once."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.shared.kafka import create_producer
from gateway_analytics.shared.local_kafka import LocalKafka
from gateway_analytics.shared.progress import Progress
from gateway_analytics.shared.publisher import KafkaPublisher
from gateway_analytics.streams.backfill import backfill
from gateway_analytics.streams.replay import TimeRange, rebuild
from tests.conftest import TopicFactory
from tests.support import events_on_topic

GOOD = 30


def _lines() -> list[str]:
    """Thirty good events with ids, and bad lines at known line numbers."""
    lines = [
        json.dumps(
            {
                "type": "pod_entered",
                "pod_id": str(uuid.uuid4()),
                "event_id": str(uuid.uuid4()),
                "occurred_at": "2024-05-20T12:00:00Z",
            }
        )
        for _ in range(GOOD)
    ]
    lines.insert(2, "{not json")  # line 3
    lines.insert(9, json.dumps({"type": "pod_entered", "pod_id": "x"}))  # line 10
    lines.insert(14, "")  # line 15, blank: skipped, not an error
    lines.insert(20, json.dumps({"type": "teleported"}))  # line 21
    return lines


async def test_good_lines_are_counted_once_however_often_loaded(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> None:
    """Bad lines are reported by number; loading the file twice stores it once."""
    topic = await topic_factory()
    producer = create_producer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    publisher = KafkaPublisher(producer=producer, topic=topic, timeout_s=10)
    lines = _lines()
    reports, errors = [], io.StringIO()
    try:
        for _ in range(2):
            reports.append(
                await backfill(
                    lines,
                    publisher=publisher,
                    batch_size=7,
                    progress=Progress("backfill", stream=io.StringIO()),
                    errors=errors,
                )
            )
    finally:
        await producer.stop()

    report = await rebuild(
        clickhouse=clickhouse,
        bootstrap_servers=kafka.bootstrap_servers,
        topic=topic,
        time_range=TimeRange(),
        batch_size=10,
        dedup_window_s=3600,
    )

    assert [r.published for r in reports] == [GOOD, GOOD]
    assert [n for n, _ in reports[0].bad_lines] == [3, 10, 21]
    assert "pod_id" in dict(reports[0].bad_lines)[10]
    assert errors.getvalue().startswith("line 3: ")
    assert await events_on_topic(kafka.bootstrap_servers, topic) == 2 * GOOD
    assert report.events_stored == GOOD
    assert report.duplicates == GOOD


def test_backfill_command_reads_a_file_and_says_which_lines_are_bad(
    kafka: LocalKafka, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    """`gateway-analytics backfill FILE` publishes good lines, exits 1 on bad ones."""
    topic = asyncio.run(topic_factory())
    source = tmp_path / "events.ndjson"
    source.write_text("\n".join(_lines()) + "\n", encoding="utf-8")
    env = {
        **os.environ,
        "ANALYTICS_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ANALYTICS_KAFKA_TOPIC": topic,
        "ANALYTICS_DATA_DIR": str(tmp_path),
    }

    done = subprocess.run(
        [sys.executable, "-m", "gateway_analytics", "backfill", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert f"published {GOOD} events; 3 bad lines left out" in done.stdout
    assert [
        line.split(":")[0]
        for line in done.stderr.splitlines()
        if line.startswith("line ")
    ] == ["line 3", "line 10", "line 21"]
    assert "backfill: 34 records" in done.stderr
    assert asyncio.run(events_on_topic(kafka.bootstrap_servers, topic)) == GOOD
