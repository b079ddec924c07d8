"""The tidings test suite."""
