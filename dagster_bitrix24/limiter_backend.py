"""Kept for imports of `dagster_bitrix24.limiter_backend`: the backends live in
`bitrix_core.limiter_backends` (no Dagster in them)."""

from bitrix_core.limiter_backends import SqliteLimiterBackend, limiter_backend_from_url

__all__ = ["SqliteLimiterBackend", "limiter_backend_from_url"]
