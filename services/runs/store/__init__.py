"""The runs service's Postgres: SQL, events and jobs in the caller's transaction, LISTEN."""
