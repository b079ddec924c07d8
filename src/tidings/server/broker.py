"""`tidings serve`: the embedded log with its network listeners, started and stopped as one."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tidings.api.bus import AsyncBus
from tidings.api.connect import engine_for
from tidings.core.errors import ConfigurationError
from tidings.core.records import MAX_PARTITIONS, RETENTION_CHECK_INTERVAL_S
from tidings.engines.log.served import ServedLog
from tidings.server.acls import AclStore, Authorizer, acl_file
from tidings.server.http.access import HttpAccess, is_loopback, is_unspecified
from tidings.server.kafka.apis import BrokerSettings, KafkaApis
from tidings.server.kafka.sasl import PLAIN, SaslConfig
from tidings.server.kafka.server import KafkaServer
from tidings.server.limits import MAX_HTTP_BODY_BYTES, Limits

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
    """A certificate chain and its key (PEM): the Kafka listener speaks TLS, the HTTP API
    HTTPS."""
    advertise: tuple[str, int] | None = None
    """The address Metadata gives Kafka clients (default: the one listened on; port 0:
    the port bound)."""
    http_allowed_hosts: tuple[str, ...] = ()
    """Host names the HTTP API answers to, besides the loopback's and its listener's."""
    http_tokens: Mapping[str, str] = field(default_factory=dict)
    """user -> bearer token for the HTTP API."""
    allow_anonymous_http: bool = False
    """Serve the HTTP API without users on an address beyond the loopback."""
    limits: Limits = field(default_factory=Limits)
    """Request sizes, connections and timeouts of the Kafka listener."""
    max_partitions: int = MAX_PARTITIONS
    """The most partitions a topic may have."""
    max_http_body_bytes: int = MAX_HTTP_BODY_BYTES
    """The largest HTTP request body."""
    retention_check_interval_s: float = RETENTION_CHECK_INTERVAL_S
    """Seconds between rounds of retention and compaction (Kafka's
    log.retention.check.interval.ms)."""

    def __post_init__(self) -> None:
        if self.num_partitions > self.max_partitions:
            raise ConfigurationError(
                f"num_partitions={self.num_partitions} is over max_partitions="
                f"{self.max_partitions}; lower --num-partitions or raise --max-partitions"
            )

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


def advertised(host: str, port: int, advertise: tuple[str, int] | None) -> tuple[str, int]:
    """The address Kafka clients are sent to: never an unspecified one such as 0.0.0.0."""
    if advertise is not None:
        return advertise[0], advertise[1] or port
    if is_unspecified(host):
        log.warning(
            "the Kafka listener is on %s, which no client can connect to: Metadata "
            "advertises 127.0.0.1:%d, so clients on other hosts cannot reach it; set "
            "--advertise HOST:PORT to the name they use",
            host,
            port,
        )
        return "127.0.0.1", port
    return host, port


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
        self.advertised: tuple[str, int] | None = None
        """The address Kafka clients are sent to, once started."""
        self.bus: AsyncBus | None = None
        self.kafka: KafkaServer | None = None
        self.http: HttpServer | None = None
        self.authorizer: Authorizer | None = None

    async def start(self) -> None:
        """Open the bus and start listening."""
        access = self._http_access()
        self._warn_about_exposure()
        engine = engine_for(self.config.url)
        if not isinstance(engine, ServedLog):
            raise ConfigurationError(
                f"tidings serve runs on the embedded log (sqlite:// or memory://), "
                f"not {self.config.url!r}"
            )
        engine.max_partitions = self.config.max_partitions
        engine.maintenance_interval_s = self.config.retention_check_interval_s
        self.bus = await AsyncBus(engine).start()
        host, port = self.config.kafka
        settings = BrokerSettings(
            host,
            port,
            self.config.auto_create_topics,
            self.config.num_partitions,
            self.config.limits.max_request_bytes,
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
            limits=self.config.limits,
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
        # clients connect where metadata says: the port actually bound, or --advertise
        self.advertised = advertised(bound_host, bound_port, self.config.advertise)
        host, port = self.advertised
        self.kafka.apis.settings = dataclasses.replace(settings, host=host, port=port)
        if self.config.http is not None:
            from tidings.server.http import serve_http

            try:
                self.http = await serve_http(
                    self.bus,
                    *self.config.http,
                    access=access,
                    authorizer=self.authorizer,
                    tls_cert=self.config.tls_cert,
                    tls_key=self.config.tls_key,
                    max_body_bytes=self.config.max_http_body_bytes,
                )
            except ConfigurationError:
                await self.close()
                raise

    def _http_access(self) -> HttpAccess | None:
        """Who may call the HTTP API; refuses an open API beyond the loopback."""
        if self.config.http is None:
            return None
        return HttpAccess.for_listener(
            self.config.http[0],
            sasl=self.config.sasl,
            tokens=self.config.http_tokens,
            allowed_hosts=self.config.http_allowed_hosts,
            tls=self.config.tls_cert is not None,
            allow_anonymous=self.config.allow_anonymous_http,
        )

    def _warn_about_exposure(self) -> None:
        """Log what leaves passwords or data open to others on the network."""
        config = self.config
        kafka_host = config.kafka[0]
        if config.sasl is None and not is_loopback(kafka_host):
            log.warning(
                "the Kafka listener on %s takes clients without authentication: anyone who "
                "reaches it reads, writes and deletes every topic; set --sasl-users",
                kafka_host,
            )
        if config.sasl is not None and PLAIN in config.sasl.mechanisms and not config.tls_cert:
            log.warning(
                "SASL PLAIN without TLS sends passwords in clear text on the network; "
                "set --tls-cert, or offer only --sasl-mechanisms SCRAM-SHA-256"
            )
        if config.http is None:
            return
        http_host = config.http[0]
        if is_loopback(http_host):
            return
        if config.sasl is None and not config.http_tokens:
            log.warning(
                "the HTTP API on %s is open to anyone who reaches it (--allow-anonymous-http); "
                "set --sasl-users or --http-tokens",
                http_host,
            )
        elif config.sasl is not None and not config.tls_cert:
            log.warning(
                "the HTTP API on %s refuses Basic credentials over plain HTTP from other "
                "hosts; set --tls-cert to serve HTTPS, or give clients --http-tokens",
                http_host,
            )

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
