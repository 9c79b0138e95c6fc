"""The benchmark: each stage's speed beside the limit of the same stage.

    python -m bench.harness            # make bench
    python -m bench.harness --quick    # a small smoke run

One local broker serves every stage; each stage starts the real process
(``api``, ``worker`` or ``run``) over the embedded ClickHouse in a scratch
folder, drives it from a separate load process, and measures the limit of
the same stage with plain clients in the same run. The ingest stage fills
the topic the sink stage then drains, so both limits work on the records
the API wrote: the ingest limit sends them again with a plain producer, the
sink limit inserts them straight from the topic's bytes.

Every figure is the median of ``--runs`` runs; a ratio is taken within each
run, and the median of those is reported. The query stage (bench.queries)
runs once: loading its year of events dominates its time, and each of its
figures is already a percentile over many requests.
Its p95s are printed beside their targets instead of a limit. Results go to
bench/results/latest.json, a dated copy, and latest.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.queries import TARGETS_MS as QUERY_TARGETS_MS
from gateway_analytics.shared.kafka import ensure_topic
from gateway_analytics.shared.local_kafka import KAFKA_VERSION, LocalKafka, free_port
from gateway_analytics.shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
# The query stage's figures shown in the table; the rest stay in its section.
QUERY_FIGURES = (
    "query_events",
    "query_load_s",
    "query_load_events_per_s",
    "query_day_p50_ms",
    "query_day_p95_ms",
    "query_one_pod_p50_ms",
    "query_one_pod_p95_ms",
)
# What each figure must reach, as the table prints it.
TARGETS = {
    "ingest_events_per_s": ">= 50,000",
    "ingest_ratio": ">= 0.8",
    "sink_events_per_s": ">= 100,000",
    "sink_ratio": ">= 0.8",
    "e2e_p99_s": "< 2 at 5,000 events/s",
    "api_rss_growth_mb": "about 0 (flat)",
    "agent_rss_growth_mb": "about 0 (flat)",
    "e2e_rss_growth_mb": "about 0 (flat)",
} | {f"query_{kind}_p95_ms": f"< {ms:.0f}" for kind, ms in QUERY_TARGETS_MS.items()}
PACKAGES = (
    "aiohttp",
    "aiokafka",
    "faust-streaming",
    "clickhouse-connect",
    "chdb",
    "pydantic",
)


def _load(mode: str, *arguments: str) -> dict[str, Any]:
    """Run one mode of bench.load as its own process; its JSON figures."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", mode, *arguments],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.load {mode} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM:")


class RssSampler:
    """Samples a process's resident memory twice a second while in use.

    ``growth_mb`` compares the stage's last third with its middle third; by
    the middle the process has warmed up, so flat memory shows as about 0.
    Each third counts by its median: an insert's buffers come and go within
    a second, and two single samples would weigh them as growth.
    """

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._samples: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self._samples.append(_status_mb(self._pid, "VmRSS:"))
            if self._done.wait(0.5):
                return

    @property
    def growth_mb(self) -> float:
        third = len(self._samples) // 3
        if not third:
            return 0.0
        middle = self._samples[third : 2 * third]
        last = self._samples[2 * third :]
        return statistics.median(last) - statistics.median(middle)


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


@contextmanager
def _service(
    command: str, env: dict[str, str], probe: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``gateway-analytics COMMAND`` running until the block ends."""
    with _running(
        ["-m", "gateway_analytics", command],
        env=env,
        log_path=Path(env["ANALYTICS_DATA_DIR"]) / f"{command}.log",
        probe=probe,
    ) as process:
        yield process


@contextmanager
def _running(
    arguments: list[str], *, env: dict[str, str], log_path: Path, probe: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``python ARGUMENTS`` running from once ``probe`` answers until the
    block ends; its output goes to ``log_path``."""
    log = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, *arguments],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{arguments} did not start; see {log.name}")
            try:
                _get(probe)
                break
            except urllib.error.HTTPError:
                break  # it answers, if not to this probe
            except OSError:
                time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        log.close()


