"""SASL on the Kafka listener: PLAIN and SCRAM-SHA-256, off unless users are configured.

A connection speaks SaslHandshake (naming a mechanism), then SaslAuthenticate until the
mechanism is satisfied; before that, only ApiVersions is answered and any other request
closes the connection. SCRAM (RFC 5802/7677) runs through `scramp`; its credentials are
derived from the configured passwords when the broker starts, with a random salt.

A guesser learns nothing from the answers: an unknown user goes through a SCRAM exchange
with credentials made up from a per-server secret (a stable salt, a proof that never
matches), so it fails like a wrong password, with the same message and the same work.
Failed authentications are counted per client address in a token bucket; once it is
empty, every attempt from that address is refused until it refills.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import scramp
from kio.schema.errors import ErrorCode

from tidings.core.errors import ConfigurationError

log = logging.getLogger("tidings.server.kafka")

PLAIN = "PLAIN"
SCRAM_SHA_256 = "SCRAM-SHA-256"
MECHANISMS = (PLAIN, SCRAM_SHA_256)
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
Fields = dict[str, Any]


INVALID_CREDENTIALS = "invalid user name or password"
"""What a client hears for an unknown user and for a wrong password alike."""
FAILURES_ALLOWED = 10
"""Failed authentications as one user a client address may make in a burst."""
FAILURE_REFILL_S = 6.0
"""One more is allowed per this many seconds (10 a minute, once the burst is spent)."""
ADDRESS_FAILURES_ALLOWED = 100
"""Failed authentications as any users a client address may make in a burst."""
ADDRESS_FAILURE_REFILL_S = 1.0
"""One more is allowed per this many seconds, whatever the user."""
TRACKED = 10_000
"""Buckets remembered; past it, those that have refilled are dropped."""


class AuthenticationFailed(Exception):
    """The client's credentials were refused: answer with the reason, then close."""


class TooManyFailures(AuthenticationFailed):
    """A client address spent its failed authentications: refused without a look."""

    def __init__(self, address: str, retry_after_s: int) -> None:
        self.address, self.retry_after_s = address, retry_after_s
        super().__init__(
            f"too many failed authentications from {address}, try again in {retry_after_s}s"
        )


class FailedLogins:
    """Token buckets of failed authentications per client address, shared by listeners.

    A guesser of one user's password is held to FAILURES_ALLOWED in a burst, and one
    trying a password on many users to ADDRESS_FAILURES_ALLOWED; meanwhile every attempt
    is refused, the right password too. Other users of that address are not held by the
    first bucket, so a client stuck with a wrong password does not lock out its neighbours.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str | None], tuple[float, float]] = {}
        """(address, user or None for any) -> (tokens left, when counted)."""
        self._lock = threading.Lock()

    @property
    def tracked(self) -> int:
        """How many buckets are remembered now."""
        return len(self._buckets)

    def check(self, address: str, user: str | None = None) -> None:
        """Refuse an attempt from `address` (as `user`, if known) while failures are spent."""
        with self._lock:
            now = self._clock()
            waits = [self._wait(key, now) for key in _keys(address, user)]
        if max(waits) > 0:
            raise TooManyFailures(address, max(waits))

    def failed(self, address: str, user: str | None = None) -> None:
        """Count one failed authentication from `address` (as `user`, if known)."""
        with self._lock:
            now = self._clock()
            if len(self._buckets) >= TRACKED:
                self._forget_refilled(now)
            for key in _keys(address, user):
                self._buckets[key] = (max(self._tokens(key, now) - 1, 0.0), now)

    def _wait(self, key: tuple[str, str | None], now: float) -> int:
        """Whole seconds until the bucket holds one token (0: it does)."""
        tokens = self._tokens(key, now)
        return 0 if tokens >= 1 else math.ceil((1 - tokens) * _limit(key)[1])

    def _tokens(self, key: tuple[str, str | None], now: float) -> float:
        allowed, refill_s = _limit(key)
        tokens, since = self._buckets.get(key, (float(allowed), now))
        return min(float(allowed), tokens + (now - since) / refill_s)

    def _forget_refilled(self, now: float) -> None:
        """Drop the buckets that have refilled; if too many are left, the oldest half.

        Memory stays bounded whatever the number of addresses and user names tried, and
        the scan runs once per TRACKED / 2 new buckets at most.
        """
        full = [k for k in self._buckets if self._tokens(k, now) >= _limit(k)[0]]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= TRACKED // 2:
            for key in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[key]


def _keys(address: str, user: str | None) -> list[tuple[str, str | None]]:
    return [(address, None)] + ([(address, user)] if user is not None else [])


def _limit(key: tuple[str, str | None]) -> tuple[int, float]:
    """A bucket's size and the seconds it takes to regain one token."""
    if key[1] is None:
        return ADDRESS_FAILURES_ALLOWED, ADDRESS_FAILURE_REFILL_S
    return FAILURES_ALLOWED, FAILURE_REFILL_S


