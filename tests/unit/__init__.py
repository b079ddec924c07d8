"""Unit tests of pure logic: codecs, partitioners, assignors."""
