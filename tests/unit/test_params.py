"""The read query grammar (``dxapi.request.params``) without a database or a configuration.

Covers equality versus operator objects, case-insensitive operator keys, the ignored alias part of
``filter[alias.field]``, every syntax error code (011, 2001, 2002, 2003, 2007, 2008, 2009, 1313), sort and
include parsing, and a property test: whatever the pairs, the parser answers a ``ReadRequest`` or a catalogued
``ApiError`` — never any other exception.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dxapi.errors import CATALOGUE, ApiError
from dxapi.request.params import FilterTerm, ReadRequest, parse_read_request

MAX_FILTERS = 10


def parse(*pairs: tuple[str, str], max_filters: int = MAX_FILTERS) -> ReadRequest:
    return parse_read_request(list(pairs), max_filters)


def codes_of(*pairs: tuple[str, str], max_filters: int = MAX_FILTERS) -> list[str]:
    with pytest.raises(ApiError) as caught:
        parse(*pairs, max_filters=max_filters)
    assert caught.value.items, "an ApiError must carry at least one item"
    return [item.code for item in caught.value.items]


# --- filters -------------------------------------------------------------------------------------------------


def test_no_parameters_is_an_empty_request() -> None:
    assert parse() == ReadRequest()


def test_plain_value_is_equality_kept_as_text() -> None:
    request = parse(("filter[products.sku]", "SKU-1"))
    assert request.filters == (FilterTerm("sku", (("eq", "SKU-1"),), "products"),)


@pytest.mark.parametrize("value", ["", " ", "[1,2]", "10", "null", "true", '"quoted"', ' {"in":[1]}'])
def test_values_not_starting_with_a_brace_are_equality(value: str) -> None:
    request = parse(("filter[x.field]", value))
    assert request.filters == (FilterTerm("field", (("eq", value),), "x"),)


def test_operator_object_keeps_json_types() -> None:
    request = parse(("filter[p.price]", '{"gte": 10, "lt": "20.5", "in": [1, "a", null], "isNull": false}'))
    (term,) = request.filters
    assert term.field == "price"
    assert term.operations == (("gte", 10), ("lt", "20.5"), ("in", [1, "a", None]), ("isNull", False))


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("IN", "in"),
        ("In", "in"),
        ("NE", "ne"),
        ("GtE", "gte"),
        ("LIKE", "like"),
        ("isnull", "isNull"),
        ("ISNULL", "isNull"),
        ("isNull", "isNull"),
        ("Eq", "eq"),
        ("LTE", "lte"),
    ],
)
def test_operator_keys_are_case_insensitive(raw: str, canonical: str) -> None:
    request = parse(("filter[a.b]", f'{{"{raw}": [1]}}'))
    assert request.filters[0].operations == ((canonical, [1]),)


@pytest.mark.parametrize("prefix", ["products", "product", "PRODUCTS", "anything-at-all", "", "a b"])
def test_part_before_the_dot_is_ignored(prefix: str) -> None:
    request = parse((f"filter[{prefix}.sku]", "X"))
    assert request.filters[0].field == "sku"


def test_only_the_first_dot_separates_the_alias() -> None:
    # A visible name never holds a dot (the configuration check forbids it), so this field is simply unknown
    # later; the grammar keeps everything after the first dot.
    assert parse(("filter[a.b.c]", "1")).filters[0].field == "b.c"


@pytest.mark.parametrize("key", ["filter[sku]", "filter[]", "filter[products.]", "filter[.]"])
def test_filter_without_alias_dot_field_is_011(key: str) -> None:
    assert codes_of((key, "x")) == ["011"]


def test_filter_with_empty_alias_part_is_accepted() -> None:
    assert parse(("filter[.sku]", "x")).filters[0].field == "sku"


@pytest.mark.parametrize("value", ["{", "{in: [1]}", '{"in": [1,]}', "{'in': [1]}", '{"in": [1]} trailing', "{}x"])
def test_malformed_operator_json_is_2001(value: str) -> None:
    assert codes_of(("filter[a.b]", value)) == ["2001"]


def test_empty_operator_object_is_2001() -> None:
    assert codes_of(("filter[a.b]", "{}")) == ["2001"]


@pytest.mark.parametrize("value", ['{"between": [1, 2]}', '{"in": [1], "notIn": [2]}', '{"": 1}', '{"$gt": 1}'])
def test_unknown_operator_is_2002(value: str) -> None:
    codes = codes_of(("filter[a.b]", value))
    assert codes == ["2002"]


def test_unknown_operator_message_names_operator_and_allowed_list() -> None:
    with pytest.raises(ApiError) as caught:
        parse(("filter[a.price]", '{"between": [1, 2]}'))
    message = caught.value.items[0].message
    assert "between" in message and "price" in message and "isNull" in message
    assert caught.value.status == 400


def test_too_many_filters_is_2009() -> None:
    pairs = [(f"filter[a.f{i}]", "1") for i in range(4)]
    assert len(parse_read_request(pairs[:3], 3).filters) == 3
    with pytest.raises(ApiError) as caught:
        parse_read_request(pairs, 3)
    assert [i.code for i in caught.value.items] == ["2009"]


# --- page ----------------------------------------------------------------------------------------------------


def test_page_values_are_integers() -> None:
    request = parse(("page[offset]", "20"), ("page[limit]", "5"))
    assert (request.offset, request.limit) == (20, 5)
    assert parse(("page[offset]", "0")).offset == 0
    assert parse(("page[offset]", "007")).offset == 7
    assert parse(("page[offset]", str(2**63 - 1))).offset == 2**63 - 1


def test_page_limit_zero_is_2003() -> None:
    assert codes_of(("page[limit]", "0")) == ["2003"]


@pytest.mark.parametrize("name", ["offset", "limit"])
@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "1.5",
        "1e3",
        "",
        " 1",
        "1 ",
        "+1",
        "0x10",
        "abc",
        "\u0663",
        "\u0661\u0662",
        "\uff11",
        "\u00b2",
        "1_000",
        "12345678901234567890",
        "99999999999999999999",
        str(2**63),
    ],
)
def test_bad_page_values_are_2003(name: str, value: str) -> None:
    assert codes_of((f"page[{name}]", value)) == ["2003"]


def test_huge_digit_string_page_value_is_2003() -> None:
    # Python refuses int() on more than 4300 digits with ValueError; that must still be a clean 2003.
    assert codes_of(("page[limit]", "9" * 5000)) == ["2003"]


@pytest.mark.parametrize("key", ["page[size]", "page[number]", "page[]", "page[LIMIT]"])
def test_unknown_page_key_is_refused(key: str) -> None:
    # An unknown `page[...]` key is an unknown parameter (2007) since the read-path fixes; it used to be 2003.
    assert codes_of((key, "1")) == ["2007"]


# --- unknown / repeated parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["limit", "offset", "filter", "Filter[a.b]", "fields", "filter[a.b", "sorts", ""])
def test_unknown_parameter_is_2007(key: str) -> None:
    assert codes_of((key, "1")) == ["2007"]


@pytest.mark.parametrize(
    ("key", "first", "second"),
    [("filter[a.b]", "1", "2"), ("page[limit]", "1", "1"), ("sort", "a", "b"), ("include", "r", "r")],
)
def test_repeated_parameter_is_2008(key: str, first: str, second: str) -> None:
    assert codes_of((key, first), (key, second)) == ["2008"]


def test_same_field_under_different_alias_prefixes_is_not_a_repeat() -> None:
    request = parse(("filter[a.price]", '{"gte": 1}'), ("filter[b.price]", '{"lt": 9}'))
    assert [t.field for t in request.filters] == ["price", "price"]


# --- sort ----------------------------------------------------------------------------------------------------


def test_sort_signs_and_spaces() -> None:
    assert parse(("sort", "-a,+b, c")).sort == (("a", True), ("b", False), ("c", False))


def test_sort_single_descending() -> None:
    assert parse(("sort", "-updatedAt")).sort == (("updatedAt", True),)


@pytest.mark.parametrize(
    ("value", "keys"),
    [("", ()), ("a,", (("a", False),)), (",a", (("a", False),)), ("a,,b", (("a", False), ("b", False))), (" , ", ())],
)
def test_sort_skips_empty_parts(value: str, keys: tuple[tuple[str, bool], ...]) -> None:
    assert parse(("sort", value)).sort == keys


def test_sort_sign_without_a_name_leaves_an_empty_name_for_the_plan() -> None:
    # The plan stage answers 2005 for a field named ``; the grammar does not refuse it itself.
    assert parse(("sort", "-")).sort == (("", True),)
    assert parse(("sort", "+")).sort == (("", False),)


# --- include -------------------------------------------------------------------------------------------------


def test_include_chains() -> None:
    assert parse(("include", "a.b,c")).include == (("a", "b"), ("c",))
    assert parse(("include", " a . b , c ")).include == (("a", "b"), ("c",))


@pytest.mark.parametrize("value", ["a..b", ".a", "a.", " . ", "a,b.", "a,.b"])
def test_include_with_empty_segment_is_1313(value: str) -> None:
    assert codes_of(("include", value)) == ["1313"]


@pytest.mark.parametrize(
    ("value", "chains"),
    [("", ()), (" ", ()), ("a,", (("a",),)), (",a", (("a",),)), ("a,,b.c", (("a",), ("b", "c")))],
)
def test_include_skips_empty_parts(value: str, chains: tuple[tuple[str, ...], ...]) -> None:
    assert parse(("include", value)).include == chains


# --- property ------------------------------------------------------------------------------------------------

_names = st.text(max_size=12)
_keys = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["sort", "include", "page[limit]", "page[offset]", "page[size]", "filter[a.b]", "filter[b]"]),
    st.builds(lambda inner: f"filter[{inner}]", st.text(max_size=15)),
    st.builds(lambda a, b: f"filter[{a}.{b}]", _names, _names),
    st.builds(lambda inner: f"page[{inner}]", st.text(max_size=8)),
)
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_values = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789-+.eE \u0663", max_size=25),
    st.integers(min_value=0, max_value=6000).map(lambda n: "9" * n),
    st.dictionaries(
        st.one_of(
            st.sampled_from(["in", "IN", "ne", "gt", "gte", "lt", "lte", "like", "isNull", "eq"]), st.text(max_size=6)
        ),
        _json_values,
        max_size=4,
    ).map(json.dumps),
    st.builds(lambda s: "{" + s, st.text(max_size=20)),
    st.text(alphabet=",.-+ ab", max_size=12),
)
_page_pairs = st.tuples(
    st.sampled_from(["page[limit]", "page[offset]"]),
    st.one_of(st.integers(min_value=0, max_value=6000).map(lambda n: "9" * n), st.text(max_size=6)),
)
_pairs = st.lists(st.one_of(st.tuples(_keys, _values), _page_pairs), max_size=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=_pairs, max_filters=st.integers(min_value=1, max_value=5))
def test_parser_never_raises_anything_but_catalogued_api_errors(pairs: list[tuple[str, str]], max_filters: int) -> None:
    try:
        request = parse_read_request(pairs, max_filters)
    except ApiError as exc:
        assert exc.items
        for item in exc.items:
            assert item.code in CATALOGUE, item
            assert item.status == CATALOGUE[item.code].status
            assert 400 <= item.status < 500
    else:
        assert isinstance(request, ReadRequest)
        assert len(request.filters) <= max_filters
        assert request.offset is None or 0 <= request.offset < 2**63
        assert request.limit is None or 1 <= request.limit < 2**63
        assert all(all(chain) for chain in request.include)
