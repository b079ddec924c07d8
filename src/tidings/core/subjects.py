"""Subscribing to many topics by name: NATS-style subject patterns and regular expressions.

Topic names are read as dot-separated subjects (`orders.eu.created`):

- `*` stands for exactly one segment: `orders.*` matches `orders.paid`, not `orders.eu.paid`;
- `>` as the last segment stands for one or more: `orders.>` matches both;
- a name starting with `^` is a regular expression matched against the whole name, as
  Kafka clients (librdkafka, confluent-kafka) read a `^` subscription.

Anything else names one topic exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from tidings.core.errors import ConfigurationError


def is_pattern(name: str) -> bool:
    """Whether `name` is a pattern rather than one topic's name."""
    return name.startswith("^") or "*" in name or ">" in name


def split_subscription(topics: Iterable[str]) -> tuple[list[str], list[str]]:
    """(patterns, names) of a subscription, each once and in order; a bad pattern raises."""
    unique = list(dict.fromkeys(topics))
    patterns = [t for t in unique if is_pattern(t)]
    for pattern in patterns:
        compile_pattern(pattern)  # refuse a bad pattern now
    return patterns, [t for t in unique if not is_pattern(t)]


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A predicate telling whether a topic name matches `pattern`."""
    if pattern.startswith("^"):
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ConfigurationError(f"invalid regular expression {pattern!r}: {e}") from e
        return lambda name: regex.fullmatch(name) is not None
    segments = pattern.split(".")
    if ">" in segments[:-1]:
        raise ConfigurationError(
            f"invalid pattern {pattern!r}: '>' may only be the last segment (e.g. 'orders.>')"
        )
    parts = []
    for segment in segments:
        if segment == "*":
            parts.append(r"[^.]+")
        elif segment == ">":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        elif "*" in segment or ">" in segment:
            raise ConfigurationError(
                f"invalid pattern {pattern!r}: '*' and '>' stand for whole segments, "
                f"as in 'orders.*'"
            )
        else:
            parts.append(re.escape(segment))
    regex = re.compile(r"\.".join(parts))
    return lambda name: regex.fullmatch(name) is not None


def matching(patterns: Iterable[str], names: Iterable[str]) -> list[str]:
    """The `names` that any of `patterns` matches, sorted."""
    tests = [compile_pattern(p) for p in patterns]
    return sorted(n for n in names if any(test(n) for test in tests))
