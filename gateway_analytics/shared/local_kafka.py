"""A single-node Apache Kafka broker (KRaft) for local runs, tests and benchmarks.

The broker's jars come from Maven Central, resolved by Maven from the pom
shipped beside this module into a cache folder; the broker runs on Java 17
with its log directory formatted once, listens on free loopback ports, and
writes its own log to a file. It is a real broker, the same one production
runs, started as a child process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import logging
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gateway_analytics.shared.errors import LocalKafkaError

logger = logging.getLogger(__name__)

POM_PATH = Path(__file__).with_name("kafka-pom.xml")
KAFKA_VERSION = re.search(  # type: ignore[union-attr]
    r"<kafka.version>([^<]+)</kafka.version>", POM_PATH.read_text(encoding="utf-8")
).group(1)
_COMPLETE_MARK = ".complete"
_LOG4J2_CONFIG = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def new_cluster_id() -> str:
    """A random cluster id in Kafka's own form: a UUID in URL-safe base64.

    One id in 64 would begin with ``-``, which the storage tool's argument
    parser reads as an option; Kafka never hands out such ids, so neither
    does this.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def fetch_kafka(cache_dir: Path) -> Path:
    """Resolve the broker's jars into ``cache_dir`` once; return their folder.

    Maven fetches ``kafka_2.13`` and its runtime dependencies from Maven
    Central (about 45 MB). Later calls find the finished folder and return
    at once.

    Raises:
        LocalKafkaError: Maven is missing or could not resolve the jars.
    """
    libs = (cache_dir / f"kafka-{KAFKA_VERSION}" / "libs").resolve()
    if (libs / _COMPLETE_MARK).exists():
        return libs
    maven = shutil.which("mvn")
    if maven is None:
        raise LocalKafkaError("Maven (mvn) is needed to fetch Kafka; install it")
    print(
        f"Fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} "
        "(first run only, under a minute)...",
        file=sys.stderr,
        flush=True,
    )
    shutil.rmtree(libs, ignore_errors=True)
    command = [
        maven,
        "--batch-mode",
        "--quiet",
        "--file",
        str(POM_PATH),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LocalKafkaError(
            f"Maven could not fetch Kafka {KAFKA_VERSION} (exit {done.returncode}):"
            f"\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    (libs / _COMPLETE_MARK).touch()
    print(f"Kafka {KAFKA_VERSION} is ready.", file=sys.stderr, flush=True)
    return libs


def running_broker(data_dir: Path) -> str | None:
    """``host:port`` of a local broker already serving ``data_dir``, if any."""
    try:
        address = (data_dir / "bootstrap-servers").read_text(encoding="utf-8")
    except OSError:
        return None
    port = int(address.rpartition(":")[2])
    return address if _accepts_connections(port) else None


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _accepts_connections(port: int) -> bool:
    # Probing the port first keeps the Kafka client from logging a
    # connection error for every attempt while the JVM boots.
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    """Ask Linux to end the broker when the process that started it dies.

    Without this a killed ``run`` would leave an orphaned broker holding the
    log directory's lock, and the next start would fail.
    """
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class LocalKafka:
    """One Kafka broker in KRaft mode, as a child process on loopback.

    Args:
        data_dir: the broker's log directory; formatted on first start and
            kept, so topics and committed offsets survive restarts.
        cache_dir: where the jars are fetched to (see :func:`fetch_kafka`).
        log_path: the broker's own log; default ``data_dir/broker.log``.
        heap_mb: the JVM's maximum heap in MiB, default 1024.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        cache_dir: Path,
        log_path: Path | None = None,
        heap_mb: int = 1024,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.cache_dir = cache_dir.resolve()
        self.log_path = log_path or self.data_dir / "broker.log"
        self.heap_mb = heap_mb
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the running broker, for clients."""
        if not self.port:
            raise LocalKafkaError("the local broker has not been started")
        return f"127.0.0.1:{self.port}"

    async def start(self, *, timeout_s: float = 90.0) -> None:
        """Fetch the jars if needed, format storage once, start and await it.

        Returns once the broker answers metadata requests.

        Raises:
            LocalKafkaError: the broker exited or did not answer within
                ``timeout_s``; the message holds the end of its log.
        """
        libs = await asyncio.to_thread(fetch_kafka, self.cache_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port, controller_port = free_port(), free_port()
        config = self._write_config(controller_port)
        if not (self.data_dir / "log" / "meta.properties").exists():
            await asyncio.to_thread(self._format_storage, libs, config)
        self._process = self._spawn(libs, "kafka.Kafka", str(config))
        await self._await_metadata(timeout_s)
        # Other commands (backfill, replay) find a running broker here.
        self._address_file.write_text(self.bootstrap_servers, encoding="utf-8")
        logger.info(
            "Local Kafka %s is up at %s (log: %s)",
            KAFKA_VERSION,
            self.bootstrap_servers,
            self.log_path,
        )

    @property
    def _address_file(self) -> Path:
        return self.data_dir / "bootstrap-servers"

    def stop(self, *, timeout_s: float = 20.0) -> None:
        """Stop the broker with SIGTERM, and SIGKILL it after ``timeout_s``."""
        self._address_file.unlink(missing_ok=True)
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("Local Kafka did not stop in %.0f s; killing it", timeout_s)
            process.kill()
            process.wait()

    def kill(self) -> None:
        """End the broker at once with SIGKILL, as a crash would."""
        self._address_file.unlink(missing_ok=True)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    async def __aenter__(self) -> LocalKafka:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _write_config(self, controller_port: int) -> Path:
        # A static voter set keeps the stored metadata independent of the
        # ports, which change on every start.
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "log.dirs": str(self.data_dir / "log"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash the controller waits out the old broker's session
            # before the new one may lead; the default 9 s slows every restart.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }
        config = self.data_dir / "server.properties"
        config.write_text(
            "".join(f"{key}={value}\n" for key, value in settings.items()),
            encoding="utf-8",
        )
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2_CONFIG, encoding="utf-8"
        )
        return config

    def _format_storage(self, libs: Path, config: Path) -> None:
        process = self._spawn(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(config),
        )
        if process.wait() != 0:
            raise LocalKafkaError(
                f"formatting the local Kafka storage failed:\n{self._log_tail()}"
            )

    def _spawn(
        self, libs: Path, main_class: str, *args: str
    ) -> subprocess.Popen[bytes]:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError("Java 17 or newer is needed for the local Kafka")
        command = [
            java,
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    async def _await_metadata(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise LocalKafkaError(
                    f"the local Kafka broker exited during start:\n{self._log_tail()}"
                )
            if not _accepts_connections(self.port):
                await asyncio.sleep(0.25)
                continue
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000
            )
            try:
                await admin.start()
                await admin.describe_cluster()
                return
            except KafkaError:
                await asyncio.sleep(0.25)
            finally:
                await admin.close()
        self.stop()
        raise LocalKafkaError(
            f"the local Kafka broker did not answer within {timeout_s:.0f} s:\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no broker log)"
        return "\n".join(text.splitlines()[-lines:])
