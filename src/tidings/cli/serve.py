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
    help="A TOML file with any of: data, kafka, auto_create_topics, num_partitions.",
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
    "--super-users",
    metavar="LIST",
    envvar="TIDINGS_SUPER_USERS",
    show_envvar=True,
    default="",
    help="Principals that ACLs never refuse, comma-separated: User:admin,User:ops.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
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
    super_users: str,
    verbose: bool,
) -> None:
    """Serve the bus to Kafka clients (the Kafka wire protocol) until Ctrl-C or SIGTERM."""
    with require_extra("server", "tidings serve"), _without_hypothesis():
        from tidings.server.broker import (
            Broker,
            ServeConfig,
            parse_address,
            parse_optional_address,
        )
        from tidings.server.kafka.sasl import SaslConfig
    options = ctx.find_object(Options)
    assert options is not None, "commands run under the tidings group"
    url = options.url
    if data is not None:
        Path(data).mkdir(parents=True, exist_ok=True)
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
    assert broker.kafka is not None
    lines = [
        "tidings serve",
        f"  kafka  {broker.kafka.host}:{broker.kafka.port}   (any Kafka client: "
        f"bootstrap.servers={broker.kafka.host}:{broker.kafka.port})",
        *(
            [f"  http   {broker.http.url}   (REST, Server-Sent Events, /metrics, /docs)"]
            if broker.http is not None
            else []
        ),
        f"  data   {broker.config.url}",
        f"  auth   security.protocol={broker.config.security_protocol}"
        + (f" ({', '.join(broker.config.sasl.mechanisms)})" if broker.config.sasl else ""),
        "  stop   Ctrl-C or SIGTERM",
    ]
    click.echo("\n".join(lines), err=False)
