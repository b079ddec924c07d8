"""Benchmarks: tidings beside its peers and beside the raw limits of the machine.

`python -m bench` (`make bench`, `tidings bench`) runs the suite (bench/suite.py): every
scenario for tidings and each peer in one run, one table, JSON and a chart under
bench/results/. `python -m bench --log|--queue|--pubsub|--kafka|--cdc|--es|--engines`
runs one section alone, with its own table and targets.
"""
