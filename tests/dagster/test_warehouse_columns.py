"""Type mapping, identifier sanitising and value normalisation, without a database."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from dagster_bitrix24.warehouse.convert import Conversions
from dagster_bitrix24.warehouse.errors import FieldMetadataError
from dagster_bitrix24.warehouse.schema.columns import (
    ColumnSpec,
    field_kind,
    identifier,
    plan_columns,
)
from tests.dagster.test_warehouse_support import DEAL_FIELDS, HOSTILE


@pytest.mark.parametrize(
    ("field", "meta", "kind"),
    [
        ("ASSIGNED_BY_ID", {"type": "user"}, "integer"),
        ("COMPANY_ID", {"type": "crm_company"}, "integer"),
        ("CATEGORY_ID", {"type": "crm_category"}, "integer"),
        ("OPPORTUNITY", {"type": "double"}, "decimal"),
        ("UF_CRM_RATE", {"type": "double"}, "float"),
        ("UF_CRM_MONEY", {"type": "money"}, "decimal"),
        ("CLOSED", {"type": "char"}, "boolean"),
        ("UF_CRM_FLAG", {"type": "boolean"}, "boolean"),
        ("BEGINDATE", {"type": "date"}, "date"),
        ("DATE_MODIFY", {"type": "datetime"}, "datetime"),
        ("STAGE_ID", {"type": "crm_status", "statusType": "DEAL_STAGE"}, "text"),
        ("UF_CRM_ENUM", {"type": "enumeration", "isMultiple": False}, "text"),
        ("UF_CRM_MANY", {"type": "integer", "isMultiple": True}, "json"),
        ("UF_CRM_FILE", {"type": "file"}, "json"),
        ("UF_CRM_SOMETHING_NEW", {"type": "never_seen_before"}, "text"),
        ("parentId2", {"type": "crm_entity"}, "integer"),  # crm-item-fields.md
        ("OWNER_TYPE_ID", {"type": "crm_enum_ownertype"}, "integer"),  # crm-activity-fields.md
        ("SETTINGS", {"type": "object"}, "json"),  # crm-activity-fields.md
        ("opened", {"type": "boolean"}, "boolean"),  # crm-item-fields.md, sent "Y" / "N"
    ],
)
def test_field_types_map_to_column_kinds(field: str, meta: dict, kind: str) -> None:
    assert field_kind(field, meta) == kind


def test_identifiers_are_snake_case_and_hostile_names_are_reduced_and_hashed() -> None:
    assert identifier("UF_CRM_123") == "uf_crm_123"
    assert identifier("updatedTime") == "updated_time"
    assert identifier("assignedById") == "assigned_by_id"
    hostile = identifier(HOSTILE)
    assert hostile.startswith("uf_crm_1_drop_table_x_")
    assert set(hostile) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")
    assert identifier(HOSTILE) == hostile != identifier(HOSTILE + " ")
    assert len(identifier("UF_CRM_" + "X" * 100)) <= 63


def test_plan_puts_id_first_splits_money_and_moves_multifields_to_children() -> None:
    columns, multifields = plan_columns(DEAL_FIELDS, id_field="ID", change_field="DATE_MODIFY")
    names = [c.name for c in columns]
    assert names[0] == "id"
    assert {"uf_crm_budget", "uf_crm_budget_currency"} <= set(names)
    assert "phone" not in names
    assert [m.field for m in multifields] == ["PHONE"]
    vip = next(c for c in columns if c.field == "UF_CRM_VIP")
    assert vip.description == "VIP client (UF_CRM_VIP)"


def test_crm_item_metadata_is_unwrapped_and_camel_case_columns_are_snake_case() -> None:
    fields = {"fields": {
        "id": {"type": "integer", "title": "ID"},
        "updatedTime": {"type": "datetime", "title": "Updated"},
        "opportunity": {"type": "double", "title": "Amount"},
    }}  # fmt: skip
    columns, _ = plan_columns(fields, id_field="id", change_field="updatedTime")
    assert [(c.name, c.kind) for c in columns] == [
        ("id", "integer"), ("opportunity", "decimal"), ("opportunity_currency", "key"),
        ("updated_time", "datetime"),
    ]  # fmt: skip


def test_fields_meeting_in_one_column_name_keep_apart_with_a_stable_suffix() -> None:
    fields = {"ID": {"type": "integer"}, "UF_CRM_SCORE": {"type": "integer"},
              "ufCrmScore": {"type": "string"}, "title": {}, "TITLE": {}}  # fmt: skip
    names = {c.field: c.name for c in plan_columns(fields, id_field="ID", change_field=None)[0]}
    assert names["UF_CRM_SCORE"] == "uf_crm_score" and names["TITLE"] == "title"
    assert names["ufCrmScore"].startswith("uf_crm_score_") and names["title"].startswith("title_")
    assert len(set(names.values())) == len(names)
    fewer = {k: v for k, v in fields.items() if k != "TITLE"}  # the suffix is the field's own
    again = {c.field: c.name for c in plan_columns(fewer, id_field="ID", change_field=None)[0]}
    assert again["ufCrmScore"] == names["ufCrmScore"]


@pytest.mark.parametrize(
    ("fields", "id_field", "change_field", "message"),
    [
        ({}, "ID", None, "non-empty"),
        ({"ID": {"type": "integer"}}, "id", None, "id_field"),
        ({"ID": {"type": "integer"}}, "ID", "DATE_MODIFY", "change_field"),
        ({"ID": {"type": "integer"}, "T": {"type": "string"}}, "ID", "T", "datetime or integer"),
        ({"ID": {"type": "integer"}, "X": 5}, "ID", None, "must be a mapping"),
    ],
)
def test_bad_metadata_is_a_named_error(
    fields: dict, id_field: str, change_field: str | None, message: str
) -> None:
    with pytest.raises(FieldMetadataError, match=message):
        plan_columns(fields, id_field=id_field, change_field=change_field)


converter = Conversions().converter


def test_normalisation_of_every_value_kind() -> None:
    to_int = converter("integer", "postgresql")
    assert [to_int(v) for v in ("42", 42, "", None, 7.0)] == [42, 42, None, None, 7]
    to_bool = converter("boolean", "postgresql")
    assert [to_bool(v) for v in ("Y", "N", "1", "0", False, True, 1, 0, "", None)] == [
        True, False, True, False, False, True, True, False, None, None,
    ]  # fmt: skip
    to_decimal = converter("decimal", "postgresql")
    assert to_decimal("1500.00") == Decimal("1500.00")
    assert to_decimal("1500.00|RUB") == Decimal("1500.00")
    assert to_decimal(1500.5) == Decimal("1500.5")
    assert to_decimal("") is None and to_decimal("|RUB") is None
    assert converter("key", "postgresql", part="currency")("1500.00|RUB") == "RUB"
    assert converter("float", "mysql")("1.2345") == 1.2345
    assert converter("date", "mysql")("2024-09-02T03:00:00+03:00") == date(2024, 9, 2)
    assert converter("date", "sqlite")("2024-09-02") == "2024-09-02"
    aware = converter("datetime", "postgresql")("2024-09-02T18:37:18+03:00")
    assert aware == datetime(2024, 9, 2, 15, 37, 18, tzinfo=UTC)
    naive = converter("datetime", "mysql")
    assert naive("2024-09-02T18:37:18+03:00") == datetime(2024, 9, 2, 15, 37, 18)
    assert naive("2024-09-02T18:37:18-05:30") == datetime(2024, 9, 3, 0, 7, 18)
    assert naive("2024-09-02T18:37:18.250+03:00") == datetime(2024, 9, 2, 15, 37, 18, 250000)
    assert converter("datetime", "sqlite")("2024-09-02T18:37:18+03:00") == "2024-09-02 15:37:18"
    to_text = converter("text", "sqlite")
    assert [to_text(v) for v in ("a", "", None, 5, [], {"a": 1})] == [
        "a", None, None, "5", None, '{"a": 1}',
    ]  # fmt: skip
    to_json = converter("json", "sqlite")
    assert [to_json(v) for v in (["1", "2"], "", None, False, "x")] == [
        '["1", "2"]', None, None, None, '["x"]',
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "value"),
    [("integer", "abc"), ("boolean", "maybe"), ("decimal", "1,5"), ("datetime", "yesterday"),
     ("date", "02.09.2024"), ("integer", True), ("boolean", [1])],
)  # fmt: skip
def test_values_that_do_not_fit_are_rejected(kind: str, value: object) -> None:
    with pytest.raises((ValueError, TypeError, KeyError, ArithmeticError)):
        converter(kind, "postgresql")(value)  # type: ignore[arg-type]


_TRICKY = [
    "42", " 7 ", "1_000", "1500.00", "1500.00|RUB", "|RUB", "abc|RUB", " 7 |RUB", "1e3|RUB",
    "1|2|3", "12|", "abc", "", None, 0, 5, 2.5, True,
    False, [], ["1"], {"a": 1}, "Y", "N", "1", "0", "2024-09-02",
    "2024-09-02T18:37:18+03:00", "2024-09-02T18:37:18+03:00", "2024-09-02T23:59:59+03:00",
    "2024-09-02T01:00:00+05:30", "2024-09-02T01:00:00-05:00", "2024-09-02T01:00:00+00:00",
    "2024-09-02 18:37:18+03:00", "2024-09-02T18:37:18.25+03:00", "2024-09-02T18:37:18.25",
    "2024-09-02T18:37:60+03:00", "2024-09-02T18:77:18+03:00", "2024-09-02T18:37:18+03:0x",
    "20240902T183718.123+03:00", "2024-09-02T18:37:18Z", "2024-02-30T10:00:00+03:00",
    datetime(2024, 9, 2, 18, 37, 18, tzinfo=UTC), date(2024, 9, 2),
]  # fmt: skip


def _outcome(function, value):  # noqa: ANN001, ANN202
    try:
        return function(value)
    except (ValueError, TypeError, KeyError, ArithmeticError) as error:
        return type(error)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize(
    ("kind", "part"),
    [(kind, "value") for kind in ("integer", "float", "decimal", "boolean", "date", "datetime",
                                  "text", "key", "json")] + [("key", "currency")],
)  # fmt: skip
def test_compiled_fast_paths_give_exactly_what_the_converters_give(
    dialect: str, kind: str, part: str
) -> None:
    conversions = Conversions()  # the converter and the compiled one share its caches
    convert = conversions.converter(kind, dialect, part=part)  # type: ignore[arg-type]
    spec = ColumnSpec("f", "F", kind, "F", part)  # type: ignore[arg-type]
    compiled = conversions.row_converter([spec], dialect)  # type: ignore[arg-type]
    for _ in range(2):  # the second pass runs with the offset and hour caches warm
        for value in _TRICKY:
            expected = _outcome(convert, value)
            got = _outcome(lambda v: compiled([{"F": v}], "now")[0], value)
            assert got == expected or got == (expected, "now", None), (value, got, expected)
