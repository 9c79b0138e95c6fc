"""Load generators of the benchmark, each run as a process of its own.

``ingest``: posts 100-event batches over keep-alive connections at full
concurrency and reports events/s and request latency.
``produce``: the ingest limit, a plain producer (the API's settings) sending
the records the API wrote as fast as it can.
``sink-limit``: a plain consumer (getmany) plus inserts of the same batch
size into a scratch database: the sink's limit.
``steady``: posts at a fixed rate and measures, for sampled requests, the
time from the 202 until the GET endpoint counts them.
``http-floor``: a server, not a load: it reads each POST's body and answers
202 with a body the size of the API's, and does nothing else, so that the
ingest load run against it shows what HTTP alone allows on this machine.

Every mode but ``http-floor`` prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import aiohttp
import clickhouse_connect
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway_analytics.clickhouse.client import connect
from gateway_analytics.clickhouse.events_table import (
    ConsumedValue,
    TopicValue,
    intake_rows,
    intake_table,
)
from gateway_analytics.clickhouse.migrations import migrate
from gateway_analytics.shared.kafka import create_producer, topic_partitions

BATCH = 100
LIMIT_DATABASE = "sink_limit"
LOAD_DAY = "2024-05-20T12:00:00Z"
SAMPLE_DAY = "2024-05-19T12:00:00Z"


def _batch(pods: list[str], start: int, occurred_at: str) -> list[dict[str, str]]:
    return [
        {
            "type": "pod_entered",
            "pod_id": pods[(start + n) % len(pods)],
            "occurred_at": occurred_at,
        }
        for n in range(BATCH)
    ]


async def ingest(url: str, events: int, concurrency: int) -> dict[str, Any]:
    """Post ``events`` in batches from ``concurrency`` workers; time it."""
    pods = [str(uuid.uuid4()) for _ in range(64)]
    latencies_ms: list[float] = []
    requests = events // BATCH
    next_request = 0
    connector = aiohttp.TCPConnector(limit=concurrency)

    # Encoded once: the load process must leave the CPU to the API. A batch
    # depends on its number only through the first pod it names.
    bodies = [
        json.dumps({"events": _batch(pods, first, LOAD_DAY)}).encode()
        for first in range(len(pods))
    ]
    headers = {"Content-Type": "application/json"}

    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal next_request
            while next_request < requests:
                number, next_request = next_request, next_request + 1
                body = bodies[number % len(bodies)]
                started = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 202, response.status
                latencies_ms.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed_s = time.perf_counter() - started
    latencies_ms.sort()
    return {
        "events_per_s": requests * BATCH / elapsed_s,
        "p50_ms": statistics.median(latencies_ms),
        "p99_ms": latencies_ms[int(len(latencies_ms) * 0.99) - 1],
    }


async def topic_records(bootstrap_servers: str, topic: str) -> list[tuple[int, bytes]]:
    """Every record on ``topic`` as (partition, value), read to its end."""
    numbers = await topic_partitions(bootstrap_servers=bootstrap_servers, topic=topic)
    partitions = [TopicPartition(topic, number) for number in numbers]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[tuple[int, bytes]] = []
        wanted = sum(ends.values())  # the topic is fresh: its offsets start at 0
        while len(records) < wanted:
            fetched = await consumer.getmany(timeout_ms=1000)
            records.extend(
                (message.partition, message.value or b"")
                for messages in fetched.values()
                for message in messages
            )
    finally:
        await consumer.stop()
    return records


def events_in(value: bytes) -> int:
    """How many events a record holds, found without parsing it."""
    return value.count(b'"received_at"')


async def produce(
    bootstrap_servers: str, source_topic: str, topic: str
) -> dict[str, Any]:
    """Send the records the API wrote to ``source_topic`` again, all in flight.

    The same values to the same partitions, with the API's producer settings;
    only the sending is timed.
    """
    records = await topic_records(bootstrap_servers, source_topic)
    events = sum(events_in(value) for _, value in records)
    producer = create_producer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        started = time.perf_counter()
        deliveries = [
            await producer.send(topic, value=value, partition=partition)
            for partition, value in records
        ]
        await asyncio.gather(*deliveries)
        elapsed_s = time.perf_counter() - started
    finally:
        await producer.stop()
    return {"events_per_s": events / elapsed_s, "records": len(records)}


async def sink_limit(
    bootstrap_servers: str, topic: str, events: int, batch: int, clickhouse_url: str
) -> dict[str, Any]:
    """Consume ``events`` events and insert them, ``batch`` at most per insert.

    The scratch database has the real tables and views, and the records go
    into the intake as the sink's rows do, but straight from the topic's
    bytes: no decoding, no duplicate check, no Faust. Reports the clock time
    when the first insert and the last one returned, so that the caller can
    time the whole stage from this process's start, as it times the agent.
    """
    setup = connect(url=clickhouse_url, database=LIMIT_DATABASE)
    await migrate(setup)
    await setup.close()
    client = clickhouse_connect.get_client(dsn=clickhouse_url, database=LIMIT_DATABASE)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=batch,
    )
    await consumer.start()
    inserts = _Inserts(client)
    stored = 0
    rows: list[ConsumedValue] = []
    in_rows = 0
    try:
        while stored < events:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=batch)
            for message in (m for messages in fetched.values() for m in messages):
                value = message.value or b""
                count = events_in(value)
                if rows and in_rows + count > batch:
                    await inserts.start(rows)
                    rows, in_rows = [], 0
                rows.append(
                    ConsumedValue(
                        TopicValue(value, count), message.partition, message.offset
                    )
                )
                in_rows += count
                stored += count
        await inserts.start(rows)
        await inserts.finish()
        stored_at = time.time()
    finally:
        await consumer.stop()
        client.close()
    return {"first_stored_at": inserts.first_stored_at, "stored_at": stored_at}


class _Inserts:
    """Inserts into the intake one batch at a time, in the background.

    The next batch is fetched while one is inserted, as the agent gathers
    its next take while it stores one; a batch fills across fetches.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._running: asyncio.Future[None] | None = None
        self.first_stored_at = 0.0

    async def start(self, rows: list[ConsumedValue]) -> None:
        """Insert ``rows`` once the insert before them has finished."""
        await self.finish()
        self._running = asyncio.ensure_future(_insert_intake(self._client, rows))

    async def finish(self) -> None:
        """Wait for the insert in flight, if any."""
        if self._running is not None:
            await self._running
            self._running = None
            self.first_stored_at = self.first_stored_at or time.time()


