"""Benchmarks: tidings on its default SQLite engine beside the raw limits of the machine.

`python -m bench` measures, in one run, what plain sqlite3 and plain files can do on this
disk (bench.raw) and what tidings does through its public API (bench.log), and prints
each tidings figure as a ratio of the matching raw limit together with its target.
"""