def _env(
    scratch: Path, name: str, kafka: LocalKafka, port: int, *, topic: str = ""
) -> dict[str, str]:
    data_dir = scratch / name
    data_dir.mkdir()
    topic = topic or name
    return {
        "ANALYTICS_DATA_DIR": str(data_dir),
        "ANALYTICS_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ANALYTICS_KAFKA_TOPIC": topic,
        "ANALYTICS_DEAD_LETTER_TOPIC": f"{topic}-dlq",
        "ANALYTICS_CONSUMER_GROUP": name,
        "ANALYTICS_CLICKHOUSE_URL": f"chdb://{data_dir / 'clickhouse'}",
        "ANALYTICS_HTTP_PORT": str(port),
        "ANALYTICS_WORKER_HTTP_PORT": str(port),
        "ANALYTICS_LOG_LEVEL": "WARNING",
    }


def ingest_stage(
    scratch: Path, kafka: LocalKafka, run: int, events: int
) -> tuple[str, dict[str, float]]:
    """Post ``events`` through the API; the topic it filled and the figures.

    The limit sends the very records the API wrote, which hold as many
    events each as the API managed to gather, to a topic of its own.
    """
    port = free_port()
    topic = f"pipeline-{run}"
    env = _env(scratch, f"ingest-{run}", kafka, port, topic=topic)
    asyncio.run(_topic(kafka, topic))
    base = f"http://127.0.0.1:{port}"
    with _service("api", env, base + "/healthz") as api, RssSampler(api.pid) as rss:
        measured = _load(
            "ingest", "--url", base + "/api/analytics/events", "--events", str(events)
        )
        peak_mb = _peak_rss_mb(api.pid)
    floor = _http_floor(scratch / f"ingest-{run}", events)
    limit_topic = f"ingest-limit-{run}"
    asyncio.run(_topic(kafka, limit_topic))
    limit = _load(
        "produce",
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--source-topic",
        topic,
        "--topic",
        limit_topic,
    )
    return topic, {
        "ingest_events_per_s": measured["events_per_s"],
        "ingest_p50_ms": measured["p50_ms"],
        "ingest_p99_ms": measured["p99_ms"],
        "ingest_limit_events_per_s": limit["events_per_s"],
        "ingest_http_floor_events_per_s": floor["events_per_s"],
        "ingest_events_per_record": events / limit["records"],
        "api_peak_rss_mb": peak_mb,
        "api_rss_growth_mb": rss.growth_mb,
    }


