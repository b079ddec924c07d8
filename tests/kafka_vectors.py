"""Known answers from Kafka's own tests, shared by the unit and conformance suites."""

# Kafka's UtilsTest.testMurmur2 vectors, as the Java client's signed 32-bit ints
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
