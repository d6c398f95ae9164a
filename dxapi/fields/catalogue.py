"""The codec of every field type — the one place a new type plugs in — and the column fit derived from them.

Fed by the codec classes; feeds everything that asks what a type does (``CODECS[field_type]``) and
``compatible_types`` (configuration checks, the admin page's suggestions).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sqlalchemy import types as sqltypes

from dxapi.fields.base import Codec, ColumnKind, FieldType
from dxapi.fields.columns import column_kind
from dxapi.fields.documents import JsonCodec
from dxapi.fields.moments import DateCodec, DatetimeCodec
from dxapi.fields.numbers import BooleanCodec, DecimalCodec, FloatCodec, IntegerCodec
from dxapi.fields.text import StringCodec, UuidCodec

_ALL: tuple[Codec, ...] = (
    IntegerCodec(),
    StringCodec(),
    BooleanCodec(),
    DecimalCodec(),
    FloatCodec(),
    DateCodec(),
    DatetimeCodec(),
    JsonCodec(),
    UuidCodec(),
)
CODECS: Mapping[FieldType, Codec] = MappingProxyType({codec.type: codec for codec in _ALL})
assert set(CODECS) == set(FieldType), "every field type needs a codec"

# Per column kind, the types that serve it, the best suggestion first (ties: in FieldType order).
_FITTING: Mapping[ColumnKind, tuple[FieldType, ...]] = MappingProxyType(
    {
        kind: tuple(sorted((t for t in FieldType if kind in CODECS[t].serves), key=lambda t: CODECS[t].serves[kind]))
        for kind in ColumnKind
    }
)


def compatible_types(column_type: sqltypes.TypeEngine[Any]) -> tuple[FieldType, ...]:
    """API types a column can serve, the best suggestion first.

    >>> compatible_types(sqltypes.Numeric(8, 2))
    (<FieldType.DECIMAL: 'decimal'>, <FieldType.FLOAT: 'float'>, <FieldType.STRING: 'string'>)
    """
    kind = column_kind(column_type)
    return () if kind is None else _FITTING[kind]
