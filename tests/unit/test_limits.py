"""Bounds that hold below every surface: partition counts of the embedded log."""

from __future__ import annotations

from pathlib import Path

import pytest

import tidings
from tidings import ConfigurationError, InvalidPartitionsError


@pytest.mark.parametrize("url", ["memory://", "sqlite://{tmp}/bus.db"])
def test_partition_counts_are_bounded_with_an_error_naming_the_limit(
    url: str, tmp_path: Path
) -> None:
    with tidings.connect(url.format(tmp=tmp_path)) as bus:
        for partitions, says in [
            (10**20, "partitions must be an int from 1 to 2147483647"),
            (2**31 - 1, "max_partitions=10000"),
            (10_001, "max_partitions=10000"),
            ("3", "not '3'"),
            (2.0, "not 2.0"),
            (0, "not 0"),
        ]:
            with pytest.raises(ConfigurationError, match="partitions") as caught:
                bus.create_topic("t", partitions)  # type: ignore[arg-type]
            assert isinstance(caught.value, InvalidPartitionsError)
            assert says in str(caught.value)
        bus.create_topic("t", 2)
        with pytest.raises(InvalidPartitionsError, match="max_partitions=10000"):
            bus.add_partitions("t", 2**31 - 1)
        assert bus.describe_topic("t").spec.partitions == 2
        assert [t.name for t in bus.list_topics()] == ["t"]


def test_the_partition_limit_is_set_in_the_url(tmp_path: Path) -> None:
    with tidings.connect(f"sqlite://{tmp_path}/bus.db?max_partitions=3") as bus:
        bus.create_topic("three", 3)
        with pytest.raises(InvalidPartitionsError, match="max_partitions=3"):
            bus.create_topic("four", 4)
        with pytest.raises(InvalidPartitionsError, match="max_partitions=3"):
            bus.add_partitions("three", 4)
    with pytest.raises(ConfigurationError, match="max_partitions='lots'"):
        tidings.connect("memory://?max_partitions=lots")
