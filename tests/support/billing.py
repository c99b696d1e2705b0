"""Helpers for billing tests against the real stack."""

import uuid

from weft.billing.v1 import billing_pb2 as pb
from weft.billing.v1 import billing_pb2_grpc

Stub = billing_pb2_grpc.BillingServiceStub


async def priced_model(billing: Stub, prefix: str) -> str:
    """A fake-provider model only the caller uses, priced 10 USD / Mtok in and 20 out
    (1,000 input tokens cost one cent), so price changes elsewhere cannot disturb it."""
    name = f"fake:{prefix}-{uuid.uuid4().hex[:8]}"
    price = pb.Price(
        model=name, input_micros_per_mtok=10_000_000, output_micros_per_mtok=20_000_000
    )
    await billing.SetPrice(pb.SetPriceRequest(price=price))
    return name
