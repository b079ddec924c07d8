"""Records from librdkafka's messages, made in C (see _records.c)."""

from confluent_kafka import Message

from tidings.core.records import Headers, Record

def made(
    messages: list[Message],
    message_type: type[Message],
    record: type[Record],
    no_headers: Headers,
    /,
) -> tuple[list[Record], list[int]]:
    """Records of error-free `messages`, and the index where each partition's run starts."""
