"""Who may call the HTTP API, under which names, and how: checked before any route runs.

Every request passes three checks, in this order:
- its Host is a name the server answers to, which stops DNS rebinding (421);
- a POST, PUT, PATCH or DELETE with a body sends it as `application/json` (415), and one
  without a body that a browser sends from another site (an `Origin` the server does not
  answer to) is refused (403): a web page can no longer change anything here;
- with users configured, it carries their credentials, HTTP Basic (the SASL users and
  passwords) or a bearer token (401 with `WWW-Authenticate` otherwise). Basic is refused
  over plain HTTP from another host, as anyone on the path would read the password.
Failed credentials count against the client's address, as on the Kafka listener (429).
Every response says how the API is protected, in the header `X-Tidings-Auth`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.core.errors import ConfigurationError
from tidings.server.http.acls import PRINCIPAL_KEY
from tidings.server.http.errors import error_response
from tidings.server.kafka.sasl import FailedLogins, SaslConfig, TooManyFailures

log = logging.getLogger("tidings.server.http")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Names every listener answers to."""
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods that change state: their bodies must be JSON."""
REALM = 'realm="tidings"'


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unspecified(host: str) -> bool:
    """Whether `host` is the address of every interface (0.0.0.0, ::), which none can reach."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class HttpAccess:
    """Who may call the HTTP API, and the Host names it answers to."""

    sasl: SaslConfig | None = None
    """Users and passwords for HTTP Basic (the Kafka listener's); None: no Basic."""
    tokens: Mapping[str, str] = field(default_factory=dict)
    """user -> bearer token."""
    hosts: frozenset[str] = LOOPBACK_NAMES
    """Host names (without port) requests may be addressed to."""
    basic: bool = True
    """Whether Basic credentials are taken from other hosts (not over plain HTTP)."""
    anonymous: str = "none (loopback only)"
    """How an API without users is reached, as `X-Tidings-Auth` says."""
    failures: FailedLogins = field(default_factory=FailedLogins, compare=False, repr=False)
    """Failed credentials per client address (the Kafka listener's, when SASL is on)."""

    def __post_init__(self) -> None:
        empty = sorted(user for user, token in self.tokens.items() if not token.strip())
        if empty:
            raise ConfigurationError(
                f"the bearer tokens of {', '.join(empty)} are empty, so any request would "
                f"pass as them; give each a long random token (e.g. from `openssl rand -hex 32`)"
            )

    @classmethod
    def for_listener(
        cls,
        host: str,
        *,
        sasl: SaslConfig | None = None,
        tokens: Mapping[str, str] | None = None,
        allowed_hosts: tuple[str, ...] = (),
        tls: bool = False,
        allow_anonymous: bool = False,
    ) -> HttpAccess:
        """The access rules of a listener on `host`; refuses an open API beyond loopback."""
        tokens = tokens or {}
        loopback = is_loopback(host)
        if sasl is None and not tokens and not loopback and not allow_anonymous:
            raise ConfigurationError(
                f"the HTTP API on {host} would let anyone who reaches it read, write and "
                f"delete every topic; configure users with --sasl-users (or --http-tokens), "
                f"listen on 127.0.0.1, or pass --allow-anonymous-http to serve it open anyway"
            )
        names = {*LOOPBACK_NAMES, *(h.lower() for h in allowed_hosts)}
        if is_unspecified(host):
            names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
        else:
            names.add(host.lower())
        return cls(
            sasl=sasl,
            tokens=tokens,
            hosts=frozenset(names),
            basic=tls or loopback,
            anonymous="none (loopback only)" if loopback else f"none (anonymous on {host})",
            failures=sasl.failures if sasl is not None else FailedLogins(),
        )

    @property
    def required(self) -> bool:
        """Whether requests must carry credentials."""
        return self.sasl is not None or bool(self.tokens)

    @property
    def mode(self) -> str:
        """How the API is protected, in a few words (the `X-Tidings-Auth` header)."""
        if not self.required:
            return self.anonymous
        basic = "basic" if self.basic else "basic (from this host only)"
        return ", ".join(([basic] if self.sasl is not None else []) + self._bearer)

    @property
    def _bearer(self) -> list[str]:
        return ["bearer"] if self.tokens else []

    def schemes(self, address: str) -> list[str]:
        """The schemes a client at `address` may authenticate with."""
        basic = self.sasl is not None and (self.basic or is_loopback(address))
        return (["basic"] if basic else []) + self._bearer

    def challenges(self, address: str) -> list[str]:
        """The `WWW-Authenticate` values of a 401 to a client at `address`."""
        values = {"basic": f'Basic {REALM}, charset="UTF-8"', "bearer": f"Bearer {REALM}"}
        return [values[s] for s in self.schemes(address)]

    def user(self, authorization: str | None, address: str) -> str:
        """The user the Authorization header names; raises Refused when it does not."""
        if authorization is None:
            raise Refused(401, "unauthorized", self._how("this API needs credentials", address))
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.sasl is not None and "basic" not in self.schemes(address):
            raise Refused(
                401,
                "unauthorized",
                "Basic credentials over plain HTTP beyond the loopback are refused, as anyone "
                "on the way can read them; serve HTTPS (--tls-cert) or use a bearer token",
            )
        user = _basic_user(credentials) if scheme == "basic" else None
        try:
            self.failures.check(address, user)
        except TooManyFailures as e:
            raise Refused(429, "too_many_failures", str(e), e.retry_after_s) from e
        verified = self._verify(scheme, credentials.strip())
        if verified is None:
            self.failures.failed(address, user)
            raise Refused(401, "unauthorized", self._how("invalid credentials", address))
        return verified

    def _verify(self, scheme: str, credentials: str) -> str | None:
        if scheme == "basic" and self.sasl is not None:
            user, password = _basic(credentials)
            return user if self.sasl.password_matches(user, password) else None
        if scheme == "bearer":
            given = credentials.encode()
            # every token is compared, so that the time taken does not tell which one is near
            found = [u for u, t in self.tokens.items() if hmac.compare_digest(t.encode(), given)]
            return found[0] if found else None
        return None

    def _how(self, what: str, address: str) -> str:
        ways = {
            "basic": "HTTP Basic with a user of --sasl-users",
            "bearer": "a bearer token of --http-tokens (Authorization: Bearer TOKEN)",
        }
        usable = [ways[s] for s in self.schemes(address)]
        if not usable:
            return f"{what}; Basic over plain HTTP is refused: serve HTTPS with --tls-cert"
        return f"{what}; send {' or '.join(usable)}"


