"""SASL on the Kafka listener: PLAIN and SCRAM-SHA-256, off unless users are configured.

A connection speaks SaslHandshake (naming a mechanism), then SaslAuthenticate until the
mechanism is satisfied; before that, only ApiVersions is answered and any other request
closes the connection. SCRAM (RFC 5802/7677) runs through `scramp`; its credentials are
derived from the configured passwords when the broker starts, with a random salt.
"""

from __future__ import annotations

import hmac
import logging
import tomllib
from collections.abc import Mapping
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


class AuthenticationFailed(Exception):
    """The client's credentials were refused: answer with the reason, then close."""


@dataclass(frozen=True)
class SaslConfig:
    """Who may connect, and with which mechanisms."""

    users: Mapping[str, str]
    """user -> password."""
    mechanisms: tuple[str, ...] = MECHANISMS
    _scram: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

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
        try:
            users = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigurationError(f"cannot read the SASL users file {path}: {e}") from e
        bad = [u for u, p in users.items() if not isinstance(p, str)]
        if bad:
            raise ConfigurationError(
                f'{path}: users {", ".join(bad)} need a password string: name = "password"'
            )
        return cls(users, mechanisms)

    def session(self) -> SaslSession:
        """The authentication state of one new connection."""
        return SaslSession(self)


class SaslSession:
    """One connection's way through SaslHandshake and SaslAuthenticate."""

    def __init__(self, config: SaslConfig) -> None:
        self.config = config
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
        user, password = parts[1].decode(errors="replace"), parts[2]
        expected = self.config.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password):
            raise AuthenticationFailed(f"invalid user name or password (user {user!r})")
        self.user = user
        return b""

    def _scram_step(self, token: bytes) -> bytes:
        try:
            if self._scram is None:
                mechanism = scramp.ScramMechanism(SCRAM_SHA_256)
                self._scram = mechanism.make_server(self._credentials)
                self._scram.set_client_first(token.decode())
                return str(self._scram.get_server_first()).encode()
            self._scram.set_client_final(token.decode())
            final = str(self._scram.get_server_final()).encode()
        except (scramp.ScramException, UnicodeDecodeError, KeyError) as e:
            raise AuthenticationFailed(f"SCRAM-SHA-256 authentication failed: {e}") from e
        self.user = self._scram_user
        return final

    def _credentials(self, user: str) -> Any:
        self._scram_user = user
        credentials = self.config._scram.get(user)
        if credentials is None:
            raise scramp.ScramException(f"unknown user {user!r}")
        return credentials
