"""Share-group windows: pure transitions, checked against their invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.core.records import TopicPartition
from tidings.engines.base import Ack, AckKind
from tidings.engines.log import share
from tidings.engines.log.share import ACQUIRED, AVAILABLE, DONE, Fresh, ShareState

TP = TopicPartition("t", 0)
LOCK = 100


def fresh(
    offsets: range | list[int], read_end: int | None = None, delayed: int = 0, priority: int = 0
) -> Fresh:
    """Records at `offsets`, all due, or due at `delayed`, of one priority."""
    records = [(o, o, delayed, priority) for o in offsets]
    return Fresh(records, read_end if read_end is not None else (records[-1][0] + 1))


def take(
    state: ShareState, member: str, now: int, limit: int = 10, log: Fresh | None = None
) -> share.Taken:
    """Acquire with the test's settings."""
    return share.acquire(
        state,
        member,
        now,
        limit=limit,
        lock_ms=LOCK,
        max_deliveries=3,
        fresh=log or Fresh([], 0),
        max_locks=1000,
    )


def check(state: ShareState) -> None:
    """Runs cover start..end-1 exactly, in order, merged, and none starts done."""
    expected = state.start
    for i, run in enumerate(state.runs):
        assert run.first == expected and run.last >= run.first
        expected = run.last + 1
        if i:
            assert not state.runs[i - 1].same(run)
    assert expected == state.end
    assert not state.runs or state.runs[0].state != DONE


def test_new_records_are_acquired_in_order_up_to_the_limit() -> None:
    state = ShareState()
    share.place(state, 0)
    taken = take(state, "a", 0, limit=3, log=fresh(range(5)))
    assert taken.deliver == [(0, 2, 1)]
    assert state.end == 3  # records 3 and 4 stay outside the window for now
    check(state)


def test_accepts_move_the_start_and_empty_the_window() -> None:
    state = ShareState()
    share.place(state, 0)
    take(state, "a", 0, log=fresh(range(3)))
    settled = share.settle(state, "a", 1, [Ack(TP, o, AckKind.ACCEPT) for o in (0, 1, 2)], 3)
    assert settled.refused == [] and settled.dead == []
    assert (state.start, state.end, state.runs) == (3, 3, [])


def test_out_of_order_accepts_keep_the_start_at_the_first_open_record() -> None:
    state = ShareState()
    share.place(state, 0)
    take(state, "a", 0, log=fresh(range(3)))
    share.settle(state, "a", 1, [Ack(TP, 1, AckKind.ACCEPT)], 3)
    assert state.start == 0
    assert [(r.first, r.last, r.state) for r in state.runs] == [
        (0, 0, ACQUIRED),
        (1, 1, DONE),
        (2, 2, ACQUIRED),
    ]
    check(state)


def test_an_expired_lock_is_acquired_again_with_one_more_delivery() -> None:
    state = ShareState()
    share.place(state, 0)
    take(state, "a", 0, log=fresh(range(2)))
    assert take(state, "b", LOCK - 1).deliver == []
    assert take(state, "b", LOCK).deliver == [(0, 1, 2)]
    assert share.settle(state, "a", LOCK, [Ack(TP, 0, AckKind.ACCEPT)], 3).refused == [0]


def test_gaps_left_by_compaction_are_done() -> None:
    state = ShareState()
    share.place(state, 0)
    taken = take(state, "a", 0, log=fresh([0, 3], read_end=6))
    assert taken.deliver == [(0, 0, 1), (3, 3, 1)]
    assert state.end == 6
    check(state)


def test_delayed_records_wait_in_the_window() -> None:
    state = ShareState()
    share.place(state, 0)
    taken = take(state, "a", 0, log=Fresh([(0, 0, 50, 0), (1, 1, 0, 0)], 2))
    assert taken.deliver == [(1, 1, 1)]
    assert state.count(AVAILABLE, 0, due=False) == 1
    assert take(state, "a", 50).deliver == [(0, 0, 1)]


def test_release_past_max_deliveries_is_dead() -> None:
    state = ShareState()
    share.place(state, 0)
    take(state, "a", 0, log=fresh(range(1)))
    for now in (1, 2):
        share.settle(state, "a", now, [Ack(TP, 0, AckKind.RELEASE)], 3)
        take(state, "a", now)
    settled = share.settle(state, "a", 3, [Ack(TP, 0, AckKind.RELEASE)], 3)
    assert settled.dead == [(0, 3)]


def test_skip_to_forgets_what_retention_deleted() -> None:
    state = ShareState()
    share.place(state, 0)
    take(state, "a", 0, log=fresh(range(4)))
    share.skip_to(state, 2)
    assert state.start == 2
    check(state)
    share.skip_to(state, 10)
    assert (state.start, state.end, state.runs) == (10, 10, [])


def test_higher_priorities_are_acquired_first_in_offset_order() -> None:
    state = ShareState()
    share.place(state, 0)
    log = Fresh([(0, 0, 0, 0), (1, 1, 0, 5), (2, 2, 0, 0), (3, 3, 0, 9), (4, 4, 0, 5)], 5)
    taken = take(state, "a", 0, limit=3, log=log)
    assert [first for first, _, _ in taken.deliver] == [3, 1, 4]
    assert state.end == 5  # everything read is in the window, waiting its turn
    check(state)
    settled = share.settle(state, "a", 1, [Ack(TP, 1, AckKind.RELEASE)], 3)
    assert settled.refused == []
    assert [first for first, _, _ in take(state, "b", 2, limit=2).deliver] == [1, 0]


def test_the_window_survives_storage() -> None:
    state = ShareState()
    share.place(state, 5)
    take(state, "a", 0, log=fresh(range(5, 9)))
    assert ShareState.from_json(state.to_json()) == state


operations = st.lists(
    st.tuples(
        st.sampled_from(["take", "accept", "release", "reject", "renew", "tick"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 12),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations, st.lists(st.integers(0, 2), min_size=12, max_size=12))
def test_no_record_is_held_by_two_members_and_none_is_lost(
    ops: list[tuple[str, str, int]], priorities: list[int]
) -> None:
    state = ShareState()
    share.place(state, 0)
    log = Fresh([(o, o, 0, p) for o, p in enumerate(priorities)], 12)
    now = 0
    finished: set[int] = set()
    for op, member, n in ops:
        if op == "tick":
            now += n * 20
            continue
        if op == "take":
            locked = _locks(state, now)
            taken = take(state, member, now, limit=n + 1, log=log)
            for first, last, _ in taken.deliver + taken.dead:
                assert all(o not in locked for o in range(first, last + 1))
            check(state)
            continue
        kind = {
            "accept": AckKind.ACCEPT,
            "release": AckKind.RELEASE,
            "reject": AckKind.REJECT,
            "renew": AckKind.RENEW,
        }[op]
        settled = share.settle(state, member, now, [Ack(TP, n, kind, 10)], 3)
        if n not in settled.refused and kind == AckKind.ACCEPT:
            finished.add(n)
        check(state)
    # every record is done, or still somewhere in the window, or not yet taken in
    for o in range(12):
        assert o in finished or o >= state.start


def _locks(state: ShareState, now: int) -> set[int]:
    """Offsets some member holds a live lock on."""
    return {
        o
        for r in state.runs
        if r.state == ACQUIRED and r.until > now
        for o in range(r.first, r.last + 1)
    }
