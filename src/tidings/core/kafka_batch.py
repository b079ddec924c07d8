"""Kafka's RecordBatch (magic v2), the format Kafka clients produce and fetch.

A batch that arrives through the Kafka protocol is stored exactly as the client sent
it, compressed or not, so a fetch serves the stored bytes back without touching a
record. Only its base offset field is zeroed on the way in and filled in on the way
out: neither is covered by the CRC, and a zero there tells a stored Kafka batch from
tidings' own format (which starts with b"TB").

Layout (big endian)::

    base_offset i64, batch_length i32, partition_leader_epoch i32, magic i8 (= 2),
    crc u32 (CRC-32C of everything after it), attributes i16, last_offset_delta i32,
    base_timestamp i64, max_timestamp i64, producer_id i64, producer_epoch i16,
    base_sequence i32, record_count i32, records (compressed per attributes & 7)

    record: length varint, attributes i8, timestamp_delta varlong, offset_delta varint,
            key_length varint, key, value_length varint, value,
            header_count varint, (name_length varint, name, value_length varint, value)*

Varints are zigzag-encoded. kio's record reader turns every timestamp into a datetime;
the log needs milliseconds, so the records are read here.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import cramjam
import crc32c

from tidings.core.compiled import compiled
from tidings.core.errors import TidingsError
from tidings.core.records import NO_HEADERS, Headers, Record

MAGIC = 2
HEADER = struct.Struct(">qiibIhiqqqhii")
"""base offset .. record count: the 61 bytes before the records."""
LENGTH_END = 12
"""batch_length counts the bytes after it: a batch is LENGTH_END + batch_length long."""
CRC_START = 21
"""The CRC covers the attributes field onwards."""
ATTRIBUTES = struct.Struct(">h")
BASE_OFFSET = struct.Struct(">q")
ZERO_OFFSET = BASE_OFFSET.pack(0)

COMPRESSION_MASK = 0x07
LOG_APPEND_TIME = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_XERIAL = b"\x82SNAPPY\x00"
READ_LIMIT = 1 << 30
"""The most a stored batch may decompress to when read (produce checks a tighter limit)."""
"""Java clients frame snappy data in xerial blocks; librdkafka sends it raw."""


class InvalidBatchError(TidingsError):
    """Bytes that are not a valid Kafka record batch (bad CRC, truncated, wrong magic)."""


class InvalidRecordsError(InvalidBatchError):
    """A batch whose header and CRC are valid but whose records do not parse."""


class BatchHeader(NamedTuple):
    """The fields of a batch's 61-byte header that the broker acts on."""

    length: int
    """Bytes of the whole batch."""
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: int

    @property
    def compression(self) -> str:
        """The codec of the records section: none, gzip, snappy, lz4 or zstd."""
        return CODECS.get(self.attributes & COMPRESSION_MASK, "unknown")

    @property
    def control(self) -> bool:
        """A transaction marker, not user data."""
        return bool(self.attributes & CONTROL)


def read_header(data: bytes | memoryview, pos: int = 0) -> BatchHeader:
    """The header of the batch at `pos`, checked for magic, length and CRC."""
    if len(data) - pos < HEADER.size:
        raise InvalidBatchError(f"a record batch is truncated ({len(data) - pos} bytes)")
    (_, length, _, magic, crc, attributes, last_delta, base_ts, max_ts, pid, epoch, seq, count) = (
        HEADER.unpack_from(data, pos)
    )
    if magic != MAGIC:
        raise InvalidBatchError(
            f"record batch magic {magic} is not supported; use a client that produces "
            f"magic v2 (Kafka 0.11 and later)"
        )
    end = pos + LENGTH_END + length
    if length < HEADER.size - LENGTH_END or end > len(data):
        raise InvalidBatchError(f"a record batch is truncated (says {length} bytes)")
    if crc32c.crc32c(data[pos + CRC_START : end]) != crc:
        raise InvalidBatchError("a record batch failed its CRC check: it was corrupted")
    if count < 0 or last_delta < 0:
        raise InvalidBatchError(f"a record batch has {count} records, last delta {last_delta}")
    return BatchHeader(
        LENGTH_END + length, attributes, last_delta, base_ts, max_ts, pid, epoch, seq, count
    )


def split(data: bytes) -> Iterator[tuple[BatchHeader, bytes]]:
    """Each checked batch of a produce request's records, as bytes with base offset 0."""
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        header = read_header(view, pos)
        end = pos + header.length
        if pos == 0 and end == len(data) and data.startswith(ZERO_OFFSET):
            yield header, data  # the common case: one batch, as clients send it
        else:
            yield header, b"".join((ZERO_OFFSET, view[pos + 8 : end]))
        pos = end


def with_base_offset(data: bytes, base_offset: int) -> tuple[bytes, memoryview]:
    """A stored batch as a fetch serves it, in two pieces to join: its base offset filled
    in (outside the CRC), then the rest as stored."""
    return BASE_OFFSET.pack(base_offset), memoryview(data)[8:]


