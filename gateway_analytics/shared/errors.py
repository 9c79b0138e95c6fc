"""Errors raised by gateway-analytics.

Every error the service raises on purpose derives from one root, so callers
can catch the project's errors without catching everything::

    AnalyticsError
    ├── ConfigurationError   a setting is invalid; fix the environment
    ├── LocalKafkaError      the local broker could not be fetched or started
    ├── PublishError         Kafka did not acknowledge events (retriable)
    └── StorageError         ClickHouse refused or could not run a statement

Library errors (aiokafka, clickhouse-connect) are translated where they cross
into our code and kept as ``__cause__``.
"""

from __future__ import annotations


class AnalyticsError(Exception):
    """Root of the errors raised by gateway-analytics."""

    retriable = False


class ConfigurationError(AnalyticsError):
    """A setting is missing or holds a value that is not allowed."""


class LocalKafkaError(AnalyticsError):
    """The local Kafka broker could not be fetched, formatted or started."""


class PublishError(AnalyticsError):
    """Kafka did not acknowledge every event of a publish in time."""

    retriable = True


class StorageError(AnalyticsError):
    """ClickHouse could not run a statement."""

    retriable = True
