"""The `tidings` command line; the click group is `tidings.cli.main.cli`.

Nothing is imported here, so `python -m tidings.cli.main` runs the module only once.
"""
