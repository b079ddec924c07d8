"""Connecting to NATS from a nats:// URL, and NATS errors turned into tidings errors.

    TidingsError
    ├── ConfigurationError        the server refused the credentials, or lacks JetStream
    └── NatsError                 the NATS server refused or did not answer
        ├── NatsConnectError      unreachable (or TLS failed), or the connection is down
        ├── NatsTimeoutError      a request not answered within request_timeout
        └── NatsRefusedError      a JetStream API error (its code and description kept)

NatsConnectError and NatsTimeoutError are EngineUnavailableErrors too (so also
ConnectionErrors), as the Kafka engine's ClusterUnavailableError is: the same call may
succeed once the server is back.

Every request is bounded by `request_timeout` (seconds, default 5), connecting by
`connect_timeout` (default 2): an unreachable server is an error, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from tidings.core.errors import ConfigurationError, EngineUnavailableError, TidingsError

T = TypeVar("T")
log = logging.getLogger("tidings")

DEFAULT_REQUEST_TIMEOUT_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 2.0


class NatsError(TidingsError):
    """The NATS server refused a request or did not answer it."""


class NatsConnectError(NatsError, EngineUnavailableError):
    """No connection: the server is unreachable, or the connection is down."""


class NatsTimeoutError(NatsError, EngineUnavailableError, TimeoutError):
    """A request got no answer within the request timeout."""


class NatsRefusedError(NatsError):
    """JetStream refused a request; `code` and `err_code` are the server's."""

    def __init__(self, message: str, code: int | None, err_code: int | None) -> None:
        self.code, self.err_code = code, err_code
        super().__init__(message)


@dataclass(frozen=True)
class NatsOptions:
    """Where and how to connect, read from a nats:// URL."""

    servers: list[str]
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    client: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments for nats.connect (user, password, token, tls, name)."""


_FLOATS = ("request_timeout", "connect_timeout")
_PASSED = ("user", "password", "token", "name", "tls_hostname")
_TLS = ("tls_ca", "tls_cert", "tls_key")


def parse_url(url: str) -> NatsOptions:
    """Servers and options of `nats://[user:pass@]host[:port][,host2...][?option=...]`.

    Options: user, password, token, name, tls_ca, tls_cert, tls_key, tls_hostname,
    request_timeout and connect_timeout (seconds). `tls://` connects with TLS.
    """
    scheme, _, rest = url.partition("://")
    hosts, _, query = rest.partition("?")
    if not hosts:
        raise ConfigurationError(
            f"{url!r} names no server; use nats://host:4222 (or several: nats://a:4222,b:4222)"
        )
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(options) - {*_FLOATS, *_PASSED, *_TLS}
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(unknown))} in {url!r}; known: "
            f"{', '.join((*_PASSED, *_TLS, *_FLOATS))}"
        )
    timeouts: dict[str, float] = {}
    for name in _FLOATS:
        if name in options:
            try:
                timeouts[name] = float(options[name])
            except ValueError:
                raise ConfigurationError(
                    f"{name} takes seconds, e.g. {name}=5, not {options[name]!r}"
                ) from None
            if timeouts[name] <= 0:
                raise ConfigurationError(f"{name} must be > 0 seconds, not {options[name]!r}")
    client: dict[str, Any] = {k: unquote(options[k]) for k in _PASSED if k in options}
    if scheme == "tls" or any(k in options for k in _TLS):
        context = ssl.create_default_context(cafile=options.get("tls_ca") or None)
        if "tls_cert" in options:
            context.load_cert_chain(options["tls_cert"], options.get("tls_key") or None)
        client["tls"] = context
    servers = [f"{scheme}://{host}" for host in hosts.split(",") if host]
    return NatsOptions(servers, client=client, **timeouts)


RESET_RETRIES = 3
"""Attempts when the server resets the connection while it is being made: a server that
refuses credentials may close before the client has read why, and it says why again."""


async def connect(options: NatsOptions, url: str) -> Client:
    """A connection that reconnects by itself once made; a first failure is an error.

    Refused credentials end the attempt at once (the client would otherwise retry them).
    """
    for _ in range(RESET_RETRIES - 1):
        try:
            return await _connect_once(options, url)
        except NatsConnectError as e:
            if not isinstance(e.__cause__, ConnectionResetError | BrokenPipeError):
                raise
            await asyncio.sleep(0.05)
    return await _connect_once(options, url)


async def _connect_once(options: NatsOptions, url: str) -> Client:
    nc = Client()
    errors: list[Exception] = []
    refused = asyncio.Event()

    async def on_error(e: Exception) -> None:  # logged once here, not on every retry
        errors.append(e)
        if _is_auth(e):
            refused.set()
        log.debug("nats connection to %s: %s", safe_url(url), e)

    settings: dict[str, Any] = {  # the client takes fractions of seconds too
        "connect_timeout": options.connect_timeout,
        "reconnect_time_wait": 0.2,
        **options.client,
    }
    connecting = asyncio.ensure_future(
        nc.connect(
            servers=options.servers,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            error_cb=on_error,
            **settings,
        )
    )
    watching = asyncio.ensure_future(refused.wait())
    bound = options.connect_timeout * (len(options.servers) + 1) + 1
    await asyncio.wait({connecting, watching}, timeout=bound, return_when=FIRST_COMPLETED)
    watching.cancel()
    failure: BaseException | None = None
    if not connecting.done():
        connecting.cancel()
        failure = errors[-1] if errors else TimeoutError("no answer")
    elif connecting.exception() is not None:
        failure = connecting.exception()
    if failure is not None:
        await _close_quietly(nc)
        raise _connect_error(url, failure) from failure
    return nc


def _is_auth(e: BaseException) -> bool:
    return isinstance(e, nats.errors.AuthorizationError) or "authorization" in str(e).lower()


def _connect_error(url: str, e: BaseException) -> TidingsError:
    text = str(e) or type(e).__name__
    if _is_auth(e):
        return ConfigurationError(
            f"the NATS server at {safe_url(url)} refused the credentials ({text}); check "
            f"user/password or token in the URL"
        )
    return NatsConnectError(
        safe_url(url),
        f"cannot connect to NATS at {safe_url(url)} ({text}); check that nats-server runs "
        f"there with JetStream (nats-server -js) and that the URL is right",
    )


def safe_url(url: str) -> str:
    """The URL's scheme and hosts, without credentials or options: for messages."""
    scheme, _, rest = url.partition("://")
    hosts = ",".join(h.rpartition("@")[2] for h in rest.partition("?")[0].split(","))
    return f"{scheme}://{hosts}"