@dataclass(frozen=True)
class SaslConfig:
    """Who may connect, and with which mechanisms."""

    users: Mapping[str, str]
    """user -> password."""
    mechanisms: tuple[str, ...] = MECHANISMS
    failures: FailedLogins = field(default_factory=FailedLogins, compare=False, repr=False)
    """Failed authentications per client address, on every listener of the server."""
    _scram: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    _secret: bytes = field(
        default_factory=lambda: secrets.token_bytes(32), compare=False, repr=False
    )

    def __post_init__(self) -> None:
        unknown = set(self.mechanisms) - set(MECHANISMS)
        if unknown or not self.mechanisms:
            raise ConfigurationError(
                f"SASL mechanisms {', '.join(sorted(unknown)) or '(none)'} are not served; "
                f"choose from {', '.join(MECHANISMS)}"
            )
        if not self.users:
            raise ConfigurationError('SASL needs at least one user (name = "password")')
        mechanism = scramp.ScramMechanism(SCRAM_SHA_256)
        credentials = {u: mechanism.make_auth_info(p) for u, p in self.users.items()}
        object.__setattr__(self, "_scram", credentials)

    @classmethod
    def from_file(cls, path: str | Path, mechanisms: tuple[str, ...] = MECHANISMS) -> SaslConfig:
        """Users from a TOML file of `name = "password"` lines."""
        return cls(read_secrets(path, "SASL users", "password"), mechanisms)

    def session(self, address: str) -> SaslSession:
        """The authentication state of one new connection from `address`."""
        return SaslSession(self, address)

    def password_matches(self, user: str, password: bytes) -> bool:
        """Whether `user` exists and `password` is theirs."""
        expected = self.users.get(user)
        # compared even for an unknown user, so that both take the same time
        matches = hmac.compare_digest((expected or "").encode(), password)
        return expected is not None and matches

    def scram_credentials(self, user: str) -> Any:
        """A user's SCRAM credentials; made-up ones for an unknown user, that never match."""
        known = self._scram.get(user)
        if known is not None:
            return known
        # shaped as a real user's: the same salt length and iteration count
        salt, stored, server = (
            hmac.digest(self._secret, f"{part}\0{user}".encode(), hashlib.sha256)
            for part in ("salt", "stored", "server")
        )
        real_salt, _, _, iterations = next(iter(self._scram.values()))
        return salt[: len(real_salt)], stored, server, iterations


def read_secrets(path: str | Path, what: str, secret: str) -> dict[str, str]:
    """A TOML file of `name = "secret"` lines, or a clear ConfigurationError."""
    try:
        entries = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(f"cannot read the {what} file {path}: {e}") from e
    bad = [name for name, value in entries.items() if not isinstance(value, str)]
    if bad:
        raise ConfigurationError(
            f'{path}: {", ".join(bad)} need a {secret} string: name = "{secret}"'
        )
    return entries


class SaslSession:
    """One connection's way through SaslHandshake and SaslAuthenticate."""

    def __init__(self, config: SaslConfig, address: str) -> None:
        self.config = config
        self.address = address
        self.mechanism: str | None = None
        self.user: str | None = None
        self._scram: Any = None
        self._scram_user: str | None = None

    @property
    def authenticated(self) -> bool:
        """Whether the connection may send other requests."""
        return self.user is not None

    def handshake(self, request: Any) -> Fields:
        """Choose the mechanism the client names, if it is enabled."""
        enabled = list(self.config.mechanisms)
        if request.mechanism not in enabled:
            return {
                "error_code": ErrorCode.unsupported_sasl_mechanism,
                "mechanisms": enabled,
            }
        self.mechanism = request.mechanism
        return {"error_code": ErrorCode.none, "mechanisms": enabled}

    def authenticate(self, token: bytes) -> bytes:
        """The server's answer to one client token; raises AuthenticationFailed."""
        if self.mechanism == PLAIN:
            return self._plain(token)
        if self.mechanism == SCRAM_SHA_256:
            return self._scram_step(token)
        raise AuthenticationFailed("SaslAuthenticate came before a SaslHandshake")

    def _plain(self, token: bytes) -> bytes:
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise AuthenticationFailed("a PLAIN token is authzid NUL user NUL password")
        user = parts[1].decode(errors="replace")
        self.config.failures.check(self.address, user)
        if not self.config.password_matches(user, parts[2]):
            self.config.failures.failed(self.address, user)
            raise AuthenticationFailed(INVALID_CREDENTIALS)
        self.user = user
        return b""

    def _scram_step(self, token: bytes) -> bytes:
        try:
            if self._scram is None:
                mechanism = scramp.ScramMechanism(SCRAM_SHA_256)
                self._scram = mechanism.make_server(self._credentials)
                self._scram.set_client_first(token.decode())
                self.config.failures.check(self.address, self._scram_user)
                return str(self._scram.get_server_first()).encode()
            self._scram.set_client_final(token.decode())
            final = str(self._scram.get_server_final()).encode()
        except (scramp.ScramException, UnicodeDecodeError) as e:
            self.config.failures.failed(self.address, self._scram_user)
            log.info("SCRAM-SHA-256 exchange of user %r failed: %s", self._scram_user, e)
            raise AuthenticationFailed(INVALID_CREDENTIALS) from e
        self.user = self._scram_user
        return final

    def _credentials(self, user: str) -> Any:
        self._scram_user = user
        return self.config.scram_credentials(user)
