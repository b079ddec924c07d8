"""The sqlite engine: the embedded default, a durable multi-process log in one SQLite file."""
