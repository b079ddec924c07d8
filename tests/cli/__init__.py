"""Tests of the tidings command line."""
