"""The count of failed authentications per client address, on a clock the test moves."""

from __future__ import annotations

import pytest

from tidings.server.kafka.sasl import (
    ADDRESS_FAILURES_ALLOWED,
    FAILURE_REFILL_S,
    FAILURES_ALLOWED,
    TRACKED,
    FailedLogins,
    TooManyFailures,
)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A clock for the limiter to read."""
    return Clock()


def test_a_users_guesser_is_held_back_then_let_in_at_the_refill_rate(clock: Clock) -> None:
    limiter = FailedLogins(clock)
    for _ in range(FAILURES_ALLOWED):
        limiter.check("10.0.0.1", "alice")
        limiter.failed("10.0.0.1", "alice")
    with pytest.raises(TooManyFailures) as refused:
        limiter.check("10.0.0.1", "alice")
    assert refused.value.retry_after_s == FAILURE_REFILL_S
    assert "try again in 6s" in str(refused.value)
    limiter.check("10.0.0.1", "bob")  # another user of that address
    limiter.check("10.0.0.2", "alice")  # the same user from elsewhere
    clock.now += FAILURE_REFILL_S
    limiter.check("10.0.0.1", "alice")  # one more guess, and no more
    limiter.failed("10.0.0.1", "alice")
    with pytest.raises(TooManyFailures):
        limiter.check("10.0.0.1", "alice")


def test_trying_many_users_from_one_address_is_held_back_too(clock: Clock) -> None:
    limiter = FailedLogins(clock)
    for i in range(ADDRESS_FAILURES_ALLOWED):
        limiter.check("10.0.0.1", f"user{i}")
        limiter.failed("10.0.0.1", f"user{i}")
    with pytest.raises(TooManyFailures):
        limiter.check("10.0.0.1", "someone else")
    with pytest.raises(TooManyFailures):
        limiter.check("10.0.0.1")  # a bearer token: no user named


def test_memory_stays_bounded_whatever_is_tried(clock: Clock) -> None:
    limiter = FailedLogins(clock)
    for i in range(3 * TRACKED):
        limiter.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", f"user{i}")
    assert limiter.tracked <= TRACKED