def decode(topic: str, partition: int, base_offset: int, data: bytes) -> list[Record]:
    """The records of a stored Kafka batch (control batches hold none for the reader)."""
    header = read_header(data)
    if header.control:
        return []
    body = records_section(header, data)
    out: list[Record] = []
    pos = 0
    append_time = header.attributes & LOG_APPEND_TIME
    for _ in range(header.records):
        length, pos = _varint(body, pos)
        end = pos + length
        pos += 1  # record attributes: unused
        ts_delta, pos = _varint(body, pos)
        offset_delta, pos = _varint(body, pos)
        key, pos = _bytes(body, pos)
        value, pos = _bytes(body, pos)
        count, pos = _varint(body, pos)
        headers: Headers = NO_HEADERS
        if count > 0:
            pairs = []
            for _ in range(count):
                name, pos = _bytes(body, pos)
                hvalue, pos = _bytes(body, pos)
                pairs.append(((name or b"").decode("utf-8", "surrogateescape"), hvalue))
            headers = tuple(pairs)
        if pos != end:
            raise InvalidBatchError(f"a record of a batch at offset {base_offset} is malformed")
        timestamp = header.max_timestamp if append_time else header.base_timestamp + ts_delta
        out.append(
            Record(topic, partition, base_offset + offset_delta, timestamp, key, value, headers)
        )
    return out


def check_records(header: BatchHeader, data: bytes, limit: int = READ_LIMIT) -> None:
    """Refuse (InvalidRecordsError) a batch whose records do not parse as every reader
    parses them: decompressed, each record whole, offsets 0..n-1, nothing after the last.
    A batch that decompresses past `limit` bytes is refused with BatchTooLargeError."""
    body: bytes | memoryview
    if header.attributes & COMPRESSION_MASK:
        body = records_section(header, data, limit)
    else:
        body = memoryview(data)[HEADER.size : header.length]  # not copied
    problem = _records_problem(body, header.records)
    if problem is not None:
        raise InvalidRecordsError(f"a record batch's records are malformed: {problem}")


def _records_problem_in_python(body: bytes | memoryview, count: int) -> str | None:
    """What is wrong with the records section `body` of `count` records; None if nothing."""
    size = len(body)
    pos = 0
    for i in range(count):
        try:
            length, pos = _varint(body, pos)
        except InvalidBatchError:
            return f"record {i}'s length is cut off or too long"
        if length < 6 or length > size - pos:  # 6: the fewest bytes a record takes
            return f"record {i} says it has {length} bytes, {size - pos} are left"
        end = pos + length
        try:
            _, pos = _varint_by(body, pos + 1, end)  # after the attributes: timestamp delta
            delta, pos = _varint_by(body, pos, end)
        except InvalidBatchError:
            return f"record {i} is cut off"
        if delta != i:
            return f"record {i} has offset delta {delta}"
        try:
            pos = _skip(body, _skip(body, pos, end, nullable=True), end, nullable=True)
            headers, pos = _varint_by(body, pos, end)
        except InvalidBatchError:
            return f"record {i}'s key or value runs past it"
        if headers < 0:
            return f"record {i} has {headers} headers"
        for h in range(headers):
            try:
                pos = _skip(body, _skip(body, pos, end, nullable=False), end, nullable=True)
            except InvalidBatchError:
                return f"record {i}'s header {h} runs past it"
        if pos != end:
            return f"record {i}'s fields end at byte {pos}, its length says {end}"
    if pos != size:
        return f"{size - pos} bytes follow the last of its {count} records"
    return None


