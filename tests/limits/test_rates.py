"""The rate parser: every accepted spelling, every refusal with its message, and the settings that use it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dxapi.limits.rates import Rate, RateError, parse_override, parse_rate, stored_rate
from dxapi.settings import Settings


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("600/minute", Rate(600, 60)),
        ("10/second", Rate(10, 1)),
        ("5000/day", Rate(5000, 86400)),
        ("2/hour", Rate(2, 3600)),
        ("100/30s", Rate(100, 30)),
        ("1000/5m", Rate(1000, 300)),
        ("3/2h", Rate(3, 7200)),
        ("7/minutes", Rate(7, 60)),
        (" 12 / Minute ", Rate(12, 60)),
        ("1/1d", Rate(1, 86400)),
    ],
    ids=lambda value: str(value),
)
def test_accepted_rates(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["", "600", "600/", "/minute", "600/week", "ten/minute", "-1/minute", "1.5/s", "5/s/s"]
)
def test_what_is_not_a_rate(text: str) -> None:
    with pytest.raises(RateError) as refused:
        parse_rate(text)
    assert str(refused.value) == (
        f"`{text}` is not a rate: write COUNT/UNIT (`600/minute`, `10/second`, `5000/day`) or "
        "COUNT/NUMBER+UNIT (`100/30s`, `1000/5m`)"
    )


@pytest.mark.parametrize("text", ["0/minute", "5/0s", "2000000000/minute", "1/99999999d"])
def test_counts_and_windows_out_of_range(text: str) -> None:
    with pytest.raises(RateError) as refused:
        parse_rate(text)
    assert str(refused.value) == f"`{text}`: count and window must be at least 1 (and below 1000000000)"


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("default", None),
        ("", None),
        (" Default ", None),
        ("unlimited", "unlimited"),
        ("none", "unlimited"),
        ("1200/minute", "1200/minute"),
        ("50/30S", "50/30s"),
    ],
)
def test_overrides_as_stored(text: str, stored: str | None) -> None:
    assert parse_override(text) == stored


def test_a_stored_override_reads_back() -> None:
    assert stored_rate("1200/minute") == Rate(1200, 60)
    assert stored_rate("unlimited") is None


def test_a_bad_setting_stops_the_start_with_what_is_accepted() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(rate_limit="600/fortnight")
    assert "`600/fortnight` is not a rate: write COUNT/UNIT" in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        Settings(rate_limit_per_entity="0/second")
    assert "`0/second`: count and window must be at least 1" in str(refused.value)


def test_settings_default_to_no_limit() -> None:
    settings = Settings()
    assert (settings.rate_limit, settings.rate_limit_per_entity, settings.redis_url) == (None, None, None)
    assert settings.redis_prefix == "dxapi:"
    assert Settings(rate_limit=" 600/minute ").rate_limit == "600/minute"
    assert Settings(rate_limit="").rate_limit is None
