"""Access control lists in Kafka's model, and the one authorizer every surface asks.

An ACL says: principal P is allowed (or denied) operation O from host H on the resources
matching pattern R. Resources are topics, groups, the cluster and transactional ids; a
pattern names one resource (literal; `*` is every one) or every resource whose name
starts with it (prefixed). The rules are those of Kafka's StandardAuthorizer:

- super users may do everything;
- a matching DENY wins over any ALLOW;
- ALLOW of Read, Write, Delete or Alter also allows Describe; ALLOW of AlterConfigs also
  allows DescribeConfigs; ALLOW of All allows every operation (DENY of All denies them);
- once any ACL exists, what no ACL allows is denied (allow.everyone.if.no.acl.found=false);
  with no ACL at all everyone may do everything, so a broker without ACLs works as before.

ACLs are kept in a JSON file beside the store (`tidings.db.acls.json`), written whole and
renamed into place under a lock, so `tidings acls` and a running broker share them; the
broker reads the file again when it changes. A memory:// bus keeps them in memory.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

from tidings.core.errors import (
    ConfigurationError,
    DiskError,
    StorageFullError,
    StoreReadOnlyError,
)

log = logging.getLogger("tidings.server.acls")

CLUSTER_NAME = "kafka-cluster"
"""The one cluster resource's name, as in Kafka."""
ANONYMOUS = "User:ANONYMOUS"
"""The principal of a client that did not authenticate."""
WILDCARD = "*"
REFRESH_S = 1.0
"""How often the broker looks for changes another process made to the ACL file."""
FILE_MODE = 0o600


class _Named(enum.IntEnum):
    """A Kafka enum whose members are also spelled as in Kafka's tools (Read, AlterConfigs)."""

    @classmethod
    def parse(cls, text: str) -> Self:
        """The member named `text` (any case, with or without underscores)."""
        wanted = text.replace("_", "").replace("-", "").lower()
        for member in cls:
            if member.name.replace("_", "").lower() == wanted and member.value > 1:
                return member
        raise ConfigurationError(
            f"{text!r} is not an ACL {cls.__name__.lower()}; choose from "
            + ", ".join(m.title for m in cls if m.value > 1)
        )

    @property
    def title(self) -> str:
        """The name as Kafka's tools print it: Read, IdempotentWrite."""
        return "".join(part.capitalize() for part in self.name.split("_"))


class ResourceType(_Named):
    """What an ACL is about (Kafka's codes)."""

    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(_Named):
    """How an ACL's resource name matches (Kafka's codes)."""

    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(_Named):
    """What an ACL allows or denies (Kafka's codes)."""

    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class Permission(_Named):
    """Whether an ACL allows or denies (Kafka's codes)."""

    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


IMPLIED: dict[Operation, frozenset[Operation]] = {
    Operation.DESCRIBE: frozenset(
        {Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER}
    ),
    Operation.DESCRIBE_CONFIGS: frozenset({Operation.ALTER_CONFIGS}),
}
"""Operations whose ALLOW also allows the key operation."""


def check_principal(principal: str, what: str) -> None:
    """Raise ConfigurationError unless `principal` is TYPE:NAME (User:alice)."""
    kind, sep, name = principal.partition(":")
    if not (kind and sep and name):
        raise ConfigurationError(
            f"{what} {principal!r} is not TYPE:NAME; write e.g. User:alice (User:* for everyone)"
        )