def _varint_by(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """A varint at `pos` that must end by `end`."""
    value, pos = _varint(data, pos)
    if pos > end:
        raise InvalidBatchError("a varint runs past its record")
    return value, pos


def _skip(data: bytes | memoryview, pos: int, end: int, *, nullable: bool) -> int:
    """The position after a length-prefixed field (-1: null) that must end by `end`."""
    n, pos = _varint_by(data, pos, end)
    if n < 0 and nullable:
        return pos
    if n < 0 or n > end - pos:
        raise InvalidBatchError(f"a field of {n} bytes runs past its record")
    return pos + n


def encode(
    records: Sequence[Record],
    base_offset: int,
    *,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """An uncompressed Kafka batch of `records` (offsets kept, relative to base_offset)."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    base_ts = min(r.timestamp for r in records)
    max_ts = max(r.timestamp for r in records)
    body = bytearray()
    for r in records:
        rec = bytearray(b"\x00")
        _put_varint(rec, r.timestamp - base_ts)
        _put_varint(rec, r.offset - base_offset)
        _put_bytes(rec, r.key)
        _put_bytes(rec, r.value)
        _put_varint(rec, len(r.headers))
        for name, hvalue in r.headers:
            _put_bytes(rec, name.encode("utf-8", "surrogateescape"))
            _put_bytes(rec, hvalue)
        _put_varint(body, len(rec))
        body += rec
    after_crc = bytearray(HEADER.size - CRC_START)
    struct.pack_into(
        ">hiqqqhii",
        after_crc,
        0,
        0,
        records[-1].offset - base_offset,
        base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    after_crc += body
    head = struct.pack(
        ">qiibI", base_offset, len(after_crc) + CRC_START - LENGTH_END, 0, MAGIC,
        crc32c.crc32c(after_crc),
    )  # fmt: skip
    return head + bytes(after_crc)


def records_section(header: BatchHeader, data: bytes, limit: int = READ_LIMIT) -> bytes:
    """The records of a batch as bytes, decompressed; BatchTooLargeError past `limit` bytes.

    Decompression stops at the limit, so a small batch that would expand to gigabytes
    costs no more memory than the limit.
    """
    body = data[HEADER.size : header.length]
    codec = header.attributes & COMPRESSION_MASK
    try:
        if codec == 0:
            return body
        if codec == 1:
            return _gunzip(body, limit)
        if codec == 2:
            return _unsnappy(body, limit)
        if codec in (3, 4):
            return _into_buffer(cramjam.lz4 if codec == 3 else cramjam.zstd, body, limit)
    except (OSError, ValueError, zlib.error, cramjam.DecompressionError) as e:
        raise InvalidBatchError(
            f"a {header.compression} record batch does not decompress: {e}"
        ) from e
    raise InvalidBatchError(f"record batch compression {codec} is unknown (attributes {header})")


class BatchTooLargeError(InvalidBatchError):
    """A batch whose records decompress to more bytes than allowed."""

    def __init__(self, codec: str, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"a {codec} record batch decompresses to more than {limit} bytes, the limit; "
            f"send smaller batches (a lower batch.size or linger.ms)"
        )


def _gunzip(body: bytes, limit: int) -> bytes:
    out = bytearray()
    rest = body
    while rest:  # a gzip stream may hold several members
        stream = zlib.decompressobj(zlib.MAX_WBITS | 16)
        out += stream.decompress(rest, limit + 1 - len(out))
        if len(out) > limit or stream.unconsumed_tail:
            raise BatchTooLargeError("gzip", limit)
        if not stream.eof:
            raise InvalidBatchError("a gzip record batch is truncated")
        rest = stream.unused_data
    return bytes(out)


def _unsnappy(body: bytes, limit: int) -> bytes:
    """Raw snappy, or snappy in xerial framing (a 16-byte header, then (length i32, block)*)
    as Java clients send it; every block states its size before it is expanded."""
    blocks = []
    if body.startswith(_XERIAL):
        pos = 16
        while pos < len(body):
            (n,) = struct.unpack_from(">i", body, pos)
            blocks.append(body[pos + 4 : pos + 4 + n])
            pos += 4 + n
    else:
        blocks.append(body)
    total = sum(cramjam.snappy.decompress_raw_len(b) for b in blocks)
    if total > limit:
        raise BatchTooLargeError("snappy", limit)
    return b"".join(bytes(cramjam.snappy.decompress_raw(b)) for b in blocks)


def _into_buffer(codec: Any, body: bytes, limit: int) -> bytes:
    """lz4 or zstd, decompressed into a buffer one byte over the limit: its pages take
    memory only once written, and a frame that does not fit fails."""
    with mmap.mmap(-1, limit + 1) as buffer:
        try:
            size = codec.decompress_into(body, buffer)
        except cramjam.DecompressionError as e:
            if "whole buffer" in str(e):  # cramjam's word for an output that does not fit
                raise BatchTooLargeError(codec.__name__, limit) from None
            raise
        if size > limit:
            raise BatchTooLargeError(codec.__name__, limit)
        return buffer[:size]


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """A zigzag varint at `pos`: its value and the position after it."""
    shift = 0
    raw = 0
    while True:
        try:
            b = data[pos]
        except IndexError:
            raise InvalidBatchError("a record batch ends inside a varint") from None
        pos += 1
        raw |= (b & 0x7F) << shift
        if b < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise InvalidBatchError("a record batch has a varint longer than 10 bytes")


def _bytes(data: bytes, pos: int) -> tuple[bytes | None, int]:
    n, pos = _varint(data, pos)
    if n < 0:
        return None, pos
    end = pos + n
    if end > len(data):
        raise InvalidBatchError("a record batch ends inside a record")
    return data[pos:end], end


def _put_varint(out: bytearray, value: int) -> None:
    raw = (value << 1) ^ (value >> 63)
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)


def _put_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        _put_varint(out, -1)
    else:
        _put_varint(out, len(value))
        out += value


_kafka_check = compiled("tidings.core._kafka_check")
_records_problem = (
    _records_problem_in_python if _kafka_check is None else _kafka_check.records_problem
)
