"""`python -m services.storage [serve|migrate]`."""

from pathlib import Path

from services.storage.server import GRPC_SERVICE_NAME, wire
from weftcore.service import main

if __name__ == "__main__":
    main(
        "storage", [GRPC_SERVICE_NAME], "127.0.0.1:7103", Path(__file__).parent / "migrations", wire
    )
