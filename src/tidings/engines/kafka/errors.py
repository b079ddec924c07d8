"""Kafka errors turned into tidings errors at the boundary."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from tidings.core.errors import (
    ConfigurationError,
    EngineUnavailableError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidPartitionsError,
    InvalidTopicError,
    TidingsError,
    TopicError,
    TopicExistsError,
    TopicNotFoundError,
)


class ClusterUnavailableError(EngineUnavailableError):
    """No broker of the Kafka cluster answered in time."""


UNREACHABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError._MSG_TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
}
AUTHENTICATION = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
REFUSED = {
    KafkaError.INVALID_CONFIG,
    KafkaError.POLICY_VIOLATION,
    KafkaError.INVALID_REPLICATION_FACTOR,
    KafkaError.INVALID_REPLICA_ASSIGNMENT,
    KafkaError.INVALID_REQUEST,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}


def kafka_error(e: BaseException) -> KafkaError | None:
    """The KafkaError inside an exception from confluent-kafka, if there is one."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0]
    return None


def translate(
    e: BaseException | KafkaError,
    url: str,
    what: str,
    *,
    topic: str | None = None,
    group: str | None = None,
) -> TidingsError:
    """The tidings error for a failed Kafka call: `what` was being done at `url`."""
    err = e if isinstance(e, KafkaError) else kafka_error(e)
    if err is None:
        return TidingsError(f"{what} failed at {url}: {e}")
    code, text = err.code(), err.str()
    if topic is not None:
        if code in (KafkaError.TOPIC_ALREADY_EXISTS,):
            return TopicExistsError(topic)
        if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
            return TopicNotFoundError(topic)
        if code == KafkaError.TOPIC_EXCEPTION:
            return InvalidTopicError(topic, f"the cluster at {url} refused topic {topic!r}: {text}")
        if code in REFUSED:
            return TopicError(
                topic,
                f"the cluster at {url} refused {what} ({err.name()}): {text}; "
                f"check the topic's settings and this client's permissions",
            )
    if code == KafkaError.INVALID_PARTITIONS:
        return InvalidPartitionsError(f"{what} failed: {text}")
    if group is not None:
        if code == KafkaError.GROUP_ID_NOT_FOUND:
            return GroupNotFoundError(group)
        if code == KafkaError.NON_EMPTY_GROUP:
            return GroupNotEmptyError(
                group, f"cannot change group {group!r}: it has live members; stop them first"
            )
    if code in AUTHENTICATION:
        return ConfigurationError(
            f"the cluster at {url} refused this client's credentials: {text}; "
            f"check sasl_mechanism, sasl_username and sasl_password in the URL"
        )
    if code == KafkaError._SSL:
        return ConfigurationError(
            f"TLS with the cluster at {url} failed: {text}; check security_protocol and "
            f"ssl_ca_location in the URL"
        )
    if code in UNREACHABLE:
        return ClusterUnavailableError(
            url,
            f"{what} failed: no broker of {url} answered in time ({err.name()}: {text}); "
            f"check that the cluster is up and the URL's hosts and ports are right",
        )
    if code in (KafkaError._INVALID_ARG, KafkaError._UNSUPPORTED_FEATURE):
        return ConfigurationError(f"{what} failed at {url}: {text}")
    return TidingsError(f"{what} failed at {url} ({err.name()}): {text}")
