"""Change data capture, the transactional outbox and the idempotent inbox."""