async def _close_quietly(nc: Client) -> None:
    try:
        await asyncio.wait_for(nc.close(), timeout=1)
    except Exception as e:  # already broken: nothing more to release
        log.debug("closing a failed NATS connection: %s", e)


async def bounded(call: Awaitable[T], timeout: float, url: str, what: str) -> T:
    """Await `call` for at most `timeout` seconds, with NATS errors made tidings errors."""
    with translated(url, what):
        return await asyncio.wait_for(call, timeout)


@contextmanager
def translated(url: str, what: str) -> Any:
    """Turn NATS errors raised in the block into tidings errors naming `what` and `url`."""
    try:
        yield
    except nats.js.errors.APIError as e:
        code, err_code = getattr(e, "code", None), getattr(e, "err_code", None)
        text = getattr(e, "description", None) or str(e)
        raise NatsRefusedError(
            f"NATS refused to {what}: {text} (code {code}, err_code {err_code})", code, err_code
        ) from e
    except (TimeoutError, nats.errors.TimeoutError) as e:
        raise NatsTimeoutError(
            url,
            f"NATS at {url} did not answer in time to {what}; check that the server is up "
            f"and reachable, or raise request_timeout in the URL",
        ) from e
    except nats.js.errors.NoStreamResponseError as e:
        raise NatsRefusedError(
            f"no stream answered to {what}: the topic's stream is missing", None, None
        ) from e
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
        raise NatsConnectError(
            url,
            f"the connection to NATS at {url} is down while trying to {what}; it "
            f"reconnects by itself, retry shortly",
        ) from e
    except nats.errors.Error as e:
        raise NatsError(f"NATS failed to {what}: {e}") from e
