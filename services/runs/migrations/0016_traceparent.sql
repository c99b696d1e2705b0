-- OpenTelemetry (issue 20): the W3C traceparent an outbox row or a webhook delivery was
-- written in; the relay sends it as the NATS message's header and deliveries continue it,
-- so one run's spans in every process share its trace. NULL when tracing is off.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS traceparent text;
ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS traceparent text;
