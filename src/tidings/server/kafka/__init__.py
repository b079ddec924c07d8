"""The Kafka wire protocol, served over the embedded log (`tidings serve`)."""
