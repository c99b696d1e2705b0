"""`weft-admin`: the operator's CLI, speaking gRPC to the services."""
