"""bitrix_core: an async engine for the Bitrix24 REST API, and an offline portal to test it."""