@dataclass(frozen=True)
class Acl:
    """One access control entry on one resource pattern."""

    principal: str
    """`User:alice`, or `User:*` for every principal."""
    operation: Operation
    permission: Permission
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType = PatternType.LITERAL
    host: str = WILDCARD

    def __post_init__(self) -> None:
        for value in (self.operation, self.permission, self.resource_type):
            if value <= 1:
                raise ConfigurationError(
                    f"an ACL needs a concrete {type(value).__name__}, not {value.name}"
                )
        if self.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
            raise ConfigurationError(
                f"an ACL's pattern type is LITERAL or PREFIXED, not {self.pattern_type.name}"
            )
        check_principal(self.principal, "principal")
        if not self.resource_name:
            raise ConfigurationError("an ACL needs a resource name (or * for every one)")
        if self.resource_type == ResourceType.CLUSTER and self.resource_name != CLUSTER_NAME:
            raise ConfigurationError(
                f"the cluster resource is named {CLUSTER_NAME!r}, not {self.resource_name!r}"
            )
        if not self.host:
            raise ConfigurationError("an ACL needs a host (or * for every one)")

    def matches(self, resource_type: ResourceType, name: str) -> bool:
        """Whether this ACL's pattern covers the resource."""
        if resource_type != self.resource_type:
            return False
        if self.pattern_type == PatternType.PREFIXED:
            return name.startswith(self.resource_name)
        return self.resource_name in (name, WILDCARD)

    def to_json(self) -> dict[str, str]:
        """The ACL as JSON, its enums by name."""
        return {k: v.name if isinstance(v, enum.Enum) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Acl:
        """An ACL from `to_json`."""
        return cls(
            principal=data["principal"],
            operation=Operation[data["operation"]],
            permission=Permission[data["permission"]],
            resource_type=ResourceType[data["resource_type"]],
            resource_name=data["resource_name"],
            pattern_type=PatternType[data["pattern_type"]],
            host=data["host"],
        )

    def __str__(self) -> str:
        pattern = "" if self.pattern_type == PatternType.LITERAL else " (prefixed)"
        return (
            f"{self.principal} {self.permission.title} {self.operation.title} from "
            f"{self.host} on {self.resource_type.title} {self.resource_name!r}{pattern}"
        )


@dataclass(frozen=True)
class AclFilter:
    """Which ACLs to describe or delete; None and ANY match every value (Kafka's filter)."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    def matches(self, acl: Acl) -> bool:
        """Whether `acl` passes the filter."""
        if self.resource_type not in (ResourceType.ANY, acl.resource_type):
            return False
        if self.pattern_type == PatternType.MATCH:
            if self.resource_name is not None and not acl.matches(
                acl.resource_type, self.resource_name
            ):
                return False
        elif self.pattern_type not in (
            PatternType.ANY,
            acl.pattern_type,
        ) or self.resource_name not in (
            None,
            acl.resource_name,
        ):
            return False
        return (
            self.principal in (None, acl.principal)
            and self.host in (None, acl.host)
            and self.operation in (Operation.ANY, acl.operation)
            and self.permission in (Permission.ANY, acl.permission)
        )


def acl_file(url: str) -> Path | None:
    """Where the ACLs of the bus at `url` are kept; None for a memory:// bus."""
    scheme, _, rest = url.partition("://")
    if scheme == "memory":
        return None
    if scheme != "sqlite" or not rest.split("?", 1)[0]:
        raise ConfigurationError(
            f"ACLs are kept beside an embedded store (sqlite://PATH), not for {url!r}"
        )
    return Path(rest.split("?", 1)[0] + ".acls.json")


class AclStore:
    """The ACLs, in a JSON file shared by the broker and `tidings acls` (or in memory)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._acls: frozenset[Acl] = frozenset()
        self._seen: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._read()

    def acls(self) -> frozenset[Acl]:
        """Every ACL, as another process last wrote them (checked at most every REFRESH_S)."""
        now = time.monotonic()
        if self.path is not None and now - self._checked >= REFRESH_S:
            self._checked = now
            stamp = self._stamp()
            if stamp != self._seen:
                try:
                    self._read()
                except ConfigurationError as e:
                    log.error("%s; the ACLs read before stay in force", e)
                    self._seen = stamp
        return self._acls

    def add(self, acls: Iterable[Acl]) -> list[Acl]:
        """Store `acls`; those that were not already there."""
        new = list(dict.fromkeys(acls))
        with self._changing() as current:
            added = [a for a in new if a not in current]
            current.update(added)
        return added

    def remove(self, filters: Iterable[AclFilter]) -> list[list[Acl]]:
        """Delete the ACLs each filter matches; those deleted, per filter."""
        wanted = list(filters)
        with self._changing() as current:
            found = [sorted((a for a in current if f.matches(a)), key=str) for f in wanted]
            for acls in found:
                current.difference_update(acls)
        return found

    @contextlib.contextmanager
    def _changing(self) -> Iterator[set[Acl]]:
        """The ACLs as stored now, to change; written back whole when the block ends."""
        if self.path is None:
            current = set(self._acls)
            yield current
            self._acls = frozenset(current)
            return
        with _refused_writes(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._read()
            current = set(self._acls)
            yield current
            if current != self._acls:
                self._write(frozenset(current))
        finally:
            os.close(lock)

    def _write(self, acls: frozenset[Acl]) -> None:
        assert self.path is not None
        text = json.dumps({"acls": [a.to_json() for a in sorted(acls, key=str)]}, indent=1)
        temporary = self.path.with_name(self.path.name + ".new")
        with _refused_writes(self.path):
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, self.path)
            except OSError:
                # The ACLs in force stay as they were: the file is replaced whole or not at all.
                with contextlib.suppress(OSError):
                    temporary.unlink()
                raise
        self._acls, self._seen = acls, self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _read(self) -> None:
        if self.path is None:
            return
        stamp = self._stamp()
        if stamp is None:
            self._acls, self._seen = frozenset(), None
            return
        try:
            data = json.loads(self.path.read_text())
            acls = frozenset(Acl.from_json(a) for a in data["acls"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            # An unreadable file must not open the broker to everyone: keep what was read.
            raise ConfigurationError(
                f"cannot read the ACLs in {self.path}: {e}; fix or restore the file "
                f'(it holds {{"acls": [...]}} as `tidings acls list --json` prints)'
            ) from e
        self._acls, self._seen = acls, stamp


@contextlib.contextmanager
def _refused_writes(path: Path) -> Iterator[None]:
    """Raise a write to the ACL file that the disk refused as the tidings error for it."""
    try:
        yield
    except OSError as e:
        action = "change the ACLs"
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(str(path), action) from e
        if e.errno == errno.EROFS:
            raise StoreReadOnlyError(str(path), action) from e
        if e.errno == errno.EIO:
            raise DiskError(str(path), action, f"failed ({e.strerror})") from e
        raise


class Authorizer:
    """Decides whether a principal may do an operation on a resource (Kafka's rules)."""

    def __init__(self, store: AclStore, super_users: Iterable[str] = ()) -> None:
        self.store = store
        self.super_users = frozenset(super_users)
        for principal in self.super_users:
            check_principal(principal, "super user")

    @property
    def enforcing(self) -> bool:
        """Whether any ACL exists: with none, everyone may do everything."""
        return bool(self.store.acls())

    def authorize(
        self,
        principal: str,
        host: str,
        operation: Operation,
        resource_type: ResourceType,
        name: str,
    ) -> bool:
        """Whether `principal` connecting from `host` may do `operation` on the resource."""
        acls = self.store.acls()
        if not acls or principal in self.super_users:
            return True
        allowing = {Operation.ALL, operation, *IMPLIED.get(operation, ())}
        allowed = False
        for acl in acls:
            if not (
                acl.principal in (principal, "User:*")
                and acl.host in (host, WILDCARD)
                and acl.matches(resource_type, name)
            ):
                continue
            if acl.permission == Permission.DENY:
                if acl.operation in (Operation.ALL, operation):
                    return False
            elif acl.operation in allowing:
                allowed = True
        return allowed

    def authorize_any(
        self, principal: str, host: str, operation: Operation, resource_type: ResourceType
    ) -> bool:
        """Whether some ACL allows `operation` on some resource of the type (Kafka's
        authorizeByResourceType, simplified: a literal deny of `*` refuses all)."""
        acls = self.store.acls()
        if not acls or principal in self.super_users:
            return True
        matching = [
            a
            for a in acls
            if a.resource_type == resource_type
            and a.principal in (principal, "User:*")
            and a.host in (host, WILDCARD)
            and a.operation in (Operation.ALL, operation)
        ]
        if any(
            a.permission == Permission.DENY
            and a.pattern_type == PatternType.LITERAL
            and a.resource_name == WILDCARD
            for a in matching
        ):
            return False
        return any(a.permission == Permission.ALLOW for a in matching)
