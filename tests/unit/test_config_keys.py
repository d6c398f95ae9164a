"""Which columns can be an identifier (``registry.identifiers``), and what a view reads (``schema.reflect``).

The identifier rule on ``Table`` objects shaped as reflection hands them over (keys, unique constraints, unique
indexes with the dialect options reflection fills in); the text rule for views on an in-memory SQLite database:
mentions in any case and quoting, through other views, of names on the configured deny-list.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from dxapi.registry.identifiers import identifier_candidates, identifier_problem
from dxapi.schema.reflect import denied_reads, is_view, reflect_tables, view_denied_reads

RULE = "The identifier must be the primary key or a single-column UNIQUE NOT NULL key"


def keyed() -> sa.Table:
    table = sa.Table(
        "keyed",
        sa.MetaData(),
        sa.Column("id", sa.INTEGER(), primary_key=True),
        sa.Column("sku", sa.VARCHAR(20), nullable=False),
        sa.Column("ean", sa.VARCHAR(20), nullable=True),
        sa.Column("ref", sa.INTEGER(), nullable=False),
        sa.Column("code", sa.VARCHAR(20), nullable=False),
        sa.Column("slug", sa.VARCHAR(20), nullable=False),
        sa.Column("lower_name", sa.VARCHAR(20), nullable=False),
        sa.Column("a", sa.INTEGER(), nullable=False),
        sa.Column("b", sa.INTEGER(), nullable=False),
        sa.UniqueConstraint("sku", name="uq_sku"),
        sa.UniqueConstraint("ean", name="uq_ean"),
        sa.UniqueConstraint("a", "b", name="uq_a_b"),
    )
    sa.Index("ux_ref", table.c.ref, unique=True)
    sa.Index("ux_code", table.c.code, unique=True, postgresql_where=table.c.ref > 5)
    sa.Index("ux_slug", table.c.slug, unique=True, mysql_length={"slug": 4})
    sa.Index("ux_lower", sa.func.lower(table.c.lower_name), unique=True)
    sa.Index("ix_a", table.c.a)  # not unique
    return table


def composite(*extra: sa.Column[int]) -> sa.Table:
    return sa.Table(
        "pair",
        sa.MetaData(),
        sa.Column("store", sa.VARCHAR(10), primary_key=True),
        sa.Column("sku", sa.VARCHAR(10), primary_key=True),
        *extra,
    )


def test_candidates_are_the_primary_key_and_unique_not_null_columns_in_table_order() -> None:
    assert identifier_candidates(keyed()) == ["id", "sku", "ref"]


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        ("ean", "its UNIQUE key allows NULL"),
        ("code", "its UNIQUE index `ux_code` covers only some rows or a prefix of the values"),
        ("slug", "its UNIQUE index `ux_slug` covers only some rows or a prefix of the values"),
        ("lower_name", "no primary key, UNIQUE constraint or unique index covers exactly this column"),
        ("a", "no primary key, UNIQUE constraint or unique index covers exactly this column"),
    ],
)
def test_columns_that_may_hold_a_value_twice_are_refused(column: str, reason: str) -> None:
    assert identifier_problem(keyed(), column) == (
        f"identifier `{column}` is not a unique key of `keyed`: {reason}. {RULE}; eligible here: id, sku, ref"
    )


@pytest.mark.parametrize("column", ["id", "sku", "ref"])
def test_eligible_columns_have_no_problem(column: str) -> None:
    assert identifier_problem(keyed(), column) is None


def test_composite_primary_key_is_not_an_identifier() -> None:
    message = (
        "identifier `sku` is not a unique key of `pair`: it is part of the composite primary key (store, "
        f"sku), and composite keys are not supported as identifiers. {RULE}; eligible here: none"
    )
    assert identifier_problem(composite(), "sku") == message
    assert identifier_candidates(composite()) == []


def test_composite_primary_key_table_with_a_unique_column() -> None:
    table = composite(sa.Column("line", sa.INTEGER(), nullable=False, unique=True))
    assert identifier_candidates(table) == ["line"]
    assert identifier_problem(table, "store") is not None and identifier_problem(table, "line") is None


def test_single_column_primary_key_counts_even_if_reflected_as_nullable() -> None:
    # SQLite lets a non-integer primary key hold NULL; lookups by a value still find at most one row.
    table = sa.Table("t", sa.MetaData(), sa.Column("code", sa.VARCHAR(5), primary_key=True, nullable=True))
    assert identifier_candidates(table) == ["code"]


# --- views (text rule, SQLite) ----------------------------------------------------------------------------------

VIEWS = {
    "v_plain": "SELECT id, name FROM thing",
    "v_upper": 'SELECT id FROM "DX_USER"',
    "v_brackets": "SELECT id FROM [dx_client]",
    "v_literal": "SELECT name AS id FROM pragma_table_info('dx_user')",
    "v_one": "SELECT id FROM dx_api_key",
    "v_two": "SELECT id FROM v_one",
    "v_three": 'SELECT id FROM "v_two"',
    "v_catalog": "SELECT rowid AS id FROM sqlite_master",
    "v_secret": 'SELECT id FROM "Secret Table"',
    "v_over_plain": "SELECT id FROM v_plain",
}


@pytest.fixture(scope="module")
def conn() -> Iterator[sa.Connection]:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as connection:
        for statement in (
            "CREATE TABLE thing (id INTEGER PRIMARY KEY, name TEXT)",
            'CREATE TABLE "Secret Table" (id INTEGER PRIMARY KEY)',
            "CREATE TABLE dx_user (id INTEGER PRIMARY KEY)",
            "CREATE TABLE dx_client (id INTEGER PRIMARY KEY)",
            "CREATE TABLE dx_api_key (id INTEGER PRIMARY KEY)",
        ):
            connection.exec_driver_sql(statement)
        for name, select in VIEWS.items():
            connection.exec_driver_sql(f'CREATE VIEW "{name}" AS {select}')
        yield connection
    engine.dispose()


@pytest.mark.parametrize(
    ("view", "denied"),
    [
        ("v_plain", ()),
        ("v_over_plain", ()),
        ("v_upper", ("dx_user",)),
        ("v_brackets", ("dx_client",)),
        ("v_literal", ("dx_user",)),
        ("v_one", ("dx_api_key",)),
        ("v_two", ("dx_api_key",)),
        ("v_three", ("dx_api_key",)),
        ("v_catalog", ("sqlite_master",)),
        ("v_secret", ("secret table",)),
    ],
)
def test_what_a_view_reads(conn: sa.Connection, view: str, denied: tuple[str, ...]) -> None:
    assert view_denied_reads(conn, [view], ["SECRET TABLE"]) == {view: denied}


def test_reflected_views_carry_what_they_read(conn: sa.Connection) -> None:
    tables = reflect_tables(conn, ["thing", "v_plain", "v_three", "missing"])
    assert set(tables) == {"thing", "v_plain", "v_three"}
    assert [is_view(tables[n]) for n in ("thing", "v_plain", "v_three")] == [False, True, True]
    assert [denied_reads(tables[n]) for n in ("thing", "v_plain", "v_three")] == [(), (), ("dx_api_key",)]
    assert identifier_candidates(tables["v_plain"]) == []
