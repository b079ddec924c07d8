"""Scripts that child processes run; see procs.PRELUDE for what they may use."""

# A group member that works slowly: it reports each assignment ("assigned 0,2"), every
# record it handles ("r PARTITION OFFSET") and, once a commit returned, what it committed
# ("c PARTITION NEXT_OFFSET"). The line "stop" on its stdin makes it leave cleanly.
# ARGS: topic, group, client id, seconds of work per poll.
WORKER = """
import threading

from tidings import CommitFailedError, TopicPartition

topic, group, client_id, work_s = ARGS[0], ARGS[1], ARGS[2], float(ARGS[3])
stop = threading.Event()


def watch_stdin() -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()
bus = tidings.connect(URL)
consumer = bus.consumer(
    topic,
    group=group,
    client_id=client_id,
    from_beginning=True,
    auto_commit=False,
    session_timeout_ms=1000,
    heartbeat_interval_ms=100,
)
say("ready")
owned = None
while not stop.is_set():
    records = consumer.poll(max_records=5, timeout_ms=100)
    now = sorted(tp.partition for tp in consumer.assignment())
    if now != owned:
        owned = now
        say("assigned", ",".join(map(str, now)) or "-")
    if not records:
        continue
    say_many([f"r {r.partition} {r.offset}" for r in records])
    time.sleep(work_s)
    done = {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
    try:
        consumer.commit(done)
    except CommitFailedError:
        continue  # the group took the partition away meanwhile; its next owner re-reads
    say_many([f"c {tp.partition} {offset}" for tp, offset in done.items()])
consumer.close()
bus.close()
say("bye")
"""
