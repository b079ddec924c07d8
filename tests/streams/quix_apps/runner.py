"""What the Quix Streams apps share: their settings from the command line, and the run.

Each app is a script for `.venv-quix/bin/python` (Quix Streams pins an older
confluent-kafka than tidings does, so it never runs in tidings' own venv):

    python word_count.py BOOTSTRAP TOPIC GROUP STATE_DIR EXPECTED

It reads TOPIC from its beginning as consumer group GROUP, keeps its state under
STATE_DIR, stops once it has emitted EXPECTED results (or once no message has come for
IDLE_S seconds), and prints its results on stdout as one JSON list of {"key", "value"}.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame

# a stop for an app that waits in vain, well inside the test's own limit
IDLE_S = 30.0


def run(pipeline: Callable[[StreamingDataFrame], StreamingDataFrame]) -> None:
    """Run `pipeline` over the topic the command line names; print what it emitted."""
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("state_dir")
    parser.add_argument("expected", type=int)
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
    )
    topic = app.topic(args.topic, key_deserializer="str", value_deserializer="str")
    pipeline(app.dataframe(topic))
    emitted = app.run(count=args.expected, timeout=IDLE_S, metadata=True)
    print(json.dumps([{"key": row["_key"], "value": value(row)} for row in emitted]))


def value(row: dict[str, Any]) -> Any:
    """The value an app emitted, out of the row Quix Streams collected with its metadata."""
    if "_value" in row:
        return row["_value"]
    return {name: field for name, field in row.items() if not name.startswith("_")}
