"""A real PostgreSQL for the capture, outbox and inbox tests (see tests/postgres.py)."""

from __future__ import annotations

from ..postgres import pg_dsn, postgres

__all__ = ["pg_dsn", "postgres"]
