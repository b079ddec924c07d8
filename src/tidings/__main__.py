"""`python -m tidings`: the `tidings` command."""

from tidings.cli.main import main

main()