def _http_floor(folder: Path, events: int) -> dict[str, Any]:
    """The ingest load against a server that only reads each body and answers
    202: how fast HTTP alone goes here, beside the API and the producer."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/analytics/events"
    arguments = ["-m", "bench.load", "http-floor", "--port", str(port)]
    with _running(arguments, env={}, log_path=folder / "floor.log", probe=url):
        return _load("ingest", "--url", url, "--events", str(events))


def sink_stage(
    scratch: Path, kafka: LocalKafka, run: int, topic: str, events: int
) -> dict[str, float]:
    """Store the ``events`` the ingest stage left on ``topic``, with no agent
    running until now; the limit reads the same records."""
    port = free_port()
    name = f"sink-{run}"
    env = _env(scratch, name, kafka, port, topic=topic)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    started = time.perf_counter()
    health = f"http://127.0.0.1:{port}/healthz"
    first_stored_s = None
    with _service("worker", env, health) as worker, RssSampler(worker.pid) as rss:
        deadline = time.monotonic() + 1800
        while (stored := _stored(metrics_url)) < events:
            now = time.perf_counter()
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not store every event in 30 min")
            if stored and first_stored_s is None:
                first_stored_s = now - started
            time.sleep(_poll_interval_s(stored, events, now - started, first_stored_s))
        elapsed_s = time.perf_counter() - started
        peak_mb = _peak_rss_mb(worker.pid)
    # Timed from its spawn, as the worker is: starting a process, opening the
    # engine and migrating are part of the stage for any consumer.
    limit_spawned_at = time.time()
    limit = _load(
        "sink-limit",
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--topic",
        topic,
        "--events",
        str(events),
        "--clickhouse-url",
        f"chdb://{scratch / name / 'limit'}",
        # The worker's own batch size, which it read from the same default.
        "--batch",
        str(Settings().sink_batch_size),
    )
    return {
        "sink_events_per_s": events / elapsed_s,
        # From the spawn to the first insert: starting the process, opening
        # the engine, migrating, joining the consumer group, the first take.
        "sink_startup_s": first_stored_s or elapsed_s,
        "sink_limit_events_per_s": events / (limit["stored_at"] - limit_spawned_at),
        "sink_limit_startup_s": limit["first_stored_at"] - limit_spawned_at,
        "agent_peak_rss_mb": peak_mb,
        "agent_rss_growth_mb": rss.growth_mb,
    }


def e2e_stage(
    scratch: Path, kafka: LocalKafka, run: int, rate: int, seconds: float
) -> dict[str, float]:
    port = free_port()
    env = _env(scratch, f"e2e-{run}", kafka, port)
    env["ANALYTICS_SINK_FLUSH_INTERVAL_S"] = "0.2"
    base = f"http://127.0.0.1:{port}"
    with _service("run", env, base + "/readyz") as pipeline:
        time.sleep(3)  # the sink joins its consumer group
        # The one stage that holds a steady load for a minute: the API and
        # the agent in one process, past their warm-up within its first third.
        with RssSampler(pipeline.pid) as rss:
            measured = _load(
                "steady", "--url", base, "--rate", str(rate), "--seconds", str(seconds)
            )
    return {
        "e2e_rate_events_per_s": measured["rate_events_per_s"],
        "e2e_p50_s": measured["p50_s"],
        "e2e_p99_s": measured["p99_s"],
        "e2e_rss_growth_mb": rss.growth_mb,
    }


def query_stage(scratch: Path, events: int, requests: int) -> dict[str, float]:
    """Load a year of events and time the count queries over it, once."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.queries",
            "--events",
            str(events),
            "--requests",
            str(requests),
            "--data-dir",
            str(scratch / "queries"),
        ],
        stdout=subprocess.PIPE,  # the load's progress goes on to stderr
        text=True,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"bench.queries failed with exit code {done.returncode}; "
            "its error is printed above"
        )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _poll_interval_s(
    stored: float, events: int, elapsed_s: float, first_stored_s: float | None
) -> float:
    """How long to wait before asking the worker again how much it stored.

    Each answer costs the worker's event loop a rendering of its metrics,
    and asked every 50 ms that took as much of it as Faust's fetching. Half
    the time the rest should take at the rate so far keeps the questions
    few, and 50 ms at the least keeps the end as precisely timed.
    """
    if first_stored_s is None or elapsed_s <= first_stored_s:
        return 0.05
    rate = stored / (elapsed_s - first_stored_s)
    return min(max((events - stored) / rate / 2, 0.05), 1.0)


def _ratios(figures: dict[str, float]) -> dict[str, float]:
    """Each stage's speed over its limit, within one run.

    A stage and its limit run minutes apart at most, so they meet the same
    neighbours on a shared machine; the median of these ratios is steadier
    than the ratio of two medians, which may come from different runs.
    """
    return {
        f"{stage}_ratio": figures[f"{stage}_events_per_s"]
        / figures[f"{stage}_limit_events_per_s"]
        for stage in ("ingest", "sink")
    }


def _stored(metrics_url: str) -> float:
    try:
        page = _get(metrics_url).decode()
    except OSError:
        return 0.0
    found = re.search(r'analytics_sink_events_total\{outcome="stored"\} (\S+)', page)
    return float(found.group(1)) if found else 0.0


async def _topic(kafka: LocalKafka, name: str) -> None:
    await ensure_topic(
        bootstrap_servers=kafka.bootstrap_servers,
        topic=name,
        partitions=6,
        replication_factor=1,
    )


def _machine() -> dict[str, Any]:
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "packages": {name: metadata.version(name) for name in PACKAGES},
    }


