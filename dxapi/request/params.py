"""Query-string parsing for reads: raw ``(key, value)`` pairs → :class:`ReadRequest`.

Knows the grammar, not the configuration: it rejects what is malformed whatever the entity (bad JSON in an
operator object, unknown operator, non-integer paging) and leaves names for the plan stage to resolve.

    filter[products.price]={"gte":"10","lt":"20"}&sort=-price,name&page[limit]=100&include=productStocks
    → ReadRequest(filters=(FilterTerm("price", {"gte": "10", "lt": "20"}),), sort=(("price", True),
      ("name", False)), offset=None, limit=100, include=(("productStocks",),))

    fields[products]=sku,name&fields[productStocks]=quantity
    → ReadRequest(fields=(("products", ("sku", "name")), ("productStocks", ("quantity",))))

``page[cursor]`` is kept as the text it is (empty for the first page); what it holds is read by the plan
stage, against the entity and sort it was made for (``plan.cursor``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dxapi import errors
from dxapi.request.body import decode_json

# Operator keys are matched case-insensitively (Spryker accepts `in` and `IN`).
OPERATORS = {
    "eq": "eq",
    "ne": "ne",
    "in": "in",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
    "nin": "nin",
    "like": "like",
    "ilike": "ilike",
    "isnull": "isNull",
}
ALLOWED_OPERATORS = "eq, ne, in, nin, gt, gte, lt, lte, like, ilike, isNull"
# Boolean groups: `filter[or]`, `filter[and]`, `filter[not]`, and the same keys inside their elements.
GROUPS = ("and", "or", "not")
# Groups inside groups, counting the outermost one: more than a reader can follow, and each level is a
# recursion in every stage.
MAX_FILTER_DEPTH = 4
# Conditions in one request, however grouped (and never more than DXAPI_MAX_FILTER_VALUES): SQLite refuses a
# WHERE nested deeper than 1000 expressions, and a chain of ANDs nests one level per condition (a thousand
# top-level filters were answered as 503 there).
MAX_FILTER_CONDITIONS = 200
# `filter[include.{relation}….{field}]` restricts the embedded rows of an included relation.
INCLUDE_FILTER = "include"
_PAGE_MAX = 2**63 - 1
# More sort keys than any index or reader could use; thousands of them made SQLite give up (answered as 503).
MAX_SORT_KEYS = 16
_LIKE_ESCAPABLE = "%_\\"


@dataclass(frozen=True, slots=True)
class FilterTerm:
    """``field`` is what follows the first dot; ``operations`` maps operator → raw JSON/text value.

    ``prefix`` is the part before the first dot: Spryker ignores it, dxapi reads it as a relation of the
    entity when it names one (``plan.build``), so ``field`` may then be a chain ``relation.field`` itself.
    """

    field: str
    operations: tuple[tuple[str, Any], ...]
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class FilterGroup:
    """``filter[or]``, ``filter[and]``, ``filter[not]`` or a group inside one: ``operator`` over ``items``
    (the items of ``not`` hold together, and it is their combination that is negated)."""

    operator: str  # one of GROUPS, or "all": the keys of one element of an `or`/`and` array
    items: tuple[FilterTerm | FilterGroup, ...]


@dataclass(frozen=True, slots=True)
class IncludeFilter:
    """``filter[include.a.b.field]``: a filter on the embedded rows of the included chain ``("a", "b")``."""

    chain: tuple[str, ...]
    term: FilterTerm


@dataclass(frozen=True, slots=True)
class ReadRequest:
    filters: tuple[FilterTerm | FilterGroup, ...] = ()
    sort: tuple[tuple[str, bool], ...] = ()
    offset: int | None = None
    limit: int | None = None
    include: tuple[tuple[str, ...], ...] = ()
    cursor: str | None = None  # page[cursor]: None without it, "" for the first page of a keyset list
    include_filters: tuple[IncludeFilter, ...] = ()
    # fields[target]=a,b in the order given: target (root alias or include path) → the names as written.
    fields: tuple[tuple[str, tuple[str, ...]], ...] = ()


CURSOR = "page[cursor]"
NO_PARAMETERS = ReadRequest()  # what a request without a query string asks: the plans take a short way for it


def parse_read_request(pairs: Sequence[tuple[str, str]], max_filters: int) -> ReadRequest:
    return _parse_read_request(pairs, max_filters) if pairs else NO_PARAMETERS


def _parse_read_request(pairs: Sequence[tuple[str, str]], max_filters: int) -> ReadRequest:
    seen: set[str] = set()
    filters: list[FilterTerm | FilterGroup] = []
    include_filters: list[IncludeFilter] = []
    sort: tuple[tuple[str, bool], ...] = ()
    include: tuple[tuple[str, ...], ...] = ()
    page: dict[str, int] = {}
    cursor: str | None = None
    sparse: list[tuple[str, tuple[str, ...]]] = []
    for key, value in pairs:
        if key in seen:
            raise errors.QUERY_PARAMETER_REPEATED.error(name=key)
        seen.add(key)
        if key.startswith("filter[") and key.endswith("]"):
            _add_filter(key[7:-1], value, filters, include_filters)
            if len(filters) + len(include_filters) > max_filters:
                count = len(filters) + len(include_filters)
                raise errors.FILTER_TOO_LARGE.error(field="filter", count=count, maximum=max_filters)
        elif key == CURSOR:
            cursor = value
        elif key.startswith("page[") and key.endswith("]"):
            name = key[5:-1]
            if name not in ("offset", "limit"):
                raise errors.QUERY_PARAMETER_UNKNOWN.error(name=key)
            page[name] = parse_page_value(name, value)
        elif key == "sort":
            sort = parse_sort(value)
        elif key == "include":
            include = parse_include(value)
        elif key.startswith("fields[") and key.endswith("]") and len(key) > 8:
            sparse.append((key[7:-1], parse_fields(key[7:-1], value)))
        else:
            raise errors.QUERY_PARAMETER_UNKNOWN.error(name=key)
    if cursor is not None and "offset" in page:
        # Two ways to say where a page starts: a keyset cursor has no offset to add to, and silently preferring
        # one would hand a client rows it did not ask for.
        raise errors.QUERY_PARAMETER_NOT_ALLOWED.error(name="page[offset]", where=f"together with `{CURSOR}`")
    _refuse_too_many_conditions(filters, include_filters, max_filters)
    return ReadRequest(
        tuple(filters),
        sort,
        page.get("offset"),
        page.get("limit"),
        include,
        cursor,
        include_filters=tuple(include_filters),
        fields=tuple(sparse),
    )


def _add_filter(
    target: str, value: str, filters: list[FilterTerm | FilterGroup], include_filters: list[IncludeFilter]
) -> None:
    if target in GROUPS:
        filters.append(parse_group(target, value))
    elif target.startswith(INCLUDE_FILTER + ".") and target.count(".") >= 2:
        include_filters.append(parse_include_filter(target, value))
    else:
        filters.append(parse_filter(target, value))


def _refuse_too_many_conditions(
    filters: list[FilterTerm | FilterGroup], include_filters: list[IncludeFilter], max_filters: int
) -> None:
    # One bound over every condition of the request, however it is grouped: each is a predicate the database
    # evaluates per row, and each `in` list is bounded on its own (plan.build).
    leaves = len(filters) + len(include_filters)
    if any(isinstance(item, FilterGroup) for item in filters):
        leaves = sum(_leaves(item) for item in filters) + len(include_filters)
    if leaves > min(max_filters, MAX_FILTER_CONDITIONS):
        raise errors.FILTER_CONDITIONS_TOO_MANY.error(count=leaves, maximum=min(max_filters, MAX_FILTER_CONDITIONS))


def _leaves(item: FilterTerm | FilterGroup) -> int:
    if isinstance(item, FilterTerm):
        return 1
    return sum(_leaves(inner) for inner in item.items)


def refuse_list_parameters(read: ReadRequest, *, filters: bool, include: bool, where: str) -> None:
    """Parameters that only make sense on a list are a client mistake elsewhere (2017); name the first one.

    ``filters``/``include``: whether those are refused too (a DELETE takes filters, a single row includes).
    """
    given = [
        ("filter[...]", filters and bool(read.filters)),
        ("sort", bool(read.sort)),
        ("page[offset]", read.offset is not None),
        ("page[limit]", read.limit is not None),
        (CURSOR, read.cursor is not None),
        ("include", include and bool(read.include)),
        ("filter[include...]", include and bool(read.include_filters)),
        # What an answer shows goes with what it embeds: a DELETE answers no rows at all.
        ("fields[...]", include and bool(read.fields)),
    ]
    for name, present in given:
        if present:
            raise errors.QUERY_PARAMETER_NOT_ALLOWED.error(name=name, where=where)


def refuse_export_parameters(read: ReadRequest, media_type: str) -> None:
    """An export (``Accept: application/x-ndjson`` or ``text/csv``) is every matching row: a page parameter
    would silently mean nothing (2017), and CSV has no place for included rows (2051)."""
    given = [("page[offset]", read.offset), ("page[limit]", read.limit), (CURSOR, read.cursor)]
    for name, value in given:
        if value is not None:
            raise errors.QUERY_PARAMETER_NOT_ALLOWED.error(name=name, where=f"in an export (`Accept: {media_type}`)")
    if media_type == "text/csv" and read.include:
        raise errors.EXPORT_CSV_INCLUDE.error()


def link_with(path: str, pairs: Iterable[tuple[str, str]], name: str, value: str) -> str:
    """``path`` and the query ``pairs`` with the parameter ``name`` set to ``value`` (in its place if given, else
    last): the link to another page of the same list, relative to the server.

        link_with("/dynamic-entity/products", [("sort", "name"), ("page[cursor]", "")], "page[cursor]", "WzEs")
        → "/dynamic-entity/products?sort=name&page[cursor]=WzEs"
    """
    replaced = [(key, value if key == name else given) for key, given in pairs]
    if all(key != name for key, _ in replaced):
        replaced.append((name, value))
    # The brackets of a name stay readable (`page[limit]`); a value is escaped whole, brackets included.
    return path + "?" + "&".join(f"{quote(key, safe='[]')}={quote(given, safe='')}" for key, given in replaced)


def parse_filter(target: str, value: str) -> FilterTerm:
    """``filter[alias.field]=value``: Spryker ignores the part before the first dot; dxapi keeps it as
    ``prefix`` for the plan stage, which reads it as a relation only when the entity has one of that name."""
    prefix, dot, field = target.partition(".")
    if not dot or not field:
        raise errors.FILTER_FORMAT.error()
    if not value.startswith("{"):
        return FilterTerm(field, (("eq", value),), prefix)
    try:
        # The body reader's rules: a repeated key is refused, not silently last-wins; numbers stay exact.
        document = decode_json(value)
    except (ValueError, RecursionError) as exc:
        # A syntax error's text is the decoder's; the body reader's own refusals (a key twice, NaN) say why.
        invalid = isinstance(exc, (json.JSONDecodeError, RecursionError))
        reason = "the operator object is not valid JSON" if invalid else str(exc)
        raise errors.FILTER_VALUE_INVALID.error(field=field, reason=reason) from None
    return FilterTerm(field, parse_operations(field, document), prefix)


def parse_operations(field: str, document: Any) -> tuple[tuple[str, Any], ...]:
    """An operator object (``{"gte": "10", "lt": "20"}``) → its operations, operators in canonical spelling."""
    if not isinstance(document, dict) or not document:
        raise errors.FILTER_VALUE_INVALID.error(field=field, reason="the operator object must not be empty")
    operations: dict[str, Any] = {}
    for raw_operator, operand in document.items():
        operator = OPERATORS.get(raw_operator.lower())
        if operator is None:
            raise errors.FILTER_OPERATOR_UNKNOWN.error(field=field, operator=raw_operator, allowed=ALLOWED_OPERATORS)
        if operator in operations:  # `gt` and `GT` are one operator
            raise errors.FILTER_VALUE_INVALID.error(field=field, reason=f"the operator `{operator}` is given twice")
        if operator in ("like", "ilike") and isinstance(operand, str):
            problem = like_pattern_problem(operand)
            if problem is not None:
                raise errors.FILTER_VALUE_INVALID.error(field=field, reason=problem)
        operations[operator] = operand
    return tuple(operations.items())


def parse_group(operator: str, value: str) -> FilterGroup:
    """``filter[or]=[{"products.price":{"lt":"10"}},{"products.name":{"like":"a%"}}]`` → ``FilterGroup("or",
    (FilterTerm("price", (("lt", "10"),), "products"), FilterTerm("name", (("like", "a%"),), "products")))``.

    ``or`` and ``and`` take a non-empty array of elements, ``not`` one element. An element is an object whose
    keys hold together: ``alias.field`` with a plain value (equality) or an operator object, exactly as a
    top-level filter, or ``or``/``and``/``not`` again, at most ``MAX_FILTER_DEPTH`` groups deep.
    """
    name = f"filter[{operator}]"
    try:
        document = decode_json(value)
    except (ValueError, RecursionError) as exc:
        invalid = isinstance(exc, (json.JSONDecodeError, RecursionError))
        raise errors.FILTER_GROUP_INVALID.error(name=name, reason="not valid JSON" if invalid else str(exc)) from None
    return _group(operator, document, name, 1)


def _group(operator: str, document: Any, name: str, depth: int) -> FilterGroup:
    if depth > MAX_FILTER_DEPTH:
        raise errors.FILTER_GROUP_TOO_DEEP.error(name=name, maximum=MAX_FILTER_DEPTH)
    if operator == "not":
        return FilterGroup("not", _element(document, name, depth))
    if not isinstance(document, list):
        raise errors.FILTER_GROUP_INVALID.error(name=name, reason=f"`{operator}` takes an array of objects")
    if not document:
        raise errors.FILTER_GROUP_INVALID.error(name=name, reason="the group is empty")
    items: list[FilterTerm | FilterGroup] = []
    for index, element in enumerate(document):
        inner = _element(element, f"{name}[{index}]", depth)
        # The keys of one element hold together ("all"): through one relation, one related row matches them.
        items.append(inner[0] if len(inner) == 1 else FilterGroup("all", inner))
    return FilterGroup(operator, tuple(items))


def _element(document: Any, name: str, depth: int) -> tuple[FilterTerm | FilterGroup, ...]:
    """One group element: its keys, each a filter or a group one level deeper (they hold together)."""
    if not isinstance(document, dict):
        raise errors.FILTER_GROUP_INVALID.error(name=name, reason="an element must be a JSON object")
    if not document:
        raise errors.FILTER_GROUP_INVALID.error(name=name, reason="the element is empty")
    items: list[FilterTerm | FilterGroup] = []
    for key, value in document.items():
        if key in GROUPS:
            items.append(_group(key, value, f"{name}.{key}", depth + 1))
            continue
        prefix, dot, field = key.partition(".")
        if not dot or not field or not prefix:
            reason = f"`{key}` is neither a group (and, or, not) nor `alias.field`"
            raise errors.FILTER_GROUP_INVALID.error(name=name, reason=reason)
        if prefix == INCLUDE_FILTER and "." in field:
            reason = f"`{key}` filters an include: it is a parameter of its own, `filter[{key}]`"
            raise errors.FILTER_GROUP_INVALID.error(name=name, reason=reason)
        if isinstance(value, dict):
            items.append(FilterTerm(field, parse_operations(field, value), prefix))
        else:
            # JSON says what a value is: a string starting with `{` is text here, never an operator object.
            items.append(FilterTerm(field, (("eq", value),), prefix))
    return tuple(items)


def parse_include_filter(target: str, value: str) -> IncludeFilter:
    """``filter[include.productStocks.quantity]={"gt":0}`` → the embedded ``productStocks`` rows with a
    quantity above 0 (the root rows are not filtered by it). Spryker's ``filter[alias.field]`` has one dot, so
    a key of the form ``include.{chain}.{field}`` never means anything else."""
    *chain, field = target.split(".")[1:]
    if not field or any(not name for name in chain):
        raise errors.FILTER_FORMAT.error()
    term = parse_filter(f"{INCLUDE_FILTER}.{field}", value)
    return IncludeFilter(tuple(chain), FilterTerm(term.field, term.operations))


def like_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is no valid ``like``/``ilike`` pattern, or None.

    ``%`` matches any text, ``_`` one character, and a backslash makes the next ``%``, ``_`` or backslash a
    literal one — on every backend. A backslash before anything else, or at the end, is refused rather than
    read each backend's own way (PostgreSQL failed on a trailing one; SQLite has no escape character at all).
    """
    escaped = False
    for character in pattern:
        if escaped:
            if character not in _LIKE_ESCAPABLE:
                return f"in a pattern a backslash escapes %, _ or a backslash, not `{character}`"
            escaped = False
        elif character == "\\":
            escaped = True
    if escaped:
        return "the pattern ends in a lone backslash; write two for a literal one"
    return None


