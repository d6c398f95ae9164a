"""The error catalogue: every error dxapi can answer with, in one place.

Each entry has a stable code, an HTTP status and a message template. Spryker's codes (007, 011, 13xx) keep
their meaning and status; dxapi's own codes live in ranges by stage (2xxx request syntax, 3xxx planning and
limits, 5xxx server side). Codes are never reused: a retired code stays listed with ``retired=True``.

Every stage raises :class:`ApiError` with one or more :class:`ErrorItem`; ``responses.render_errors`` turns it
into the one error body shape: a JSON array of ``{"code", "status", "message"}``.
``docs/errors.md`` lists every code; ``tests/unit/test_docs.py`` keeps both in sync.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorItem:
    code: str
    status: int
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "status": self.status, "message": self.message}


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: str
    status: int
    template: str
    summary: str
    retired: bool = False

    def __call__(self, **params: object) -> ErrorItem:
        return ErrorItem(self.code, self.status, self.template.format(**params))

    def error(self, **params: object) -> ApiError:
        return ApiError([self(**params)])


class ApiError(Exception):
    """A request refused with one or more catalogued errors."""

    def __init__(self, items: list[ErrorItem], headers: dict[str, str] | None = None) -> None:
        super().__init__(items[0].message if items else "error")
        self.items = items
        self.headers = headers or {}

    @property
    def status(self) -> int:
        # The first error decides: it is the one the client most likely has to fix first.
        return self.items[0].status


CATALOGUE: dict[str, ErrorSpec] = {}


def _spec(code: str, status: int, template: str, summary: str, retired: bool = False) -> ErrorSpec:
    assert code not in CATALOGUE, f"error code {code} defined twice"
    spec = ErrorSpec(code, status, template, summary, retired)
    CATALOGUE[code] = spec
    return spec


# --- routing and framework (Spryker/Glue codes) -------------------------------------------------------------
NOT_FOUND = _spec("007", 404, "Not found", "Unknown route, or an alias that is not configured or not active.")
FILTER_FORMAT = _spec(
    "011",
    400,
    "Unsupported `Filter` format is used. Please use `filter[resource.property]`",
    "A `filter[...]` key without a dot.",
)

# --- Spryker Data Exchange API codes ------------------------------------------------------------------------
INVALID_BODY = _spec(
    "1301",
    400,
    "Invalid or missing data format. Please ensure that the data is provided in the correct format. "
    'Example request body: {{"data":[{{...}},{{...}},..]}}',
    'The body is not JSON or not of the shape `{"data": ...}` the method expects.',
)
PERSISTENCE_FAILED = _spec(
    "1302",
    500,
    "Failed to persist the data for `{path}`. Please verify the provided data and try again.",
    "An unexpected database error while writing (the cause is logged, never sent).",
)
ENTITY_NOT_FOUND = _spec(
    "1303",
    404,
    "The entity `{path}` could not be found in the database.",
    "No row with the given identifier.",
)
IMMUTABLE_FIELD = _spec(
    "1304",
    400,
    "Modification of immutable field `{path}.{field}` is prohibited",
    "A value for a field that is not creatable (POST) or not editable (PATCH/PUT).",
)
INVALID_TYPE = _spec(
    "1305",
    400,
    "Invalid data type `{path}` for field `{field}`",
    "A value of the wrong JSON type for the field's type.",
)
INVALID_VALUE = _spec(
    "1306",
    400,
    "Invalid data value `{path}` for field: `{field}`. Field rules: {rules}",
    "A value that breaks one of the field's rules (range, length, pattern, enum, precision).",
)
REQUIRED_FIELD = _spec(
    "1307",
    400,
    "The required field must not be empty. Field: `{path}.{field}`",
    "A required field is absent or null.",
)
NOT_CREATABLE_IDENTIFIER = _spec(
    "1308",
    400,
    "Entity `{path}.{identifier}` not found by identifier, and new identifier can not be persisted. "
    "Please update the request.",
    "PUT of a missing row whose identifier is not creatable.",
)
DUPLICATE_ENTRY = _spec(
    "1309",
    400,
    "Failed to persist the data for `{path}`. Please verify the provided data and try again. Entry is duplicated.",
    "A unique constraint was violated.",
)
MISSING_IDENTIFIER = _spec(
    "1310",
    400,
    "Incomplete Request - missing identifier for `{path}`",
    "A collection PATCH item without the identifier.",
)
UNKNOWN_FIELD = _spec(
    "1311",
    400,
    "The provided `{path}.{field}` is incorrect or invalid.",
    "A body key that is neither a configured field nor a relation.",
)
CONFIGURATION_NOT_FOUND = _spec(
    "1312",
    404,
    "Dynamic entity configuration for table alias `{alias}` not found.",
    "Retired by Spryker in favour of 007; never sent by dxapi.",
    retired=True,
)
RELATION_NOT_FOUND = _spec(
    "1313",
    400,
    "Relation `{relation}` not found. Please check the requested relation name and try again.",
    "An `include` chain or nested key names a relation that is not configured.",
)
RELATION_NOT_EDITABLE = _spec(
    "1314",
    422,
    "The relationship `{relation}` is not editable by configuration.",
    "A nested write through a relation configured as not editable.",
)
FILTER_FIELD_NOT_FOUND = _spec(
    "1315",
    400,
    "Filter field `{field}` for table alias `{alias}` not found.",
    "A filter on a field that is not configured for the entity.",
)
INVALID_URL = _spec(
    "1316",
    400,
    "The URL is invalid. `{path}` field `{field}` must have a URL data format.",
    "A value that breaks the `url` constraint.",
)
DELETE_BLOCKED = _spec(
    "1317",
    400,
    "Failed to delete the data for `{path}`. The entity has a child entity and can not be deleted. {children}",
    "A row that other rows reference cannot be deleted. Names the child entity only when it is configured and "
    "the caller has a scope on it (never a table).",
)
METHOD_NOT_ALLOWED_FOR_ENTITY = _spec(
    "1318",
    405,
    "Method not allowed for the entity `{alias}`.",
    "DELETE on an entity that is not deletable.",
)

# --- dxapi: request syntax (2xxx) ---------------------------------------------------------------------------
FILTER_VALUE_INVALID = _spec(
    "2001",
    400,
    "Filter `{field}`: {reason}",
    "A filter value that is not valid for the field's type, or a malformed operator object.",
)
FILTER_OPERATOR_UNKNOWN = _spec(
    "2002",
    400,
    "Filter `{field}`: unknown operator `{operator}`. Allowed: {allowed}.",
    "An operator object with a key that is not a known operator.",
)
PAGE_VALUE_INVALID = _spec(
    "2003",
    400,
    "`page[{name}]` must be an integer of at least {smallest}, got `{value}`.",
    "`page[offset]` or `page[limit]` that is not an integer in range (a limit must be at least 1).",
)
PAGE_LIMIT_TOO_LARGE = _spec(
    "2004",
    400,
    "`page[limit]` is {value}; the maximum is {maximum}.",
    "A page larger than the configured maximum (`DXAPI_MAX_PAGE_LIMIT`).",
)
SORT_FIELD_NOT_FOUND = _spec(
    "2005",
    400,
    "Sort field `{field}` for table alias `{alias}` not found.",
    "`sort` names a field that is not configured for the entity.",
)
SORT_FIELD_NOT_SORTABLE = _spec(
    "2018",
    400,
    "Sort field `{field}` for table alias `{alias}` is of type {type}, which has no order.",
    "`sort` names a `json` field (JSON values have no order on every backend).",
)
SORT_TOO_LARGE = _spec(
    "2019",
    400,
    "`sort` names {count} fields; the maximum is {maximum}.",
    "More sort keys than dxapi accepts (16).",
)
CURSOR_INVALID = _spec(
    "2020",
    400,
    "`page[cursor]` is not valid for this list: {reason}. Start again with an empty `page[cursor]=`.",
    "A `page[cursor]` that is malformed, or that was made for another entity or another `sort`.",
)
INCLUDE_TOO_DEEP = _spec(
    "2006",
    400,
    "Include chain `{chain}` is deeper than the maximum of {maximum}.",
    "An `include` chain longer than `DXAPI_MAX_INCLUDE_DEPTH`.",
)
QUERY_PARAMETER_UNKNOWN = _spec(
    "2007",
    400,
    "Unknown query parameter `{name}`. Allowed: filter[...], page[...], sort, include, fields[...].",
    "A query parameter dxapi does not know (a typo would otherwise silently widen the result).",
)
QUERY_PARAMETER_REPEATED = _spec(
    "2008",
    400,
    "Query parameter `{name}` is given more than once.",
    "The same query parameter twice, which would be ambiguous.",
)
FILTER_TOO_LARGE = _spec(
    "2009",
    400,
    "Filter `{field}`: {count} values given; the maximum is {maximum}.",
    "An `in` list longer than `DXAPI_MAX_FILTER_VALUES`, or more filters than that.",
)
FILTER_GROUP_INVALID = _spec(
    "2030",
    400,
    "Filter group `{name}`: {reason}.",
    "A malformed `filter[or]`, `filter[and]` or `filter[not]`: not JSON, an empty group or element, `or`/`and` "
    "without an array, an element that is no object, or a key that is neither a group nor `alias.field`.",
)
FILTER_GROUP_TOO_DEEP = _spec(
    "2031",
    400,
    "Filter group `{name}` is nested deeper than the maximum of {maximum} groups.",
    "Groups inside groups deeper than dxapi accepts (4, counting the outermost).",
)
FILTER_CONDITIONS_TOO_MANY = _spec(
    "2032",
    400,
    "The filters hold {count} conditions; the maximum is {maximum}.",
    "More conditions in one request, top-level filters and group members together, than 200 (or "
    "`DXAPI_MAX_FILTER_VALUES` if lower).",
)
INCLUDE_FILTER_NOT_INCLUDED = _spec(
    "2033",
    400,
    "Filter `filter[include.{chain}.{field}]` restricts `{chain}`, which `include` does not ask for.",
    "A `filter[include.…]` on a relation chain that is not included.",
)
RELATION_FILTER_TOO_DEEP = _spec(
    "2034",
    400,
    "Filter `{name}` goes through {count} relations; the maximum is {maximum}.",
    "A relation filter through more relations than `DXAPI_MAX_INCLUDE_DEPTH`.",
)
QUERY_PARAMETER_NOT_ALLOWED = _spec(
    "2017",
    400,
    "Query parameter `{name}` is not allowed {where}.",
    "A query parameter that means nothing for this request (for example `sort` on a single row).",
)
FIELDS_FIELD_NOT_FOUND = _spec(
    "2040",
    400,
    "`fields[{target}]`: field `{field}` for table alias `{alias}` not found.",
    "`fields[...]` names a field that is not configured (or not enabled) for the entity it selects from.",
)
FIELDS_TARGET_UNKNOWN = _spec(
    "2041",
    400,
    "`fields[{target}]` names neither the table alias `{alias}` nor a relation in `include`.",
    "`fields[...]` for something that is neither the requested entity nor one of the included relations.",
)
FIELDS_LIST_INVALID = _spec(
    "2042",
    400,
    "`fields[{target}]`: {reason}",
    "An empty field list, a field named twice, or more names than the entity has fields.",
)
FIELDS_TARGET_AMBIGUOUS = _spec(
    "2043",
    400,
    "`fields[{target}]` fits the included relations {paths}; name one by its path in `include`.",
    "A bare relation name in `fields[...]` that is included at more than one place of the `include` tree.",
)
METHOD_NOT_ALLOWED = _spec(
    "2010",
    405,
    "Method `{method}` is not allowed on this path.",
    "An HTTP method the route does not serve.",
)

UNSUPPORTED_MEDIA_TYPE = _spec(
    "2011",
    415,
    "Unsupported media type `{media_type}`; send `Content-Type: application/json`.",
    "A write whose body is not declared as JSON.",
)
NOT_ACCEPTABLE = _spec(
    "2050",
    406,
    "None of the media types in `Accept` is served here; this path serves {served}.",
    "A list read whose `Accept` names only types dxapi does not write (JSON, NDJSON and CSV are served).",
)
EXPORT_CSV_INCLUDE = _spec(
    "2051",
    400,
    "`include` cannot be exported as CSV (one row per line has no place for related rows); ask for "
    "`Accept: application/x-ndjson` to export rows with their included relations.",
    "A CSV export (`Accept: text/csv`) with `include`.",
)
BODY_TOO_LARGE = _spec(
    "2012",
    413,
    "The request body is larger than {maximum} bytes.",
    "A body over `DXAPI_MAX_BODY_BYTES` (refused before it is read in full).",
)
TOO_MANY_ITEMS = _spec(
    "2013",
    400,
    "The batch has {count} items; the maximum is {maximum}.",
    "More items in one request than `DXAPI_MAX_BATCH_ITEMS`.",
)
DELETE_NEEDS_FILTER = _spec(
    "2014",
    400,
    "A collection DELETE on `{alias}` needs at least one filter.",
    "`DELETE /{alias}` without `filter[...]` (it would delete every row).",
)
NESTING_TOO_DEEP = _spec(
    "2015",
    400,
    "Nested relations at `{path}` are deeper than the maximum of {maximum}.",
    "Nested writes deeper than `DXAPI_MAX_INCLUDE_DEPTH`.",
)
IDENTIFIER_MISMATCH = _spec(
    "2016",
    400,
    "The identifier in `{path}` differs from the one in the URL.",
    "`/{alias}/{id}` with a body naming another identifier.",
)

# --- dxapi: data conflicts found by the database (3xxx) -----------------------------------------------------
NOT_NULLABLE = _spec(
    "3001",
    400,
    "Failed to persist the data for `{path}`. Please verify the provided data and try again. Field must not be null.",
    "A NULL for a column that does not accept it (Spryker's not_nullable_field, which has no code there).",
)
REFERENCE_NOT_FOUND = _spec(
    "3002",
    400,
    "Failed to persist the data for `{path}`. The referenced row does not exist.",
    "A foreign key pointing at a row that does not exist.",
)
VALUE_REJECTED = _spec(
    "3003",
    400,
    "Failed to persist the data for `{path}`. The database rejected a value (out of range or too long).",
    "A value the database refused (check constraint, range); the cause is logged.",
)
WRITE_CONFLICT = _spec(
    "3004",
    409,
    "The write conflicted with a concurrent one and was rolled back. Please retry.",
    "A deadlock or serialization failure that persisted after one automatic retry.",
)
LOCK_TIMEOUT = _spec(
    "3005",
    409,
    "The rows this request needs stayed locked by another transaction. Nothing was written. Please retry.",
    "A statement waited longer than `DXAPI_LOCK_TIMEOUT` for a lock; rolled back, sent with `Retry-After`.",
)

# --- dxapi: the change feed (6xxx, DESIGN §4b) -------------------------------------------------------------
CHANGES_NOT_ENABLED = _spec(
    "6001",
    404,
    'The entity `{alias}` has no change feed. It is enabled with `"changeFeed": true` in its definition.',
    "`/_changes` of an entity whose definition does not enable the change feed.",
)
CHANGES_CURSOR_INVALID = _spec(
    "6002",
    400,
    "`since` is not a cursor of this feed: `{value}`. Send the `meta.cursor` of an earlier answer, `now`, or "
    "nothing to start from the beginning.",
    "A `since` value that no `/_changes` answer handed out.",
)
CHANGES_CURSOR_EXPIRED = _spec(
    "6003",
    410,
    "The cursor is older than the changes this feed still holds. Resync from the start: read the feed "
    "without `since` and replace your copy.",
    "A cursor from before pruned tombstones (`DXAPI_CHANGE_RETENTION`) or from an earlier installation of "
    "the capture: deletes may have been missed.",
)
CHANGES_NOT_INSTALLED = _spec(
    "6004",
    503,
    "The change capture of `{alias}` is not installed or outdated. Run `dxapi init` (see `dxapi config check`).",
    "The definition enables the feed but its triggers and change table are missing or of an older version.",
)

# --- dxapi: safe retries and preconditions (61xx, DESIGN §4b) -----------------------------------------------
IDEMPOTENCY_KEY_INVALID = _spec(
    "6101",
    400,
    "`Idempotency-Key` must be 1 to 255 printable ASCII characters.",
    "An `Idempotency-Key` header that is empty, too long or holds other characters.",
)
IDEMPOTENCY_KEY_REUSED = _spec(
    "6102",
    422,
    "This `Idempotency-Key` was used for a different request (method, path, query or body). Send a new key "
    "with a new request.",
    "A key already recorded for another request of the same principal; nothing was executed.",
)
IDEMPOTENCY_KEY_IN_USE = _spec(
    "6103",
    409,
    "A request with this `Idempotency-Key` is still running. Retry shortly: you will get its answer.",
    "The first request with the key has not finished (any worker, any host); sent with `Retry-After`.",
)
PRECONDITION_FAILED = _spec(
    "6111",
    412,
    "Precondition failed for `{path}`: the row {reason}. Nothing was written.",
    "`If-Match` / `If-None-Match` (or an item's `@etag`) does not hold for the row at the time of the write.",
)
PRECONDITION_INVALID = _spec(
    "6112",
    400,
    '`{where}` must be `*` or a list of entity tags such as `"a1b2"`, not `{value}`.',
    "A malformed `If-Match`, `If-None-Match` or `@etag`.",
)
PRECONDITION_NOT_SUPPORTED = _spec(
    "6113",
    400,
    "`{header}` applies to one row (`/{{alias}}/{{id}}`). In a collection request send each row's tag as "
    "`@etag` in its item.",
    "A precondition header on a collection route.",
)

# --- authentication and authorization (Spryker's 001, dxapi 4xxx) ------------------------------------------
INVALID_TOKEN = _spec(
    "001",
    401,
    "Invalid access token.",
    "A bearer token or API key that is malformed, expired, wrongly signed, revoked or of the wrong kind.",
)
AUTHENTICATION_REQUIRED = _spec(
    "4001",
    401,
    "Authentication required: send `Authorization: Bearer <token>` or `X-Api-Key`.",
    "No credentials on a protected path.",
)
METRICS_TOKEN_REQUIRED = _spec(
    "4011",
    401,
    "Metrics require `Authorization: Bearer <DXAPI_METRICS_TOKEN>`.",
    "`GET /metrics` without the token `DXAPI_METRICS_TOKEN` names, or with another one.",
)
INSUFFICIENT_SCOPE = _spec(
    "4003",
    403,
    "Not allowed: the credentials lack the scope `{alias}:{action}`.",
    "Valid credentials without the scope the request needs (checked for included and nested entities too).",
)
TOO_MANY_ATTEMPTS = _spec(
    "4029",
    429,
    "Too many failed authentication attempts from this address. Retry in {seconds} seconds.",
    "More failed API-key checks from one address than `DXAPI_TOKEN_ATTEMPTS_PER_ADDRESS` in a minute "
    "(sent with `Retry-After`).",
)
RATE_LIMITED = _spec(
    "4291",
    429,
    "Too many requests: the limit is {quota} per {window} seconds {where}. Retry in {seconds} seconds.",
    "More data requests than the principal's rate limit allows (`DXAPI_RATE_LIMIT`, a client's own limit, or "
    "`DXAPI_RATE_LIMIT_PER_ENTITY` for one entity); sent with `Retry-After`, `RateLimit` and `RateLimit-Policy`. "
    "Nothing was read or written.",
)

# --- dxapi: server side (5xxx) ------------------------------------------------------------------------------
INTERNAL_ERROR = _spec(
    "5001",
    500,
    "Internal server error. The incident has been logged.",
    "An unexpected error; details go to the server log only.",
)
DATABASE_UNAVAILABLE = _spec(
    "5002",
    503,
    "The database is not reachable. Please retry later.",
    "The database is down or does not accept connections within `DXAPI_CONNECT_TIMEOUT`; sent with `Retry-After`.",
)
STATEMENT_TIMEOUT = _spec(
    "5005",
    503,
    "The database did not finish in time. Nothing was written. Please retry later.",
    "A statement ran longer than `DXAPI_STATEMENT_TIMEOUT` and was cancelled by the database; rolled back, sent "
    "with `Retry-After`.",
)
OUTCOME_UNKNOWN = _spec(
    "5006",
    503,
    "The connection to the database was lost while committing: the write may or may not have been saved. Retry "
    "with the same `Idempotency-Key`, or read the rows to find out.",
    "The commit was sent but no answer came back (database or network failure): dxapi cannot tell whether it "
    "took effect.",
)
POOL_EXHAUSTED = _spec(
    "5007",
    503,
    "The server is busy: no database connection became free in time. Please retry later.",
    "Every connection of the worker's pool stayed in use for `DXAPI_POOL_TIMEOUT`; sent with `Retry-After`.",
)
TOO_MANY_CONNECTIONS = _spec(
    "5009",
    503,
    "The server is busy: too many connections. Please retry later.",
    "The worker already serves `DXAPI_MAX_CONNECTIONS` connections or requests; sent with `Retry-After`.",
)
SHUTTING_DOWN = _spec(
    "5008",
    503,
    "The server is shutting down. Please retry.",
    "A request still running when `DXAPI_SHUTDOWN_TIMEOUT` ran out; it was rolled back unless it had committed.",
)
SCHEMA_CHANGED = _spec(
    "5004",
    503,
    "The database schema changed under this endpoint; its configuration is being checked. Retry soon.",
    "A configured table or column disappeared since the configuration was loaded (sent with `Retry-After`).",
)
ENTITY_UNAVAILABLE = _spec(
    "5003",
    503,
    "The entity `{alias}` is temporarily unavailable: its configuration does not match the database schema.",
    "The configuration of an active entity no longer matches its table (for example a dropped column).",
)
