"""ACLs on a real `tidings serve` with SASL users, managed and felt by real Kafka clients."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from .conftest import TIDINGS, Served

USERS = 'admin = "root"\nalice = "wonderland"\nbob = "builder"\n'
PASSWORDS = {"admin": "root", "alice": "wonderland", "bob": "builder"}
TIMEOUT_S = 20.0


_ADMINS: dict[tuple[str, int, str], AdminClient] = {}
"""Admin clients by broker and user: a client's futures need it alive."""


@pytest.fixture
def secured(start: Callable[..., Served], tmp_path: Path) -> Iterator[Served]:
    """A broker with three SASL users, `admin` a super user, and no ACL yet."""
    users = tmp_path / "users.toml"
    users.write_text(USERS)
    yield start("--sasl-users", str(users), "--super-users", "User:admin")
    _ADMINS.clear()  # their clients close before the brokers stop


def config(broker: Served, user: str, **more: Any) -> dict[str, Any]:
    """A client configuration that logs in as `user`."""
    return {
        "bootstrap.servers": broker.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": user,
        "sasl.password": PASSWORDS[user],
        **more,
    }


def admin(broker: Served, user: str = "admin") -> AdminClient:
    """A confluent-kafka admin client logged in as `user` (kept: its futures need it)."""
    key = (broker.bootstrap, broker.process.pid, user)
    if key not in _ADMINS:
        _ADMINS[key] = AdminClient(config(broker, user))
    return _ADMINS[key]


def allow(user: str, op: AclOperation, kind: ResourceType, name: str, **kw: Any) -> AclBinding:
    """An ALLOW binding from any host (literal unless pattern= is given)."""
    pattern = kw.get("pattern", ResourcePatternType.LITERAL)
    permission = kw.get("permission", AclPermissionType.ALLOW)
    return AclBinding(kind, name, pattern, f"User:{user}", "*", op, permission)


def create(broker: Served, *bindings: AclBinding) -> None:
    """Create ACLs as the super user, and wait for every one to be stored."""
    for future in admin(broker).create_acls(list(bindings)).values():
        future.result(TIMEOUT_S)


def produce(broker: Served, user: str, topic: str, *values: bytes) -> list[int | None]:
    """Produce as `user`; the delivery error code of each record (None where delivered)."""
    errors: list[int | None] = []
    producer = Producer(config(broker, user, **{"message.timeout.ms": 10000}))
    for value in values:
        producer.produce(
            topic,
            value,
            on_delivery=lambda err, _: errors.append(None if err is None else err.code()),
        )
    assert producer.flush(TIMEOUT_S) == 0, "records left undelivered"
    return errors


def consume(broker: Served, user: str, topic: str, count: int) -> list[bytes] | KafkaError:
    """Read `count` records from the start in group `readers` as `user`, or its first error."""
    settings = {"group.id": "readers", "auto.offset.reset": "earliest", "enable.auto.commit": False}
    consumer = Consumer(config(broker, user, **settings))
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(values) < count:
            assert time.monotonic() < deadline, f"read only {values}"
            m = consumer.poll(0.5)
            if m is None:
                continue
            error = m.error()
            if error is not None:
                return error
            values.append(m.value() or b"")
    finally:
        consumer.close()
    return values


