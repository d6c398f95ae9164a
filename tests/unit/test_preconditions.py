"""``preconditions``: entity-tag lists as RFC 9110 §8.8.3 writes them, and when a condition holds (§13.1.1, §13.1.2)."""

from __future__ import annotations

import pytest

from dxapi.errors import ApiError
from dxapi.preconditions import Precondition, not_modified, parse_tags, request_precondition

A, B = '"a1"', '"b2"'


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ("*", ("*",)),
        (' "a1" ', (A,)),
        ('"a1", "b2"', (A, B)),
        ('"a1",W/"b2"', (A, 'W/"b2"')),
        ('""', ('""',)),
    ],
)
def test_tag_lists_are_parsed(header: str, tags: tuple[str, ...]) -> None:
    assert parse_tags(header, "If-Match") == tags


@pytest.mark.parametrize("header", ["a1", '"a1', 'a1"', '"a"b"', '"a1",', "", "W/a1", '"a1" "b2"'])
def test_malformed_tag_lists_are_6112(header: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_tags(header, "If-Match")
    assert raised.value.items[0].code == "6112"


@pytest.mark.parametrize(
    ("condition", "current", "holds"),
    [
        (Precondition(match=(A,)), A, True),
        (Precondition(match=(A,)), B, False),
        (Precondition(match=(B, A)), A, True),
        (Precondition(match=('W/"a1"',)), A, False),  # If-Match compares strongly
        (Precondition(match=(A,)), None, False),  # no row: no current representation
        (Precondition(match=("*",)), A, True),
        (Precondition(match=("*",)), None, False),
        (Precondition(none_match=("*",)), None, True),
        (Precondition(none_match=("*",)), A, False),
        (Precondition(none_match=(A,)), A, False),
        (Precondition(none_match=(A,)), B, True),
        (Precondition(match=("*",), none_match=(A,)), B, True),
        (Precondition(match=("*",), none_match=(B,)), B, False),
    ],
)
def test_when_a_condition_holds(condition: Precondition, current: str | None, holds: bool) -> None:
    assert (condition.failure(current) is None) is holds


def test_not_modified_compares_weakly() -> None:
    assert not_modified(Precondition(none_match=('W/"a1"',)), A)
    assert not_modified(Precondition(none_match=("*",)), A)
    assert not not_modified(Precondition(none_match=(B,)), A)
    assert not not_modified(Precondition(match=(A,)), A)
    assert not not_modified(None, A)


def test_headers_become_one_precondition() -> None:
    assert request_precondition({}) is None
    assert request_precondition({"if-match": A}) == Precondition(match=(A,))
    assert request_precondition({"if-none-match": "*"}) == Precondition(none_match=("*",))
