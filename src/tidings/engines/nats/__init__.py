"""The NATS JetStream engine: `tidings.connect("nats://host:4222")`."""

from tidings.engines.nats.engine import NATS_CAPABILITIES, NatsEngine

__all__ = ["NATS_CAPABILITIES", "NatsEngine"]
