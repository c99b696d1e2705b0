"""`python -m services.billing [serve|migrate]`."""

from pathlib import Path

from services.billing.server import GRPC_SERVICE_NAME, wire
from weftcore.service import main

if __name__ == "__main__":
    main(
        "billing", [GRPC_SERVICE_NAME], "127.0.0.1:7104", Path(__file__).parent / "migrations", wire
    )
