"""Storage: one Database over SQLite or PostgreSQL, its tables and migrations."""

from __future__ import annotations

from gpucloud_server.identity.storage.database import Database, open_database

__all__ = ["Database", "open_database"]
