"""The runs use cases (create, read, wait, watch, cancel, input) and their rules."""
