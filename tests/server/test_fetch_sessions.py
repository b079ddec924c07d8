"""Incremental fetch sessions (KIP-227), spoken on the wire: only news comes back."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from . import wire
from .conftest import Served

FETCH = 1


def fetch(
    broker: Served,
    session_id: int,
    epoch: int,
    partitions: dict[int, int],
    *,
    forgotten: list[int] | None = None,
    max_wait_ms: int = 200,
) -> Any:
    """One Fetch v12 of topic 'fs' (partition -> offset), answered."""
    wanted = [
        {
            "partition": p,
            "fetch_offset": offset,
            "partition_max_bytes": 1 << 20,
            "log_start_offset": -1,
            "current_leader_epoch": -1,
            "last_fetched_epoch": -1,
        }
        for p, offset in partitions.items()
    ]
    request = {
        "replica_id": -1,
        "max_wait": max_wait_ms,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "session_id": session_id,
        "session_epoch": epoch,
        "topics": [{"topic": "fs", "partitions": wanted}] if wanted else [],
        "forgotten_topics_data": [{"topic": "fs", "partitions": forgotten}] if forgotten else [],
        "rack_id": "",
    }
    return wire.call(broker.bootstrap, FETCH, 12, request)


def answered(response: Any) -> dict[int, int]:
    """partition -> bytes of records, for the partitions a response carries."""
    return {
        p.partition_index: len(p.records or b"") for t in response.responses for p in t.partitions
    }


def test_a_session_answers_with_news_only(broker: Served) -> None:
    with broker.bus() as bus:
        bus.create_topic("fs", partitions=2)
        bus.publish("fs", b"zero", partition=0)
        first = fetch(broker, 0, 0, {0: 0, 1: 0})  # open a session with both partitions
        assert first.error_code == ErrorCode.none and first.session_id > 0
        assert answered(first)[0] > 0 and answered(first)[1] == 0
        session = first.session_id

        # partition 0 moved on; nothing new anywhere: an empty answer after max_wait
        quiet = fetch(broker, session, 1, {0: 1})
        assert answered(quiet) == {}

        bus.publish("fs", b"one", partition=1)
        news = fetch(broker, session, 2, {}, max_wait_ms=5000)
        assert list(answered(news)) == [1] and answered(news)[1] > 0  # from the session

        stale = fetch(broker, session, 2, {})
        assert stale.error_code == ErrorCode.invalid_fetch_session_epoch
        assert fetch(broker, 424242, 1, {}).error_code == ErrorCode.fetch_session_id_not_found

        # forget partition 1: a new record there is no news for this session
        fetch(broker, session, 3, {}, forgotten=[1])
        bus.publish("fs", b"two", partition=1)
        assert answered(fetch(broker, session, 4, {})) == {}

        closed = fetch(broker, session, -1, {0: 0})  # close it; a full fetch, no session
        assert closed.session_id == 0 and answered(closed)[0] > 0
        assert fetch(broker, session, 5, {}).error_code == ErrorCode.fetch_session_id_not_found
