"""`tidings serve`: the embedded log with its network listeners, started and stopped as one."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tidings.api.bus import AsyncBus
from tidings.api.connect import connect_async
from tidings.core.errors import ConfigurationError
from tidings.engines.log.engine import LogEngine
from tidings.server.acls import AclStore, Authorizer, acl_file
from tidings.server.kafka.apis import BrokerSettings, KafkaApis
from tidings.server.kafka.sasl import SaslConfig
from tidings.server.kafka.server import KafkaServer

if TYPE_CHECKING:
    from tidings.server.http import HttpServer

log = logging.getLogger("tidings.server")


@dataclass(frozen=True)
class ServeConfig:
    """Where the broker keeps its data and where it listens."""

    url: str
    """The bus under the broker: sqlite://PATH (durable) or memory://."""
    kafka: tuple[str, int] = ("127.0.0.1", 9092)
    http: tuple[str, int] | None = ("127.0.0.1", 8080)
    """Where the HTTP API listens; None: no HTTP API."""
    auto_create_topics: bool = True
    """Create a topic when a client asks for its metadata (Kafka's default)."""
    num_partitions: int = 1
    """Partitions of topics created automatically."""
    sasl: SaslConfig | None = None
    """Users and mechanisms: clients must authenticate (off when None)."""
    tls_cert: str | None = None
    tls_key: str | None = None
    """A certificate chain and its key (PEM): the Kafka listener speaks TLS."""
    super_users: tuple[str, ...] = ()
    """Principals (`User:admin`) that ACLs never refuse."""

    @property
    def security_protocol(self) -> str:
        """What Kafka clients set as security.protocol to connect."""
        return ("SASL_" if self.sasl else "") + ("SSL" if self.tls_cert else "PLAINTEXT")

    def tls_context(self) -> ssl.SSLContext | None:
        """The listener's TLS context, or None for plaintext."""
        if self.tls_cert is None:
            if self.tls_key is not None:
                raise ConfigurationError("--tls-key needs --tls-cert (the certificate chain)")
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigurationError(
                f"cannot load the TLS certificate {self.tls_cert} (key {self.tls_key}): {e}; "
                f"give a PEM certificate chain with --tls-cert and its key with --tls-key"
            ) from e
        return context


def parse_address(text: str, what: str) -> tuple[str, int]:
    """HOST:PORT (port 0 picks a free one) as a pair, or a clear error."""
    return _address(text, what)


def parse_optional_address(text: str, what: str) -> tuple[str, int] | None:
    """HOST:PORT, or None for "off" (that listener is not started)."""
    return None if text.strip().lower() in ("off", "none", "") else _address(text, what)


def _address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(
            f"{what} address {text!r} is not HOST:PORT, e.g. 127.0.0.1:9092 (port 0 picks one)"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


class Broker:
    """The bus and its Kafka listener."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.bus: AsyncBus | None = None
        self.kafka: KafkaServer | None = None
        self.http: HttpServer | None = None
        self.authorizer: Authorizer | None = None

    async def start(self) -> None:
        """Open the bus and start listening."""
        self.bus = await connect_async(self.config.url)
        engine = self.bus.engine
        if not isinstance(engine, LogEngine):
            await self.bus.close()
            raise ConfigurationError(
                f"tidings serve runs on the embedded log (sqlite:// or memory://), "
                f"not {self.config.url!r}"
            )
        host, port = self.config.kafka
        settings = BrokerSettings(
            host, port, self.config.auto_create_topics, self.config.num_partitions
        )
        try:
            tls = self.config.tls_context()
            self.authorizer = Authorizer(
                AclStore(acl_file(self.config.url)), self.config.super_users
            )
        except ConfigurationError:
            await self.bus.close()
            raise
        self.kafka = KafkaServer(
            KafkaApis(engine, settings, self.authorizer),
            host,
            port,
            sasl=self.config.sasl,
            tls=tls,
        )
        try:
            bound_host, bound_port = await self.kafka.start()
        except OSError as e:
            await self.bus.close()
            raise ConfigurationError(
                f"cannot listen for Kafka clients on {host}:{port}: {e.strerror or e}; "
                f"choose another address with --kafka HOST:PORT (port 0 picks a free one)"
            ) from e
        # clients connect where metadata says: the port actually bound
        self.kafka.apis.settings = BrokerSettings(
            bound_host, bound_port, settings.auto_create_topics, settings.num_partitions
        )
        if self.config.http is not None:
            from tidings.server.http import serve_http

            try:
                self.http = await serve_http(self.bus, *self.config.http, self.authorizer)
            except ConfigurationError:
                await self.close()
                raise

    async def close(self) -> None:
        """Answer what is in progress, stop listening, close the bus."""
        if self.http is not None:
            await self.http.close()
        if self.kafka is not None:
            await self.kafka.close()
        if self.bus is not None:
            await self.bus.close()

    async def run(self, ready: Callable[[Broker], None] = lambda _: None) -> None:
        """Start, call `ready`, serve until SIGINT or SIGTERM, then shut down cleanly."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            ready(self)
            await stop.wait()
            log.info("shutting down")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.close()
