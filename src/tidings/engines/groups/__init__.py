"""Consumer groups: Kafka's classic group protocol over any compare-and-set state.

`coordinator` holds a group's state (members, generations, assignment, committed
offsets) and its changes as pure functions, `assignors` the partition assignors the
group runs, and `member` a consumer taking part in the protocol. Whoever stores a group
applies the changes atomically: the log engine in its store (memory, SQLite), the NATS
engine in a KV bucket with compare-and-set, and `tidings serve`, whose Kafka clients join
the same groups as the Python API.
"""
