"""The semantics of the embedded log, stated once and run against every engine."""
