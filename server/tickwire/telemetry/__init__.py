"""Tracing setup (OpenTelemetry, configured by the standard ``OTEL_*`` variables) and logging."""
