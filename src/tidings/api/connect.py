"""Open a bus from a URL: memory://, sqlite://PATH (the default), kafka://, nats://."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from tidings.core.errors import ConfigurationError
from tidings.core.extras import require_extra

if TYPE_CHECKING:
    from tidings.api.bus import AsyncBus, Bus
    from tidings.engines.base import Engine

DEFAULT_URL = "sqlite://.tidings/tidings.db"


def default_url() -> str:
    """$TIDINGS_URL, or the embedded store under ./.tidings/."""
    return os.environ.get("TIDINGS_URL") or DEFAULT_URL


def engine_for(url: str) -> Engine:
    """The engine a URL names, not yet started."""
    from tidings.engines.log.engine import LogEngine

    scheme, _, rest = url.partition("://")
    if not rest and scheme not in ("memory",):
        raise ConfigurationError(
            f"not a tidings URL: {url!r}; use memory:// or sqlite://PATH (e.g. sqlite://./bus.db)"
        )
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    limits = _log_limits(options)
    if scheme == "memory":
        from tidings.engines.memory import MemoryStore

        return LogEngine(MemoryStore(url), **limits)
    if scheme == "sqlite":
        from tidings.engines.sqlite.store import SQLiteStore

        path = rest.split("?", 1)[0]
        if not path:
            raise ConfigurationError(
                "sqlite:// needs a path, e.g. sqlite://./bus.db or sqlite:///var/lib/bus.db"
            )
        return LogEngine(SQLiteStore(path, url=url, **options), **limits)
    if scheme in ("nats", "tls"):
        with require_extra("nats", f"{scheme}://"):
            from tidings.engines.nats.engine import NatsEngine

        return NatsEngine(url)
    if scheme == "kafka":
        with require_extra("kafka", "kafka://"):
            from tidings.engines.kafka import KafkaEngine

        return KafkaEngine(url)
    raise ConfigurationError(
        f"unknown engine {scheme!r} in {url!r}; this build knows memory://, sqlite://, kafka:// and nats://"
    )


def _log_limits(options: dict[str, str]) -> dict[str, int]:
    """The embedded log's own options, taken out of a URL's query (max_partitions=N)."""
    if "max_partitions" not in options:
        return {}
    text = options.pop("max_partitions")
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(
            f"max_partitions={text!r} in the URL is not a count; give a positive integer, "
            f"e.g. sqlite://./bus.db?max_partitions=20000"
        )
    return {"max_partitions": int(text)}


def connect(url: str | None = None) -> Bus:
    """Open a bus (sync face); url defaults to $TIDINGS_URL or sqlite under ./.tidings/."""
    # the bus loads on first use, so the command line can name DEFAULT_URL cheaply
    from tidings.api.bus import AsyncBus, Bus
    from tidings.api.portal import Portal

    engine = engine_for(url or default_url())
    portal = Portal()
    try:
        core = portal.call(AsyncBus(engine).start())
    except BaseException:
        portal.close()
        raise
    return Bus(core, portal)


async def connect_async(url: str | None = None) -> AsyncBus:
    """Open a bus (async core) on the running event loop."""
    from tidings.api.bus import AsyncBus

    return await AsyncBus(engine_for(url or default_url())).start()
