"""`tidings acls ...`: add, list and remove the ACLs a broker enforces.

They are kept beside the store (see tidings.server.acls), so these commands work with the
broker running or not; a running broker applies a change within a second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tidings.cli.common import Options, confirm, json_option, yes_option
from tidings.cli.output import echo_json, echo_table
from tidings.core.errors import ConfigurationError
from tidings.server.acls import (
    CLUSTER_NAME,
    Acl,
    AclFilter,
    AclStore,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    acl_file,
)

F = TypeVar("F", bound=Callable[..., Any])


def _resource_options(fn: F) -> F:
    """Add --topic/--group/--cluster/--transactional-id, --prefixed and --data."""
    for option in reversed(
        [
            click.option("--topic", metavar="NAME", help="A topic (* for every topic)."),
            click.option("--group", metavar="NAME", help="A consumer group (* for every one)."),
            click.option("--cluster", is_flag=True, help="The cluster (ACL and admin rights)."),
            click.option(
                "--transactional-id", metavar="ID", help="A transactional id (* for every one)."
            ),
            click.option(
                "--prefixed",
                is_flag=True,
                help="The name is a prefix: every resource whose name starts with it.",
            ),
            click.option(
                "--data",
                metavar="DIR",
                help="The broker's --data DIR (default: the store of the global --url).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.group()
def acls() -> None:
    """Add, list and remove ACLs: who may do what on which topics, groups and the cluster."""


@acls.command()
@click.option("--allow", "allowed", metavar="PRINCIPAL", multiple=True, help="e.g. User:alice")
@click.option("--deny", "denied", metavar="PRINCIPAL", multiple=True, help="e.g. User:mallory")
@click.option(
    "--operation",
    "operations",
    metavar="OP",
    multiple=True,
    required=True,
    help="Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, "
    "AlterConfigs, IdempotentWrite or All (repeatable).",
)
@click.option("--host", default="*", show_default=True, help="The client address it applies to.")
@_resource_options
def add(
    allowed: tuple[str, ...],
    denied: tuple[str, ...],
    operations: tuple[str, ...],
    host: str,
    **resource: Any,
) -> None:
    """Allow or deny principals operations on a resource; a deny wins over any allow."""
    if not allowed and not denied:
        raise click.UsageError("name who: --allow User:NAME or --deny User:NAME")
    resource_type, name, pattern = _resource(resource, required=True)
    assert resource_type is not None and name is not None
    new = [
        Acl(principal, Operation.parse(op), permission, resource_type, name, pattern, host)
        for permission, principals in ((Permission.ALLOW, allowed), (Permission.DENY, denied))
        for principal in principals
        for op in operations
    ]
    added = _store(resource["data"]).add(new)
    for acl in new:
        click.echo(("added    " if acl in added else "existing ") + str(acl))


@acls.command("list")
@click.option("--principal", metavar="PRINCIPAL", help="Only this principal's ACLs.")
@_resource_options
@json_option
def list_acls(principal: str | None, as_json: bool, **resource: Any) -> None:
    """List ACLs, all or those on a resource (--prefixed: those of that prefix)."""
    resource_type, name, pattern = _resource(resource, required=False)
    wanted = AclFilter(
        resource_type=resource_type or ResourceType.ANY,
        resource_name=name,
        pattern_type=pattern if resource_type else PatternType.ANY,
        principal=principal,
    )
    found = sorted((a for a in _store(resource["data"]).acls() if wanted.matches(a)), key=str)
    if as_json:
        echo_json({"acls": [a.to_json() for a in found]})
        return
    echo_table(
        ["PRINCIPAL", "PERMISSION", "OPERATION", "HOST", "RESOURCE", "NAME", "PATTERN"],
        [
            [
                a.principal,
                a.permission.title,
                a.operation.title,
                a.host,
                a.resource_type.title,
                a.resource_name,
                a.pattern_type.title,
            ]
            for a in found
        ],
    )


@acls.command()
@click.option("--principal", metavar="PRINCIPAL", help="Only this principal's ACLs.")
@click.option("--operation", metavar="OP", help="Only ACLs of this operation.")
@click.option("--allow", "only_allow", is_flag=True, help="Only ALLOW entries.")
@click.option("--deny", "only_deny", is_flag=True, help="Only DENY entries.")
@_resource_options
@yes_option
def remove(
    principal: str | None,
    operation: str | None,
    only_allow: bool,
    only_deny: bool,
    yes: bool,
    **resource: Any,
) -> None:
    """Remove the ACLs on a resource pattern (narrowed by principal, operation, allow/deny)."""
    resource_type, name, pattern = _resource(resource, required=True)
    assert resource_type is not None
    permission = Permission.ANY
    if only_allow != only_deny:
        permission = Permission.ALLOW if only_allow else Permission.DENY
    wanted = AclFilter(
        resource_type=resource_type,
        resource_name=name,
        pattern_type=pattern,
        principal=principal,
        operation=Operation.parse(operation) if operation else Operation.ANY,
        permission=permission,
    )
    store = _store(resource["data"])
    confirm(f"Remove the ACLs on {resource_type.title} {name!r}?", "removing ACLs", yes)
    (removed,) = store.remove([wanted])
    for acl in removed:
        click.echo(f"removed  {acl}")
    if not removed:
        click.echo("no ACL matched; nothing was removed")


def _resource(
    options: dict[str, Any], *, required: bool
) -> tuple[ResourceType | None, str | None, PatternType]:
    """The resource the options name, with its pattern type."""
    given = [
        (kind, value)
        for kind, value in (
            (ResourceType.TOPIC, options["topic"]),
            (ResourceType.GROUP, options["group"]),
            (ResourceType.CLUSTER, CLUSTER_NAME if options["cluster"] else None),
            (ResourceType.TRANSACTIONAL_ID, options["transactional_id"]),
        )
        if value is not None
    ]
    if len(given) > 1 or (required and not given):
        raise click.UsageError(
            "name one resource: --topic NAME, --group NAME, --cluster or --transactional-id ID"
        )
    pattern = PatternType.PREFIXED if options["prefixed"] else PatternType.LITERAL
    if not given:
        return None, None, pattern
    return given[0][0], given[0][1], pattern


def _store(data: str | None) -> AclStore:
    """The ACL file of the broker's store (--data) or of the global --url."""
    if data is not None:
        url = f"sqlite://{Path(data) / 'tidings.db'}"
    else:
        options = click.get_current_context().find_object(Options)
        assert options is not None, "commands run under the tidings group"
        url = options.url
    path = acl_file(url)
    if path is None:
        raise ConfigurationError(
            "a memory:// broker keeps its ACLs in memory: manage them with a Kafka admin "
            "client (create_acls, describe_acls, delete_acls)"
        )
    return AclStore(path)
