"""Aggregates: commands, rebuilding, conflicts on save, snapshots, upcasting."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tidings import eventsourcing
from tidings.eventsourcing import Aggregate, ConcurrencyError, Event, Repository, when


@dataclass
class Opened:
    owner: str


@dataclass
class Deposited:
    amount: int
    version = 2  # v1 had "cents" instead of "amount"


@dataclass
class Withdrawn:
    amount: int


class Account(Aggregate):
    snapshot_every = 10

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0

    @classmethod
    def open(cls, id: str, owner: str) -> Account:
        account = cls(id)
        account.record(Opened(owner))
        return account

    def deposit(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("deposit a positive amount")
        self.record(Deposited(amount))

    def withdraw(self, amount: int) -> None:
        if amount > self.balance:
            raise ValueError(f"balance {self.balance} does not cover {amount}")
        self.record(Withdrawn(amount))

    @when(Opened)
    def _opened(self, event: Opened) -> None:
        self.owner = event.owner

    @when(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount

    @when(Withdrawn)
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount


def test_commands_record_events_and_loading_rebuilds_the_state(
    store: eventsourcing.EventStore,
) -> None:
    accounts = Repository(store, Account)
    account = Account.open("7", "ada")
    account.deposit(100)
    account.withdraw(30)
    with pytest.raises(ValueError, match="does not cover"):
        account.withdraw(1000)  # a refused command records nothing
    accounts.save(account, correlation_id="req-1")
    assert account.pending == [] and account.version == 2

    loaded = accounts.get("7")
    assert (loaded.owner, loaded.balance, loaded.version) == ("ada", 70, 2)
    stored = store.read_stream("account-7")
    assert [e.type for e in stored] == ["Opened", "Deposited", "Withdrawn"]
    assert stored[1].metadata == {"schema_version": 2, "correlation_id": "req-1"}
    with pytest.raises(eventsourcing.AggregateNotFoundError, match="'8'"):
        accounts.get("8")


def test_saving_a_stale_copy_raises_a_concurrency_error(store: eventsourcing.EventStore) -> None:
    accounts = Repository(store, Account)
    accounts.save(Account.open("1", "bob"))
    first, second = accounts.get("1"), accounts.get("1")
    first.deposit(5)
    accounts.save(first)
    second.deposit(9)
    with pytest.raises(ConcurrencyError) as conflict:
        accounts.save(second)
    assert (conflict.value.expected, conflict.value.actual) == (0, 1)
    assert accounts.get("1").balance == 5


def test_snapshots_are_used_and_give_the_same_state_as_the_full_history(
    store: eventsourcing.EventStore,
) -> None:
    accounts = Repository(store, Account)
    account = Account.open("s", "eve")
    accounts.save(account)
    for i in range(1, 26):
        account.deposit(i)
        accounts.save(account)
    snapshot = store.aio.storage.load_snapshot("account-s")
    assert snapshot is not None and snapshot[0] == 20  # every 10 events
    with_snapshot = accounts.get("s")
    without = accounts.get("s", use_snapshot=False)
    assert with_snapshot.balance == without.balance == sum(range(1, 26))
    assert with_snapshot.version == without.version == 25
    assert json.loads(snapshot[1])["balance"] == sum(range(1, 21))


def test_old_event_versions_are_upcast_on_read(store: eventsourcing.EventStore) -> None:
    store.append(
        "account-old",
        [
            Event("Opened", {"owner": "old"}),
            Event("Deposited", {"cents": 1250}, {"schema_version": 1}),  # as v1 wrote it
        ],
    )
    accounts = Repository(store, Account)

    @accounts.upcaster("Deposited", 1)
    def cents_to_amount(data: dict[str, int]) -> dict[str, int]:
        return {"amount": data["cents"] // 100}

    assert accounts.get("old").balance == 12
    assert json.loads(store.read_stream("account-old")[1].data) == {"cents": 1250}  # unchanged
