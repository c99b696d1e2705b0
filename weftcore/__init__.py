"""What every Weft process shares: config, logging, errors, ids, gRPC, db and NATS plumbing."""
