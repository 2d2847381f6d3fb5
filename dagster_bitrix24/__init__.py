"""Dagster assets that sync Bitrix24 CRM entities into SQL warehouse tables."""
