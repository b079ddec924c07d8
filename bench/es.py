"""Event sourcing: the tidings event store beside the `eventsourcing` library, in one run.

Both libraries store on SQLite files and do the same work through their aggregate APIs:
an account aggregate records an `Opened` event, then `Deposited` events, and saving it
appends the new events with an optimistic concurrency check.

- tidings: `eventsourcing.connect("sqlite://...")` and `Repository(store, Account).save()`:
  WAL, synchronous=FULL, one BEGIN IMMEDIATE transaction per append, which checks the
  stream's expected version in its `streams` row;
- eventsourcing: an `Application` with `PERSISTENCE_MODULE=eventsourcing.sqlite` and
  `app.save(account)`: WAL, synchronous left at the SQLite build's default (read back
  from its connection for the notes), one BEGIN transaction per save, which the primary
  key (originator_id, originator_version) guards.

Figures, each the median of `repeat` runs on new files, the two libraries taking turns:

- appends, events/s: one writer appending 1 event per append, round-robin over many
  streams; one writer appending 10 per append; several writer threads with a store (an
  application) each, 1 event per append to streams of their own; and the 1,000-event
  appends that fill the catch-up store (one run);
- loading an aggregate of many events, from its events and from a snapshot taken at its
  last event (tidings: `snapshot_every`; eventsourcing: `snapshotting_intervals`): median
  time per load;
- catch-up: every event in global order, a page at a time (tidings: `read_all`;
  eventsourcing: `notification_log.select`), and tidings' async `subscribe()` iterator;
  neither decodes the event payloads.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.application import Repository as EsRepository
from eventsourcing.domain import Aggregate as EsAggregate
from eventsourcing.domain import event
from eventsourcing.sqlite import SQLiteApplicationRecorder

from tidings import eventsourcing as tidings_es
from tidings.eventsourcing import Aggregate, AsyncEventStore, Repository, when
from tidings.eventsourcing.store import PAGE

BATCH = 10
"""Events per append in the batch figure."""
FILL = 1_000
"""Events per append filling the loaded aggregate and the catch-up store."""
SNAPSHOT_EVERY = 100
"""Events between two snapshots of the loaded aggregate (its last event is one)."""
LOCK_TIMEOUT_S = 30
"""How long a writer waits for SQLite's write lock (tidings' own busy timeout)."""
ONE, BATCHED, CONCURRENT, FILLED = "append_one", "append_batch", "append_concurrent", "fill"
LOAD, LOAD_SNAPSHOT, CATCH_UP, SUBSCRIBE = "load", "load_snapshot", "catch_up", "subscribe"

Cells = tuple[str, str, str, str, str, str]
"""measurement, result, raw limit (here: eventsourcing's figure), ratio, target, met."""


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does."""

    streams: int = 1_000
    """accounts the single-writer appends go round-robin over."""
    appends: int = 5_000
    """appends of 1 event by one writer, and by all writers together."""
    batch_appends: int = 1_000
    """appends of BATCH events by one writer."""
    writers: int = 4
    aggregate: int = 10_000
    """events of the loaded aggregate."""
    loads: int = 5
    """loads of it each way (median)."""
    catch_up: int = 1_000_000
    """events read in global order (stored FILL per append)."""
    repeat: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: a smoke test, not a figure."""
        return cls(
            streams=20,
            appends=200,
            batch_appends=50,
            aggregate=500,
            loads=3,
            catch_up=2_000,
            repeat=1,
        )


@dataclass(frozen=True)
class EsResults:
    """The event sourcing section of the benchmark."""

    sizes: Sizes
    versions: dict[str, str]
    runs: dict[str, dict[str, list[float]]]
    """library -> measurement -> its figure in each run: events/s, or seconds per load."""
    notes: list[str] = field(default_factory=list)

    def median(self, library: str, measurement: str) -> float:
        """The median of a measurement's runs."""
        return float(statistics.median(self.runs[library][measurement]))


# -- the accounts, in each library --------------------------------------------------------


class Accounts(Protocol):
    """Account aggregates in one library's store: the work every figure times."""

    def create(self, events: int) -> int:
        """A new account with `events` events (Opened, then deposits) in one append."""

    def deposit(self, index: int, events: int) -> None:
        """Append `events` deposits to an account in one append."""

    def load(self, index: int, snapshot: bool) -> int:
        """Load an account from the store (from its snapshot or its events); its events."""

    def catch_up(self) -> int:
        """Read every event in global order, a page at a time; how many."""

    def close(self) -> None:
        """Close the store."""


@dataclass
class Opened:
    """An account was opened."""

    owner: str


@dataclass
class Deposited:
    """Money went into an account."""

    amount: int


class Account(Aggregate):
    """The tidings account."""

    category = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0

    @when(Opened)
    def _opened(self, e: Opened) -> None:
        self.owner = e.owner

    @when(Deposited)
    def _deposited(self, e: Deposited) -> None:
        self.balance += e.amount


class SnapshottedAccount(Account):
    """The tidings account with a snapshot every SNAPSHOT_EVERY events."""

    snapshot_every = SNAPSHOT_EVERY


class TidingsAccounts:
    """Accounts in the tidings event store on a SQLite file."""

    def __init__(self, path: Path, snapshots: bool = False) -> None:
        self.store = tidings_es.connect(f"sqlite://{path}")
        self.kind = SnapshottedAccount if snapshots else Account
        self.repository = Repository(self.store, self.kind)
        self.accounts: list[Account] = []

    def create(self, events: int) -> int:
        """A new account with `events` events in one append."""
        account = self.kind(uuid4().hex)  # a new stream, named like eventsourcing's
        account.record(Opened("ada"))
        for _ in range(events - 1):
            account.record(Deposited(1))
        self.repository.save(account)
        self.accounts.append(account)
        return len(self.accounts) - 1

    def deposit(self, index: int, events: int) -> None:
        """Append `events` deposits to an account in one append."""
        account = self.accounts[index]
        for _ in range(events):
            account.record(Deposited(1))
        self.repository.save(account)

    def load(self, index: int, snapshot: bool) -> int:
        """Load an account; its events."""
        return self.repository.get(self.accounts[index].id, use_snapshot=snapshot).version + 1

    def catch_up(self) -> int:
        """Read every event with read_all(), PAGE at a time."""
        position, seen = 1, 0
        while page := self.store.read_all(position, PAGE):
            seen += len(page)
            position = page[-1].position + 1
        return seen

    def subscribe(self) -> int:
        """Read every event stored with the async subscribe() iterator; how many."""
        return self.store.portal.call(_follow(self.store.aio))

    def close(self) -> None:
        """Close the store."""
        self.store.close()


async def _follow(store: AsyncEventStore) -> int:
    """Follow a subscription from the first event to the last one stored now."""
    last, seen = await store.last_position(), 0
    async with contextlib.aclosing(store.subscribe(1)) as events:
        async for recorded in events:
            seen += 1
            if recorded.position >= last:
                break
    return seen


class EsAccount(EsAggregate):
    """The eventsourcing account."""

    @event("Opened")
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0

    @event("Deposited")
    def deposit(self, amount: int) -> None:
        """Put money in."""
        self.balance += amount


class Bank(Application[UUID]):
    """The eventsourcing application, its notification log read PAGE at a time."""

    log_section_size = PAGE


class SnapshottingBank(Bank):
    """The eventsourcing application with a snapshot every SNAPSHOT_EVERY events."""

    snapshotting_intervals = {EsAccount: SNAPSHOT_EVERY}


class EventsourcingAccounts:
    """Accounts in an eventsourcing application on a SQLite file."""

    def __init__(self, path: Path, snapshots: bool = False) -> None:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": str(LOCK_TIMEOUT_S),
        }
        self.app: Bank = (SnapshottingBank if snapshots else Bank)(env=env)
        self.from_events: EsRepository[UUID] = EsRepository(self.app.events)
        """The application's events without its snapshots."""
        self.accounts: list[EsAccount] = []

    def create(self, events: int) -> int:
        """A new account with `events` events in one save."""
        account = EsAccount("ada")
        for _ in range(events - 1):
            account.deposit(1)
        self.app.save(account)
        self.accounts.append(account)
        return len(self.accounts) - 1

    def deposit(self, index: int, events: int) -> None:
        """Append `events` deposits to an account in one save."""
        account = self.accounts[index]
        for _ in range(events):
            account.deposit(1)
        self.app.save(account)

    def load(self, index: int, snapshot: bool) -> int:
        """Load an account; its events."""
        repository = self.app.repository if snapshot else self.from_events
        account: EsAccount = repository.get(self.accounts[index].id)
        return account.version

    def catch_up(self) -> int:
        """Read every event with notification_log.select(), PAGE at a time."""
        start, seen = 1, 0
        while page := self.app.notification_log.select(start, PAGE):
            seen += len(page)
            start = page[-1].id + 1
        return seen

    def synchronous(self) -> int:
        """PRAGMA synchronous on the application's own connection."""
        recorder = cast(SQLiteApplicationRecorder, self.app.recorder)
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA synchronous")
            return int(cursor.fetchone()[0])

    def close(self) -> None:
        """Close the application."""
        self.app.close()


