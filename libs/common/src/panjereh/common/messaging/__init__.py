"""Messaging plumbing: the transactional outbox, the idempotent consumer's inbox, Kafka."""
