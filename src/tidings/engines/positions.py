"""What every consumer does with its positions and assignment, the same everywhere."""

from __future__ import annotations

from abc import abstractmethod

from tidings.core.errors import ConfigurationError
from tidings.core.records import TopicPartition
from tidings.engines.base import EngineConsumer, Rebalance


class PositionedConsumer(EngineConsumer):
    """A consumer keeping the next offset of each assigned partition (None: not yet known)
    and the rebalances its listeners have not been told of."""

    _positions: dict[TopicPartition, int | None]
    _rebalances: list[Rebalance]
    _group: str | None

    @abstractmethod
    async def _extent(self, tp: TopicPartition) -> tuple[int, int]:
        """The partition's log start and end offsets."""

    def assignment(self) -> set[TopicPartition]:
        """Partitions read now."""
        return set(self._positions.copy())

    def _to_commit(
        self, offsets: dict[TopicPartition, int] | None
    ) -> tuple[str, dict[TopicPartition, int]]:
        """The group and what a commit of `offsets` (None: the positions) stores in it."""
        if self._group is None:
            raise ConfigurationError("commit needs a group; create the consumer with group='name'")
        return self._group, self.positions() if offsets is None else offsets

    def take_rebalances(self) -> list[Rebalance]:
        """Rebalances since the last call."""
        out, self._rebalances = self._rebalances, []
        return out

    def position(self, partition: TopicPartition) -> int:
        """The next offset to return from `partition`."""
        positions = self._positions.copy()  # another thread may change it meanwhile
        if partition not in positions:
            raise ConfigurationError(
                f"{partition.topic}[{partition.partition}] is not assigned to this consumer"
            )
        pos = positions[partition]
        if pos is None:
            raise ConfigurationError(
                f"{partition.topic}[{partition.partition}] has no position yet; "
                f"poll() first or seek()"
            )
        return pos

    def positions(self) -> dict[TopicPartition, int]:
        """Next offsets of the partitions that have a position."""
        return {tp: pos for tp, pos in self._positions.copy().items() if pos is not None}

    async def seek(self, partition: TopicPartition, offset: int | str) -> None:
        """Move to `offset`, 'earliest' or 'latest'."""
        partition = TopicPartition(*partition)
        if partition not in self._positions:
            raise ConfigurationError(
                f"cannot seek {partition.topic}[{partition.partition}]: "
                f"not assigned to this consumer"
            )
        if isinstance(offset, str):
            if offset not in ("earliest", "latest"):
                raise ConfigurationError(
                    f"seek to an offset, 'earliest' or 'latest', not {offset!r}"
                )
            start, end = await self._extent(partition)
            offset = start if offset == "earliest" else end
        if offset < 0:
            raise ConfigurationError(f"offset must be >= 0, not {offset}")
        self.rewind(partition, offset)