LIBRARIES: dict[str, Callable[[Path, bool], Accounts]] = {
    "tidings": TidingsAccounts,
    "eventsourcing": EventsourcingAccounts,
}


# -- the measurements ---------------------------------------------------------------------


def fill(accounts: Accounts, events: int) -> int:
    """A new account of `events` events, appended FILL at a time; its index."""
    index = accounts.create(min(events, FILL))
    for done in range(FILL, events, FILL):
        accounts.deposit(index, min(FILL, events - done))
    return index


def append_rate(accounts: Accounts, streams: int, appends: int, per_append: int) -> float:
    """events/s of `appends` appends of `per_append` deposits, round-robin over new accounts."""
    try:
        for _ in range(streams):
            accounts.create(1)
        start = time.perf_counter()
        for i in range(appends):
            accounts.deposit(i % streams, per_append)
        return appends * per_append / (time.perf_counter() - start)
    finally:
        accounts.close()


def concurrent_rate(open_accounts: Callable[[], Accounts], writers: int, sizes: Sizes) -> float:
    """events/s of `writers` threads, each with its own store, appending 1 event per append."""
    open_accounts().close()  # the file, its tables and WAL mode exist before the threads
    barrier = threading.Barrier(writers + 1, timeout=120)
    errors: list[BaseException] = []
    finished: list[float] = []

    def write() -> None:
        try:
            accounts = open_accounts()
            try:
                streams = max(1, sizes.streams // writers)
                for _ in range(streams):
                    accounts.create(1)
                barrier.wait()
                for i in range(sizes.appends // writers):
                    accounts.deposit(i % streams, 1)
                finished.append(time.perf_counter())
            finally:
                accounts.close()
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=write, name=f"writer-{i}") for i in range(writers)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a writer failed: see below
        barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sizes.appends // writers * writers / (max(finished) - start)


def _timed(run: Callable[[], int], expected: int) -> float:
    """Seconds `run()` took; it must report `expected` events."""
    start = time.perf_counter()
    got = run()
    elapsed = time.perf_counter() - start
    if got != expected:
        raise RuntimeError(f"got {got:,} events, expected {expected:,}")
    return elapsed


def measure_appends(directory: Path, sizes: Sizes, runs: dict[str, dict[str, list[float]]]) -> None:
    """The append figures, the libraries taking turns in each run."""
    s = sizes
    for i in range(s.repeat):
        for name, make in LIBRARIES.items():
            out = runs[name]
            one = make(directory / f"{name}-one-{i}.db", False)
            out[ONE].append(append_rate(one, s.streams, s.appends, 1))
            batched = make(directory / f"{name}-batch-{i}.db", False)
            out[BATCHED].append(append_rate(batched, s.streams, s.batch_appends, BATCH))
            writers = functools.partial(make, directory / f"{name}-writers-{i}.db", False)
            out[CONCURRENT].append(concurrent_rate(writers, s.writers, s))


def measure_loads(directory: Path, sizes: Sizes, runs: dict[str, dict[str, list[float]]]) -> None:
    """Load times of one large aggregate, from its events and from its last snapshot."""
    opened = {
        name: make(directory / f"{name}-aggregate.db", True) for name, make in LIBRARIES.items()
    }
    try:
        index = {name: fill(accounts, sizes.aggregate) for name, accounts in opened.items()}
        for _ in range(sizes.loads):
            for name, accounts in opened.items():
                for key, snapshot in ((LOAD, False), (LOAD_SNAPSHOT, True)):
                    load = functools.partial(accounts.load, index[name], snapshot)
                    runs[name][key].append(_timed(load, sizes.aggregate))
    finally:
        for accounts in opened.values():
            accounts.close()


def measure_catch_up(
    directory: Path, sizes: Sizes, runs: dict[str, dict[str, list[float]]]
) -> None:
    """Fill a store with `sizes.catch_up` events FILL per append, then read them all."""
    opened = {
        name: make(directory / f"{name}-catch-up.db", False) for name, make in LIBRARIES.items()
    }
    events = sizes.catch_up // FILL * FILL
    try:
        for name, accounts in opened.items():
            start = time.perf_counter()
            for _ in range(events // FILL):
                fill(accounts, FILL)
            runs[name][FILLED].append(events / (time.perf_counter() - start))
        for _ in range(sizes.repeat):
            for name, accounts in opened.items():
                runs[name][CATCH_UP].append(events / _timed(accounts.catch_up, events))
            tidings = cast(TidingsAccounts, opened["tidings"])
            runs["tidings"][SUBSCRIBE].append(events / _timed(tidings.subscribe, events))
    finally:
        for accounts in opened.values():
            accounts.close()


def measure(directory: Path, sizes: Sizes) -> EsResults:
    """Every event sourcing measurement, both libraries, in this run."""
    directory.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in LIBRARIES}
    measure_appends(directory, sizes, runs)
    measure_loads(directory, sizes, runs)
    measure_catch_up(directory, sizes, runs)
    probe = EventsourcingAccounts(directory / "eventsourcing-probe.db")
    try:
        synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(probe.synchronous(), "?")
    finally:
        probe.close()
    fsync = "an fsync of the WAL per save, as tidings" if synchronous == "FULL" else "no fsync"
    versions = {name: importlib.metadata.version(name) for name in LIBRARIES}
    notes = [
        f"tidings {versions['tidings']}: WAL, synchronous=FULL (an fsync of the WAL per "
        f"append), BEGIN IMMEDIATE per append; expected version checked in its streams row",
        f"eventsourcing {versions['eventsourcing']}: WAL, synchronous={synchronous} (it sets "
        f"none and has no setting for it: SQLite's build default, {fsync}); BEGIN per save; "
        f"concurrency by the primary key (originator_id, originator_version); "
        f"SQLITE_LOCK_TIMEOUT={LOCK_TIMEOUT_S}",
        "both: the aggregate API (a command records events, save appends them); catch-up "
        f"reads pages of {PAGE:,} stored events without decoding their payloads; "
        "eventsourcing's SQLite recorder has no subscription, so tidings' subscribe() is "
        "compared with its notification log",
        *(
            f"{name} runs: "
            + "; ".join(
                f"{key} " + ", ".join(_figure(key, x) for x in xs) for key, xs in out.items()
            )
            for name, out in runs.items()
        ),
    ]
    return EsResults(sizes, versions, {k: dict(v) for k, v in runs.items()}, notes)


# -- the table ----------------------------------------------------------------------------


def _rate(x: float) -> str:
    return f"{x:,.0f} events/s"


def _ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def _figure(key: str, x: float) -> str:
    return _ms(x) if key in (LOAD, LOAD_SNAPSHOT) else f"{x:,.0f}"


def _ratio(ours: float, theirs: float, unit: str = "") -> str:
    """tidings / eventsourcing, and which one the figure favours (a time: lower is better)."""
    ratio = ours / theirs
    leads = ratio < 1 if unit else ratio > 1
    return f"{ratio:.2f}x{unit} ({'leads' if leads else 'trails'})"


def rows(r: EsResults) -> list[Cells]:
    """The event sourcing section's table rows: tidings beside eventsourcing."""
    s = r.sizes
    loaded = f"load a {s.aggregate:,}-event aggregate"
    figures = (
        (ONE, f"append, 1 writer, 1 event per append ({s.appends:,} over {s.streams:,} streams)"),
        (BATCHED, f"append, 1 writer, {BATCH} events per append ({s.batch_appends:,} appends)"),
        (
            CONCURRENT,
            f"append, {s.writers} writer threads, 1 event per append ({s.appends:,} in all)",
        ),
        (FILLED, f"append, 1 writer, {FILL:,} events per append ({s.catch_up:,}, 1 run)"),
        (LOAD, f"{loaded} from its events (median of {s.loads})"),
        (LOAD_SNAPSHOT, f"{loaded} from a snapshot at its end (median of {s.loads})"),
        (CATCH_UP, f"catch-up, read_all() pages of {PAGE:,} ({s.catch_up:,})"),
        (SUBSCRIBE, f"catch-up, async subscribe() ({s.catch_up:,})"),
    )
    out: list[Cells] = []
    for key, label in figures:
        ours = r.median("tidings", key)
        theirs = r.median("eventsourcing", CATCH_UP if key == SUBSCRIBE else key)
        timed = key in (LOAD, LOAD_SNAPSHOT)
        show = _ms if timed else _rate
        out.append(
            (
                f"es {label}",
                show(ours),
                f"eventsourcing {show(theirs)}",
                _ratio(ours, theirs, " time" if timed else ""),
                "-",
                "-",
            )
        )
    return out
