"""Getting committed events out: the outbox relay to JetStream and webhook deliveries."""
