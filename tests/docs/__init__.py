"""The examples in README.md and docs/, run as a user would run them."""