def _chart(figures: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (throughput, latency, queries) = plt.subplots(1, 3, figsize=(16, 4))
    names = ["ingest", "sink"]
    measured = [figures["ingest_events_per_s"], figures["sink_events_per_s"]]
    limits = [figures["ingest_limit_events_per_s"], figures["sink_limit_events_per_s"]]
    positions = range(len(names))
    throughput.bar(
        [p - 0.27 for p in positions], measured, width=0.27, label="pipeline"
    )
    throughput.bar(list(positions), limits, width=0.27, label="limit")
    throughput.bar(
        [0.27],
        [figures["ingest_http_floor_events_per_s"]],
        width=0.27,
        label="HTTP alone",
    )
    throughput.set_xticks(list(positions), names)
    throughput.set_ylabel("events/s")
    throughput.set_title("Throughput beside its limit")
    throughput.legend()
    labels = ["ingest p50", "ingest p99", "e2e p50", "e2e p99"]
    values_ms = [
        figures["ingest_p50_ms"],
        figures["ingest_p99_ms"],
        figures["e2e_p50_s"] * 1000,
        figures["e2e_p99_s"] * 1000,
    ]
    latency.bar(labels, values_ms)
    latency.set_ylabel("ms")
    latency.set_title("Latency")
    kinds = list(QUERY_TARGETS_MS)
    positions = range(len(kinds))
    for share, offset in (("p50", -0.2), ("p95", 0.2)):
        values = [figures[f"query_{kind}_{share}_ms"] for kind in kinds]
        queries.bar([p + offset for p in positions], values, width=0.4, label=share)
    queries.hlines(
        list(QUERY_TARGETS_MS.values()),
        [p - 0.45 for p in positions],
        [p + 0.45 for p in positions],
        colors="C3",
        label="target p95",
    )
    queries.set_xticks(list(positions), ["pods, window=day", "one pod"])
    queries.legend()
    queries.set_ylabel("ms")
    queries.set_title(f"Count queries, {figures['query_events']:,.0f} events")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    """Run every stage ``--runs`` times and report the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--events",
        type=int,
        default=1_000_000,
        help="events posted by the ingest stage and stored by the sink stage",
    )
    parser.add_argument("--e2e-rate", type=int, default=5_000)
    parser.add_argument("--e2e-seconds", type=float, default=60.0)
    parser.add_argument("--query-events", type=int, default=10_000_000)
    parser.add_argument(
        "--query-requests", type=int, default=200, help="timed requests per kind"
    )
    parser.add_argument("--quick", action="store_true", help="small numbers, one run")
    a = parser.parse_args()
    if a.quick:
        a.runs, a.events, a.e2e_seconds = 1, 50_000, 10.0
        a.query_events, a.query_requests = 200_000, 50

    started = time.monotonic()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        scratch = Path(folder)
        kafka = LocalKafka(data_dir=scratch / "kafka", cache_dir=REPO / ".cache")
        asyncio.run(kafka.start())
        try:
            for run in range(a.runs):
                topic, figures = ingest_stage(scratch, kafka, run, a.events)
                figures |= sink_stage(scratch, kafka, run, topic, a.events)
                figures |= e2e_stage(scratch, kafka, run, a.e2e_rate, a.e2e_seconds)
                figures |= _ratios(figures)
                print(json.dumps({"run": run + 1, **figures}), flush=True)
                runs.append(figures)
        finally:
            kafka.stop()
        queried = query_stage(scratch, a.query_events, a.query_requests)

    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    medians |= {key: queried[key] for key in QUERY_FIGURES}
    result: dict[str, Any] = {
        "finished_at": datetime.now(UTC).isoformat(),
        "duration_s": round(time.monotonic() - started),
        "machine": _machine(),
        "settings": {k: v for k, v in vars(a).items()},
        "figures": {k: round(v, 3) for k, v in medians.items()},
        "targets": TARGETS,
        "runs": runs,
        "query": {
            "runs": 1,
            "note": "One run: each query_*_ms figure is a percentile over "
            f"{a.query_requests} sequential requests of its kind, not a median "
            "of runs.",
            "figures": {k: round(v, 3) for k, v in queried.items()},
        },
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    if not a.quick:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        (RESULTS_DIR / "latest.json").write_text(text)
        (RESULTS_DIR / f"{stamp}.json").write_text(text)
        _chart(medians, RESULTS_DIR / "latest.png")
    print("| figure | value | target |\n| --- | --- | --- |")
    for key, value in result["figures"].items():
        target = TARGETS.get(key, "")
        print(f"| `{key}` | {value:,.3f} | {target} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