def acls_command(broker: Served, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `tidings acls ARGS --data DIR` on the broker's data directory."""
    return subprocess.run(
        [TIDINGS, "acls", *args, "--data", str(broker.data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def acls_of(kind: ResourceType) -> AclBindingFilter:
    """A filter of every ACL on resources of a kind (ANY: every ACL)."""
    anything: Any = None  # the stubs say str; None is librdkafka's "any"
    return AclBindingFilter(
        kind,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


def create_topic(broker: Served, name: str) -> None:
    """Create a topic as the super user."""
    admin(broker).create_topics([NewTopic(name, 1)])[name].result(TIMEOUT_S)


def test_an_allowed_read_works_and_a_denied_one_gets_topic_authorization_failed(
    secured: Served,
) -> None:
    create_topic(secured, "orders")
    assert produce(secured, "admin", "orders", b"one", b"two") == [None, None]
    create(
        secured,
        allow("alice", AclOperation.READ, ResourceType.TOPIC, "orders"),
        allow("*", AclOperation.READ, ResourceType.GROUP, "readers"),
    )
    assert consume(secured, "alice", "orders", 2) == [b"one", b"two"]
    refused = consume(secured, "bob", "orders", 1)  # refused its metadata
    assert isinstance(refused, KafkaError), refused
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create(secured, allow("bob", AclOperation.DESCRIBE, ResourceType.TOPIC, "orders"))
    refused = consume(secured, "bob", "orders", 1)  # sees the topic, refused its records
    assert isinstance(refused, KafkaError), refused
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_consumer_without_read_on_its_group_gets_group_authorization_failed(
    secured: Served,
) -> None:
    create_topic(secured, "orders")
    assert produce(secured, "admin", "orders", b"one") == [None]
    create(secured, allow("alice", AclOperation.READ, ResourceType.TOPIC, "orders"))
    refused = consume(secured, "alice", "orders", 1)
    assert isinstance(refused, KafkaError), refused
    assert refused.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    create(secured, allow("alice", AclOperation.READ, ResourceType.GROUP, "readers"))
    assert consume(secured, "alice", "orders", 1) == [b"one"]


def test_a_denied_produce_fails_and_stores_nothing(secured: Served) -> None:
    create_topic(secured, "orders")
    create(secured, allow("alice", AclOperation.WRITE, ResourceType.TOPIC, "orders"))
    assert produce(secured, "alice", "orders", b"mine") == [None]
    assert produce(secured, "bob", "orders", b"forged") == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert consume(secured, "admin", "orders", 1) == [b"mine"]
    with secured.bus() as bus:
        assert bus.describe_topic("orders").records == 1


def test_a_super_user_may_do_everything(secured: Served) -> None:
    create(secured, allow("alice", AclOperation.READ, ResourceType.TOPIC, "other"))
    create_topic(secured, "audit")
    assert produce(secured, "admin", "audit", b"x") == [None]
    assert consume(secured, "admin", "audit", 1) == [b"x"]
    admin(secured).delete_topics(["audit"])["audit"].result(TIMEOUT_S)


def test_prefixed_patterns_match_and_deny_beats_allow(secured: Served) -> None:
    for name in ("orders.eu", "orders.us", "payments"):
        create_topic(secured, name)
    create(
        secured,
        allow(
            "*",
            AclOperation.WRITE,
            ResourceType.TOPIC,
            "orders.",
            pattern=ResourcePatternType.PREFIXED,
        ),
        allow(
            "bob",
            AclOperation.WRITE,
            ResourceType.TOPIC,
            "orders.us",
            permission=AclPermissionType.DENY,
        ),
    )
    assert produce(secured, "alice", "orders.eu", b"a") == [None]
    assert produce(secured, "bob", "orders.eu", b"b") == [None]
    assert produce(secured, "alice", "orders.us", b"c") == [None]
    for user, topic in (("bob", "orders.us"), ("alice", "payments")):
        assert produce(secured, user, topic, b"no") == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_metadata_lists_only_the_topics_a_user_may_describe(secured: Served) -> None:
    for name in ("alices", "bobs"):
        create_topic(secured, name)
    create(secured, allow("alice", AclOperation.READ, ResourceType.TOPIC, "alices"))
    seen = set(admin(secured, "alice").list_topics(timeout=TIMEOUT_S).topics)
    assert seen == {"alices"}
    assert set(admin(secured, "bob").list_topics(timeout=TIMEOUT_S).topics) == set()
    assert {"alices", "bobs"} <= set(admin(secured).list_topics(timeout=TIMEOUT_S).topics)


def test_deleting_a_topic_needs_delete_on_it(secured: Served) -> None:
    create_topic(secured, "kept")
    create(secured, allow("bob", AclOperation.READ, ResourceType.TOPIC, "kept"))
    with pytest.raises(KafkaException) as refused:
        admin(secured, "bob").delete_topics(["kept"])["kept"].result(TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert "kept" in admin(secured).list_topics(timeout=TIMEOUT_S).topics


def test_confluent_admin_creates_describes_and_deletes_acls_that_survive_a_restart(
    start: Callable[..., Served], secured: Served, tmp_path: Path
) -> None:
    bindings = [
        allow("alice", AclOperation.READ, ResourceType.TOPIC, "orders"),
        allow(
            "alice",
            AclOperation.READ,
            ResourceType.GROUP,
            "app.",
            pattern=ResourcePatternType.PREFIXED,
        ),
    ]
    create(secured, *bindings)
    everything = acls_of(ResourceType.ANY)
    assert sorted(map(str, admin(secured).describe_acls(everything).result(TIMEOUT_S))) == sorted(
        map(str, bindings)
    )
    # only a principal with Alter on the cluster may change them once any exists
    grab = allow("alice", AclOperation.ALL, ResourceType.TOPIC, "*")
    with pytest.raises(KafkaException) as refused:
        admin(secured, "alice").create_acls([grab])[grab].result(TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert "needs Alter on the cluster" in refused.value.args[0].str()

    assert secured.stop() == 0
    again = start("--sasl-users", str(tmp_path / "users.toml"), "--super-users", "User:admin")
    assert sorted(map(str, admin(again).describe_acls(everything).result(TIMEOUT_S))) == sorted(
        map(str, bindings)
    )
    groups_only = acls_of(ResourceType.GROUP)
    (deleted,) = admin(again).delete_acls([groups_only]).values()
    assert list(map(str, deleted.result(TIMEOUT_S))) == [str(bindings[1])]
    left = admin(again).describe_acls(everything).result(TIMEOUT_S)
    assert list(map(str, left)) == [str(bindings[0])]


def test_kafka_python_admin_manages_acls(secured: Served) -> None:
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        KafkaAdminClient,
        ResourcePattern,
        ResourcePatternFilter,
    )
    from kafka.admin import ACLResourcePatternType as Pattern
    from kafka.admin import ResourceType as Kind

    client = KafkaAdminClient(
        bootstrap_servers=secured.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username="admin",
        sasl_plain_password="root",
    )
    try:
        acl = ACL(
            "User:bob",
            "*",
            ACLOperation.WRITE,
            ACLPermissionType.ALLOW,
            ResourcePattern(Kind.TOPIC, "logs.", Pattern.PREFIXED),
        )
        result = client.create_acls([acl])
        assert result["failed"] == [] and len(result["succeeded"]) == 1
        wanted = ACLFilter(
            None,
            None,
            ACLOperation.ANY,
            ACLPermissionType.ANY,
            ResourcePatternFilter(Kind.TOPIC, None, Pattern.ANY),
        )
        found, error = client.describe_acls(wanted)
        assert error.errno == 0
        assert [(a.principal, a.resource_pattern.resource_name) for a in found] == [
            ("User:bob", "logs.")
        ]
        ((_, deleted, _),) = client.delete_acls([wanted])
        assert [a.principal for a in deleted] == ["User:bob"]
        assert client.describe_acls(wanted)[0] == []
    finally:
        client.close()


def test_tidings_acls_cli_changes_what_a_running_broker_enforces(secured: Served) -> None:
    create_topic(secured, "orders")
    create(secured, allow("admin", AclOperation.ALL, ResourceType.BROKER, "kafka-cluster"))
    assert produce(secured, "bob", "orders", b"early") == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    def cli(*args: str) -> str:
        done = acls_command(secured, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = cli("add", "--allow", "User:bob", "--operation", "Write", "--topic", "orders")
    assert "added    User:bob Allow Write from * on Topic 'orders'" in out
    rows = [line.split() for line in cli("list", "--topic", "orders").splitlines()]
    assert rows == [
        ["PRINCIPAL", "PERMISSION", "OPERATION", "HOST", "RESOURCE", "NAME", "PATTERN"],
        ["User:bob", "Allow", "Write", "*", "Topic", "orders", "Literal"],
    ]
    deadline = time.monotonic() + TIMEOUT_S
    while produce(secured, "bob", "orders", b"later")[0] is not None:  # seen within a second
        assert time.monotonic() < deadline, "the broker never saw the new ACL"
        time.sleep(0.2)
    assert "removed  User:bob Allow Write" in cli("remove", "--topic", "orders", "--yes")
    assert "User:bob" not in cli("list")


def test_a_malformed_acl_is_refused_with_the_reason_and_the_others_stored(
    secured: Served,
) -> None:
    bad = AclBinding(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.LITERAL,
        "alice",  # not TYPE:NAME
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    good = allow("alice", AclOperation.READ, ResourceType.TOPIC, "orders")
    results = admin(secured).create_acls([bad, good])
    with pytest.raises(KafkaException, match="TYPE:NAME"):
        results[bad].result(TIMEOUT_S)
    results[good].result(TIMEOUT_S)
    stored = admin(secured).describe_acls(acls_of(ResourceType.ANY)).result(TIMEOUT_S)
    assert list(map(str, stored)) == [str(good)]


def test_tidings_acls_refuses_an_unknown_operation_and_stores_nothing(secured: Served) -> None:
    done = acls_command(secured, "add", "--allow", "User:bob", "--operation", "Fly", "--topic", "t")
    assert done.returncode != 0
    assert "'Fly' is not an ACL operation; choose from All, Read" in done.stderr
    assert not (secured.data / "tidings.db.acls.json").exists()


def test_the_brokers_http_api_asks_the_same_acls_of_the_same_users(secured: Served) -> None:
    # The HTTP API takes the SASL users' credentials; the ACLs judge the user they name.
    create_topic(secured, "orders")

    def get(path: str, user: str | None) -> httpx.Response:
        auth = None if user is None else (user, PASSWORDS[user])
        return httpx.get(f"{secured.http}{path}", auth=auth, timeout=TIMEOUT_S)

    assert get("/topics/orders", "bob").status_code == 200  # no ACL yet: every user
    create(secured, allow("alice", AclOperation.READ, ResourceType.TOPIC, "orders"))
    assert get("/topics/orders", "alice").status_code == 200
    refused = get("/topics/orders", "bob")
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert "User:bob may not Describe topic 'orders'" in refused.json()["message"]
    assert get("/topics/orders", None).status_code == 401  # no credentials: no user at all
    assert get("/topics/orders", "admin").status_code == 200  # a super user
    assert [t["name"] for t in get("/topics", "bob").json()["topics"]] == []
    assert get("/health", "bob").status_code == 200
