"""Partition assignors: pure functions from members' subscriptions to an assignment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Partition = tuple[str, int]
Assignment = dict[str, list[Partition]]


def range_assign(
    subscriptions: Mapping[str, Sequence[str]], partitions: Mapping[str, int]
) -> Assignment:
    """Kafka's range assignor: per topic, consecutive partitions to members in id order."""
    out: Assignment = {member: [] for member in subscriptions}
    for topic in sorted(partitions):
        members = sorted(m for m, topics in subscriptions.items() if topic in topics)
        if not members:
            continue
        share, extra = divmod(partitions[topic], len(members))
        start = 0
        for i, member in enumerate(members):
            n = share + (1 if i < extra else 0)
            out[member].extend((topic, p) for p in range(start, start + n))
            start += n
    return out


def roundrobin_assign(
    subscriptions: Mapping[str, Sequence[str]], partitions: Mapping[str, int]
) -> Assignment:
    """Kafka's round-robin assignor: every partition in order, dealt to members in turn."""
    out: Assignment = {member: [] for member in subscriptions}
    members = sorted(subscriptions)
    turn = 0
    for topic in sorted(partitions):
        for p in range(partitions[topic]):
            for _ in range(len(members)):  # the next member in turn that reads the topic
                member = members[turn % len(members)]
                turn += 1
                if topic in subscriptions[member]:
                    out[member].append((topic, p))
                    break
    return out


def sticky_assign(
    subscriptions: Mapping[str, Sequence[str]],
    partitions: Mapping[str, int],
    previous: Mapping[str, Sequence[Partition]],
) -> Assignment:
    """Balanced assignment that keeps each member's previous partitions where it can."""
    out: Assignment = {member: [] for member in subscriptions}
    wanted = {
        (topic, p)
        for topic, n in partitions.items()
        if any(topic in topics for topics in subscriptions.values())
        for p in range(n)
    }
    taken: set[Partition] = set()
    for member in sorted(out):
        for item in previous.get(member, ()):
            tp = (item[0], item[1])
            if tp in wanted and tp not in taken and tp[0] in subscriptions[member]:
                out[member].append(tp)
                taken.add(tp)
    for tp in sorted(wanted - taken):
        candidates = [m for m in out if tp[0] in subscriptions[m]]
        out[min(candidates, key=lambda m: (len(out[m]), m))].append(tp)
    _balance(out, subscriptions)
    for assigned in out.values():
        assigned.sort()
    return out


def _balance(out: Assignment, subscriptions: Mapping[str, Sequence[str]]) -> None:
    """Move partitions from the most to the least loaded eligible member until even."""
    while True:
        moved = False
        for donor in sorted(out, key=lambda m: (-len(out[m]), m)):
            for tp in sorted(out[donor], reverse=True):
                eligible = [
                    m
                    for m in out
                    if tp[0] in subscriptions[m] and len(out[m]) + 1 < len(out[donor])
                ]
                if eligible:
                    target = min(eligible, key=lambda m: (len(out[m]), m))
                    out[donor].remove(tp)
                    out[target].append(tp)
                    moved = True
                    break
            if moved:
                break
        if not moved:
            return
