"""The runs worker: executes runs from the JetStream job queue."""
