"""``gateway-analytics worker`` alone: it stores events and serves its probes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway_analytics.shared.events import PodEntered, encode_events
from gateway_analytics.shared.kafka import create_producer
from gateway_analytics.shared.local_kafka import LocalKafka, free_port
from gateway_analytics.shared.publisher import KafkaPublisher

pytestmark = pytest.mark.e2e


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def _publish(bootstrap_servers: str, topic: str, count: int) -> None:
    producer = create_producer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        events = [
            PodEntered(type="pod_entered", pod_id=uuid.uuid4()) for _ in range(count)
        ]
        publisher = KafkaPublisher(producer=producer, topic=topic, timeout_s=10)
        await publisher.publish(encode_events(events, received_at=datetime.now(UTC)))
    finally:
        await producer.stop()


def test_worker_alone_serves_readiness_and_metrics(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """The worker's own port answers /healthz, /readyz and /metrics."""
    port = free_port()
    topic = f"worker-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "ANALYTICS_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ANALYTICS_KAFKA_TOPIC": topic,
        "ANALYTICS_DEAD_LETTER_TOPIC": f"{topic}-dlq",
        "ANALYTICS_CONSUMER_GROUP": topic,
        "ANALYTICS_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "ANALYTICS_DATA_DIR": str(tmp_path),
        "ANALYTICS_WORKER_HTTP_PORT": str(port),
        "ANALYTICS_SINK_FLUSH_INTERVAL_S": "0.2",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "gateway_analytics", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while status != 200 and time.monotonic() < deadline:
            assert worker.poll() is None, log_path.read_text()
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                time.sleep(0.3)
        asyncio.run(_publish(kafka.bootstrap_servers, topic, 50))
        deadline = time.monotonic() + 30
        metrics = b""
        while b'outcome="stored"} 50.0' not in metrics and time.monotonic() < deadline:
            time.sleep(0.3)
            _, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        health_status, health = _get(f"http://127.0.0.1:{port}/healthz")
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_status = worker.wait(timeout=60)

    assert status == 200
    assert (health_status, json.loads(health)) == (200, {"status": "alive"})
    assert b'analytics_sink_events_total{outcome="stored"} 50.0' in metrics
    assert exit_status == 0, log_path.read_text()
