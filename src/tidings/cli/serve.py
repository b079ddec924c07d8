"""`tidings serve`: the embedded broker on the network, for any Kafka client."""

from __future__ import annotations

import asyncio
import logging
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tidings.cli.common import Options
from tidings.core.errors import ConfigurationError
from tidings.core.extras import require_extra
from tidings.core.records import MAX_PARTITIONS, RETENTION_CHECK_INTERVAL_S
from tidings.server import limits

if TYPE_CHECKING:
    from tidings.server.broker import Broker

CONFIG_KEYS = (
    "data",
    "kafka",
    "http",
    "auto_create_topics",
    "num_partitions",
    "sasl_users",
    "sasl_mechanisms",
    "tls_cert",
    "tls_key",
    "http_allowed_hosts",
    "http_tokens",
    "allow_anonymous_http",
    "advertise",
    "max_request_bytes",
    "max_queued_request_bytes",
    "max_connections",
    "max_connections_per_ip",
    "idle_timeout",
    "request_timeout",
    "max_partitions",
    "max_http_body_bytes",
    "super_users",
)


def _load_config(ctx: click.Context, _: click.Parameter, path: str | None) -> str | None:
    """Settings from a TOML file become the defaults that flags and variables override."""
    if path is None:
        return None
    try:
        settings: dict[str, Any] = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise click.BadParameter(f"cannot read {path}: {e}") from e
    unknown = set(settings) - set(CONFIG_KEYS)
    if unknown:
        raise click.BadParameter(
            f"{path} has unknown settings {', '.join(sorted(unknown))}; "
            f"known: {', '.join(CONFIG_KEYS)}"
        )
    ctx.default_map = {**(ctx.default_map or {}), **settings}
    return path


