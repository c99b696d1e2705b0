"""`python -m services.runs [serve|migrate]`."""

from pathlib import Path

from services.runs.api.idempotency_server import GRPC_SERVICE_NAME as IDEMPOTENCY
from services.runs.api.server import GRPC_SERVICE_NAME as RUNS
from services.runs.wiring import wire
from weftcore.service import main

if __name__ == "__main__":
    main("runs", [RUNS, IDEMPOTENCY], "127.0.0.1:7102", Path(__file__).parent / "migrations", wire)
