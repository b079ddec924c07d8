"""What the suite runs on: its sizes, the brokers it starts, the machine's raw limits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import cdc, es, kafka, nats_server
from bench import engines as engines_section
from bench.redis_server import redis_server
from bench.scaling import Sizes as ScalingSizes
from bench.stats import VALUE_SIZE, Latency

TIDINGS_DURABILITY = "sqlite WAL, fsync per commit"


@dataclass(frozen=True)
class Sizes:
    """How much every scenario moves."""

    log: tuple[tuple[int, int], ...] = ((100, 200_000), (1024, 100_000), (10240, 20_000))
    """(value bytes, records per run) of the durable log scenario."""
    round_trips: int = 1_000
    """one-at-a-time publishes per round-trip run."""
    jobs: int = 100_000
    """queue jobs for tidings, Redis and JetStream."""
    peer_jobs: int = 2_000
    """queue jobs for persist-queue and litequeue (one job per call, slower)."""
    rate: int = 5_000
    """publishes per second in the pub/sub latency runs (with 4 subscribers, 20,000
    deliveries/s: about what one Python process of nats-py or redis-py takes on 2 cores)."""
    seconds: float = 3.0
    """length of each pub/sub latency run."""
    raw_samples: int = 200
    """round trips of each raw latency (an fsync, a sqlite3 commit)."""
    es: es.Sizes = field(default_factory=lambda: es.Sizes(catch_up=200_000))
    scaling: ScalingSizes = field(default_factory=ScalingSizes)
    cdc: cdc.Sizes = field(default_factory=cdc.Sizes)
    engines: engines_section.Sizes = field(default_factory=engines_section.Sizes)
    repeat: int = 3
    """runs of every figure (the median is reported)."""

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: a smoke test, not a figure."""
        return cls(
            log=((100, 5_000), (1024, 3_000), (10240, 2_000)),
            round_trips=50,
            jobs=2_000,
            peer_jobs=200,
            rate=2_000,
            seconds=0.3,
            raw_samples=20,
            es=es.Sizes.quick(),
            scaling=ScalingSizes.quick(),
            cdc=cdc.Sizes.quick(),
            engines=engines_section.Sizes.quick(),
            repeat=1,
        )


@dataclass(frozen=True)
class Servers:
    """The brokers the scenarios share, running for the whole suite."""

    tidings: str
    """`tidings serve` bootstrap."""
    tansu: str
    """Tansu bootstrap."""
    redis: int
    """redis-server port."""
    nats: str
    """nats-server URL."""


@contextmanager
def servers(directory: Path) -> Iterator[Servers]:
    """Start every broker on 127.0.0.1; each is stopped by its pid afterwards."""
    with ExitStack() as stack:
        yield Servers(
            stack.enter_context(kafka.tidings_serve(directory / "serve")),
            stack.enter_context(kafka.tansu(kafka.tansu_binary())),
            stack.enter_context(redis_server()),
            stack.enter_context(nats_server.running(directory / "nats")).url,
        )


@dataclass(frozen=True)
class Limits:
    """The machine's raw limits the other figures are read against."""

    write: dict[int, float]
    """records/s appending batches of 1000 to a file with an fsync each, by value size."""
    read: dict[int, float]
    """records/s reading and decoding stored batches with sqlite3, by value size."""
    commit: Latency
    """one durable sqlite3 commit of one row."""
    queue: float
    """records/s of the least a log-backed queue does with plain sqlite3."""

    @property
    def small_write(self) -> float:
        """The write limit at the smallest value size (100 B)."""
        return self.write.get(VALUE_SIZE, min(self.write.values()))


def size_label(n: int) -> str:
    """A value size as the table names it: 100 B, 1 KiB, 10 KiB."""
    return f"{n // 1024} KiB" if n >= 1024 else f"{n} B"
