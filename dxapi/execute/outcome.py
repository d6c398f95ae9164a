"""What a write did, as the endpoints answer it (``execute.write``, ``execute.one_statement``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dxapi.errors import ErrorItem


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a write did: the saved rows (root item order) and the errors of the refused items (root item
    order; transactional: any error means nothing was saved)."""

    saved: tuple[dict[str, Any], ...]
    errors: tuple[ErrorItem, ...]
