"""The gRPC surface of the runs service: the servicer and protobuf <-> domain conversion."""
