"""The values of the back office's small forms (login, users, OAuth clients, API keys), validated at the edge.

Every value is checked here before it reaches a store or the database: lengths within the columns, numbers
within what can be computed with, no NUL characters (PostgreSQL refuses them in text). A refused value becomes
one readable message for the page (400), never an error deeper down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from dxapi.limits.rates import parse_override

M = TypeVar("M", bound=BaseModel)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(_no_nul)]


def _address(value: str) -> str:
    local, at, domain = value.partition("@")
    if not (local and at and domain) or "@" in domain or any(c.isspace() for c in value):
        raise ValueError("not an email address")
    return value


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=255),
    AfterValidator(_no_nul),
    AfterValidator(_address),
]
# The longest secret anyone types; argon2 hashes any length, but nothing longer needs hashing.
Password = Annotated[str, StringConstraints(max_length=1024)]
Scopes = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_no_nul)]


def _rate(value: str) -> str:
    parse_override(value)  # the CLI's parser: the same values, the same messages
    return value


# What an override may say: a rate (`1200/minute`), `unlimited`, or `default` (also left empty).
RateLimit = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), AfterValidator(_rate)]


class _Form(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class LoginForm(_Form):
    email: Email
    password: Password


class UserForm(_Form):
    email: Email
    password: Annotated[Password, StringConstraints(min_length=12)]
    role: Literal["admin", "editor", "viewer"]


class ClientForm(_Form):
    name: Name
    scopes: Scopes
    rate_limit: RateLimit | None = None


class RateLimitForm(_Form):
    rate_limit: RateLimit = ""


class KeyForm(_Form):
    name: Name
    scopes: Scopes
    # At most a hundred years: an expiry must stay a date the database can store.
    days: Annotated[int, Field(ge=1, le=36_500)] | None = None


_LABELS = {
    "email": "Email",
    "password": "Password",
    "role": "Role",
    "name": "Name",
    "scopes": "Scopes",
    "days": "Expires after days",
    "rate_limit": "Rate limit",
}


def parse(model: type[M], form: Mapping[str, str]) -> M | str:
    """The form as ``model``, or a message naming each refused field. Empty optional fields count as absent."""
    values = {
        k: v
        for k, v in form.items()
        if not (v == "" and k in model.model_fields and not model.model_fields[k].is_required())
    }
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{_LABELS.get(field, field)}: {message}")
        return "; ".join(problems)
