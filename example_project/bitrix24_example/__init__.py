"""An example Dagster project syncing Bitrix24 CRM data into SQL tables (demo portal built in)."""
