"""RefusalLog: each refusal of an API or a feature is logged once per client id, client
address, API and reason, and what it remembers is bounded."""

from __future__ import annotations

import logging

import pytest
from kio.schema.errors import ErrorCode

from tidings.server.kafka.protocol import Caller
from tidings.server.kafka.refusals import (
    TRANSACTIONS,
    RefusalLog,
    api_name,
    unserved_reason,
    unserved_refusal,
)

REFUSED = ErrorCode.unsupported_version


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings logged so far."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_refusal_is_logged_once_per_client_address_api_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = RefusalLog()
    app = Caller("app", "10.0.0.1")
    with caplog.at_level(logging.WARNING, logger="tidings.server.kafka"):
        for _ in range(3):
            refusals.refused(app, "InitProducerId", TRANSACTIONS, REFUSED)
        refusals.refused(Caller("app", "10.0.0.2"), "InitProducerId", TRANSACTIONS, REFUSED)
        refusals.refused(Caller("other", "10.0.0.1"), "InitProducerId", TRANSACTIONS, REFUSED)
        refusals.refused(app, "Produce", TRANSACTIONS, ErrorCode.unsupported_for_message_format)
        refusals.refused(app, "Fetch", "Fetch v13 is not served", None)
    assert logged(caplog) == [
        "refused InitProducerId from client 'app' at 10.0.0.1 (answered UNSUPPORTED_VERSION): "
        f"{TRANSACTIONS}; logged once per client and API",
        "refused InitProducerId from client 'app' at 10.0.0.2 (answered UNSUPPORTED_VERSION): "
        f"{TRANSACTIONS}; logged once per client and API",
        "refused InitProducerId from client 'other' at 10.0.0.1 (answered UNSUPPORTED_VERSION): "
        f"{TRANSACTIONS}; logged once per client and API",
        "refused Produce from client 'app' at 10.0.0.1 (answered UNSUPPORTED_FOR_MESSAGE_FORMAT): "
        f"{TRANSACTIONS}; logged once per client and API",
        "refused Fetch from client 'app' at 10.0.0.1 (the connection is closed): "
        "Fetch v13 is not served; logged once per client and API",
    ]


def test_a_client_rotating_its_id_fills_a_bounded_set_and_the_oldest_is_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = RefusalLog(capacity=3)
    with caplog.at_level(logging.WARNING, logger="tidings.server.kafka"):
        for i in range(1000):
            refusals.refused(Caller(f"id-{i}", "10.0.0.9"), "EndTxn", TRANSACTIONS, REFUSED)
        assert len(logged(caplog)) == 1000
        assert len(refusals) == 3
        refusals.refused(Caller("id-999", "10.0.0.9"), "EndTxn", TRANSACTIONS, REFUSED)
        assert len(logged(caplog)) == 1000  # among the last three: not logged again
        refusals.refused(Caller("id-0", "10.0.0.9"), "EndTxn", TRANSACTIONS, REFUSED)
        assert len(logged(caplog)) == 1001  # forgotten long ago: logged anew


def test_a_refusal_seen_again_is_kept_as_recent() -> None:
    refusals = RefusalLog(capacity=2)
    a, b, c = (Caller(name, "h") for name in "abc")
    refusals.refused(a, "EndTxn", TRANSACTIONS, REFUSED)
    refusals.refused(b, "EndTxn", TRANSACTIONS, REFUSED)
    refusals.refused(a, "EndTxn", TRANSACTIONS, REFUSED)  # a is the most recent now
    refusals.refused(c, "EndTxn", TRANSACTIONS, REFUSED)  # b, the oldest, is forgotten
    assert (a.client_id, "h", "EndTxn", TRANSACTIONS) in refusals
    assert (b.client_id, "h", "EndTxn", TRANSACTIONS) not in refusals


def test_the_reasons_name_the_feature_or_the_versions_served() -> None:
    assert unserved_reason(24, 0, None) == TRANSACTIONS  # AddPartitionsToTxn
    assert "KIP-848" in unserved_reason(68, 0, None)  # ConsumerGroupHeartbeat
    assert "KIP-932" in unserved_reason(76, 1, None)  # ShareGroupHeartbeat
    assert unserved_reason(1, 13, (4, 12)) == "Fetch v13 is not served: this broker serves v4-v12"
    assert unserved_reason(21, 0, None) == "DeleteRecords is not served by this broker"
    assert unserved_reason(999, 0, None) == "API key 999 is not an API Kafka defines"
    assert api_name(22) == "InitProducerId"


def test_an_answer_with_an_error_code_carries_the_refusal_and_one_without_has_none() -> None:
    assert unserved_refusal(26, 3, TRANSACTIONS) == {"error_code": REFUSED}  # EndTxn
    assert unserved_refusal(68, 0, "why") == {"error_code": REFUSED, "error_message": "why"}
    assert unserved_refusal(24, 3, TRANSACTIONS) is None  # AddPartitionsToTxn before v4
    assert unserved_refusal(0, 2, "old") is None  # Produce v2: not a version Kafka defines now
    assert unserved_refusal(999, 0, "unknown") is None
