"""Alembic environment: runs on the connection the core hands over (see storage/migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from gpucloud_server.identity.storage.tables import metadata


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("gpucloud applies migrations online, on start")
connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "migrations run through gpucloud_server.identity.storage.migrate, with a connection"
    )
run_online(connection)
