"""The public HTTP API: JSON over aiohttp, translated to gRPC calls to the services."""
