"""The authorizer's rules, as Kafka's StandardAuthorizer states them, and the ACL file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.disks import fill, remount, small_disk
from tidings.core.errors import ConfigurationError, StorageFullError, StoreReadOnlyError
from tidings.server.acls import (
    CLUSTER_NAME,
    Acl,
    AclFilter,
    AclStore,
    Authorizer,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    acl_file,
)

TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
READ, WRITE, DESCRIBE = Operation.READ, Operation.WRITE, Operation.DESCRIBE
ALLOW, DENY = Permission.ALLOW, Permission.DENY


def authorizer(*acls: Acl, super_users: tuple[str, ...] = ()) -> Authorizer:
    """An authorizer over ACLs held in memory."""
    store = AclStore(None)
    store.add(acls)
    return Authorizer(store, super_users)


def can(a: Authorizer, who: str, op: Operation, kind: ResourceType, name: str) -> bool:
    """Whether `who` from 10.0.0.1 may do `op` on the resource."""
    return a.authorize(who, "10.0.0.1", op, kind, name)


def test_with_no_acl_at_all_everyone_may_do_everything() -> None:
    a = authorizer()
    assert can(a, "User:anyone", Operation.DELETE, TOPIC, "orders")
    assert can(a, "User:ANONYMOUS", Operation.ALTER, CLUSTER, CLUSTER_NAME)


def test_once_an_acl_exists_what_none_allows_is_denied() -> None:
    a = authorizer(Acl("User:alice", READ, ALLOW, TOPIC, "orders"))
    assert can(a, "User:alice", READ, TOPIC, "orders")
    assert not can(a, "User:alice", WRITE, TOPIC, "orders")
    assert not can(a, "User:bob", READ, TOPIC, "orders")
    assert not can(a, "User:alice", READ, TOPIC, "payments")
    assert not can(a, "User:alice", READ, GROUP, "orders")


@pytest.mark.parametrize("granted", [READ, WRITE, Operation.DELETE, Operation.ALTER])
def test_read_write_delete_and_alter_imply_describe(granted: Operation) -> None:
    a = authorizer(Acl("User:alice", granted, ALLOW, TOPIC, "orders"))
    assert can(a, "User:alice", DESCRIBE, TOPIC, "orders")
    assert not can(a, "User:alice", Operation.DESCRIBE_CONFIGS, TOPIC, "orders")


def test_alter_configs_implies_describe_configs_and_nothing_else() -> None:
    a = authorizer(Acl("User:alice", Operation.ALTER_CONFIGS, ALLOW, TOPIC, "orders"))
    assert can(a, "User:alice", Operation.DESCRIBE_CONFIGS, TOPIC, "orders")
    assert not can(a, "User:alice", DESCRIBE, TOPIC, "orders")


def test_all_allows_every_operation_and_denying_all_denies_them() -> None:
    a = authorizer(
        Acl("User:*", Operation.ALL, ALLOW, TOPIC, "*"),
        Acl("User:bob", Operation.ALL, DENY, TOPIC, "secret"),
    )
    assert can(a, "User:bob", Operation.DELETE, TOPIC, "orders")
    assert not can(a, "User:bob", DESCRIBE, TOPIC, "secret")
    assert can(a, "User:alice", READ, TOPIC, "secret")


def test_deny_beats_allow() -> None:
    a = authorizer(
        Acl("User:*", READ, ALLOW, TOPIC, "orders"),
        Acl("User:bob", READ, DENY, TOPIC, "orders"),
    )
    assert can(a, "User:alice", READ, TOPIC, "orders")
    assert not can(a, "User:bob", READ, TOPIC, "orders")


def test_denying_describe_leaves_read_allowed_as_in_kafka() -> None:
    a = authorizer(
        Acl("User:bob", READ, ALLOW, TOPIC, "orders"),
        Acl("User:bob", DESCRIBE, DENY, TOPIC, "orders"),
    )
    assert can(a, "User:bob", READ, TOPIC, "orders")
    assert not can(a, "User:bob", DESCRIBE, TOPIC, "orders")


def test_prefixed_patterns_match_names_that_start_with_them() -> None:
    a = authorizer(Acl("User:alice", WRITE, ALLOW, TOPIC, "orders.", PatternType.PREFIXED))
    assert can(a, "User:alice", WRITE, TOPIC, "orders.eu")
    assert can(a, "User:alice", WRITE, TOPIC, "orders.")
    assert not can(a, "User:alice", WRITE, TOPIC, "orders")
    assert not can(a, "User:alice", WRITE, TOPIC, "payments.eu")


def test_a_literal_star_is_every_resource_but_a_prefixed_star_is_a_prefix() -> None:
    a = authorizer(
        Acl("User:alice", READ, ALLOW, TOPIC, "*"),
        Acl("User:bob", READ, ALLOW, TOPIC, "*", PatternType.PREFIXED),
    )
    assert can(a, "User:alice", READ, TOPIC, "anything")
    assert not can(a, "User:bob", READ, TOPIC, "anything")
    assert can(a, "User:bob", READ, TOPIC, "*x")


def test_hosts_other_than_star_match_that_address_only() -> None:
    a = authorizer(Acl("User:alice", READ, ALLOW, TOPIC, "orders", host="10.0.0.1"))
    assert a.authorize("User:alice", "10.0.0.1", READ, TOPIC, "orders")
    assert not a.authorize("User:alice", "10.0.0.2", READ, TOPIC, "orders")


def test_super_users_bypass_every_acl_even_a_deny() -> None:
    a = authorizer(Acl("User:admin", Operation.ALL, DENY, TOPIC, "*"), super_users=("User:admin",))
    assert can(a, "User:admin", Operation.DELETE, TOPIC, "orders")
    assert can(a, "User:admin", Operation.ALTER, CLUSTER, CLUSTER_NAME)
    assert not can(a, "User:other", READ, TOPIC, "orders")


def test_a_super_user_must_be_named_as_a_principal() -> None:
    with pytest.raises(ConfigurationError, match="super user 'admin' is not TYPE:NAME"):
        authorizer(super_users=("admin",))


def test_write_on_some_topic_allows_idempotent_producing() -> None:
    a = authorizer(Acl("User:alice", WRITE, ALLOW, TOPIC, "orders"))
    assert a.authorize_any("User:alice", "h", WRITE, TOPIC)
    assert not a.authorize_any("User:bob", "h", WRITE, TOPIC)


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"principal": "alice"}, "TYPE:NAME"),
        ({"operation": Operation.ANY}, "concrete Operation"),
        ({"permission": Permission.UNKNOWN}, "concrete Permission"),
        ({"pattern_type": PatternType.MATCH}, "LITERAL or PREFIXED"),
        ({"resource_type": CLUSTER, "resource_name": "prod"}, "kafka-cluster"),
        ({"resource_name": ""}, "resource name"),
    ],
)
def test_a_malformed_acl_is_refused_with_the_reason(
    fields: dict[str, object], complaint: str
) -> None:
    base: dict[str, object] = {
        "principal": "User:alice",
        "operation": READ,
        "permission": ALLOW,
        "resource_type": TOPIC,
        "resource_name": "orders",
    }
    with pytest.raises(ConfigurationError, match=complaint):
        Acl(**(base | fields))  # type: ignore[arg-type]


def test_operation_names_are_read_as_kafka_spells_them() -> None:
    assert Operation.parse("IdempotentWrite") is Operation.IDEMPOTENT_WRITE
    assert Operation.parse("describe_configs") is Operation.DESCRIBE_CONFIGS
    with pytest.raises(ConfigurationError, match="not an ACL operation; choose from All, Read"):
        Operation.parse("Fly")


def test_filters_match_as_kafkas_do() -> None:
    literal = Acl("User:alice", READ, ALLOW, TOPIC, "orders")
    prefixed = Acl("User:alice", READ, ALLOW, TOPIC, "ord", PatternType.PREFIXED)
    star = Acl("User:bob", WRITE, DENY, TOPIC, "*")
    every = [literal, prefixed, star]
    assert [a for a in every if AclFilter().matches(a)] == every
    match = AclFilter(TOPIC, "orders", PatternType.MATCH)
    assert [a for a in every if match.matches(a)] == every
    exact = AclFilter(TOPIC, "orders", PatternType.LITERAL)
    assert [a for a in every if exact.matches(a)] == [literal]
    by_who = AclFilter(principal="User:bob", permission=DENY)
    assert [a for a in every if by_who.matches(a)] == [star]


def test_acls_survive_in_the_file_and_another_store_sees_changes(tmp_path: Path) -> None:
    path = acl_file(f"sqlite://{tmp_path / 'tidings.db'}")
    assert path == tmp_path / "tidings.db.acls.json"
    writer, reader = AclStore(path), AclStore(path)
    acl = Acl("User:alice", READ, ALLOW, TOPIC, "orders")
    assert writer.add([acl, acl]) == [acl]
    assert writer.add([acl]) == []
    assert AclStore(path).acls() == {acl}
    assert path.stat().st_mode & 0o777 == 0o600
    reader._checked = float("-inf")  # as if a second had passed
    assert reader.acls() == {acl}
    assert writer.remove([AclFilter(principal="User:alice")]) == [[acl]]
    assert AclStore(path).acls() == frozenset()


def test_an_unreadable_acl_file_is_refused_not_taken_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "tidings.db.acls.json"
    path.write_text(json.dumps({"acls": [{"principal": "User:x"}]}))
    with pytest.raises(ConfigurationError, match="cannot read the ACLs"):
        AclStore(path)


def test_acls_live_beside_an_embedded_store_only() -> None:
    assert acl_file("memory://") is None
    with pytest.raises(ConfigurationError, match="sqlite://PATH"):
        acl_file("kafka://localhost:9092")


def test_acls_on_a_full_disk_raise_storage_full_and_keep_those_in_force(tmp_path: Path) -> None:
    alice = Acl("User:alice", READ, ALLOW, TOPIC, "orders")
    bob = Acl("User:bob", READ, ALLOW, TOPIC, "orders")
    with small_disk(tmp_path / "disk") as disk:
        store = AclStore(disk / "t.db.acls.json")
        store.add([alice])
        ballast = fill(disk)
        with pytest.raises(StorageFullError, match="free space"):
            store.add([bob])
        assert AclStore(store.path).acls() == {alice}
        assert sorted(p.name for p in disk.iterdir()) == [
            "ballast",
            "t.db.acls.json",
            "t.db.acls.json.lock",
        ]  # no half-written file left behind
        ballast.unlink()
        assert store.add([bob]) == [bob]
        assert AclStore(store.path).acls() == {alice, bob}


def test_acls_on_a_read_only_disk_raise_store_read_only(tmp_path: Path) -> None:
    alice = Acl("User:alice", READ, ALLOW, TOPIC, "orders")
    with small_disk(tmp_path / "disk") as disk:
        remount(disk, "ro")
        with pytest.raises(StoreReadOnlyError, match="read-only"):
            AclStore(disk / "t.db.acls.json").add([alice])
