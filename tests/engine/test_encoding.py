"""encode_params / encode_command: PHP http_build_query semantics, read back by the emulator."""

import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrix_core.emulator.params import decode_query
from bitrix_core.encoding import encode_command, encode_params, encode_value
from bitrix_core.errors import BitrixParameterError


def test_nested_filters_and_lists_use_php_keys_with_brackets_encoded():
    query = encode_params({"filter": {">ID": 5, "!STAGE_ID": "WON"}, "select": ["ID", "TITLE"]})
    assert query == (
        "filter%5B%3EID%5D=5&filter%5B%21STAGE_ID%5D=WON&select%5B0%5D=ID&select%5B1%5D=TITLE"
    )
    assert unquote(query) == "filter[>ID]=5&filter[!STAGE_ID]=WON&select[0]=ID&select[1]=TITLE"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "1"),
        (False, "0"),
        (None, ""),
        (0, "0"),
        (-1, "-1"),
        (2.5, "2.5"),
        (1e-7, "0.0000001"),
        (Decimal("1E+2"), "100"),
        (Decimal("10.50"), "10.50"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (
            dt.datetime(2024, 9, 2, 18, 37, 18, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-09-02T18:37:18+02:00",
        ),
        ("a b&c=d+e/é", "a b&c=d+e/é"),
    ],
)
def test_scalar_values_are_written_as_php_sees_them(value: Any, text: str):
    assert encode_value(value) == text
    assert decode_query(encode_params({"v": value})) == {"v": text}


def test_operators_spaces_and_plus_survive_percent_encoding():
    params = {"filter": {"%TITLE": "a+b c", ">=DATE_MODIFY": "2024-01-01T00:00:00+03:00"}}
    query = encode_params(params)
    assert "+" not in query and " " not in query
    assert decode_query(query) == params


def test_empty_containers_are_left_out_like_php():
    assert encode_params({"select": [], "filter": {}, "start": 0}) == "start=0"


def test_command_is_method_question_mark_query():
    assert encode_command("crm.deal.list", {"order": {"ID": "ASC"}, "start": -1}) == (
        "crm.deal.list?order%5BID%5D=ASC&start=-1"
    )
    assert encode_command("crm.deal.fields", {}) == "crm.deal.fields"


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"filter": {">=DATE_MODIFY": dt.datetime(2024, 1, 1)}}, "filter[>=DATE_MODIFY]"),
        ({"x": float("nan")}, "x"),
        ({"x": Decimal("Infinity")}, "x"),
        ({"x": object()}, "x"),
        ({"x": b"bytes"}, "x"),
        ({"select": {"ID", "TITLE"}}, "select"),
        ({"filter": {"a[b]": 1}}, "filter[a[b]]"),
        ({"": 1}, "params"),
        ({"filter": {None: 1}}, "filter"),
    ],
)
def test_bad_input_is_a_named_parameter_error(params: dict, parameter: str):
    with pytest.raises(BitrixParameterError) as info:
        encode_params(params)
    assert info.value.parameter == parameter


def test_bad_method_names_are_refused():
    for method in ("", "crm.deal.list?x=1", "crm deal", "a&b"):
        with pytest.raises(BitrixParameterError) as info:
            encode_command(method, {})
        assert info.value.parameter == "method"


def test_params_must_be_a_mapping():
    with pytest.raises(BitrixParameterError):
        encode_params([("a", 1)])  # type: ignore[arg-type]


_KEY = st.text(alphabet=st.sampled_from("abcXYZ019_>=<!%@.&#+ é"), min_size=1, max_size=6)
# top-level names are never numbers in the REST API (the emulator turns such a set into a list)
_NAME = _KEY.filter(lambda key: not key.lstrip("-").isdigit())
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.dates(),
    st.datetimes(timezones=st.timezones()),
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEY, inner, max_size=4)),
    max_leaves=12,
)


def _php_view(value: Any) -> Any:
    """What PHP receives: scalars as text, empty containers gone, 0..n-1 maps as lists."""
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        kept = {str(k): v for k, v in ((k, _php_view(v)) for k, v in items) if v is not _GONE}
        if not kept:
            return _GONE
        if list(kept) == [str(i) for i in range(len(kept))]:
            return list(kept.values())
        return kept
    return encode_value(value)


_GONE = object()


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(_NAME, _VALUE, max_size=5))
def test_whatever_is_encoded_the_emulator_decodes_back(params: dict[str, Any]):
    expected = {key: _php_view(value) for key, value in params.items()}
    expected = {key: value for key, value in expected.items() if value is not _GONE}
    assert decode_query(encode_params(params)) == expected


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_NAME, _VALUE, max_size=4))
def test_batch_command_query_decodes_to_the_same_params(params: dict[str, Any]):
    method, _, query = encode_command("crm.deal.list", params).partition("?")
    assert method == "crm.deal.list"
    assert decode_query(query) == decode_query(encode_params(params))
