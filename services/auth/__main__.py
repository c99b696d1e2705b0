"""`python -m services.auth [serve|migrate]`."""

from pathlib import Path

from services.auth.server import GRPC_SERVICE_NAME, wire
from weftcore.service import main

if __name__ == "__main__":
    main("auth", [GRPC_SERVICE_NAME], "127.0.0.1:7101", Path(__file__).parent / "migrations", wire)
