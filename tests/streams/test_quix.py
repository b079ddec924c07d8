"""Quix Streams against `tidings serve`: a word count and a tumbling-window count.

The input is a backfill: sentences produced now, stamped a year in the past, into a topic
with the broker's default retention (7 days). The apps (quix_apps/) run unchanged, as a
user runs them, in a venv of their own (.venv-quix, made by `make setup`): Quix Streams
pins an older confluent-kafka than tidings' lock has.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.server.conftest import Served, start_broker
from tests.server.test_confluent import consumer, produce, producer

ROOT = Path(__file__).resolve().parents[2]
QUIX_VENV = ROOT / ".venv-quix"
QUIX_PYTHON = QUIX_VENV / "bin" / "python"
APPS = Path(__file__).parent / "quix_apps"
APP_TIMEOUT_S = 90
TOPIC = "sentences"
PARTITIONS = 2
YEAR_MS = 365 * 24 * 3600 * 1000
WINDOW_MS = 60_000
# retention runs this often, so many rounds pass while the apps read the backfill
RETENTION_CHECK_S = 0.5
SPEAKERS = ["ada", "grace", "linus"]
WORDS = ["log", "offset", "partition", "topic", "group", "record", "window", "state"]


@dataclass(frozen=True)
class Sentence:
    """One record of the backfill: who said it, what, and when (event time, in ms)."""

    key: str
    text: str
    timestamp: int


@dataclass(frozen=True)
class Backfill:
    """A broker, and the sentences it holds in TOPIC."""

    broker: Served
    sentences: list[Sentence]


def year_old_sentences() -> list[Sentence]:
    """Sentences stamped a year ago, every 6 s for five minutes, then one per speaker later.

    The later ones close each speaker's windows of those five minutes.
    """
    rng = random.Random(21)
    start = time.time_ns() // 1_000_000 - YEAR_MS
    times = [start + i * 6_000 for i in range(50)]
    times += [start + 10 * WINDOW_MS] * len(SPEAKERS)
    return [
        Sentence(SPEAKERS[i % len(SPEAKERS)], " ".join(rng.choices(WORDS, k=rng.randint(2, 7))), t)
        for i, t in enumerate(times)
    ]


def create_topic(broker: Served) -> None:
    """Create TOPIC with no settings of its own: the broker's default retention, 7 days."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(timeout=15)


@pytest.fixture(scope="module")
def backfill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfill]:
    """A broker whose topic got a year-old backfill from confluent-kafka."""
    data = tmp_path_factory.mktemp("quix") / "data"
    broker = start_broker(data, "--retention-check-interval", str(RETENTION_CHECK_S))
    try:
        create_topic(broker)
        sentences = year_old_sentences()
        p = producer(broker)
        produce(
            p, TOPIC, [{"key": s.key, "value": s.text, "timestamp": s.timestamp} for s in sentences]
        )
        p.close()
        yield Backfill(broker, sentences)
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def quix_python() -> Path:
    """The interpreter of .venv-quix; a clear failure when the venv was never made."""
    if not (QUIX_VENV / ".installed").is_file():
        pytest.fail(
            f"{QUIX_VENV} is missing or half made: Quix Streams runs in a venv of its own, "
            "installed from tests/streams/quix.lock; run `make setup` (or `make test`)"
        )
    return QUIX_PYTHON


def run_app(
    quix_python: Path, app: str, backfill: Backfill, expected: int, state: Path, **env: str
) -> list[dict[str, Any]]:
    """Run a Quix Streams app over TOPIC until it emits `expected` results; those results."""
    result = subprocess.run(
        [
            str(quix_python),
            str(APPS / app),
            backfill.broker.bootstrap,
            TOPIC,
            app.removesuffix(".py"),
            str(state),
            str(expected),
        ],
        capture_output=True,
        text=True,
        timeout=APP_TIMEOUT_S,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, f"{app} failed:\n{result.stderr}"
    emitted: list[dict[str, Any]] = json.loads(result.stdout)
    return emitted


def assert_backfill_kept(backfill: Backfill) -> None:
    """Every record of the backfill is still in TOPIC: retention removed none of them."""
    c = consumer(backfill.broker)
    try:
        marks = [
            c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10) for p in range(PARTITIONS)
        ]
    finally:
        c.close()
    assert [low for low, _ in marks] == [0] * PARTITIONS, f"records removed: {marks}"
    assert sum(high for _, high in marks) == len(backfill.sentences)


def test_word_count_counts_every_word_of_a_year_old_backfill_once(
    quix_python: Path, backfill: Backfill, tmp_path: Path
) -> None:
    words = Counter(word for s in backfill.sentences for word in s.text.split())

    emitted = run_app(quix_python, "word_count.py", backfill, words.total(), tmp_path)

    counts: dict[str, list[int]] = {}
    for row in emitted:
        assert row["key"] == row["value"]["word"]
        counts.setdefault(row["key"], []).append(row["value"]["count"])
    assert counts == {word: list(range(1, n + 1)) for word, n in words.items()}
    assert_backfill_kept(backfill)


def test_tumbling_window_counts_each_closed_window_of_a_year_old_backfill(
    quix_python: Path, backfill: Backfill, tmp_path: Path
) -> None:
    windows = Counter((s.key, s.timestamp - s.timestamp % WINDOW_MS) for s in backfill.sentences)
    for key in SPEAKERS:  # a key's last window is still open: final() never emits it
        del windows[key, max(start for k, start in windows if k == key)]

    emitted = run_app(
        quix_python,
        "tumbling_window.py",
        backfill,
        len(windows),
        tmp_path,
        WINDOW_MS=str(WINDOW_MS),
    )

    counted = {(row["key"], row["value"]["start"]): row["value"]["value"] for row in emitted}
    assert counted == dict(windows)
    assert len(emitted) == len(windows), "a window was emitted twice"
    assert all(row["value"]["end"] - row["value"]["start"] == WINDOW_MS for row in emitted)
    assert_backfill_kept(backfill)
