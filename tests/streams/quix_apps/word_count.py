"""Word count: every word of every sentence, counted across the whole topic.

Each word is re-keyed by itself (a repartition topic), and its running count is kept in
Quix Streams' state (a changelog topic); every word read emits {"word", "count"}.
"""

from __future__ import annotations

from typing import Any

from quixstreams.dataframe import StreamingDataFrame
from quixstreams.state import State
from runner import run


def count(word: str, state: State) -> dict[str, Any]:
    """The word with how many times it has been seen, this one included."""
    seen = state.get("count", 0) + 1
    state.set("count", seen)
    return {"word": word, "count": seen}


def pipeline(sentences: StreamingDataFrame) -> StreamingDataFrame:
    """Split each sentence into words, group them by word and count each."""
    words = sentences.apply(str.split, expand=True)
    return words.group_by(lambda word: word, name="word").apply(count, stateful=True)


if __name__ == "__main__":
    run(pipeline)
