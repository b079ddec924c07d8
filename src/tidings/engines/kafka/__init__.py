"""The Kafka engine: tidings on any Kafka-compatible cluster, through librdkafka."""

from tidings.engines.kafka.engine import KAFKA_CAPABILITIES, KafkaEngine
from tidings.engines.kafka.errors import ClusterUnavailableError
from tidings.engines.kafka.settings import KafkaSettings

__all__ = ["KAFKA_CAPABILITIES", "ClusterUnavailableError", "KafkaEngine", "KafkaSettings"]
