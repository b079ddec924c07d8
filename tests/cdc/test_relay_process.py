"""`tidings cdc run` as a real process: killed with SIGKILL mid-stream and started again,
it loses no change, and the inbox drops what it published twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

import tidings
from tidings.cdc import sqlite as cdc
from tidings.cdc.inbox import inbox

TIDINGS = str(Path(sys.executable).parent / "tidings")
ROWS = 3000


READY = b"relaying changes (Ctrl-C or SIGTERM stops)"
"""What a relay prints once Ctrl-C and SIGTERM stop it cleanly."""


def start_relay(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`tidings cdc run CONFIG`, its output to `log`, once it says it is relaying.

    Until then a SIGTERM ends the process as for any program still starting (no clean
    exit to check); on a loaded machine that start takes seconds.
    """
    before = log.read_bytes().count(READY) if log.exists() else 0
    with log.open("ab") as out:
        relay = subprocess.Popen([TIDINGS, "cdc", "run", str(config)], stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while log.read_bytes().count(READY) == before:
        assert relay.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return relay


def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    """Signal a relay by its pid and wait for it."""
    if process.poll() is None:
        os.kill(process.pid, sig)
    process.wait(30)


def records_on(bus: tidings.Bus, topic: str) -> int:
    """Records on the topic now (0 before it exists)."""
    names = {t.name for t in bus.list_topics()}
    return bus.describe_topic(topic).records if topic in names else 0


def test_a_relay_killed_mid_stream_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    conn = sqlite3.connect(db, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)")
    conn.commit()
    cdc.add(db, ["orders"])
    bus_url = f"sqlite://{tmp_path}/bus.db"
    config = tmp_path / "cdc.toml"
    config.write_text(f'url = "{bus_url}"\n[sqlite]\ndatabase = "{db}"\nprefix = "shop"\n')
    log = tmp_path / "relay.log"
    relay = start_relay(config, log)

    def write() -> None:
        for start in range(0, ROWS, 10):
            with conn:
                conn.executemany(
                    "INSERT INTO orders VALUES (?, ?)", [(i, i) for i in range(start, start + 10)]
                )
            time.sleep(0.002)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with tidings.connect(bus_url) as bus:
            deadline = time.monotonic() + 30
            while records_on(bus, "shop.main.orders") < ROWS // 3:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)
        stop(relay, signal.SIGKILL)  # mid-stream
        relay = start_relay(config, log)
        writer.join()
        deadline = time.monotonic() + 60
        while cdc.status(db)[0].pending:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        writer.join()
        stop(relay, signal.SIGTERM)
    assert relay.returncode == 0, log.read_text()

    consumer_db = sqlite3.connect(tmp_path / "consumer.db")
    consumer_db.execute("CREATE TABLE seen (id INTEGER PRIMARY KEY)")
    box = inbox(consumer_db)
    published = 0
    with tidings.connect(bus_url) as bus:
        c = bus.consumer("shop.main.orders", group="consumer", from_beginning=True)
        while batch := c.poll(max_records=5000, timeout_ms=500):
            for record in batch:
                published += 1
                with box.receive(record) as fresh:
                    if fresh:  # a duplicate would violate the primary key here
                        row = json.loads(record.key or b"{}")
                        consumer_db.execute("INSERT INTO seen VALUES (?)", (row["id"],))
        c.close()
    (handled,) = consumer_db.execute("SELECT count(*) FROM seen").fetchone()
    assert handled == ROWS  # every change, once
    assert published >= ROWS  # at-least-once: the kill may have cost some duplicates
    conn.close()


def test_a_postgres_relay_killed_mid_stream_loses_nothing(pg_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, amount int)")
    bus_url = f"sqlite://{tmp_path}/bus.db"
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'url = "{bus_url}"\n[postgres]\ndsn = "{pg_dsn}"\ntables = ["orders"]\nprefix = "pg"\n'
    )
    log = tmp_path / "relay.log"
    relay = start_relay(config, log)

    def write() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for start in range(0, ROWS, 10):
                with conn.transaction():
                    for i in range(start, start + 10):
                        conn.execute("INSERT INTO orders VALUES (%s, %s)", (i, i))
                time.sleep(0.002)

    writer = threading.Thread(target=write)
    writer.start()
    topic = "pg.public.orders"
    try:
        with tidings.connect(bus_url) as bus:
            deadline = time.monotonic() + 60
            while records_on(bus, topic) < ROWS // 3:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)
            stop(relay, signal.SIGKILL)  # mid-stream: the slot is confirmed only so far
            relay = start_relay(config, log)
            writer.join()
            while len(ids_on(bus, topic)) < ROWS:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        writer.join()
        stop(relay, signal.SIGTERM)
    assert relay.returncode == 0, log.read_text()
    with tidings.connect(bus_url) as bus:
        assert ids_on(bus, topic) == set(range(ROWS))


def ids_on(bus: tidings.Bus, topic: str) -> set[int]:
    """The row ids of every change record on the topic."""
    if not records_on(bus, topic):
        return set()
    c = bus.consumer()
    tp = tidings.TopicPartition(topic, 0)
    c.assign(tp)
    c.seek(tp, "earliest")
    end = bus.describe_topic(topic).partitions[0].end_offset
    out: set[int] = set()
    while c.position(tp) < end:
        out |= {json.loads(r.key or b"{}")["id"] for r in c.poll(max_records=10_000)}
    c.close()
    return out


def test_a_snapshot_shows_its_progress_off_a_terminal_as_a_few_plain_lines(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i) for i in range(20_000)])
    conn.close()
    bus_url = f"sqlite://{tmp_path}/bus.db"
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'url = "{bus_url}"\n[sqlite]\ndatabase = "{db}"\ntables = ["orders"]\nprefix = "shop"\n'
    )
    errors = tmp_path / "stderr.log"
    with errors.open("w") as err:
        relay = subprocess.Popen(
            [TIDINGS, "cdc", "run", str(config)], stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        with tidings.connect(bus_url) as bus:
            deadline = time.monotonic() + 60
            while records_on(bus, "shop.main.orders") < 20_000 or "done" not in errors.read_text():
                assert time.monotonic() < deadline, errors.read_text()
                time.sleep(0.05)
    finally:
        stop(relay, signal.SIGTERM)
    assert relay.returncode == 0, errors.read_text()
    text = errors.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "snapshot orders  0/20,000 rows  0:00 elapsed"
    assert lines[-1].startswith("snapshot orders  20,000/20,000 rows  ")
    assert " done in " in lines[-1]
    assert len(lines) < 20  # 20,000 rows: every few seconds a line, not one per row
