"""How fast stored batches become records: `python -m bench.decode [--runs N]`.

Decodes 1000-record batches (with keys and without, as producers write them) in a process
that already holds a heap of 200,000 live objects, as an application does, so the cyclic
garbage collector's full collections cost what they cost in real use. Two readers:
"drop" lets each batch's records go before the next (a consumer loop), "keep" holds every
record read (a replay into memory). Each round prints records/s; the last line, the
median of the rounds. The collector stays as the application set it (on).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.stats import value
from tidings.core import batch as codec

BATCH = 1000
BATCHES = 300
HEAP = 200_000


def stored_batches() -> list[bytes]:
    """Two stored batches of BATCH records: one with keys, one without."""
    values = [value()] * BATCH
    timestamps = [1_700_000_000_000] * BATCH
    keyed = codec.encode(values, [b"key-%d" % i for i in range(BATCH)], timestamps)
    return [keyed.data, codec.encode(values, None, timestamps).data]


def decode_rate(batches: list[bytes], keep: bool) -> float:
    """Records/s decoding BATCHES batches, holding every record read when `keep`."""
    held = []
    start = time.perf_counter()
    for i in range(BATCHES):
        records = codec.decode("t", 0, i * BATCH, batches[i % len(batches)])
        if keep:
            held.append(records)
    return BATCHES * BATCH / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    """Time both readers and print records/s per round and their medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="rounds per reader (default 5)")
    args = parser.parse_args(argv)
    heap: list[dict[str, int]] = [{} for _ in range(HEAP)]  # the application's own objects
    batches = stored_batches()
    for keep in (False, True):
        rates = [decode_rate(batches, keep) for _ in range(args.runs)]
        label = "keep" if keep else "drop"
        rounds = " ".join(f"{r / 1e6:.2f}M" for r in rates)
        print(f"{label}: median {statistics.median(rates) / 1e6:.2f}M rec/s  ({rounds})")
    print(f"(beside {len(heap):,} live objects of the application's, collector on)")


if __name__ == "__main__":
    main()
