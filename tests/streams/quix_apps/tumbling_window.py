"""Tumbling-window count: how many sentences each key sent in each window of event time.

The window's length in milliseconds comes from $WINDOW_MS. A window is emitted once
closed, when a later record of the same key passes its end, as {"start", "end", "value"};
each key's last window stays open and is never emitted.
"""

from __future__ import annotations

import os

from quixstreams.dataframe import StreamingDataFrame
from runner import run

WINDOW_MS = int(os.environ["WINDOW_MS"])


def pipeline(sentences: StreamingDataFrame) -> StreamingDataFrame:
    """Count each key's sentences per window of their timestamps."""
    return sentences.tumbling_window(duration_ms=WINDOW_MS).count().final()


if __name__ == "__main__":
    run(pipeline)
