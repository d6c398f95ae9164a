"""The demo shop: five related tables and deterministic data to expose through dxapi.

Job: define a small e-commerce schema (countries, tax rates, a category tree, products, stock) as
SQLAlchemy Core tables that create identically on SQLite, PostgreSQL and MariaDB, and fill it with
reproducible data.  The same ``(products, seed)`` always yields byte-for-byte the same rows: all
randomness comes from one ``random.Random(seed)`` and all timestamps from a fixed base instant, and
``shop_product.updated_at`` grows strictly with the product id so keyset paging on it is stable.

Fed by: the caller's engine or connection (``dxapi demo`` builds an embedded SQLite file; tests and
benchmarks point it at their PostgreSQL / MariaDB databases), a product count and a seed.

Feeds: the tables that ``SHOP_CONFIG`` (``dxapi/shop-config.json``, shipped in the package so that
``dxapi demo`` works from an installed wheel) exposes as the ``countries``, ``tax-rates``, ``categories``,
``products`` and ``stocks`` entities, which the API tests and benchmarks query. ``examples/shop-config.json``
is a copy of it for ``dxapi config import``; ``tests/unit/test_demo.py`` keeps the two identical.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

__all__ = ["SHOP_CONFIG", "SHOP_TABLES", "build_shop", "create_shop", "shop_config", "shop_metadata"]

SHOP_CONFIG = Path(__file__).resolve().parent / "shop-config.json"

SHOP_TABLES: tuple[str, ...] = (
    "shop_country",
    "shop_tax_rate",
    "shop_category",
    "shop_product",
    "shop_stock",
)
"""The demo tables, parents before children (creation order; drop in reverse)."""

BASE_TIME = datetime(2026, 1, 1, 0, 0, 0)
"""Fixed instant all generated timestamps derive from; product ``n`` has ``updated_at = BASE_TIME + n s``."""

AVAILABLE_FROM = date(2025, 1, 1)
"""Earliest ``shop_product.available_from``; the generated dates span the following 18 months."""

CHUNK_ROWS = 5_000
"""Rows per executemany round trip."""

Row = dict[str, Any]

# (iso2, iso3, name, postal code mandatory, postal code regex)
_COUNTRIES: tuple[tuple[str, str, str, bool, str | None], ...] = (
    ("AT", "AUT", "Austria", True, r"^\d{4}$"),
    ("BE", "BEL", "Belgium", True, r"^\d{4}$"),
    ("BG", "BGR", "Bulgaria", True, r"^\d{4}$"),
    ("HR", "HRV", "Croatia", True, r"^\d{5}$"),
    ("CY", "CYP", "Cyprus", False, None),
    ("CZ", "CZE", "Czechia", True, r"^\d{3} ?\d{2}$"),
    ("DK", "DNK", "Denmark", True, r"^\d{4}$"),
    ("EE", "EST", "Estonia", True, r"^\d{5}$"),
    ("FI", "FIN", "Finland", True, r"^\d{5}$"),
    ("FR", "FRA", "France", True, r"^\d{5}$"),
    ("DE", "DEU", "Germany", True, r"^\d{5}$"),
    ("GR", "GRC", "Greece", True, r"^\d{3} ?\d{2}$"),
    ("HU", "HUN", "Hungary", True, r"^\d{4}$"),
    ("IE", "IRL", "Ireland", False, None),
    ("IT", "ITA", "Italy", True, r"^\d{5}$"),
    ("LV", "LVA", "Latvia", True, r"^LV-\d{4}$"),
    ("LT", "LTU", "Lithuania", True, r"^(LT-)?\d{5}$"),
    ("LU", "LUX", "Luxembourg", True, r"^(L-)?\d{4}$"),
    ("MT", "MLT", "Malta", True, r"^[A-Z]{3} ?\d{4}$"),
    ("NL", "NLD", "Netherlands", True, r"^\d{4} ?[A-Z]{2}$"),
    ("PL", "POL", "Poland", True, r"^\d{2}-\d{3}$"),
    ("PT", "PRT", "Portugal", True, r"^\d{4}-\d{3}$"),
    ("RO", "ROU", "Romania", True, r"^\d{6}$"),
    ("SK", "SVK", "Slovakia", True, r"^\d{3} ?\d{2}$"),
    ("SI", "SVN", "Slovenia", True, r"^\d{4}$"),
    ("ES", "ESP", "Spain", True, r"^\d{5}$"),
    ("SE", "SWE", "Sweden", True, r"^\d{3} ?\d{2}$"),
    ("GB", "GBR", "United Kingdom", True, r"^[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}$"),
    ("CH", "CHE", "Switzerland", True, r"^\d{4}$"),
    ("NO", "NOR", "Norway", True, r"^\d{4}$"),
    ("IS", "ISL", "Iceland", False, r"^\d{3}$"),
    ("LI", "LIE", "Liechtenstein", True, r"^\d{4}$"),
    ("US", "USA", "United States", True, r"^\d{5}(-\d{4})?$"),
    ("CA", "CAN", "Canada", True, r"^[A-Z]\d[A-Z] ?\d[A-Z]\d$"),
    ("MX", "MEX", "Mexico", False, r"^\d{5}$"),
    ("BR", "BRA", "Brazil", True, r"^\d{5}-\d{3}$"),
    ("AR", "ARG", "Argentina", False, None),
    ("CL", "CHL", "Chile", False, r"^\d{7}$"),
    ("JP", "JPN", "Japan", True, r"^\d{3}-\d{4}$"),
    ("CN", "CHN", "China", False, r"^\d{6}$"),
    ("KR", "KOR", "South Korea", False, r"^\d{5}$"),
    ("IN", "IND", "India", True, r"^\d{6}$"),
    ("AU", "AUS", "Australia", True, r"^\d{4}$"),
    ("NZ", "NZL", "New Zealand", False, r"^\d{4}$"),
    ("ZA", "ZAF", "South Africa", False, r"^\d{4}$"),
    ("TR", "TUR", "Türkiye", False, r"^\d{5}$"),
    ("AE", "ARE", "United Arab Emirates", False, None),
    ("SG", "SGP", "Singapore", True, r"^\d{6}$"),
    ("IL", "ISR", "Israel", False, r"^\d{7}$"),
    ("UA", "UKR", "Ukraine", False, r"^\d{5}$"),
)

# Tax rates per country (iso2): standard rate first, then the reduced ones.  Illustrative, not tax advice.
_TAX_RATES: dict[str, tuple[str, ...]] = {
    "AT": ("20.00", "10.00", "13.00"),
    "BE": ("21.00", "6.00", "12.00"),
    "BG": ("20.00", "9.00"),
    "HR": ("25.00", "13.00", "5.00"),
    "CY": ("19.00", "9.00"),
    "CZ": ("21.00", "12.00"),
    "DK": ("25.00",),
    "EE": ("22.00", "9.00"),
    "FI": ("25.50", "14.00", "10.00"),
    "FR": ("20.00", "10.00", "5.50"),
    "DE": ("19.00", "7.00"),
    "GR": ("24.00", "13.00", "6.00"),
    "HU": ("27.00", "18.00", "5.00"),
    "IE": ("23.00", "13.50", "9.00"),
    "IT": ("22.00", "10.00", "4.00"),
    "LV": ("21.00", "12.00"),
    "LT": ("21.00", "9.00"),
    "LU": ("17.00", "8.00", "3.00"),
    "MT": ("18.00", "5.00"),
    "NL": ("21.00", "9.00"),
    "PL": ("23.00", "8.00", "5.00"),
    "PT": ("23.00", "13.00", "6.00"),
    "RO": ("19.00", "9.00"),
    "SK": ("23.00", "10.00"),
    "SI": ("22.00", "9.50"),
    "ES": ("21.00", "10.00", "4.00"),
    "SE": ("25.00", "12.00", "6.00"),
    "GB": ("20.00", "5.00"),
    "CH": ("8.10", "2.60"),
    "NO": ("25.00", "15.00"),
    "CA": ("5.00",),
    "MX": ("16.00",),
    "AR": ("21.00", "10.50"),
    "CL": ("19.00",),
    "JP": ("10.00", "8.00"),
    "KR": ("10.00",),
    "AU": ("10.00",),
    "NZ": ("15.00",),
    "ZA": ("15.00",),
    "TR": ("20.00", "10.00", "1.00"),
    "AE": ("5.00",),
    "SG": ("9.00",),
}
# Countries whose only rate is called GST rather than "Standard".
_GST_COUNTRIES: frozenset[str] = frozenset({"CA", "AU", "NZ", "SG"})

# Tax rates that belong to no country (fk_country NULL).
_COUNTRYLESS_TAX_RATES: tuple[tuple[str, str], ...] = (("Tax Exempt", "0.00"), ("Zero Rated Export", "0.00"))

# Root categories: (key, name, ((child key suffix, child name, product noun, child active), ...)).
_CATEGORY_TREE: tuple[tuple[str, str, tuple[tuple[str, str, str, bool], ...]], ...] = (
    (
        "electronics",
        "Electronics",
        (
            ("laptops", "Laptops", "Laptop", True),
            ("smartphones", "Smartphones", "Smartphone", True),
            ("audio", "Audio", "Headphones", True),
            ("cameras", "Cameras", "Camera", True),
        ),
    ),
    (
        "home-garden",
        "Home & Garden",
        (
            ("furniture", "Furniture", "Armchair", True),
            ("kitchen", "Kitchen", "Frying Pan", True),
            ("lighting", "Lighting", "Lamp", True),
            ("garden-tools", "Garden Tools", "Rake", True),
        ),
    ),
    (
        "fashion",
        "Fashion",
        (
            ("womens-clothing", "Women's Clothing", "Dress", True),
            ("mens-clothing", "Men's Clothing", "Jacket", True),
            ("shoes", "Shoes", "Sneaker", True),
            ("accessories", "Accessories", "Scarf", True),
        ),
    ),
    (
        "sports",
        "Sports",
        (
            ("fitness", "Fitness", "Kettlebell", True),
            ("cycling", "Cycling", "Bike Helmet", True),
            ("outdoor", "Outdoor", "Tent", True),
            ("team-sports", "Team Sports", "Football", True),
        ),
    ),
    (
        "toys",
        "Toys",
        (
            ("board-games", "Board Games", "Board Game", True),
            ("puzzles", "Puzzles", "Puzzle", True),
            ("building-sets", "Building Sets", "Building Set", True),
            ("outdoor-toys", "Outdoor Toys", "Kite", False),
        ),
    ),
    (
        "books",
        "Books",
        (
            ("fiction", "Fiction", "Novel", True),
            ("non-fiction", "Non-Fiction", "Biography", True),
            ("childrens-books", "Children's Books", "Picture Book", True),
            ("comics", "Comics", "Comic", True),
        ),
    ),
    (
        "beauty",
        "Beauty",
        (
            ("skincare", "Skincare", "Face Cream", True),
            ("haircare", "Haircare", "Shampoo", True),
            ("fragrances", "Fragrances", "Perfume", True),
            ("makeup", "Makeup", "Lipstick", True),
        ),
    ),
    (
        "office",
        "Office",
        (
            ("stationery", "Stationery", "Notebook", True),
            ("office-furniture", "Office Furniture", "Desk", True),
            ("printers", "Printers", "Printer", False),
            ("paper", "Paper", "Paper Ream", True),
        ),
    ),
)

_ADJECTIVES: tuple[str, ...] = (
    "Compact",
    "Classic",
    "Deluxe",
    "Ergonomic",
    "Essential",
    "Premium",
    "Rugged",
    "Sleek",
    "Smart",
    "Vintage",
    "Modern",
    "Portable",
    "Lightweight",
    "Heavy-Duty",
    "Eco",
    "Pro",
    "Ultra",
    "Everyday",
    "Refined",
    "Bold",
)
_QUALIFIERS: tuple[str, ...] = (
    "Oak",
    "Steel",
    "Carbon",
    "Cotton",
    "Linen",
    "Granite",
    "Copper",
    "Bamboo",
    "Leather",
    "Wool",
    "Aurora",
    "Nordic",
    "Atlas",
    "Summit",
    "Harbor",
    "Meadow",
    "Pixel",
    "Nova",
    "Terra",
    "Zephyr",
)
_COLORS: tuple[str, ...] = (
    "black",
    "white",
    "grey",
    "red",
    "blue",
    "green",
    "yellow",
    "brown",
    "silver",
    "navy",
)
_SIZES: tuple[str, ...] = ("XS", "S", "M", "L", "XL")
_WAREHOUSES: tuple[str, ...] = ("WH-BERLIN", "WH-MUNICH", "WH-VIENNA", "WH-AMSTERDAM", "WH-WARSAW")


def shop_metadata() -> sa.MetaData:
    """Return fresh ``MetaData`` holding the five demo tables (see ``SHOP_TABLES``).

    Only generic types are used (no ``JSON``: ``attributes`` is a JSON document in ``Text``), and every
    constraint and index is named explicitly so the names match on SQLite, PostgreSQL and MariaDB.  Each
    foreign-key column has its own index (MariaDB would otherwise create one under a generated name).
    Columns with defaults also carry server defaults, and the timestamps default to ``CURRENT_TIMESTAMP``,
    so rows created through the API without those (non-creatable) fields are valid.
    """
    metadata = sa.MetaData()
    now = sa.text("CURRENT_TIMESTAMP")
    sa.Table(
        "shop_country",
        metadata,
        sa.Column("id_country", sa.Integer, autoincrement=True),
        sa.Column("iso2_code", sa.String(2), nullable=False),
        sa.Column("iso3_code", sa.String(3), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("postal_code_mandatory", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
        sa.Column("postal_code_regex", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id_country", name="pk_shop_country"),
        sa.UniqueConstraint("iso2_code", name="uq_shop_country_iso2_code"),
        sa.UniqueConstraint("iso3_code", name="uq_shop_country_iso3_code"),
    )
    sa.Table(
        "shop_tax_rate",
        metadata,
        sa.Column("id_tax_rate", sa.Integer, autoincrement=True),
        sa.Column("fk_country", sa.Integer, nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("rate", sa.Numeric(8, 2), nullable=False),
        sa.PrimaryKeyConstraint("id_tax_rate", name="pk_shop_tax_rate"),
        sa.ForeignKeyConstraint(["fk_country"], ["shop_country.id_country"], name="fk_shop_tax_rate_fk_country"),
        sa.Index("ix_shop_tax_rate_fk_country", "fk_country"),
    )
    sa.Table(
        "shop_category",
        metadata,
        sa.Column("id_category", sa.Integer, autoincrement=True),
        sa.Column("fk_parent_category", sa.Integer, nullable=True),
        sa.Column("category_key", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, default=True, server_default=sa.true()),
        sa.PrimaryKeyConstraint("id_category", name="pk_shop_category"),
        sa.UniqueConstraint("category_key", name="uq_shop_category_category_key"),
        sa.ForeignKeyConstraint(
            ["fk_parent_category"], ["shop_category.id_category"], name="fk_shop_category_fk_parent_category"
        ),
        sa.Index("ix_shop_category_fk_parent_category", "fk_parent_category"),
    )
    sa.Table(
        "shop_product",
        metadata,
        sa.Column("id_product", sa.Integer, autoincrement=True),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("fk_category", sa.Integer, nullable=False),
        sa.Column("fk_tax_rate", sa.Integer, nullable=True),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, default=True, server_default=sa.true()),
        sa.Column("attributes", sa.Text, nullable=True),
        sa.Column("available_from", sa.Date, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=now),
        sa.Column("updated_at", sa.DateTime, nullable=False, server_default=now),
        sa.PrimaryKeyConstraint("id_product", name="pk_shop_product"),
        sa.UniqueConstraint("sku", name="uq_shop_product_sku"),
        sa.ForeignKeyConstraint(["fk_category"], ["shop_category.id_category"], name="fk_shop_product_fk_category"),
        sa.ForeignKeyConstraint(["fk_tax_rate"], ["shop_tax_rate.id_tax_rate"], name="fk_shop_product_fk_tax_rate"),
        sa.Index("ix_shop_product_fk_category", "fk_category"),
        sa.Index("ix_shop_product_fk_tax_rate", "fk_tax_rate"),
        sa.Index("ix_shop_product_updated_at", "updated_at"),
    )
    sa.Table(
        "shop_stock",
        metadata,
        sa.Column("id_stock", sa.Integer, autoincrement=True),
        sa.Column("fk_product", sa.Integer, nullable=False),
        sa.Column("warehouse", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False, default=0, server_default=sa.text("0")),
        sa.Column("is_never_out_of_stock", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id_stock", name="pk_shop_stock"),
        sa.ForeignKeyConstraint(["fk_product"], ["shop_product.id_product"], name="fk_shop_stock_fk_product"),
        # Leads with fk_product, so it also serves as the foreign key's index.
        sa.UniqueConstraint("fk_product", "warehouse", name="uq_shop_stock_fk_product_warehouse"),
    )
    return metadata


def shop_config() -> list[dict[str, Any]]:
    """The demo shop's configuration in Spryker's installer format (what ``dxapi config import`` reads)."""
    entries: list[dict[str, Any]] = json.loads(SHOP_CONFIG.read_text(encoding="utf-8"))
    return entries


def create_shop(engine: sa.Engine, products: int = 10_000, seed: int = 7) -> dict[str, int]:
    """Drop, create and fill the demo tables through ``engine`` in one transaction.

    Returns the number of rows inserted per table name, in ``SHOP_TABLES`` order.  For an async engine
    use ``await async_connection.run_sync(build_shop, products, seed)`` inside ``async_engine.begin()``.
    """
    with engine.begin() as connection:
        return build_shop(connection, products, seed)


def build_shop(connection: sa.Connection, products: int = 10_000, seed: int = 7) -> dict[str, int]:
    """Drop, create and fill the demo tables on ``connection``; the caller owns the transaction.

    Deterministic in ``(products, seed)``.  Primary keys are assigned explicitly (1, 2, …) so foreign keys
    are predictable; on PostgreSQL the serial sequences are then moved past them so later inserts that
    rely on autoincrement do not collide.  (MariaDB's AUTO_INCREMENT and SQLite's rowid follow by themselves.)
    """
    if products < 0:
        raise ValueError(f"products must be >= 0, got {products}")
    metadata = shop_metadata()
    tables = [metadata.tables[name] for name in SHOP_TABLES]
    for table in reversed(tables):
        table.drop(connection, checkfirst=True)
    for table in tables:
        table.create(connection)

    country, tax_rate, category, product, stock = tables
    rng = random.Random(seed)
    counts = dict.fromkeys(SHOP_TABLES, 0)

    country_rows, tax_rate_rows = _country_and_tax_rate_rows()
    counts["shop_country"] = _insert(connection, country, country_rows)
    counts["shop_tax_rate"] = _insert(connection, tax_rate, tax_rate_rows)

    category_rows, leaves = _category_rows()
    counts["shop_category"] = _insert(connection, category, category_rows)

    root_ids = [row["id_category"] for row in category_rows if row["fk_parent_category"] is None]
    tax_rate_ids = [row["id_tax_rate"] for row in tax_rate_rows]
    next_stock_id = 1
    for first in range(1, products + 1, CHUNK_ROWS):
        product_rows: list[Row] = []
        stock_rows: list[Row] = []
        for product_id in range(first, min(first + CHUNK_ROWS, products + 1)):
            product_rows.append(_product_row(rng, product_id, leaves, root_ids, tax_rate_ids))
            for warehouse in rng.sample(_WAREHOUSES, rng.choice((1, 2))):
                stock_rows.append(_stock_row(rng, next_stock_id, product_id, warehouse))
                next_stock_id += 1
        counts["shop_product"] += _insert(connection, product, product_rows)
        counts["shop_stock"] += _insert(connection, stock, stock_rows)

    if connection.dialect.name == "postgresql":
        for table, rows in zip(
            tables,
            (len(country_rows), len(tax_rate_rows), len(category_rows), products, next_stock_id - 1),
            strict=True,
        ):
            _advance_pg_sequence(connection, table, rows)
    return counts


def _insert(connection: sa.Connection, table: sa.Table, rows: Sequence[Row]) -> int:
    """executemany ``rows`` into ``table`` in chunks of ``CHUNK_ROWS``; returns ``len(rows)``."""
    insert = table.insert()
    for chunk in _chunks(rows, CHUNK_ROWS):
        connection.execute(insert, chunk)
    return len(rows)


def _chunks(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    # An empty list passed to execute() would insert one all-defaults row, so empty input yields nothing.
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _advance_pg_sequence(connection: sa.Connection, table: sa.Table, last_id: int) -> None:
    if last_id < 1:
        return  # a fresh sequence already starts at 1
    (pk_column,) = table.primary_key.columns
    sequence = sa.func.pg_get_serial_sequence(table.name, pk_column.name)
    connection.execute(sa.select(sa.func.setval(sequence, last_id)))


def _country_and_tax_rate_rows() -> tuple[list[Row], list[Row]]:
    countries: list[Row] = []
    tax_rates: list[Row] = []
    for country_id, (iso2, iso3, name, postal_mandatory, postal_regex) in enumerate(_COUNTRIES, 1):
        countries.append(
            {
                "id_country": country_id,
                "iso2_code": iso2,
                "iso3_code": iso3,
                "name": name,
                "postal_code_mandatory": postal_mandatory,
                "postal_code_regex": postal_regex,
            }
        )
        labels = ("GST",) if iso2 in _GST_COUNTRIES else ("Standard", "Reduced", "Reduced II")
        for label, rate in zip(labels, _TAX_RATES.get(iso2, ()), strict=False):
            tax_rates.append({"fk_country": country_id, "name": f"{iso2} {label}", "rate": Decimal(rate)})
    for label, rate in _COUNTRYLESS_TAX_RATES:
        tax_rates.append({"fk_country": None, "name": label, "rate": Decimal(rate)})
    for tax_rate_id, row in enumerate(tax_rates, 1):
        row["id_tax_rate"] = tax_rate_id
    return countries, tax_rates


def _category_rows() -> tuple[list[Row], list[tuple[int, str, str]]]:
    """Roots first (ids 1…8), then their children; returns the rows and leaves as (id, name, noun)."""
    rows: list[Row] = []
    root_ids: dict[str, int] = {}
    for root_key, root_name, _children in _CATEGORY_TREE:
        root_ids[root_key] = len(rows) + 1
        rows.append(
            {
                "id_category": len(rows) + 1,
                "fk_parent_category": None,
                "category_key": root_key,
                "name": root_name,
                "is_active": True,
            }
        )
    leaves: list[tuple[int, str, str]] = []
    for root_key, _root_name, children in _CATEGORY_TREE:
        for suffix, name, noun, active in children:
            category_id = len(rows) + 1
            rows.append(
                {
                    "id_category": category_id,
                    "fk_parent_category": root_ids[root_key],
                    "category_key": f"{root_key}-{suffix}",
                    "name": name,
                    "is_active": active,
                }
            )
            leaves.append((category_id, name, noun))
    return rows, leaves


def _product_row(
    rng: random.Random,
    product_id: int,
    leaves: Sequence[tuple[int, str, str]],
    root_ids: Sequence[int],
    tax_rate_ids: Sequence[int],
) -> Row:
    category_id, category_name, noun = rng.choice(leaves)
    if rng.random() < 0.05:
        category_id = rng.choice(root_ids)  # a few products hang directly off a root category
    adjective = rng.choice(_ADJECTIVES)
    qualifier = rng.choice(_QUALIFIERS)
    description = (
        None
        if rng.random() < 0.2
        else f"The {adjective.lower()} {qualifier} {noun.lower()} from our {category_name} range."
    )
    attributes: dict[str, object] = {"color": rng.choice(_COLORS), "weightGrams": rng.randint(50, 25_000)}
    if rng.random() < 0.3:
        attributes["size"] = rng.choice(_SIZES)
    updated_at = BASE_TIME + timedelta(seconds=product_id)
    return {
        "id_product": product_id,
        "sku": f"SKU-{product_id:06d}",
        "name": f"{adjective} {qualifier} {noun}",
        "description": description,
        "fk_category": category_id,
        "fk_tax_rate": None if rng.random() < 0.05 else rng.choice(tax_rate_ids),
        "price": Decimal(rng.randint(99, 250_000)).scaleb(-2),
        "is_active": rng.random() >= 0.1,
        "attributes": json.dumps(attributes, sort_keys=True, separators=(",", ":")),
        "available_from": None if rng.random() < 0.3 else AVAILABLE_FROM + timedelta(rng.randint(0, 545)),
        "created_at": updated_at - timedelta(seconds=rng.randint(0, 90 * 86_400)),
        "updated_at": updated_at,
    }


def _stock_row(rng: random.Random, stock_id: int, product_id: int, warehouse: str) -> Row:
    return {
        "id_stock": stock_id,
        "fk_product": product_id,
        "warehouse": warehouse,
        "quantity": rng.randint(0, 500),
        "is_never_out_of_stock": rng.random() < 0.05,
    }
