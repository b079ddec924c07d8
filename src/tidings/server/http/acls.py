"""ACLs on the HTTP API: each route needs what the matching Kafka API needs.

One dependency, `authorize`, runs before every route. It looks the route up in RULES
(what it reads, writes or changes, and where the resource's name comes from: a path
parameter, the `topic` query parameter or a field of the JSON body) and answers 403 with
a JSON error when the caller may not. A route missing from RULES is refused once ACLs
exist, so a new route cannot slip through unguarded. Lists (GET /topics, /groups,
/queues) show only what the caller may describe, as Kafka's Metadata and ListGroups do.

Who the caller is comes from one function, `principal`: the authentication in front of
the routes puts `User:NAME` in the request's scope under PRINCIPAL_KEY; a request
without one is `User:ANONYMOUS`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from tidings.server.acls import (
    ANONYMOUS,
    CLUSTER_NAME,
    Authorizer,
    Operation,
    ResourceType,
)
from tidings.server.http.errors import HttpError

PRINCIPAL_KEY = "tidings.principal"
"""Where authentication leaves the caller's principal in the ASGI scope."""

TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER


@dataclass(frozen=True)
class Need:
    """One permission a route needs."""

    operation: Operation
    resource_type: ResourceType
    name_from: str = ""
    """`name` (a path parameter), `?topic` (a query parameter), `body.name` (a JSON body
    field); empty for the cluster."""
    when: str = ""
    """Only when this JSON body field is given and not empty (e.g. `partitions`)."""


R, W, D = Operation.READ, Operation.WRITE, Operation.DESCRIBE
QUEUE = (Need(R, TOPIC, "topic"), Need(R, GROUP, "group"))
RULES: dict[tuple[str, str], tuple[Need, ...]] = {
    ("GET", "/topics"): (),  # filtered
    ("POST", "/topics"): (Need(Operation.CREATE, TOPIC, "body.name"),),
    ("GET", "/topics/{name}"): (Need(D, TOPIC, "name"),),
    ("PATCH", "/topics/{name}"): (
        Need(Operation.ALTER_CONFIGS, TOPIC, "name", when="config"),
        Need(Operation.ALTER, TOPIC, "name", when="partitions"),
    ),
    ("DELETE", "/topics/{name}"): (Need(Operation.DELETE, TOPIC, "name"),),
    ("POST", "/topics/{name}/records"): (Need(W, TOPIC, "name"),),
    ("GET", "/topics/{name}/partitions/{partition}/records"): (Need(R, TOPIC, "name"),),
    ("GET", "/topics/{name}/tail"): (Need(R, TOPIC, "name"),),
    ("GET", "/groups"): (),  # filtered
    ("GET", "/groups/{group}"): (Need(D, GROUP, "group"),),
    ("DELETE", "/groups/{group}"): (Need(Operation.DELETE, GROUP, "group"),),
    ("POST", "/groups/{group}/records"): (Need(R, GROUP, "group"), Need(R, TOPIC, "?topic")),
    ("POST", "/groups/{group}/commit"): (Need(R, GROUP, "group"), Need(R, TOPIC, "?topic")),
    ("POST", "/groups/{group}/reset-offsets"): (
        Need(R, GROUP, "group"),
        Need(R, TOPIC, "body.topic"),
    ),
    ("GET", "/queues"): (),  # filtered
    ("GET", "/queues/{topic}/{group}"): (Need(D, TOPIC, "topic"), Need(D, GROUP, "group")),
    ("POST", "/queues/{topic}/{group}/receive"): QUEUE,
    ("POST", "/queues/{topic}/{group}/jobs/{job}/ack"): QUEUE,
    ("POST", "/queues/{topic}/{group}/jobs/{job}/release"): QUEUE,
    ("POST", "/queues/{topic}/{group}/jobs/{job}/reject"): QUEUE,
    ("POST", "/queues/{topic}/{group}/jobs/{job}/extend"): QUEUE,
    ("GET", "/metrics"): (Need(D, CLUSTER),),  # every topic's and group's figures
    ("GET", "/health"): (),
    ("GET", "/docs"): (),
    ("GET", "/redoc"): (),
    ("GET", "/docs/assets/{name:path}"): (),
    ("GET", "/openapi.json"): (),
}
"""(method, route) -> what the caller needs; every route of the API is here."""


def principal(request: Request) -> str:
    """Who is calling: `User:NAME` as authentication left it, else `User:ANONYMOUS`."""
    found = request.scope.get(PRINCIPAL_KEY)
    return found if isinstance(found, str) and found else ANONYMOUS


def authorizer_of(request: Request) -> Authorizer | None:
    """The broker's authorizer, if the app has one."""
    found = getattr(request.app.state, "authorizer", None)
    return found if isinstance(found, Authorizer) else None


async def authorize(request: Request) -> None:
    """Refuse the request with 403 unless the caller may do what its route does."""
    authorizer = authorizer_of(request)
    if authorizer is None or not authorizer.enforcing:
        return
    route = getattr(request.scope.get("route"), "path", request.url.path)
    rules = RULES.get((request.method, route))
    who, host = principal(request), _host(request)
    if rules is None:
        raise HttpError(
            403,
            "forbidden",
            f"{request.method} {route} has no ACL rule, so it is refused while ACLs are in "
            f"force; use a super user",
        )
    body = (
        await _body(request)
        if any(n.name_from.startswith("body.") or n.when for n in rules)
        else {}
    )
    for need in rules:
        if need.when and not body.get(need.when):
            continue
        name = _name(need, request, body)
        if not _allowed(authorizer, who, host, need, name):
            what = (
                "the cluster"
                if need.resource_type == CLUSTER
                else (f"{need.resource_type.title.lower()} {name!r}")
            )
            raise HttpError(
                403,
                "forbidden",
                f"{who} may not {need.operation.title} {what}; ask an administrator for an "
                f"ACL that allows it (tidings acls add --allow {who} --operation "
                f"{need.operation.title} ...)",
            )


def visible(request: Request, resource_type: ResourceType, names: Iterable[str]) -> list[str]:
    """The names the caller may describe, in order (all of them without ACLs)."""
    authorizer = authorizer_of(request)
    if authorizer is None or not authorizer.enforcing:
        return list(names)
    who, host = principal(request), _host(request)
    return [n for n in names if authorizer.authorize(who, host, D, resource_type, n)]


def _allowed(authorizer: Authorizer, who: str, host: str, need: Need, name: str) -> bool:
    if need.resource_type == CLUSTER:
        return authorizer.authorize(who, host, need.operation, CLUSTER, CLUSTER_NAME)
    allowed = authorizer.authorize(who, host, need.operation, need.resource_type, name)
    if not allowed and need.operation == Operation.CREATE:  # as Kafka: Create on the cluster
        return authorizer.authorize(who, host, Operation.CREATE, CLUSTER, CLUSTER_NAME)
    return allowed


def _name(need: Need, request: Request, body: dict[str, Any]) -> str:
    source = need.name_from
    if source.startswith("body."):
        value = body.get(source.removeprefix("body."))
    elif source.startswith("?"):
        value = request.query_params.get(source[1:])
    else:
        value = request.path_params.get(source)
    return value if isinstance(value, str) else ""


async def _body(request: Request) -> dict[str, Any]:
    """The JSON body as a mapping ({} when it is not one: validation refuses it after)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _host(request: Request) -> str:
    return request.client.host if request.client is not None else ""
