"""CreateAcls, DescribeAcls and DeleteAcls, and the check every other API makes.

The ACLs are those of tidings.server.acls, shared with `tidings acls` and the HTTP API.
Creating and deleting ACLs needs Alter on the cluster, describing them Describe on the
cluster, as in Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from tidings.core.errors import ConfigurationError
from tidings.server.acls import (
    CLUSTER_NAME,
    Acl,
    AclFilter,
    Authorizer,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)
from tidings.server.kafka.protocol import CALLER, UNKNOWN_CALLER

Fields = dict[str, Any]
Allows = Callable[[Operation, ResourceType, str], bool]
"""Whether the caller of the request being answered may do an operation on a resource."""

TOPIC_DENIED = ErrorCode.topic_authorization_failed
GROUP_DENIED = ErrorCode.group_authorization_failed
CLUSTER_DENIED = ErrorCode.cluster_authorization_failed


class AclApis:
    """The ACL APIs, and `allows`, the authorizer asked for the current caller."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def allows(self, operation: Operation, resource_type: ResourceType, name: str) -> bool:
        """Whether the caller of the request being answered may do `operation` on it."""
        caller = CALLER.get(UNKNOWN_CALLER)
        return self.authorizer.authorize(
            caller.principal, caller.host, operation, resource_type, name
        )

    def allows_on_cluster(self, operation: Operation) -> bool:
        """Whether the caller may do `operation` on the cluster."""
        return self.allows(operation, ResourceType.CLUSTER, CLUSTER_NAME)

    def allows_any(self, operation: Operation, resource_type: ResourceType) -> bool:
        """Whether the caller may do `operation` on some resource of the type."""
        caller = CALLER.get(UNKNOWN_CALLER)
        return self.authorizer.authorize_any(
            caller.principal, caller.host, operation, resource_type
        )

    async def create_acls(self, request: Any, version: int) -> Fields:
        """Store new ACLs (Alter on the cluster)."""
        if not self.allows_on_cluster(Operation.ALTER):
            return {"results": [_denied(Operation.ALTER) for _ in request.creations]}
        results: list[Fields] = []
        acls: list[Acl] = []
        for c in request.creations:
            try:
                acls.append(
                    Acl(
                        principal=c.principal,
                        operation=Operation(c.operation),
                        permission=Permission(c.permission_type),
                        resource_type=ResourceType(c.resource_type),
                        resource_name=c.resource_name,
                        pattern_type=PatternType(c.resource_pattern_type),
                        host=c.host,
                    )
                )
                results.append({})
            except (ConfigurationError, ValueError) as e:
                results.append(_invalid(e))
        self.authorizer.store.add(acls)
        return {"results": results}

    async def describe_acls(self, request: Any, version: int) -> Fields:
        """The ACLs a filter matches, grouped by resource pattern (Describe on the cluster)."""
        if not self.allows_on_cluster(Operation.DESCRIBE):
            return _denied(Operation.DESCRIBE) | {"resources": []}
        try:
            wanted = _filter(request)
        except ValueError as e:
            return _invalid(e) | {"resources": []}
        by_pattern: dict[tuple[int, str, int], list[Fields]] = {}
        for acl in sorted(self.authorizer.store.acls(), key=str):
            if wanted.matches(acl):
                key = (acl.resource_type, acl.resource_name, acl.pattern_type)
                by_pattern.setdefault(key, []).append(
                    {
                        "principal": acl.principal,
                        "host": acl.host,
                        "operation": acl.operation,
                        "permission_type": acl.permission,
                    }
                )
        return {
            "resources": [
                {"resource_type": t, "resource_name": n, "pattern_type": p, "acls": acls}
                for (t, n, p), acls in by_pattern.items()
            ]
        }

    async def delete_acls(self, request: Any, version: int) -> Fields:
        """Delete the ACLs each filter matches (Alter on the cluster)."""
        if not self.allows_on_cluster(Operation.ALTER):
            return {"filter_results": [_denied(Operation.ALTER) for _ in request.filters]}
        filters: list[AclFilter | None] = []
        for f in request.filters:
            try:
                filters.append(_filter(f))
            except ValueError:
                filters.append(None)
        deleted = iter(self.authorizer.store.remove(f for f in filters if f is not None))
        results: list[Fields] = []
        for f in filters:
            if f is None:
                results.append(_invalid(ValueError("a filter's codes are not Kafka's")))
                continue
            results.append({"matching_acls": [_matching(acl) for acl in next(deleted)]})
        return {"filter_results": results}


def _filter(f: Any) -> AclFilter:
    """An AclFilter from a DescribeAcls request or a DeleteAcls filter (ValueError if bad)."""
    return AclFilter(
        resource_type=ResourceType(f.resource_type_filter),
        resource_name=f.resource_name_filter,
        pattern_type=PatternType(f.pattern_type_filter),
        principal=f.principal_filter,
        host=f.host_filter,
        operation=Operation(f.operation),
        permission=Permission(f.permission_type),
    )


def _matching(acl: Acl) -> Fields:
    return {
        "resource_type": acl.resource_type,
        "resource_name": acl.resource_name,
        "pattern_type": acl.pattern_type,
        "principal": acl.principal,
        "host": acl.host,
        "operation": acl.operation,
        "permission_type": acl.permission,
    }


def _denied(operation: Operation) -> Fields:
    return {
        "error_code": CLUSTER_DENIED,
        "error_message": f"this needs {operation.title} on the cluster (kafka-cluster); ask a "
        f"super user for an ACL that allows it",
    }


def _invalid(e: Exception) -> Fields:
    return {"error_code": ErrorCode.invalid_request, "error_message": str(e)}
