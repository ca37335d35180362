"""Alembic migrations of the core's schema, applied on start by storage/migrate.py."""
