"""Tables from Bitrix24 field metadata: column planning (`columns.py`), the table layout a
writer writes (`layout.py`) and the field types read from sampled rows (`field_types.py`)."""
