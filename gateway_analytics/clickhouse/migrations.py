"""Versioned SQL migrations, applied in order and recorded in ClickHouse.

Each file in ``migrations/`` is named ``NNNN_description.sql`` and holds one
or more statements separated by semicolons. A version is applied once; its
statements are written to be idempotent (``IF NOT EXISTS``), so two
processes migrating at the same moment do no harm.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from gateway_analytics.clickhouse.client import ClickHouse

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file."""

    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in ``directory``, in version order."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file name {path.name!r} is not NNNN_name.sql")
        migrations.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                statements=split_statements(path.read_text(encoding="utf-8")),
            )
        )
    return migrations


def split_statements(sql: str) -> tuple[str, ...]:
    """The statements of a file: comment lines dropped, split at semicolons."""
    code = "\n".join(
        line for line in sql.splitlines() if not line.lstrip().startswith("--")
    )
    return tuple(part.strip() for part in code.split(";") if part.strip())


async def applied_versions(clickhouse: ClickHouse) -> set[int]:
    """Versions already recorded in this database.

    Raises:
        StorageError: the ledger does not exist, i.e. nothing was migrated.
    """
    rows = await clickhouse.query("SELECT DISTINCT version FROM schema_migrations")
    return {int(row[0]) for row in rows}


async def migrate(clickhouse: ClickHouse) -> list[Migration]:
    """Apply the migrations not yet recorded, in order; return those applied."""
    await clickhouse.command(_LEDGER_DDL)
    done = await applied_versions(clickhouse)
    applied = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        for statement in migration.statements:
            await clickhouse.command(statement)
        # A statement, not clickhouse-connect's row insert, which would
        # import pandas (half a second) at every start of a fresh database.
        await clickhouse.command(
            "INSERT INTO schema_migrations (version, name, applied_at) "
            "VALUES ({version:UInt32}, {name:String}, now64(3))",
            {"version": migration.version, "name": migration.name},
        )
        logger.info("Applied migration %04d %s", migration.version, migration.name)
        applied.append(migration)
    return applied