async def _insert_intake(client: Any, rows: list[ConsumedValue]) -> None:
    await asyncio.to_thread(
        client.raw_insert,
        intake_table(),
        insert_block=intake_rows(rows, reuse_values=True),
        fmt="JSONEachRow",
        settings={"date_time_input_format": "best_effort"},
    )


async def steady(
    base_url: str, rate: int, seconds: float, sample_every_s: float
) -> dict[str, Any]:
    """Post at ``rate`` events/s; time sampled events from 202 to counted."""
    pods = [str(uuid.uuid4()) for _ in range(20)]
    url = base_url + "/api/analytics/events"
    interval_s = BATCH / rate
    delays_s: list[float] = []
    uncounted = 0
    samplers: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession() as http:

        async def sample() -> None:
            pod = str(uuid.uuid4())
            body = {
                "events": [
                    {"type": "pod_entered", "pod_id": pod, "occurred_at": SAMPLE_DAY}
                ]
            }
            async with http.post(url, json=body) as response:
                assert response.status == 202
            acknowledged = time.perf_counter()
            while time.perf_counter() - acknowledged < 30:
                async with http.get(
                    base_url + "/api/analytics/pods",
                    params={"window": "day", "page_size": 200},
                ) as response:
                    rows = (await response.json())["data"]
                if any(row["pod_id"] == pod for row in rows):
                    delays_s.append(time.perf_counter() - acknowledged)
                    return
                await asyncio.sleep(0.02)
            # Not counted within the wait: kept at the cap, so that a
            # backlog shows in the percentiles instead of dropping out.
            nonlocal uncounted
            uncounted += 1
            delays_s.append(time.perf_counter() - acknowledged)

        async def post(number: int) -> None:
            async with http.post(
                url, json={"events": _batch(pods, number, LOAD_DAY)}
            ) as response:
                assert response.status == 202

        started = time.perf_counter()
        next_sample = started
        number = 0
        pending: set[asyncio.Task[None]] = set()
        while time.perf_counter() - started < seconds:
            task = asyncio.create_task(post(number))
            pending.add(task)
            task.add_done_callback(pending.discard)
            number += 1
            if time.perf_counter() >= next_sample:
                samplers.append(asyncio.create_task(sample()))
                next_sample += sample_every_s
            await asyncio.sleep(
                max(0.0, started + number * interval_s - time.perf_counter())
            )
        achieved = number * BATCH / (time.perf_counter() - started)
        await asyncio.gather(*pending, *samplers)
    delays_s.sort()
    return {
        "rate_events_per_s": achieved,
        "samples": len(delays_s),
        "samples_uncounted_after_30_s": uncounted,
        "p50_s": statistics.median(delays_s),
        "p99_s": delays_s[max(int(len(delays_s) * 0.99) - 1, 0)],
    }


def http_floor(port: int) -> None:
    """Answer every POST to the events path with a fixed 202, until stopped."""
    answer = json.dumps(
        {"accepted": BATCH, "event_ids": [str(uuid.uuid4()) for _ in range(BATCH)]}
    ).encode()

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/analytics/events", accept)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    """Run one mode and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "mode", choices=["ingest", "produce", "sink-limit", "steady", "http-floor"]
    )
    parser.add_argument("--url", default="")
    parser.add_argument("--bootstrap-servers", default="")
    parser.add_argument("--topic", default="")
    parser.add_argument("--source-topic", default="")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clickhouse-url", default="")
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=0)
    a = parser.parse_args()
    if a.mode == "http-floor":
        http_floor(a.port)
        return
    work = {
        "ingest": lambda: ingest(a.url, a.events, a.concurrency),
        "produce": lambda: produce(a.bootstrap_servers, a.source_topic, a.topic),
        "sink-limit": lambda: sink_limit(
            a.bootstrap_servers, a.topic, a.events, a.batch, a.clickhouse_url
        ),
        "steady": lambda: steady(a.url, a.rate, a.seconds, 1.0),
    }[a.mode]
    print(json.dumps(asyncio.run(work())))


if __name__ == "__main__":
    main()