def parse_page_value(name: str, value: str) -> int:
    smallest = 1 if name == "limit" else 0
    if not value.isascii() or not value.isdigit() or len(value) > 19 or not smallest <= int(value) <= _PAGE_MAX:
        raise errors.PAGE_VALUE_INVALID.error(name=name, value=value[:40], smallest=smallest)
    return int(value)


def parse_sort(value: str) -> tuple[tuple[str, bool], ...]:
    """``-price,name`` → ``(("price", True), ("name", False))`` (True = descending)."""
    keys = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue  # `sort=` and `sort=a,` ask for nothing more
        descending = part.startswith("-")
        keys.append((part[1:] if descending else part.removeprefix("+"), descending))
        if len(keys) > MAX_SORT_KEYS:
            raise errors.SORT_TOO_LARGE.error(
                count=len([p for p in value.split(",") if p.strip()]), maximum=MAX_SORT_KEYS
            )
    return tuple(keys)


def parse_fields(target: str, value: str) -> tuple[str, ...]:
    """``sku, name`` → ``("sku", "name")``. Names are checked against the entity by the plan stage; the
    grammar refuses only what no entity could take: no name at all, or one name twice (``plan.build`` bounds
    the length by the entity's field count).
    """
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise errors.FIELDS_LIST_INVALID.error(
            target=target, reason="the list names no field (the identifier is always answered; name it alone)"
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise errors.FIELDS_LIST_INVALID.error(target=target, reason=f"the field `{name[:100]}` is named twice")
        seen.add(name)
    return names


def parse_include(value: str) -> tuple[tuple[str, ...], ...]:
    """``a.b,c`` → ``(("a", "b"), ("c",))``."""
    chains = []
    for part in value.split(","):
        if not part.strip():
            continue
        chain = tuple(name.strip() for name in part.split("."))
        if any(not name for name in chain):
            raise errors.RELATION_NOT_FOUND.error(relation=part)
        chains.append(chain)
    return tuple(chains)
