"""Subject patterns over topic names, NATS style, and `^` regular expressions."""

from __future__ import annotations

import pytest

from tidings.core.errors import ConfigurationError
from tidings.core.subjects import compile_pattern, is_pattern, matching

NAMES = ["orders", "orders.created", "orders.paid", "orders.eu.created", "payments.created"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("orders.*", ["orders.created", "orders.paid"]),
        ("orders.>", ["orders.created", "orders.eu.created", "orders.paid"]),
        ("*.created", ["orders.created", "payments.created"]),
        ("orders.*.created", ["orders.eu.created"]),
        (">", NAMES),
        (r"^orders\.(created|paid)$", ["orders.created", "orders.paid"]),
        ("^pay.*", ["payments.created"]),
    ],
)
def test_patterns_match_whole_segments(pattern: str, expected: list[str]) -> None:
    assert matching([pattern], NAMES) == sorted(expected)


def test_plain_names_are_not_patterns() -> None:
    assert [is_pattern(n) for n in ("orders", "orders.*", "a.>", "^x", "orders.v2")] == [
        False,
        True,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize("bad", ["orders.>.x", "orders.cre*", "^(unclosed"])
def test_bad_patterns_are_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(ConfigurationError, match=r"pattern|regular expression"):
        compile_pattern(bad)