@click.command()
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    envvar="TIDINGS_CONFIG",
    show_envvar=True,
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="A TOML file of settings named as the flags, e.g. data, kafka, max_partitions.",
)
@click.option(
    "--data",
    metavar="DIR",
    envvar="TIDINGS_DATA",
    show_envvar=True,
    help="Keep the log in DIR/tidings.db (default: the global --url, ./.tidings/).",
)
@click.option(
    "--kafka",
    metavar="HOST:PORT",
    envvar="TIDINGS_KAFKA",
    show_envvar=True,
    default="127.0.0.1:9092",
    show_default=True,
    help="Where Kafka clients connect; port 0 picks a free port.",
)
@click.option(
    "--http",
    metavar="HOST:PORT",
    envvar="TIDINGS_HTTP",
    show_envvar=True,
    default="127.0.0.1:8080",
    show_default=True,
    help="Where the HTTP API listens; port 0 picks a free port, 'off' serves none.",
)
@click.option(
    "--auto-create-topics/--no-auto-create-topics",
    envvar="TIDINGS_AUTO_CREATE_TOPICS",
    show_envvar=True,
    default=True,
    show_default=True,
    help="Create a topic when a client first asks for it, as Kafka does.",
)
@click.option(
    "--num-partitions",
    type=click.IntRange(min=1),
    envvar="TIDINGS_NUM_PARTITIONS",
    show_envvar=True,
    default=1,
    show_default=True,
    help="Partitions of topics created automatically.",
)
@click.option(
    "--sasl-users",
    metavar="FILE",
    envvar="TIDINGS_SASL_USERS",
    show_envvar=True,
    help='Require SASL: a TOML file of name = "password" lines (off by default).',
)
@click.option(
    "--sasl-mechanisms",
    metavar="LIST",
    envvar="TIDINGS_SASL_MECHANISMS",
    show_envvar=True,
    default="PLAIN,SCRAM-SHA-256",
    show_default=True,
    help="The SASL mechanisms offered, comma-separated.",
)
@click.option(
    "--tls-cert",
    metavar="FILE",
    envvar="TIDINGS_TLS_CERT",
    show_envvar=True,
    help="Serve Kafka clients over TLS with this PEM certificate chain.",
)
@click.option(
    "--tls-key",
    metavar="FILE",
    envvar="TIDINGS_TLS_KEY",
    show_envvar=True,
    help="The certificate's private key (PEM), if not in --tls-cert.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1024),
    envvar="TIDINGS_MAX_REQUEST_BYTES",
    show_envvar=True,
    default=limits.MAX_REQUEST_BYTES,
    show_default=True,
    help="The largest Kafka request (socket.request.max.bytes), and the most a produced "
    "batch may decompress to.",
)
@click.option(
    "--max-queued-request-bytes",
    type=click.IntRange(min=1024),
    envvar="TIDINGS_MAX_QUEUED_REQUEST_BYTES",
    show_envvar=True,
    default=limits.MAX_QUEUED_REQUEST_BYTES,
    show_default=True,
    help="Request bytes all Kafka connections together may read and hold at once "
    "(queued.max.request.bytes); past it, connections wait their turn.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    envvar="TIDINGS_MAX_CONNECTIONS",
    show_envvar=True,
    default=limits.MAX_CONNECTIONS,
    show_default=True,
    help="Open Kafka connections at most; more are closed at once.",
)
@click.option(
    "--max-connections-per-ip",
    type=click.IntRange(min=1),
    envvar="TIDINGS_MAX_CONNECTIONS_PER_IP",
    show_envvar=True,
    default=limits.MAX_CONNECTIONS_PER_IP,
    show_default=True,
    help="Open Kafka connections from one client address at most.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0, min_open=True),
    envvar="TIDINGS_IDLE_TIMEOUT",
    show_envvar=True,
    default=limits.IDLE_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="Close a Kafka connection that sends nothing for this long.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    envvar="TIDINGS_REQUEST_TIMEOUT",
    show_envvar=True,
    default=limits.REQUEST_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="Close a Kafka connection whose request is not complete this long after it began.",
)
@click.option(
    "--max-partitions",
    type=click.IntRange(min=1),
    envvar="TIDINGS_MAX_PARTITIONS",
    show_envvar=True,
    default=MAX_PARTITIONS,
    show_default=True,
    help="The most partitions a topic may have.",
)
@click.option(
    "--max-http-body-bytes",
    type=click.IntRange(min=1024),
    envvar="TIDINGS_MAX_HTTP_BODY_BYTES",
    show_envvar=True,
    default=limits.MAX_HTTP_BODY_BYTES,
    show_default=True,
    help="The largest HTTP request body; larger ones are answered 413.",
)
@click.option(
    "--retention-check-interval",
    type=click.FloatRange(min=0, min_open=True),
    envvar="TIDINGS_RETENTION_CHECK_INTERVAL",
    show_envvar=True,
    default=RETENTION_CHECK_INTERVAL_S,
    show_default=True,
    metavar="SECONDS",
    help="How often retention and compaction run (Kafka's log.retention.check.interval.ms).",
)
@click.option(
    "--super-users",
    metavar="LIST",
    envvar="TIDINGS_SUPER_USERS",
    show_envvar=True,
    default="",
    help="Principals that ACLs never refuse, comma-separated: User:admin,User:ops.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
@click.option(
    "--http-allowed-hosts",
    metavar="LIST",
    envvar="TIDINGS_HTTP_ALLOWED_HOSTS",
    show_envvar=True,
    default="",
    help="Host names the HTTP API answers to besides localhost and its own address, "
    "comma-separated (others get 421, against DNS rebinding).",
)
@click.option(
    "--http-tokens",
    metavar="FILE",
    envvar="TIDINGS_HTTP_TOKENS",
    show_envvar=True,
    help='Bearer tokens for the HTTP API: a TOML file of name = "token" lines.',
)
@click.option(
    "--allow-anonymous-http",
    is_flag=True,
    envvar="TIDINGS_ALLOW_ANONYMOUS_HTTP",
    show_envvar=True,
    help="Serve the HTTP API without users on an address other than the loopback.",
)
@click.option(
    "--advertise",
    metavar="HOST:PORT",
    envvar="TIDINGS_ADVERTISE",
    show_envvar=True,
    help="The address Kafka clients are told to connect to (default: --kafka's; "
    "port 0: the port bound).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    *,
    data: str | None,
    kafka: str,
    http: str,
    auto_create_topics: bool,
    num_partitions: int,
    sasl_users: str | None,
    sasl_mechanisms: str,
    tls_cert: str | None,
    tls_key: str | None,
    max_request_bytes: int,
    max_queued_request_bytes: int,
    max_connections: int,
    max_connections_per_ip: int,
    idle_timeout: float,
    request_timeout: float,
    max_partitions: int,
    max_http_body_bytes: int,
    retention_check_interval: float,
    super_users: str,
    verbose: bool,
    http_allowed_hosts: str,
    http_tokens: str | None,
    allow_anonymous_http: bool,
    advertise: str | None,
) -> None:
    """Serve the bus to Kafka clients (the Kafka wire protocol) until Ctrl-C or SIGTERM."""
    with require_extra("server", "tidings serve"), _without_hypothesis():
        from tidings.server.broker import (
            Broker,
            ServeConfig,
            parse_address,
            parse_optional_address,
        )
        from tidings.server.kafka.sasl import SaslConfig, read_secrets
    options = ctx.find_object(Options)
    assert options is not None, "commands run under the tidings group"
    url = options.url
    if data is not None:
        Path(data).mkdir(mode=0o700, parents=True, exist_ok=True)
        url = f"sqlite://{Path(data) / 'tidings.db'}"
    config = ServeConfig(
        url,
        kafka=parse_address(kafka, "--kafka"),
        http=parse_optional_address(http, "--http"),
        auto_create_topics=auto_create_topics,
        num_partitions=num_partitions,
        sasl=None
        if sasl_users is None
        else SaslConfig.from_file(
            sasl_users, tuple(m.strip().upper() for m in sasl_mechanisms.split(",") if m.strip())
        ),
        tls_cert=tls_cert,
        tls_key=tls_key,
        advertise=None if advertise is None else parse_address(advertise, "--advertise"),
        http_allowed_hosts=tuple(h.strip() for h in http_allowed_hosts.split(",") if h.strip()),
        http_tokens={}
        if http_tokens is None
        else read_secrets(http_tokens, "HTTP tokens", "token"),
        allow_anonymous_http=allow_anonymous_http,
        limits=limits.Limits(
            max_request_bytes=max_request_bytes,
            max_queued_request_bytes=max_queued_request_bytes,
            max_connections=max_connections,
            max_connections_per_ip=max_connections_per_ip,
            idle_timeout_s=idle_timeout,
            request_timeout_s=request_timeout,
        ),
        max_partitions=max_partitions,
        max_http_body_bytes=max_http_body_bytes,
        retention_check_interval_s=retention_check_interval,
        super_users=tuple(u.strip() for u in super_users.split(",") if u.strip()),
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    try:
        asyncio.run(Broker(config).run(ready=_banner))
    except ConfigurationError:
        raise
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        pass


@contextmanager
def _without_hypothesis() -> Iterator[None]:
    """Hide hypothesis from the wire-protocol library while it loads.

    kio registers test strategies when hypothesis is importable, and hypothesis then
    writes a cache into .hypothesis/ under the current directory; a server needs neither.
    Where hypothesis is already loaded (a test run) it stays as it is.
    """
    if "hypothesis" in sys.modules:
        yield
        return
    sys.modules["hypothesis"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        del sys.modules["hypothesis"]


def _banner(broker: Broker) -> None:
    assert broker.kafka is not None and broker.advertised is not None
    host, port = broker.advertised
    lines = [
        "tidings serve",
        f"  kafka  {broker.kafka.host}:{broker.kafka.port}   (any Kafka client: "
        f"bootstrap.servers={host}:{port})",
        *(
            [f"  http   {broker.http.url}   (REST, Server-Sent Events, /metrics, /docs)"]
            if broker.http is not None
            else []
        ),
        f"  data   {broker.config.url}",
        f"  auth   security.protocol={broker.config.security_protocol}"
        + (f" ({', '.join(broker.config.sasl.mechanisms)})" if broker.config.sasl else "")
        + (f"; http: {broker.http.app.state.access.mode}" if broker.http is not None else ""),
        "  stop   Ctrl-C or SIGTERM",
    ]
    click.echo("\n".join(lines), err=False)
