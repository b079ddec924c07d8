"""Servers that put the bus on the network: the Kafka wire protocol, and HTTP."""
