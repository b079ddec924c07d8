"""RefusalLog: each refusal of an API or a feature is logged once per client id, client
address, API and reason, and what it remembers is bounded."""

from __future__ import annotations

import logging

import pytest
from kio.schema.errors import ErrorCode

from tidings.server.kafka.protocol import Caller
from tidings.server.kafka.refusals import TRANSACTIONS, RefusalLog

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
