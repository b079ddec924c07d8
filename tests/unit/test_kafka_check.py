"""The check of a produced Kafka batch's records: what passes, every reader can decode;
the compiled check and Python's give the same answer."""

from __future__ import annotations

import random
import struct

import crc32c
import pytest

from tidings import Record
from tidings.core import kafka_batch
from tidings.core.kafka_batch import HEADER, InvalidRecordsError

RECORDS = [
    Record("t", 0, i, 1_700_000_000_000 + i, b"k%d" % i if i % 2 else None, b"v" * i, h)
    for i, h in enumerate([(), (("h", b"1"),), (("a", None), ("b", b"")), (), ()])
]
"""Records with and without keys, empty values, headers and null header values."""

CHECKS = {"python": kafka_batch._records_problem_in_python}
if kafka_batch._kafka_check is not None:
    CHECKS["compiled"] = kafka_batch._kafka_check.records_problem


def batch_of(section: bytes, count: int) -> bytes:
    """A batch with a valid header and CRC around the records section `section`."""
    good = kafka_batch.encode(RECORDS[:1], 0)
    after_crc = bytearray(good[kafka_batch.CRC_START : HEADER.size])
    struct.pack_into(">i", after_crc, 2, count - 1)  # last offset delta
    struct.pack_into(">i", after_crc, len(after_crc) - 4, count)  # record count
    after_crc += section
    head = struct.pack(
        ">qiibI",
        0,
        len(after_crc) + kafka_batch.CRC_START - kafka_batch.LENGTH_END,
        0,
        kafka_batch.MAGIC,
        crc32c.crc32c(bytes(after_crc)),
    )
    return head + bytes(after_crc)


def test_batches_as_clients_send_them_pass() -> None:
    for n in range(1, len(RECORDS) + 1):
        data = kafka_batch.encode(RECORDS[:n], 0)
        kafka_batch.check_records(kafka_batch.read_header(data), data)


@pytest.mark.parametrize(
    ("section", "count", "problem"),
    [
        (b"", 1, "record 0's length is cut off"),
        (b"\x02" + b"\x00" * 5, 1, "record 0 says it has 1 bytes"),
        (b"\x0c\x00\x00\x02\x01\x00\x00", 1, "record 0 has offset delta 1"),
        (b"\x0c\x00\x00\x00\x01\x00\x00\x00", 1, "1 bytes follow the last"),
        (b"\x0e\x00\x00\x00\x01\x00\x00\x00", 1, "record 0's fields end at byte 7"),
        (b"\x0e\x00\x00\x00\x01\x01\x02\x01\x01", 1, "record 0's header 0 runs"),  # null name
        (b"\x0c\x00\x00\x00\x01\x01\x01", 1, "record 0 has -1 headers"),
        (b"\x0c\x00\x00\x00\x0a\x01\x00", 1, "record 0's key or value runs past it"),
    ],
)
def test_records_that_do_not_parse_are_named(section: bytes, count: int, problem: str) -> None:
    for name, check in CHECKS.items():
        answer = check(section, count)
        assert answer is not None and answer.startswith(problem), (name, answer)
    data = batch_of(section, count)
    with pytest.raises(InvalidRecordsError, match="malformed"):
        kafka_batch.check_records(kafka_batch.read_header(data), data)


def test_the_compiled_and_python_checks_agree_and_what_passes_decodes() -> None:
    rnd = random.Random(20)
    section = kafka_batch.encode(RECORDS, 0)[HEADER.size :]
    passed = 0
    for _ in range(5000):
        mutated = bytearray(section)
        for _ in range(rnd.randint(1, 3)):
            roll = rnd.random()
            if roll < 0.6 and mutated:
                mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
            elif roll < 0.8 and mutated:
                del mutated[rnd.randrange(len(mutated)) :]
            else:
                mutated += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 5)))
        count = rnd.choice([len(RECORDS), len(RECORDS) - 1, len(RECORDS) + 1, 1])
        answers = {name: check(bytes(mutated), count) for name, check in CHECKS.items()}
        assert len(set(answers.values())) == 1, (bytes(mutated), count, answers)
        if answers["python"] is None:
            passed += 1
            assert len(kafka_batch.decode("t", 0, 0, batch_of(bytes(mutated), count))) == count
    assert passed  # some mutations (of values, say) leave valid records