class Refused(Exception):
    """A request the access rules turn away, with its status and what to do."""

    def __init__(
        self, status: int, error: str, message: str, retry_after_s: int | None = None
    ) -> None:
        self.status, self.error, self.message = status, error, message
        self.retry_after_s = retry_after_s
        super().__init__(message)


class AccessGuard:
    """ASGI middleware enforcing HttpAccess on every HTTP request, tails included."""

    def __init__(self, app: ASGIApp, access: HttpAccess) -> None:
        self.app = app
        self.access = access
        self.mode_header = (b"x-tidings-auth", access.mode.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refused request here; pass the others on, marked with the auth mode."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.mode_header]
            await send(message)

        try:
            self.check(scope)
        except Refused as e:
            response = error_response(e.status, e.error, e.message)
            if e.status == 401:
                for challenge in self.access.challenges(_client(scope)):
                    response.headers.append("WWW-Authenticate", challenge)
            if e.retry_after_s is not None:
                response.headers["Retry-After"] = str(e.retry_after_s)
            await response(scope, receive, marked)
            return
        await self.app(scope, receive, marked)

    def check(self, scope: Scope) -> None:
        """Raise Refused unless the request may go on."""
        headers = Headers(scope=scope)
        host = _hostname(headers.get("host", ""))
        if host not in self.access.hosts:
            raise Refused(
                421,
                "misdirected_request",
                f"this server does not answer to the host name {host or '(none)'!r}; "
                f"it answers to {', '.join(sorted(self.access.hosts))}: add a name with "
                f"--http-allowed-hosts",
            )
        if scope["method"] in CHANGES:
            self._check_body(headers)
        if self.access.required:
            user = self.access.user(headers.get("authorization"), _client(scope))
            scope[PRINCIPAL_KEY] = f"User:{user}"  # whom the ACLs of each route judge

    def _check_body(self, headers: Headers) -> None:
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        if (has_body or media) and media != "application/json":
            raise Refused(
                415,
                "unsupported_media_type",
                f"a request that changes something sends its body as application/json, "
                f"not {media or 'without a Content-Type'}; set Content-Type: application/json",
            )
        origin = headers.get("origin")
        if origin is not None and _hostname(urlsplit(origin).netloc) not in self.access.hosts:
            raise Refused(
                403,
                "cross_origin",
                f"a page of {origin} may not change anything here; call the API from a "
                f"program, or add that name with --http-allowed-hosts",
            )


def _basic(credentials: str) -> tuple[str, bytes]:
    """The user and password of Basic credentials; an empty user if they do not decode."""
    try:
        user, _, password = base64.b64decode(credentials.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return "", b""
    return user.decode(errors="replace"), password


def _basic_user(credentials: str) -> str | None:
    """The user Basic credentials name, if any."""
    return _basic(credentials)[0] or None


def _client(scope: Scope) -> str:
    """The address of the client, as the connection shows it."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _hostname(netloc: str) -> str:
    """The host of a Host header or URL authority, lowercase, without port or brackets."""
    netloc = netloc.strip().lower().rpartition("@")[2]
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    return netloc.partition(":")[0] if netloc.count(":") == 1 else netloc
