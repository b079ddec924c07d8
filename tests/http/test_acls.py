"""ACLs on the HTTP API: 403 with a JSON error where an ACL refuses, lists filtered.

Authentication sets the caller's principal in the request scope (http.acls.PRINCIPAL_KEY);
here the test stands in for it and names the principal directly in an `x-user` header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from fastapi.routing import APIRoute
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import tidings
from tidings.server.acls import (
    CLUSTER_NAME,
    Acl,
    AclStore,
    Authorizer,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)
from tidings.server.http import create_app
from tidings.server.http.acls import PRINCIPAL_KEY, RULES

ALLOW, DENY = Permission.ALLOW, Permission.DENY
TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER


def as_user(app: ASGIApp) -> ASGIApp:
    """The app behind a stand-in for authentication: `x-user: NAME` is User:NAME."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        user = dict(scope.get("headers", ())).get(b"x-user")
        if user:
            scope = {**scope, PRINCIPAL_KEY: f"User:{user.decode()}"}
        await app(scope, receive, send)

    return wrapped


def run(acls: list[Acl], calls: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Serve a memory bus with these ACLs (User:admin a super user) and make the calls."""

    async def main() -> None:
        async with await tidings.connect_async("memory://") as bus:
            store = AclStore(None)
            store.add(acls)
            app = create_app(bus, authorizer=Authorizer(store, ["User:admin"]))
            transport = httpx.ASGITransport(app=as_user(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
                await calls(http)

    asyncio.run(main())


def by(user: str) -> dict[str, str]:
    """Headers of a request made by `user`."""
    return {"x-user": user}


def refused(response: httpx.Response, *words: str) -> None:
    """A 403 with the JSON error body, its message naming who and what."""
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "forbidden"
    for word in words:
        assert word in body["message"], body


def test_every_route_of_the_api_has_an_acl_rule() -> None:
    async def main() -> set[tuple[str, str]]:
        async with await tidings.connect_async("memory://") as bus:
            app = create_app(bus)
            routes = set()
            for route in app.routes:
                if isinstance(route, APIRoute | Route):
                    routes |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
            return routes

    assert asyncio.run(main()) - set(RULES) == set()


def test_a_write_needs_write_and_a_read_needs_read() -> None:
    acls = [
        Acl("User:alice", Operation.WRITE, ALLOW, TOPIC, "orders"),
        Acl("User:carol", Operation.READ, ALLOW, TOPIC, "orders"),
    ]

    async def calls(http: httpx.AsyncClient) -> None:
        created = await http.post("/topics", json={"name": "orders"}, headers=by("admin"))
        assert created.status_code == 201, created.text
        record = {"records": [{"value": "one"}]}
        ok = await http.post("/topics/orders/records", json=record, headers=by("alice"))
        assert ok.status_code == 200, ok.text
        refused(
            await http.post("/topics/orders/records", json=record, headers=by("bob")),
            "User:bob",
            "Write",
            "'orders'",
        )
        read = "/topics/orders/partitions/0/records"
        refused(await http.get(read, headers=by("alice")), "User:alice may not Read")
        got = await http.get(read, headers=by("carol"))
        assert got.status_code == 200 and [r["value"] for r in got.json()["records"]] == ["one"]
        refused(await http.get("/topics/orders/tail", headers=by("bob")), "Read")
        refused(await http.get("/topics/orders"), "User:ANONYMOUS may not Describe")
        assert (await http.get("/topics/orders", headers=by("alice"))).status_code == 200

    run(acls, calls)


def test_deleting_or_changing_a_topic_needs_delete_alter_configs_or_alter() -> None:
    acls = [
        Acl("User:alice", Operation.ALTER_CONFIGS, ALLOW, TOPIC, "orders"),
        Acl("User:alice", Operation.DESCRIBE, ALLOW, TOPIC, "orders"),
    ]

    async def calls(http: httpx.AsyncClient) -> None:
        await http.post("/topics", json={"name": "orders"}, headers=by("admin"))
        refused(await http.delete("/topics/orders", headers=by("alice")), "Delete")
        change = {"config": {"retention.ms": 1000}}
        assert (await http.patch("/topics/orders", json=change, headers=by("alice"))).is_success
        grow = {"partitions": 3}
        refused(await http.patch("/topics/orders", json=grow, headers=by("alice")), "Alter")
        shown = await http.get("/topics/orders", headers=by("alice"))
        assert shown.json()["config"]["retention.ms"] == 1000
        assert len(shown.json()["partitions"]) == 1

    run(acls, calls)


def test_creating_a_topic_needs_create_on_it_or_on_the_cluster() -> None:
    acls = [
        Acl("User:alice", Operation.CREATE, ALLOW, TOPIC, "alice.", PatternType.PREFIXED),
        Acl("User:ops", Operation.CREATE, ALLOW, CLUSTER, CLUSTER_NAME),
    ]

    async def calls(http: httpx.AsyncClient) -> None:
        mine = await http.post("/topics", json={"name": "alice.a"}, headers=by("alice"))
        assert mine.status_code == 201, mine.text
        refused(await http.post("/topics", json={"name": "other"}, headers=by("alice")), "Create")
        ops = await http.post("/topics", json={"name": "other"}, headers=by("ops"))
        assert ops.status_code == 201, ops.text

    run(acls, calls)


def test_lists_show_only_what_the_caller_may_describe_and_deny_wins() -> None:
    acls = [
        Acl("User:*", Operation.READ, ALLOW, TOPIC, "*"),
        Acl("User:bob", Operation.DESCRIBE, DENY, TOPIC, "secret"),
        Acl("User:bob", Operation.READ, ALLOW, GROUP, "app"),
    ]

    async def calls(http: httpx.AsyncClient) -> None:
        for name in ("public", "secret"):
            await http.post("/topics", json={"name": name}, headers=by("admin"))
        names = {t["name"] for t in (await http.get("/topics", headers=by("bob"))).json()["topics"]}
        assert names == {"public"}
        every = (await http.get("/topics", headers=by("alice"))).json()["topics"]
        assert {t["name"] for t in every} == {"public", "secret"}
        refused(await http.get("/topics/secret", headers=by("bob")), "Describe")
        refused(await http.get("/metrics", headers=by("bob")), "the cluster")
        commit = "/groups/app/commit?topic=secret"
        assert (await http.get("/groups", headers=by("alice"))).json()["groups"] == []
        refused(await http.post(commit, json={}, headers=by("alice")), "group 'app'")

    run(acls, calls)


def test_without_acls_every_route_stays_open() -> None:
    async def calls(http: httpx.AsyncClient) -> None:
        assert (await http.post("/topics", json={"name": "t"})).status_code == 201
        assert (await http.delete("/topics/t")).status_code == 204

    run([], calls)
